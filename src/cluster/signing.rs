//! HMAC-SHA256 signatures with the cluster secret, so that only nodes holding it can announce a
//! member or publish a command.
//!
//! The backing Kafka cluster is shared with every client of the gateway: anyone who can write to
//! the internal topic or join the internal group could otherwise move every route or have their
//! own address advertised. Each signature covers a tag naming what is signed (a command's MAC can
//! never pass for a member's), the cluster id (a message of one gateway cluster can never pass in
//! another sharing the secret) and the signed fields, each prefixed with its length so that no
//! two different field lists have the same bytes. Verifying compares in constant time
//! (`hmac`'s `verify_*`), so a forger learns nothing from how long a refusal took.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::ClusterSecret;

type HmacSha256 = Hmac<Sha256>;

const COMMAND_TAG: &[u8] = b"switchyard/cluster-command/v1";
const MEMBER_TAG: &[u8] = b"switchyard/cluster-member/v1";

/// Hex digits of a member's MAC in its client id: the first 128 bits, plenty against forgery
/// and short enough for a client id.
pub const MEMBER_MAC_HEX: usize = 32;

/// Signs and verifies one gateway cluster's messages.
#[derive(Clone)]
pub struct Signer {
    /// Keyed once; cloned per message.
    keyed: HmacSha256,
    cluster_id: String,
}

impl Signer {
    pub fn new(secret: &ClusterSecret, cluster_id: &str) -> Signer {
        let keyed = HmacSha256::new_from_slice(secret.expose()).expect("HMAC takes a key of any length");
        Signer { keyed, cluster_id: cluster_id.to_string() }
    }

    /// The MAC of a member's fields, [`MEMBER_MAC_HEX`] hex digits.
    pub fn sign_member(&self, fields: &[&str]) -> String {
        let mut mac = hex(&self.mac(MEMBER_TAG, fields.iter().map(|f| f.as_bytes())).finalize().into_bytes());
        mac.truncate(MEMBER_MAC_HEX);
        mac
    }

    pub fn verify_member(&self, fields: &[&str], mac_hex: &str) -> bool {
        let Some(mac) = unhex(mac_hex).filter(|_| mac_hex.len() == MEMBER_MAC_HEX) else { return false };
        self.mac(MEMBER_TAG, fields.iter().map(|f| f.as_bytes())).verify_truncated_left(&mac).is_ok()
    }

    /// The MAC of a command's payload, 64 hex digits.
    pub fn sign_command(&self, payload: &[u8]) -> String {
        hex(&self.mac(COMMAND_TAG, [payload]).finalize().into_bytes())
    }

    pub fn verify_command(&self, payload: &[u8], mac_hex: &[u8]) -> bool {
        let Some(mac) = std::str::from_utf8(mac_hex).ok().and_then(unhex) else { return false };
        self.mac(COMMAND_TAG, [payload]).verify_slice(&mac).is_ok()
    }

    fn mac<'a>(&self, tag: &[u8], fields: impl IntoIterator<Item = &'a [u8]>) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        let mut add = |field: &[u8]| {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        };
        add(tag);
        add(self.cluster_id.as_bytes());
        fields.into_iter().for_each(add);
        mac
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str, cluster: &str) -> Signer {
        Signer::new(&ClusterSecret::new(secret), cluster)
    }

    #[test]
    fn a_member_signature_covers_every_field_the_cluster_and_the_secret() {
        let signer = signer("0123456789abcdef0123456789abcdef", "orders");
        let fields = ["gw-1", "10.0.0.1", "rack-a"];
        let mac = signer.sign_member(&fields);
        assert_eq!(mac.len(), MEMBER_MAC_HEX);
        assert!(signer.verify_member(&fields, &mac));
        for i in 0..fields.len() {
            let mut tampered = fields;
            tampered[i] = "6.6.6.6";
            assert!(!signer.verify_member(&tampered, &mac), "field {i} tampered");
        }
        // Moving a boundary between fields changes the signed bytes too.
        assert!(!signer.verify_member(&["gw-110.0.0.1", "", "rack-a"], &mac));
        assert!(!self::signer("0123456789abcdef0123456789abcdeX", "orders").verify_member(&fields, &mac));
        assert!(!self::signer("0123456789abcdef0123456789abcdef", "payments").verify_member(&fields, &mac));
        assert!(!signer.verify_member(&fields, &mac[..30]));
        assert!(!signer.verify_member(&fields, "zz"));
        assert!(!signer.verify_member(&fields, ""));
    }

    #[test]
    fn a_command_signature_covers_every_byte_and_is_not_a_member_signature() {
        let signer = signer("0123456789abcdef0123456789abcdef", "orders");
        let payload = br#"{"route":"main"}"#;
        let mac = signer.sign_command(payload);
        assert!(signer.verify_command(payload, mac.as_bytes()));
        assert!(!signer.verify_command(br#"{"route":"mail"}"#, mac.as_bytes()));
        assert!(!signer.verify_command(payload, &mac.as_bytes()[..62]));
        assert!(!signer.verify_command(payload, b"not hex"));
        let as_member = signer.sign_member(&[std::str::from_utf8(payload).unwrap()]);
        assert!(!signer.verify_command(payload, as_member.as_bytes()));
    }
}
