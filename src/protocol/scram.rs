//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka runs it inside
//! SaslAuthenticate requests, on both sides: on swap routes the gateway is the SCRAM *server*
//! for its clients ([`ScramServer`]) and a SCRAM *client* of the brokers ([`ScramClient`]).
//!
//! Three messages: the client-first (`n,,n=<user>,r=<nonce>`), the client-final with the proof
//! (after the server-first gave the salt and the iteration count), and the check of the
//! server's signature in the server-final. Nothing here logs or returns a password.
//!
//! The server side keeps no password, only a [`ScramVerifier`] per user (salt, iterations,
//! StoredKey, ServerKey), written as Kafka writes SCRAM credentials
//! (`salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=<n>`). A user without a verifier
//! gets a made-up salt (derived from the name and a per-process key, so it is stable) and fails
//! at the proof with the same error as a wrong password: users cannot be enumerated.

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
pub const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=16384;

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

    /// The mechanism's Kafka name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha256 => "SCRAM-SHA-256",
            ScramHash::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The hash of a Kafka mechanism name.
    pub fn from_mechanism(name: &str) -> Option<ScramHash> {
        match name {
            "SCRAM-SHA-256" => Some(ScramHash::Sha256),
            "SCRAM-SHA-512" => Some(ScramHash::Sha512),
            _ => None,
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

/// What a SCRAM server keeps of a user's password (RFC 5802 section 3): enough to check a proof
/// and to prove itself, not enough to log in elsewhere without a captured exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

/// Why a verifier text cannot be used (never quoting it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifierError {
    #[error("is not `salt=<base64>,stored_key=<base64>,server_key=<base64>,iterations=<n>`: {0}")]
    Malformed(&'static str),
    #[error("has {0} iterations (Kafka allows 4096 to 16384)")]
    Iterations(u32),
    #[error("has keys of the wrong length for {0}")]
    KeyLength(&'static str),
}

impl ScramVerifier {
    /// The verifier of `password` (what `kafka-configs --add-config 'SCRAM-SHA-256=[...]'`
    /// stores).
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        ScramVerifier::from_salted(hash, &salted, salt, iterations)
    }

    /// The verifier of a salted password (`Hi(password, salt, iterations)`), as an
    /// `AlterUserScramCredentials` upsertion carries it: StoredKey and ServerKey computed the way
    /// Kafka's `ScramFormatter` does.
    pub fn from_salted(hash: ScramHash, salted: &[u8], salt: &[u8], iterations: u32) -> ScramVerifier {
        ScramVerifier {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&hash.hmac(salted, b"Client Key")),
            server_key: hash.hmac(salted, b"Server Key"),
        }
    }

    /// Read Kafka's credential text for `hash`.
    pub fn parse(hash: ScramHash, text: &str) -> Result<ScramVerifier, VerifierError> {
        let (mut salt, mut stored_key, mut server_key, mut iterations) = (None, None, None, None);
        for field in text.trim().split(',') {
            let (key, value) = field.split_once('=').ok_or(VerifierError::Malformed("a field has no `=`"))?;
            let bytes = || STANDARD.decode(value).map_err(|_| VerifierError::Malformed("a key is not base64"));
            match key.trim() {
                "salt" => salt = Some(bytes()?),
                "stored_key" => stored_key = Some(bytes()?),
                "server_key" => server_key = Some(bytes()?),
                "iterations" => {
                    iterations =
                        Some(value.parse().map_err(|_| VerifierError::Malformed("iterations is not a number"))?)
                }
                _ => return Err(VerifierError::Malformed("unknown field")),
            }
        }
        let missing = VerifierError::Malformed("a field is missing");
        let verifier = ScramVerifier {
            salt: salt.ok_or(VerifierError::Malformed("a field is missing"))?,
            iterations: iterations.ok_or(VerifierError::Malformed("a field is missing"))?,
            stored_key: stored_key.ok_or(VerifierError::Malformed("a field is missing"))?,
            server_key: server_key.ok_or(missing)?,
        };
        if !ITERATIONS.contains(&verifier.iterations) {
            return Err(VerifierError::Iterations(verifier.iterations));
        }
        let length = hash.hash(b"").len();
        if verifier.stored_key.len() != length || verifier.server_key.len() != length || verifier.salt.is_empty() {
            return Err(VerifierError::KeyLength(hash.mechanism()));
        }
        Ok(verifier)
    }

    /// Kafka's credential text.
    pub fn to_kafka_string(&self) -> String {
        format!(
            "salt={},stored_key={},server_key={},iterations={}",
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key),
            self.iterations
        )
    }
}

