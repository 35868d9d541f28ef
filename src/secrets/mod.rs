//! Secret stores: where a swap route finds the credentials it logs in to brokers with, for each
//! client principal.
//!
//! Every store answers one question, [`SecretStore::lookup`]: the `user<separator>secret` entry
//! of a principal, split in two, or nothing. Lookups happen once per client login (never on
//! the data path of requests) and block, so callers run them off the async workers
//! (`tokio::task::spawn_blocking`). Nothing is cached: a rotated entry is seen by the next
//! login. Errors name the store and the principal, never a secret.
//!
//! Routes whose clients log in with `mechanism: SCRAM` also keep their users' SCRAM verifiers
//! in the store ([`SecretStore::verifier`]), written by the gateway when an admin sends
//! `AlterUserScramCredentials`. They live under a hidden name per mechanism
//! ([`verifier_folder`], `.scram-sha-256/<user>`): both stores refuse principals that start
//! with `.`, so a verifier can never be read as a principal's cluster credentials, and no
//! principal's entry can be overwritten by a verifier.
//!
//! - [`FileStore`]: a directory with one file per principal (a mounted Kubernetes secret is one).
//! - [`VaultStore`]: HashiCorp Vault (or OpenBao) KV version 2 with token auth.
//!
//! AWS Secrets Manager and Azure Key Vault would be two more implementations of the trait.

mod file;
mod vault;

use std::collections::HashMap;
use std::sync::Arc;

pub use file::FileStore;
pub use vault::VaultStore;

use crate::config::{Secret, SecretProvider, SecretStoreConfig};

/// The credentials a principal is mapped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: Secret,
}

/// A store could not answer. The message names the store and principal, never a secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("secret store `{store}`: {problem}")]
pub struct StoreError {
    pub store: String,
    pub problem: String,
}

/// Where principals' credentials (and SCRAM users' verifiers) are kept. Every method blocks.
pub trait SecretStore: Send + Sync {
    /// The entry of `principal`; `Ok(None)` when the store has none.
    fn lookup(&self, principal: &str) -> Result<Option<Credentials>, StoreError>;

    /// `user`'s verifier for `mechanism` (`SCRAM-SHA-256` or `SCRAM-SHA-512`) in Kafka's
    /// credential text; `Ok(None)` when there is none or `user` cannot have one.
    fn verifier(&self, mechanism: &str, user: &str) -> Result<Option<Secret>, StoreError>;

    /// Store `user`'s verifier for `mechanism`, replacing the one it had.
    fn write_verifier(&self, mechanism: &str, user: &str, verifier: &Secret) -> Result<(), StoreError>;

    /// Remove `user`'s verifier for `mechanism`: whether there was one.
    fn delete_verifier(&self, mechanism: &str, user: &str) -> Result<bool, StoreError>;
}

/// The hidden name a store keeps `mechanism`'s verifiers under (`.scram-sha-256`).
pub fn verifier_folder(mechanism: &str) -> String {
    format!(".{}", mechanism.to_ascii_lowercase())
}

/// Whether `name` (a principal, a SCRAM user) can have an entry: not empty, not hidden (so it
/// cannot reach a verifier folder, `.` or `..`).
fn usable_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.')
}

/// Why a SCRAM user's verifier cannot be stored.
fn unusable_user(store: &str, user: &str) -> StoreError {
    StoreError {
        store: store.to_string(),
        problem: format!("SCRAM user `{user}` cannot be stored (empty, starting with `.`, or not a file name)"),
    }
}

/// Split an entry `user<separator>secret` at the first separator.
fn split_entry(store: &str, principal: &str, entry: &str, separator: &str) -> Result<Credentials, StoreError> {
    let entry = entry.trim_end_matches(['\r', '\n']);
    match entry.split_once(separator) {
        Some((user, secret)) if !user.is_empty() => {
            Ok(Credentials { user: user.to_string(), secret: Secret::new(secret) })
        }
        _ => Err(StoreError {
            store: store.to_string(),
            problem: format!(
                "the entry of principal `{principal}` is not `user{separator}secret` (its content is not shown)"
            ),
        }),
    }
}

/// Every configured store, by name.
#[derive(Clone, Default)]
pub struct SecretStores {
    stores: HashMap<String, Arc<dyn SecretStore>>,
}

impl SecretStores {
    pub fn open(configs: &[SecretStoreConfig]) -> SecretStores {
        let stores = configs
            .iter()
            .map(|config| {
                let store: Arc<dyn SecretStore> = match &config.provider {
                    SecretProvider::File { directory, separator } => {
                        Arc::new(FileStore::new(&config.name, directory.clone(), separator.clone()))
                    }
                    SecretProvider::Vault { address, token, path, prefix_path, separator } => {
                        Arc::new(VaultStore::new(
                            &config.name,
                            address.clone(),
                            token.clone(),
                            path.clone(),
                            prefix_path.clone(),
                            separator.clone(),
                        ))
                    }
                };
                (config.name.clone(), store)
            })
            .collect();
        SecretStores { stores }
    }

    /// The store named `name` (the config guarantees the names routes use exist).
    pub fn get(&self, name: &str) -> Option<Arc<dyn SecretStore>> {
        self.stores.get(name).cloned()
    }
}
