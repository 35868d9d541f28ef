//! Reading certificate stores (PEM or PKCS#12) into what rustls takes.
//!
//! A keystore yields one certificate chain and its private key; a truststore yields the CA
//! certificates to trust. Errors name the file and what is wrong with it, never a password.

use std::path::Path;

use p12_keystore::Pkcs12Archive;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TlsError;
use crate::config::{Store, StoreKind};

/// A certificate chain (leaf first) and its private key.
pub type CertifiedKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The chain and key of a keystore.
pub fn certified_key(store: &Store) -> Result<CertifiedKey, TlsError> {
    let bytes = read(&store.location)?;
    match store.kind {
        StoreKind::Pem => pem_key(&store.location, &bytes),
        StoreKind::Pkcs12 => pkcs12_key(store, &bytes),
    }
}

/// The certificates a truststore holds; `None`: the public web roots (as Confluent's
/// `truststore: {}` means the default trust).
pub fn trust_roots(store: Option<&Store>) -> Result<RootCertStore, TlsError> {
    let Some(store) = store else {
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    };
    let bytes = read(&store.location)?;
    let certificates = match store.kind {
        StoreKind::Pem => pem_certificates(&store.location, &bytes)?,
        StoreKind::Pkcs12 => pkcs12(store, &bytes)?.certs.into_iter().map(|bag| owned(bag.cert.as_der())).collect(),
    };
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certificates);
    if roots.is_empty() {
        return Err(TlsError::store(&store.location, "holds no usable CA certificate"));
    }
    if unusable > 0 {
        tracing::warn!(file = %store.location.display(), unusable, "some certificates of the truststore cannot be used and are ignored");
    }
    Ok(roots)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::store(path, format!("cannot be read: {e}")))
}

fn pem_certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::store(path, format!("is not valid PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(TlsError::store(path, "holds no CERTIFICATE block"));
    }
    Ok(certificates)
}

/// Kafka's PEM keystore convention: one file with the private key and the chain.
fn pem_key(path: &Path, bytes: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = pem_certificates(path, bytes)?;
    let key = PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        TlsError::store(path, format!("holds no usable unencrypted private key (PKCS#8, PKCS#1 or SEC1): {e}"))
    })?;
    Ok((chain, key))
}

fn pkcs12(store: &Store, bytes: &[u8]) -> Result<Pkcs12Archive, TlsError> {
    let password = store.password.as_ref().map(|p| p.expose()).unwrap_or_default();
    // The crate's errors say what failed (MAC, decryption, encoding) without the password.
    Pkcs12Archive::from_pkcs12(bytes, password)
        .map_err(|e| TlsError::store(&store.location, format!("cannot be opened as PKCS12 (wrong password?): {e}")))
}

/// The first private key of a PKCS#12 keystore, with the certificates that go with it.
fn pkcs12_key(store: &Store, bytes: &[u8]) -> Result<CertifiedKey, TlsError> {
    let archive = pkcs12(store, bytes)?;
    let key = archive.keys.first().ok_or_else(|| TlsError::store(&store.location, "holds no private key"))?;
    // The key's own certificate first (same local key id), then the rest of the chain.
    let is_leaf = |bag: &&p12_keystore::CertificateBag| {
        bag.local_key_id.as_deref().is_some_and(|id| key.local_key_id.as_ref().is_some_and(|k| k.as_ref() == id))
    };
    let leaf = archive
        .certs
        .iter()
        .find(is_leaf)
        .or(archive.certs.first())
        .ok_or_else(|| TlsError::store(&store.location, "holds no certificate for its key"))?;
    let mut chain = vec![owned(leaf.cert.as_der())];
    chain.extend(archive.certs.iter().filter(|bag| !std::ptr::eq(*bag, leaf)).map(|bag| owned(bag.cert.as_der())));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.as_der().to_vec()));
    Ok((chain, key))
}

fn owned(der: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from(der.to_vec())
}