/// A client's SCRAM message the gateway refuses. Every refusal of a proof reads the same,
/// whether the user is unknown or the password wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramServerError {
    #[error("invalid SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the client-final nonce is not the one the server sent")]
    NonceMismatch,
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// Bounds on what a client may send: Kafka user names and nonces are short.
const MAX_CLIENT_MESSAGE: usize = 4096;

/// A user name as written in SCRAM (`=2C` is `,`, `=3D` is `=`); `None` if another `=` escape.
fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// What an unknown user's made-up verifier looks like: the salt length and iterations of the
/// real ones, so the server-first message does not tell unknown users apart. The salt itself is
/// derived from the name and a per-process key, so asking twice gives the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoy {
    pub salt_len: usize,
    pub iterations: u32,
}

impl Default for Decoy {
    /// The shape of `switchyard scram-verifier`'s verifiers.
    fn default() -> Decoy {
        Decoy { salt_len: 32, iterations: 8192 }
    }
}

impl ScramVerifier {
    /// The decoy of this verifier's shape.
    pub fn decoy(&self) -> Decoy {
        Decoy { salt_len: self.salt.len(), iterations: self.iterations }
    }
}

/// One client's SCRAM login, server side: [`ScramServer::client_first`] reads who the client
/// is; the caller finds its verifier; [`ScramServer::server_first`] answers;
/// [`ScramServer::client_final`] checks the proof and gives the server-final message.
pub struct ScramServer {
    hash: ScramHash,
    user: String,
    /// The gs2 header (`n,,` or `n,a=<user>,`), which the client-final's `c=` must repeat.
    gs2_header: String,
    client_first_bare: String,
    client_nonce: String,
    /// Set by [`ScramServer::server_first`].
    sent: Option<(String, String, Option<ScramVerifier>)>,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramServer").field("hash", &self.hash).field("user", &self.user).finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Read the client-first message: `gs2-header client-first-bare`.
    pub fn client_first(hash: ScramHash, token: &[u8]) -> Result<ScramServer, ScramServerError> {
        if token.len() > MAX_CLIENT_MESSAGE {
            return Err(ScramServerError::Malformed("the client-first message is too long"));
        }
        let text = std::str::from_utf8(token).map_err(|_| ScramServerError::Malformed("not UTF-8"))?;
        let mut parts = text.splitn(3, ',');
        let (Some(binding), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ScramServerError::Malformed("no gs2 header"));
        };
        if binding != "n" && binding != "y" {
            return Err(ScramServerError::Malformed("channel binding is not supported"));
        }
        let mut fields = bare.split(',');
        let user = fields
            .next()
            .and_then(|f| f.strip_prefix("n="))
            .and_then(decode_saslname)
            .filter(|u| !u.is_empty())
            .ok_or(ScramServerError::Malformed("no user name"))?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramServerError::Malformed("no nonce"))?;
        // Extensions (Kafka's `tokenauth=true`, ...) may follow; delegation tokens are not served.
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_saslname(authzid).as_deref() != Some(user.as_str()) {
                return Err(ScramServerError::Malformed("the authorization id differs from the user name"));
            }
        } else if !authzid.is_empty() {
            return Err(ScramServerError::Malformed("bad gs2 header"));
        }
        Ok(ScramServer {
            hash,
            gs2_header: format!("{binding},{authzid},"),
            user,
            client_first_bare: bare.to_string(),
            client_nonce: nonce.to_string(),
            sent: None,
        })
    }

    /// The user the client says it is.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The server-first message, with `verifier`: the user's, or, if the user is unknown, a
    /// decoy of the shape real verifiers have (see [`Decoy`]), and the proof will fail like a
    /// wrong password.
    pub fn server_first(&mut self, verifier: Result<ScramVerifier, Decoy>) -> Vec<u8> {
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).expect("the OS random source is available");
        self.server_first_with_nonce(verifier, &STANDARD.encode(random))
    }

    /// [`ScramServer::server_first`] with a given server nonce (tests).
    pub fn server_first_with_nonce(&mut self, verifier: Result<ScramVerifier, Decoy>, server_nonce: &str) -> Vec<u8> {
        let (salt, iterations, verifier) = match verifier {
            Ok(v) => (v.salt.clone(), v.iterations, Some(v)),
            Err(decoy) => {
                let mut salt = self.hash.hmac(unknown_user_key(), self.user.as_bytes());
                salt.truncate(decoy.salt_len.clamp(1, salt.len()));
                (salt, decoy.iterations.clamp(*ITERATIONS.start(), *ITERATIONS.end()), None)
            }
        };
        let nonce = format!("{}{server_nonce}", self.client_nonce);
        let message = format!("r={nonce},s={},i={iterations}", STANDARD.encode(salt));
        self.sent = Some((nonce, message.clone(), verifier));
        message.into_bytes()
    }

    /// Check the client-final message: the server-final message (`v=<signature>`) if the proof
    /// is right.
    pub fn client_final(&self, token: &[u8]) -> Result<Vec<u8>, ScramServerError> {
        let Some((nonce, server_first, verifier)) = &self.sent else {
            return Err(ScramServerError::Malformed("client-final before server-first"));
        };
        if token.len() > MAX_CLIENT_MESSAGE {
            return Err(ScramServerError::Malformed("the client-final message is too long"));
        }
        let text = std::str::from_utf8(token).map_err(|_| ScramServerError::Malformed("not UTF-8"))?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or(ScramServerError::Malformed("the client-final message has no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields.next().and_then(|f| f.strip_prefix("c=")).ok_or(ScramServerError::Malformed("no c="))?;
        if STANDARD.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramServerError::Malformed("the channel binding does not repeat the gs2 header"));
        }
        let their_nonce =
            fields.next().and_then(|f| f.strip_prefix("r=")).ok_or(ScramServerError::Malformed("no r="))?;
        if !constant_time_eq(their_nonce.as_bytes(), nonce.as_bytes()) {
            return Err(ScramServerError::NonceMismatch);
        }
        let proof = STANDARD.decode(proof).map_err(|_| ScramServerError::Malformed("the proof is not base64"))?;
        let Some(verifier) = verifier else { return Err(ScramServerError::InvalidCredentials) };
        let hash = self.hash;
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hash.hmac(&verifier.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramServerError::InvalidCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&hash.hash(&client_key), &verifier.stored_key) {
            return Err(ScramServerError::InvalidCredentials);
        }
        let server_signature = hash.hmac(&verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }
}

