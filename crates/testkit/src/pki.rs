//! A throwaway public-key infrastructure for TLS tests: a test CA, server certificates with the
//! SANs a test needs, client certificates for mTLS, and a second, unrelated CA whose certificates
//! nobody trusts (to test a wrong certificate).
//!
//! Every identity is written into the PKI's temporary directory in the forms the gateway, Kafka
//! and the clients read:
//!
//! - PEM: the certificate chain (leaf then CA), the private key (PKCS#8), and both in one file
//!   (key first, then the chain), which Kafka's `ssl.keystore.type=PEM` and the gateway read;
//! - PKCS#12: key and chain, protected by [`TestPki::PASSWORD`] (written by `openssl pkcs12
//!   -export`, which Java, OpenSSL and the gateway all read);
//! - for each CA: its certificate as PEM, and a Java truststore in PKCS#12 format (written by
//!   `keytool`, because Java only trusts certificates in a PKCS#12 store that carry its "trusted
//!   certificate" attribute, which `openssl pkcs12` does not write).
//!
//! Keys are ECDSA P-256: small, quick to make, and accepted by every client generation tested.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::process;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// One certificate authority: its issuer and where its certificate and truststore are.
struct Authority {
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: PathBuf,
    truststore: PathBuf,
}

/// A test CA, an unrelated second CA, and the identities issued so far, on disk.
pub struct TestPki {
    dir: TempDir,
    ca: Authority,
    other_ca: Authority,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").field("dir", &self.dir.path()).finish()
    }
}

/// A certificate and its key, in every form written (see the module documentation).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The file stem, e.g. `broker`.
    pub name: String,
    /// The subject's common name.
    pub common_name: String,
    /// PEM: the leaf certificate, then the CA certificate.
    pub chain_pem: PathBuf,
    /// PEM: the private key, PKCS#8, unencrypted.
    pub key_pem: PathBuf,
    /// PEM: the private key, then the chain, in one file.
    pub combined_pem: PathBuf,
    /// PKCS#12: key and chain, password [`TestPki::PASSWORD`].
    pub pkcs12: PathBuf,
    /// PEM: the certificate of the CA that signed it.
    pub ca_pem: PathBuf,
}

impl TestPki {
    /// The password of every PKCS#12 file (keystores and truststores) the PKI writes.
    pub const PASSWORD: &'static str = "test-password";

