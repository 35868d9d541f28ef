//! `AlterUserScramCredentials` and `DescribeUserScramCredentials` on swap routes whose clients'
//! SCRAM verifiers are in the secret store (`clientAuth.sasl.mechanism: SCRAM`), answered by
//! the gateway as a broker would and never forwarded: the broker's SCRAM users are not the
//! gateway's, and the connection is logged in to the broker as a mapped cluster user.
//!
//! Only the route's SCRAM admin (`scram.admin`, with `alterScramCredentials: true`) is
//! authorized, as Kafka authorizes `ALTER`/`DESCRIBE` on the cluster; anyone else gets
//! `CLUSTER_AUTHORIZATION_FAILED` (per user for Alter, for the whole request for Describe) and
//! nothing is read or stored. An upsertion carries the salt and the salted password (the client
//! derives it); the gateway computes StoredKey and ServerKey from it as Kafka does and stores
//! Kafka's credential text. Requests are checked as Kafka checks them (empty user, unknown
//! mechanism, iterations out of 4096..=16384, a user credential named twice, deleting one that
//! does not exist), per user: a user with any error has none of its changes made.
//!
//! Store access blocks, so it runs off the async workers. Logs name the admin, the users and
//! the mechanisms, never a salt, a salted password or a verifier.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::swap::{reply, SwapSession};
use crate::config::Secret;
use crate::protocol::scram::{ScramHash, ScramVerifier, ITERATIONS};
use crate::protocol::{InFlight, RequestError};
use crate::secrets::{SecretStore, StoreError};

/// Who asks, and the store the answer reads or writes.
pub struct ScramAdminRequest {
    store: Arc<dyn SecretStore>,
    store_name: String,
    principal: String,
    /// Whether `principal` is the route's SCRAM admin.
    admin: bool,
}

/// A request of `api_key` from `session`'s client that the gateway answers here: only on
/// `mechanism: SCRAM` routes.
pub fn answered_here(session: &SwapSession, api_key: ApiKey) -> Option<ScramAdminRequest> {
    if !matches!(api_key, ApiKey::AlterUserScramCredentials | ApiKey::DescribeUserScramCredentials) {
        return None;
    }
    let (store, store_name) = session.auth.verifier_store()?;
    Some(ScramAdminRequest {
        store: Arc::clone(store),
        store_name: store_name.to_string(),
        principal: session.principal.clone(),
        admin: session.auth.scram_admin() == Some(session.principal.as_str()),
    })
}

impl ScramAdminRequest {
    /// The answer to `request` (`body`: the frame after its size prefix).
    pub async fn answer(self, request: &InFlight, mut body: &[u8]) -> Result<Bytes, RequestError> {
        let undecodable =
            |cause: String| RequestError::Undecodable { api_key: request.api_key, version: request.api_version, cause };
        let version = request.api_version;
        RequestHeader::decode(&mut body, request.api_key.request_header_version(version))
            .map_err(|e| undecodable(e.to_string()))?;
        if request.api_key == ApiKey::AlterUserScramCredentials {
            let alter =
                AlterUserScramCredentialsRequest::decode(&mut body, version).map_err(|e| undecodable(e.to_string()))?;
            let results = tokio::task::spawn_blocking(move || self.alter(alter)).await.unwrap_or_default();
            return reply(request, &AlterUserScramCredentialsResponse::default().with_results(results));
        }
        let describe =
            DescribeUserScramCredentialsRequest::decode(&mut body, version).map_err(|e| undecodable(e.to_string()))?;
        let answer = match self.admin {
            true => tokio::task::spawn_blocking(move || describe_credentials(self.store.as_ref(), describe))
                .await
                .unwrap_or_else(|_| refused_describe(ResponseError::UnknownServerError, None)),
            false => refused_describe(ResponseError::ClusterAuthorizationFailed, None),
        };
        reply(request, &answer)
    }

    /// Carry out an Alter: one result per user, in the order users first appear (deletions
    /// first).
    fn alter(&self, alter: AlterUserScramCredentialsRequest) -> Vec<AlterUserScramCredentialsResult> {
        if !self.admin {
            // Refused before anything is checked or derived: a stranger's request costs little.
            let users = named_users(&alter);
            tracing::warn!(
                principal = self.principal,
                users = users.len(),
                "swap: AlterUserScramCredentials refused: not the route's SCRAM admin"
            );
            let refused = || Err((ResponseError::ClusterAuthorizationFailed, None));
            return users.into_iter().map(|user| result(user, refused())).collect();
        }
        checked_changes(alter)
            .into_iter()
            .map(|(user, checked)| {
                let outcome = checked.and_then(|changes| self.apply(&user, changes));
                result(user, outcome.map_err(|(error, message)| (error, Some(message))))
            })
            .collect()
    }