/// Compare without an early exit, so timing does not tell how much of a secret matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key made-up salts of unknown users derive from: random per process, so a stranger
/// cannot tell a made-up salt from a real one, and stable, so asking twice gives the same.
fn unknown_user_key() -> &'static [u8] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source is available");
        key
    })
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

    /// RFC 7677's example from the server side: the same messages, the verifier from `pencil`.
    #[test]
    fn rfc_7677_example_server_side() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::derive(ScramHash::Sha256, "pencil", &salt, 4096);
        let parsed = ScramVerifier::parse(ScramHash::Sha256, &verifier.to_kafka_string()).unwrap();
        assert_eq!(parsed, verifier);
        let mut server = ScramServer::client_first(ScramHash::Sha256, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(server.user(), "user");
        let first = server.server_first_with_nonce(Ok(verifier), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(first, b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let last = server
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(last, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    /// A full login of the gateway's client against its server, for `password`; the outcome.
    fn login(hash: ScramHash, known: Option<&str>, password: &str) -> Result<(), ScramServerError> {
        let verifier = known.map(|pw| ScramVerifier::derive(hash, pw, b"salt-of-alice", 4096)).ok_or(Decoy::default());
        let mut client = ScramClient::new(hash, "alice", password);
        let mut server = ScramServer::client_first(hash, &client.client_first())?;
        let first = server.server_first(verifier);
        let last = server.client_final(&client.client_final(&first).unwrap())?;
        client.verify_server_final(&last).unwrap();
        Ok(())
    }

    #[test]
    fn the_right_password_logs_in_a_wrong_one_or_an_unknown_user_does_not_alike() {
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            assert_eq!(login(hash, Some("pw"), "pw"), Ok(()));
            let wrong = login(hash, Some("pw"), "other");
            let unknown = login(hash, None, "pw");
            assert_eq!(wrong, Err(ScramServerError::InvalidCredentials));
            assert_eq!(unknown, wrong, "an unknown user reads as a wrong password");
        }
        // The made-up salt is stable, so asking twice does not reveal an unknown user.
        let first = |nonce| {
            let mut server = ScramServer::client_first(ScramHash::Sha256, b"n,,n=nobody,r=abc").unwrap();
            String::from_utf8(server.server_first_with_nonce(Err(Decoy { salt_len: 20, iterations: 4096 }), nonce))
                .unwrap()
        };
        let salt = |m: String| m.split(',').skip(1).collect::<Vec<_>>().join(",");
        assert_eq!(salt(first("x")), salt(first("y")));
        let real = ScramVerifier::derive(ScramHash::Sha256, "pw", &[7; 20], 4096);
        let shape = |m: String| {
            let salt = m.split(',').nth(1).unwrap().strip_prefix("s=").unwrap().to_string();
            (STANDARD.decode(salt).unwrap().len(), m.split(',').nth(2).unwrap().to_string())
        };
        let mut server = ScramServer::client_first(ScramHash::Sha256, b"n,,n=alice,r=abc").unwrap();
        let known = String::from_utf8(server.server_first_with_nonce(Ok(real), "x")).unwrap();
        assert_eq!(shape(first("x")), shape(known), "an unknown user's salt and iterations look like a real one's");
    }

    #[test]
    fn refuses_a_nonce_mismatch_and_malformed_messages() {
        let hash = ScramHash::Sha256;
        let mut client = ScramClient::with_nonce(hash, "alice", "pw", "client-nonce");
        let mut server = ScramServer::client_first(hash, &client.client_first()).unwrap();
        let first = server.server_first(Ok(ScramVerifier::derive(hash, "pw", b"salt", 4096)));
        let last = String::from_utf8(client.client_final(&first).unwrap()).unwrap();
        let (_, proof) = last.rsplit_once(",p=").unwrap();
        let forged = format!("c=biws,r=client-nonceSOMETHINGELSE,p={proof}");
        assert_eq!(server.client_final(forged.as_bytes()), Err(ScramServerError::NonceMismatch));
        assert!(server.client_final(last.as_bytes()).is_ok());
        for bad in
            [&b"p=tls-unique,,n=a,r=x"[..], b"n,,r=x", b"n,,n=a", b"n,,n=a=ZZ,r=x", b"n,a=bob,n=alice,r=x", b"\xff"]
        {
            assert!(ScramServer::client_first(hash, bad).is_err(), "{bad:?}");
        }
        assert!(ScramServer::client_first(hash, &vec![b'n'; 5000]).is_err());
        let mut with_authzid = ScramServer::client_first(hash, b"n,a=alice,n=alice,r=x").unwrap();
        assert_eq!(with_authzid.user(), "alice");
        with_authzid.server_first(Err(Decoy::default()));
        let refused = with_authzid.client_final(b"c=biws,r=x,p=AAAA");
        assert!(matches!(refused, Err(ScramServerError::Malformed(_))), "c= must repeat the authzid header");
        assert!(matches!(
            ScramVerifier::parse(hash, "salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4096"),
            Err(VerifierError::KeyLength(_))
        ));
        let error = ScramVerifier::parse(hash, "salt=c2VjcmV0,iterations=1").unwrap_err().to_string();
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }
}
