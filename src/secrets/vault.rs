//! HashiCorp Vault (or OpenBao) KV version 2, token authentication.
//!
//! - `path: secret/gateway`: one secret whose keys are principals
//!   (`vault kv put secret/gateway alice=app:app-secret`), read at `GET /v1/secret/data/gateway`.
//! - `prefixPath: secret/gw/`: one secret per principal, its field `value`
//!   (`vault kv put secret/gw/alice value=app:app-secret`), read at `GET /v1/secret/data/gw/alice`.
//!
//! The first segment of the path is the KV mount. The token goes in `X-Vault-Token`; a 404
//! means no entry. Plain `http://` only for now (the gateway's HTTP client is built without TLS).
//!
//! SCRAM verifiers are one secret per user and mechanism under the store's `path` or
//! `prefixPath`, field `value`: `secret/gateway/.scram-sha-256/alice` (or
//! `secret/gw/.scram-sha-256/alice`). They are written with a KV v2 write
//! (`POST /v1/<mount>/data/...`) and removed with every version (`DELETE /v1/<mount>/metadata/...`),
//! so the token's policy needs `create`, `update` and `delete` there, besides `read`.

use std::time::Duration;

use super::{split_entry, unusable_user, usable_name, verifier_folder, Credentials, SecretStore, StoreError};
use crate::config::Secret;

/// A lookup that takes longer fails the client's login rather than hang it.
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct VaultStore {
    name: String,
    address: String,
    token: Secret,
    path: Option<String>,
    prefix_path: Option<String>,
    separator: String,
    agent: ureq::Agent,
}

impl VaultStore {
    pub fn new(
        name: &str,
        address: String,
        token: Secret,
        path: Option<String>,
        prefix_path: Option<String>,
        separator: String,
    ) -> VaultStore {
        let agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT)).build().into();
        VaultStore { name: name.to_string(), address, token, path, prefix_path, separator, agent }
    }

    fn error(&self, problem: String) -> StoreError {
        StoreError { store: self.name.clone(), problem }
    }

    /// The KV v2 data URL of `secret_path` (`mount/rest`).
    fn data_url(&self, secret_path: &str) -> String {
        self.kv_url("data", secret_path)
    }

    /// The KV v2 URL of `secret_path` for `kind` (`data`, `metadata`).
    fn kv_url(&self, kind: &str, secret_path: &str) -> String {
        let secret_path = secret_path.trim_matches('/');
        let (mount, rest) = secret_path.split_once('/').unwrap_or((secret_path, ""));
        format!("{}/v1/{mount}/{kind}/{rest}", self.address)
    }

    /// The secret of `user`'s verifier for `mechanism`, if `user` can have one.
    fn verifier_path(&self, mechanism: &str, user: &str) -> Option<String> {
        let base = self.path.as_deref().or(self.prefix_path.as_deref())?.trim_end_matches('/');
        usable_name(user).then(|| format!("{base}/{}/{}", verifier_folder(mechanism), path_segment(user)))
    }

    /// What a write or delete's status means: done, or why not.
    fn written(&self, url: &str, status: u16) -> Result<(), StoreError> {
        match status {
            200 | 204 => Ok(()),
            403 => Err(self.error(format!("{url}: permission denied (the token's policy must allow writing there)"))),
            status => Err(self.error(format!("{url} answered HTTP {status}"))),
        }
    }

    /// The `data.data` object of the secret at `secret_path`; `None` if there is none.
    fn read(&self, secret_path: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let url = self.data_url(secret_path);
        let mut response = self
            .agent
            .get(&url)
            .header("X-Vault-Token", self.token.expose())
            .call()
            .map_err(|e| self.error(format!("cannot reach {url}: {e}")))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            403 => return Err(self.error(format!("{url}: permission denied (check authToken and its policy)"))),
            status => return Err(self.error(format!("{url} answered HTTP {status}"))),
        }
        let body = response.body_mut().read_to_string().map_err(|e| self.error(format!("{url}: {e}")))?;
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| self.error(format!("{url} did not answer KV v2 JSON")))?;
        Ok(value.get("data").and_then(|d| d.get("data")).cloned())
    }
}