    /// Make one user's changes: none if a deletion names a credential that does not exist.
    fn apply(&self, user: &str, changes: Vec<Change>) -> Result<(), Refused> {
        let (store, admin, store_name) = (self.store.as_ref(), self.principal.as_str(), self.store_name.as_str());
        let store_failed = |e: StoreError| {
            tracing::warn!(admin, user, "swap: AlterUserScramCredentials: {e}");
            (
                ResponseError::UnknownServerError,
                format!("the gateway's secret store `{store_name}` could not be written"),
            )
        };
        for change in &changes {
            if let Change::Delete(hash) = change {
                if store.verifier(hash.mechanism(), user).map_err(store_failed)?.is_none() {
                    let message = "Attempt to delete a user credential that does not exist";
                    return Err((ResponseError::ResourceNotFound, message.into()));
                }
            }
        }
        for change in changes {
            let (what, mechanism) = match &change {
                Change::Delete(hash) => ("deleted", hash.mechanism()),
                Change::Upsert(hash, _) => ("stored", hash.mechanism()),
            };
            match change {
                Change::Delete(hash) => store.delete_verifier(hash.mechanism(), user).map(drop),
                Change::Upsert(hash, verifier) => store.write_verifier(hash.mechanism(), user, &verifier),
            }
            .map_err(store_failed)?;
            tracing::info!(admin, user, mechanism, store = store_name, "swap: SCRAM credential {what}");
        }
        Ok(())
    }
}

/// A user's Alter result.
fn result(user: String, outcome: Result<(), (ResponseError, Option<String>)>) -> AlterUserScramCredentialsResult {
    let result = AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user));
    match outcome {
        Ok(()) => result,
        Err((error, message)) => {
            result.with_error_code(error.code()).with_error_message(message.map(StrBytes::from_string))
        }
    }
}

/// The SCRAM hash of Kafka's mechanism number (`ScramMechanism`: 1 SHA-256, 2 SHA-512).
fn hash_of(mechanism: i8) -> Option<ScramHash> {
    match mechanism {
        1 => Some(ScramHash::Sha256),
        2 => Some(ScramHash::Sha512),
        _ => None,
    }
}

fn mechanism_number(hash: ScramHash) -> i8 {
    match hash {
        ScramHash::Sha256 => 1,
        ScramHash::Sha512 => 2,
    }
}

/// One change an Alter asks for, checked.
enum Change {
    Delete(ScramHash),
    Upsert(ScramHash, Secret),
}

/// Why a user's changes are refused: the error and its message.
type Refused = (ResponseError, String);

/// Every user an Alter names, once, in the order they first appear (deletions first).
fn named_users(alter: &AlterUserScramCredentialsRequest) -> Vec<String> {
    let mut seen = HashSet::new();
    let names = alter.deletions.iter().map(|d| &d.name).chain(alter.upsertions.iter().map(|u| &u.name));
    names.filter(|name| seen.insert(name.as_str())).map(|name| name.to_string()).collect()
}

