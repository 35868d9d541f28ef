//! The client side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka runs it
//! inside SaslAuthenticate requests: the gateway logs in to brokers with it on swap routes.
//!
//! Three messages: the client-first (`n,,n=<user>,r=<nonce>`), the client-final with the proof
//! (after the server-first gave the salt and the iteration count), and the check of the
//! server's signature in the server-final. Nothing here logs or returns the password.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

/// A server's SCRAM message the client cannot accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("the server's SCRAM message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the server refused the SCRAM login: {0}")]
    Refused(String),
    #[error("the server's SCRAM signature is wrong (it does not know the password)")]
    BadServerSignature,
    #[error("the server asked for {0} iterations (Kafka allows 4096 to 16384)")]
    Iterations(u32),
}

/// Kafka's bounds on SCRAM iterations; more would let a hostile server burn the gateway's CPU.
const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=16384;

impl ScramHash {
    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, message: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(message).to_vec(),
            ScramHash::Sha512 => Sha512::digest(message).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC of this hash, one block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            ScramHash::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

/// One SCRAM login, client side.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// Set by [`ScramClient::client_final`]: the signature the server-final must carry.
    server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient").field("hash", &self.hash).finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A login as `user`, with a random nonce.
    pub fn new(hash: ScramHash, user: &str, password: &str) -> ScramClient {
        let mut random = [0u8; 24];
        // Without an OS random source nothing else would work either.
        getrandom::fill(&mut random).expect("the OS random source is available");
        ScramClient::with_nonce(hash, user, password, &STANDARD.encode(random))
    }

    /// [`ScramClient::new`] with a given nonce (tests).
    pub fn with_nonce(hash: ScramHash, user: &str, password: &str, nonce: &str) -> ScramClient {
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_string(),
            client_first_bare: format!("n={name},r={nonce}"),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// The first token: `n,,n=<user>,r=<nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The second token, answering the server-first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(error) = server_first.strip_prefix("e=") {
            return Err(ScramError::Refused(error.to_string()));
        }
        let field = |name: &str| {
            server_first.split(',').find_map(|kv| kv.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        };
        let nonce = field("r").ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("the server nonce does not extend the client's"));
        }
        let salt = STANDARD
            .decode(field("s").ok_or(ScramError::Malformed("no salt"))?)
            .map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        let iterations: u32 = field("i")
            .ok_or(ScramError::Malformed("no iteration count"))?
            .parse()
            .map_err(|_| ScramError::Malformed("the iteration count is not a number"))?;
        if !ITERATIONS.contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let hash = self.hash;
        let salted = hash.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(k, s)| k ^ s).collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        self.server_signature = Some(hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Check the server-final message: the server proves it knows the password too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramError::Refused(error.to_string()));
        }
        let signature =
            text.split(',').find_map(|kv| kv.strip_prefix("v=")).ok_or(ScramError::Malformed("no server signature"))?;
        let signature = STANDARD.decode(signature).map_err(|_| ScramError::Malformed("the signature is not base64"))?;
        match &self.server_signature {
            Some(expected) if *expected == signature => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example (user `user`, password `pencil`).
    #[test]
    fn rfc_7677_example() {
        let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let final_message = client.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(final_message).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
        assert_eq!(client.verify_server_final(b"v=AAAA"), Err(ScramError::BadServerSignature));
    }

    #[test]
    fn refuses_a_foreign_nonce_and_absurd_iterations() {
        let mut client = ScramClient::with_nonce(ScramHash::Sha512, "a,b=c", "pw", "abc");
        assert_eq!(client.client_first(), b"n,,n=a=2Cb=3Dc,r=abc");
        assert!(client.client_final(b"r=xyz123,s=AAAA,i=4096").is_err());
        assert_eq!(client.client_final(b"r=abc123,s=AAAA,i=100000000"), Err(ScramError::Iterations(100_000_000)));
        assert!(matches!(client.client_final(b"e=unknown-user"), Err(ScramError::Refused(_))));
    }
}