/// A principal as a path segment: letters, digits and `._-@` as they are, the rest
/// percent-encoded.
fn path_segment(principal: &str) -> String {
    principal
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl SecretStore for VaultStore {
    fn lookup(&self, principal: &str) -> Result<Option<Credentials>, StoreError> {
        if !usable_name(principal) {
            return Ok(None);
        }
        let (data, key) = match (&self.path, &self.prefix_path) {
            (Some(path), _) => (self.read(path)?, principal),
            (None, Some(prefix)) => (self.read(&format!("{prefix}{}", path_segment(principal)))?, "value"),
            (None, None) => return Err(self.error("neither path nor prefixPath is set".into())),
        };
        let Some(entry) = data.as_ref().and_then(|d| d.get(key)) else { return Ok(None) };
        let Some(entry) = entry.as_str() else {
            return Err(self.error(format!("the entry of principal `{principal}` is not a string")));
        };
        split_entry(&self.name, principal, entry, &self.separator).map(Some)
    }

    fn verifier(&self, mechanism: &str, user: &str) -> Result<Option<Secret>, StoreError> {
        let Some(path) = self.verifier_path(mechanism, user) else { return Ok(None) };
        let data = self.read(&path)?;
        match data.as_ref().and_then(|d| d.get("value")) {
            None => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(Secret::new(text))),
            Some(_) => Err(self.error(format!("the SCRAM verifier of `{user}` is not a string"))),
        }
    }

    fn write_verifier(&self, mechanism: &str, user: &str, verifier: &Secret) -> Result<(), StoreError> {
        let path = self.verifier_path(mechanism, user).ok_or_else(|| unusable_user(&self.name, user))?;
        let url = self.data_url(&path);
        let body = serde_json::json!({ "data": { "value": verifier.expose() } }).to_string();
        let response = self
            .agent
            .post(&url)
            .header("X-Vault-Token", self.token.expose())
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| self.error(format!("cannot reach {url}: {e}")))?;
        self.written(&url, response.status().as_u16())
    }

    fn delete_verifier(&self, mechanism: &str, user: &str) -> Result<bool, StoreError> {
        let Some(path) = self.verifier_path(mechanism, user) else { return Ok(false) };
        if self.read(&path)?.is_none() {
            return Ok(false);
        }
        let url = self.kv_url("metadata", &path);
        let response = self
            .agent
            .delete(&url)
            .header("X-Vault-Token", self.token.expose())
            .call()
            .map_err(|e| self.error(format!("cannot reach {url}: {e}")))?;
        self.written(&url, response.status().as_u16()).map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv2_urls() {
        let store = |path: Option<&str>, prefix: Option<&str>| {
            VaultStore::new(
                "v",
                "http://127.0.0.1:8200".into(),
                Secret::new("t"),
                path.map(Into::into),
                prefix.map(Into::into),
                ":".into(),
            )
        };
        assert_eq!(store(Some("secret/gw"), None).data_url("secret/gw"), "http://127.0.0.1:8200/v1/secret/data/gw");
        assert_eq!(store(None, Some("kv/")).data_url("kv/a/b"), "http://127.0.0.1:8200/v1/kv/data/a/b");
        assert_eq!(path_segment("CN=a b"), "CN%3Da%20b");
        let keyed = store(Some("secret/gw"), None);
        assert_eq!(keyed.verifier_path("SCRAM-SHA-256", "a/b").unwrap(), "secret/gw/.scram-sha-256/a%2Fb");
        assert_eq!(keyed.verifier_path("SCRAM-SHA-256", ".."), None);
        let prefixed = store(None, Some("secret/per/"));
        assert_eq!(prefixed.verifier_path("SCRAM-SHA-512", "bob").unwrap(), "secret/per/.scram-sha-512/bob");
        assert_eq!(prefixed.kv_url("metadata", "secret/per/x"), "http://127.0.0.1:8200/v1/secret/metadata/per/x");
    }
}