    /// A new test CA and an unrelated second CA, in a new temporary directory.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("switchyard-pki-").tempdir()?;
        let ca = Authority::new(dir.path(), "ca", "Switchyard Test CA")?;
        let other_ca = Authority::new(dir.path(), "other-ca", "Unrelated Test CA")?;
        Ok(Self { dir, ca, other_ca })
    }

    /// The directory everything is written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test CA's certificate (PEM): trust this to trust every certificate it issued.
    pub fn ca_pem(&self) -> &Path {
        &self.ca.pem
    }

    /// The test CA as a Java truststore (PKCS#12, password [`Self::PASSWORD`]).
    pub fn ca_truststore(&self) -> &Path {
        &self.ca.truststore
    }

    /// The unrelated CA's certificate (PEM).
    pub fn other_ca_pem(&self) -> &Path {
        &self.other_ca.pem
    }

    /// The unrelated CA as a Java truststore (PKCS#12, password [`Self::PASSWORD`]).
    pub fn other_ca_truststore(&self) -> &Path {
        &self.other_ca.truststore
    }

    /// A server certificate from the test CA for `sans`: each a DNS name, or an IP address
    /// (`127.0.0.1`), which becomes an IP SAN. The common name is the first SAN.
    pub fn server(&self, name: &str, sans: &[&str]) -> Result<Identity> {
        self.ca.issue(self.dir.path(), name, sans, Role::Server)
    }

    /// A server certificate for `sans` from the unrelated CA, which no truststore of the test
    /// CA accepts.
    pub fn untrusted_server(&self, name: &str, sans: &[&str]) -> Result<Identity> {
        self.other_ca.issue(self.dir.path(), name, sans, Role::Server)
    }

    /// A client certificate from the test CA with common name `common_name` (Kafka's principal
    /// is then `User:CN=<common_name>`).
    pub fn client(&self, name: &str, common_name: &str) -> Result<Identity> {
        self.ca.issue(self.dir.path(), name, &[common_name], Role::Client)
    }

    /// A client certificate from the unrelated CA.
    pub fn untrusted_client(&self, name: &str, common_name: &str) -> Result<Identity> {
        self.other_ca.issue(self.dir.path(), name, &[common_name], Role::Client)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

impl Authority {
    fn new(dir: &Path, name: &str, common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?).context("self-signing a test CA")?;
        let pem = dir.join(format!("{name}.pem"));
        fs::write(&pem, issuer.pem())?;
        let truststore = dir.join(format!("{name}.truststore.p12"));
        let mut keytool = Command::new("keytool");
        keytool
            .args(["-importcert", "-noprompt", "-storetype", "PKCS12", "-alias", name, "-file"])
            .arg(&pem)
            .arg("-keystore")
            .arg(&truststore)
            .args(["-storepass", TestPki::PASSWORD]);
        process::run(keytool, None, TOOL_TIMEOUT)?.ensure_success("keytool -importcert")?;
        Ok(Self { name: name.to_owned(), issuer, pem, truststore })
    }

    fn issue(&self, dir: &Path, name: &str, sans: &[&str], role: Role) -> Result<Identity> {
        let common_name = sans.first().context("a certificate needs a name")?.to_string();
        let mut params = match role {
            Role::Server => CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?,
            Role::Client => CertificateParams::default(),
        };
        params.distinguished_name = distinguished_name(&common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer).with_context(|| format!("signing {name}"))?;
        let chain = format!("{}{}", cert.pem(), self.issuer.pem());
        let identity = Identity {
            name: name.to_owned(),
            common_name,
            chain_pem: dir.join(format!("{name}.chain.pem")),
            key_pem: dir.join(format!("{name}.key.pem")),
            combined_pem: dir.join(format!("{name}.pem")),
            pkcs12: dir.join(format!("{name}.p12")),
            ca_pem: self.pem.clone(),
        };
        fs::write(&identity.chain_pem, &chain)?;
        fs::write(&identity.key_pem, key.serialize_pem())?;
        fs::write(&identity.combined_pem, format!("{}{chain}", key.serialize_pem()))?;
        let mut openssl = Command::new("openssl");
        openssl
            .args(["pkcs12", "-export", "-name", name, "-in"])
            .arg(&identity.chain_pem)
            .arg("-inkey")
            .arg(&identity.key_pem)
            .arg("-out")
            .arg(&identity.pkcs12)
            .args(["-passout", &format!("pass:{}", TestPki::PASSWORD)]);
        process::run(openssl, None, TOOL_TIMEOUT)?
            .ensure_success(&format!("openssl pkcs12 -export for {name} (issued by {})", self.name))?;
        Ok(identity)
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "Switchyard tests");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl verify` accepts what the test CA issued and refuses what the other CA issued;
    /// `openssl pkcs12` and `keytool` read the stores back with the password.
    #[test]
    fn stores_are_readable_and_chains_verify() {
        let pki = TestPki::new().unwrap();
        let server = pki.server("broker", &["localhost", "127.0.0.1"]).unwrap();
        let stranger = pki.untrusted_server("stranger", &["localhost"]).unwrap();
        let client = pki.client("gateway", "switchyard").unwrap();
        let verify = |ca: &Path, identity: &Identity| {
            let mut cmd = Command::new("openssl");
            cmd.arg("verify").arg("-CAfile").arg(ca).arg(&identity.chain_pem);
            process::run(cmd, None, TOOL_TIMEOUT).unwrap().ensure_success("openssl verify").is_ok()
        };
        assert!(verify(pki.ca_pem(), &server));
        assert!(verify(pki.ca_pem(), &client));
        assert!(!verify(pki.ca_pem(), &stranger));
        assert!(verify(pki.other_ca_pem(), &stranger));
        let mut read = Command::new("openssl");
        read.args(["pkcs12", "-noout", "-in"]).arg(&server.pkcs12).args(["-passin", "pass:test-password"]);
        process::run(read, None, TOOL_TIMEOUT).unwrap().ensure_success("openssl pkcs12 read").unwrap();
        let mut list = Command::new("keytool");
        list.args(["-list", "-storetype", "PKCS12", "-keystore"])
            .arg(pki.ca_truststore())
            .args(["-storepass", "test-password"]);
        let listed = process::run(list, None, TOOL_TIMEOUT).unwrap().ensure_success("keytool -list").unwrap();
        assert!(listed.stdout.contains("trustedCertEntry"), "{}", listed.stdout);
        let combined = fs::read_to_string(&server.combined_pem).unwrap();
        assert!(combined.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(combined.matches("BEGIN CERTIFICATE").count(), 2);
    }
}
