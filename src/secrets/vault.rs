//! HashiCorp Vault (or OpenBao) KV version 2, token authentication.
//!
//! - `path: secret/gateway`: one secret whose keys are principals
//!   (`vault kv put secret/gateway alice=app:app-secret`), read at `GET /v1/secret/data/gateway`.
//! - `prefixPath: secret/gw/`: one secret per principal, its field `value`
//!   (`vault kv put secret/gw/alice value=app:app-secret`), read at `GET /v1/secret/data/gw/alice`.
//!
//! The first segment of the path is the KV mount. The token goes in `X-Vault-Token`; a 404
//! means no entry. Plain `http://` only for now (the gateway's HTTP client is built without TLS).

use std::time::Duration;

use super::{split_entry, Credentials, SecretStore, StoreError};
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
        let secret_path = secret_path.trim_matches('/');
        let (mount, rest) = secret_path.split_once('/').unwrap_or((secret_path, ""));
        format!("{}/v1/{mount}/data/{rest}", self.address)
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
        if principal.is_empty() || principal.starts_with('.') {
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
    }
}