/// Every user named, with its changes or the first error among them.
fn checked_changes(alter: AlterUserScramCredentialsRequest) -> Vec<(String, Result<Vec<Change>, Refused>)> {
    let mut users: Vec<(String, Result<Vec<Change>, Refused>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen: HashSet<(String, i8)> = HashSet::new();
    let deletions = alter.deletions.into_iter().map(|d| (d.name.to_string(), d.mechanism, None));
    let upsertions = alter.upsertions.into_iter().map(|u| {
        let credential = (u.iterations, u.salt, u.salted_password);
        (u.name.to_string(), u.mechanism, Some(credential))
    });
    for (user, mechanism, upsert) in deletions.chain(upsertions) {
        let checked = check_change(&user, mechanism, upsert, seen.insert((user.clone(), mechanism)));
        let at = *index.entry(user.clone()).or_insert_with(|| {
            users.push((user, Ok(Vec::new())));
            users.len() - 1
        });
        let entry = &mut users[at].1;
        match (entry.as_mut(), checked) {
            (Ok(changes), Ok(change)) => changes.push(change),
            (Ok(_), Err(error)) => *entry = Err(error),
            (Err(_), _) => {}
        }
    }
    users
}

/// One deletion (`upsert` none) or upsertion, checked as Kafka checks it.
fn check_change(
    user: &str,
    mechanism: i8,
    upsert: Option<(i32, Bytes, Bytes)>,
    first_time: bool,
) -> Result<Change, Refused> {
    let unacceptable = |message: &str| (ResponseError::UnacceptableCredential, message.to_string());
    if user.is_empty() {
        return Err(unacceptable("Username must not be empty"));
    }
    let Some(hash) = hash_of(mechanism) else {
        return Err((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".into()));
    };
    if !first_time {
        return Err((
            ResponseError::DuplicateResource,
            "A user credential cannot be altered twice in the same request".into(),
        ));
    }
    let Some((iterations, salt, salted_password)) = upsert else { return Ok(Change::Delete(hash)) };
    let iterations = u32::try_from(iterations).unwrap_or(0);
    if iterations < *ITERATIONS.start() {
        return Err(unacceptable("Too few iterations"));
    }
    if iterations > *ITERATIONS.end() {
        return Err(unacceptable("Too many iterations"));
    }
    if salt.is_empty() || salted_password.is_empty() {
        return Err(unacceptable("The salt and the salted password must not be empty"));
    }
    let verifier = ScramVerifier::from_salted(hash, &salted_password, &salt, iterations);
    Ok(Change::Upsert(hash, Secret::new(verifier.to_kafka_string())))
}

/// A Describe refused as a whole.
fn refused_describe(error: ResponseError, message: Option<&str>) -> DescribeUserScramCredentialsResponse {
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(error.code())
        .with_error_message(message.map(|m| StrBytes::from_string(m.to_string())))
}

/// The admin's Describe: the mechanisms and iterations of each named user's verifiers. Every
/// user at once (no names) would need the store listed, which the gateway does not do.
fn describe_credentials(
    store: &dyn SecretStore,
    describe: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let Some(users) = describe.users.filter(|users| !users.is_empty()) else {
        let message = "the gateway describes named users only (it does not list its secret store)";
        return refused_describe(ResponseError::InvalidRequest, Some(message));
    };
    let mut seen = HashSet::new();
    let results = users
        .into_iter()
        .map(|user| {
            let name = user.name.to_string();
            let result = DescribeUserScramCredentialsResult::default().with_user(user.name);
            let failed = |error: ResponseError, message: &str| {
                result
                    .clone()
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message.into())))
            };
            if !seen.insert(name.clone()) {
                return failed(
                    ResponseError::DuplicateResource,
                    "Cannot describe SCRAM credentials for the same user twice in a single request",
                );
            }
            match credential_infos(store, &name) {
                Ok(infos) if infos.is_empty() => {
                    failed(ResponseError::ResourceNotFound, "Attempt to describe a user credential that does not exist")
                }
                Ok(infos) => result.with_credential_infos(infos),
                Err(e) => {
                    tracing::warn!(user = name, "swap: DescribeUserScramCredentials: {e}");
                    failed(ResponseError::UnknownServerError, "the gateway's secret store could not be read")
                }
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// The mechanisms and iterations `user` has verifiers for.
fn credential_infos(store: &dyn SecretStore, user: &str) -> Result<Vec<CredentialInfo>, StoreError> {
    let mut infos = Vec::new();
    for hash in [ScramHash::Sha256, ScramHash::Sha512] {
        let Some(text) = store.verifier(hash.mechanism(), user)? else { continue };
        if let Ok(verifier) = ScramVerifier::parse(hash, text.expose()) {
            let iterations = i32::try_from(verifier.iterations).unwrap_or(i32::MAX);
            infos.push(CredentialInfo::default().with_mechanism(mechanism_number(hash)).with_iterations(iterations));
        }
    }
    Ok(infos)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };

    use super::*;

    fn upsertion(name: &'static str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_static_str(name))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from_static(&[7; 32]))
    }

    /// Each user's first error, or its changes, in the order users first appear.
    fn outcomes(alter: AlterUserScramCredentialsRequest) -> Vec<(String, Result<usize, ResponseError>)> {
        checked_changes(alter)
            .into_iter()
            .map(|(user, checked)| (user, checked.map(|changes| changes.len()).map_err(|(error, _)| error)))
            .collect()
    }

    #[test]
    fn changes_are_checked_per_user_as_kafka_checks_them() {
        let deletion = ScramCredentialDeletion::default().with_name(StrBytes::from_static_str("bob")).with_mechanism(2);
        let alter = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]).with_upsertions(vec![
            upsertion("alice", 1, 8192),
            upsertion("bob", 1, 4096),
            upsertion("", 1, 4096),
            upsertion("carol", 3, 4096),
            upsertion("dave", 1, 100),
            upsertion("dave", 2, 4096),
            upsertion("erin", 2, 20_000),
            upsertion("alice", 1, 8192),
        ]);
        let owned = |name: &str, outcome| (name.to_string(), outcome);
        let named = ["bob", "alice", "", "carol", "dave", "erin"];
        assert_eq!(named_users(&alter), named);
        assert_eq!(
            outcomes(alter),
            vec![
                owned("bob", Ok(2)),
                owned("alice", Err(ResponseError::DuplicateResource)),
                owned("", Err(ResponseError::UnacceptableCredential)),
                owned("carol", Err(ResponseError::UnsupportedSaslMechanism)),
                owned("dave", Err(ResponseError::UnacceptableCredential)),
                owned("erin", Err(ResponseError::UnacceptableCredential)),
            ]
        );
    }

    #[test]
    fn an_upsertion_stores_the_verifier_of_its_salted_password() {
        let Ok(Change::Upsert(hash, text)) =
            check_change("alice", 2, Some((4096, Bytes::from_static(b"NaCl"), Bytes::from_static(&[9; 64]))), true)
        else {
            panic!("refused")
        };
        let verifier = ScramVerifier::parse(hash, text.expose()).unwrap();
        assert_eq!(
            (hash, verifier.iterations, verifier.salt.as_slice()),
            (ScramHash::Sha512, 4096, b"NaCl".as_slice())
        );
        assert_eq!(verifier, ScramVerifier::from_salted(ScramHash::Sha512, &[9; 64], b"NaCl", 4096));
    }
}
