//! PKCS#12 (.pfx, .p12) bundles: a private key and its certificate chain in one
//! password-protected file, the form in which ArcGIS Server, Windows and Java
//! keytool import and export server certificates.
//!
//! Decryption is `p12-keystore`'s: PBES2 (AES-256-CBC with PBKDF2-HMAC-SHA256,
//! OpenSSL 3's default) and the legacy PBES1 schemes (3DES, RC2-40) of older
//! Windows exports and `openssl pkcs12 -legacy`. What is done here: find the key's
//! own certificate, put the chain in the order TLS sends it (RFC 8446 §4.4.2:
//! leaf first, each next one certifying the one before), and name the file in
//! every error. Neither the password nor the key ever appears in an error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use p12_keystore::error::Error as P12Error;
use p12_keystore::Pkcs12Archive;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a PKCS#12 bundle or its password file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs12Error {
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },

    #[error("{}: cannot read the password file: {err}", path.display())]
    PasswordFile { path: PathBuf, err: io::Error },

    #[error("{}: the password file is not UTF-8 text", path.display())]
    PasswordNotText { path: PathBuf },

    /// The integrity check (MAC) or the decryption failed: almost always the
    /// wrong password, rarely a damaged file.
    #[error("{}: wrong password for the PKCS#12 bundle ({tried})", path.display())]
    WrongPassword {
        path: PathBuf,
        /// Which passwords were tried, described without their text.
        tried: String,
    },

    #[error("{}: not a PKCS#12 bundle: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },

    #[error("{}: the PKCS#12 bundle uses an encryption gisgate cannot read: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },

    #[error("{}: the PKCS#12 bundle holds no private key (export it with its private key)", path.display())]
    NoPrivateKey { path: PathBuf },

    #[error("{}: the PKCS#12 bundle holds no certificate", path.display())]
    NoCertificate { path: PathBuf },

    #[error(
        "{}: no certificate in the PKCS#12 bundle matches its private key",
        path.display()
    )]
    NoMatchingCertificate { path: PathBuf },

    #[error("{}: unusable private key in the PKCS#12 bundle: {reason}", path.display())]
    UnusableKey { path: PathBuf, reason: String },
}

/// A password, kept out of `Debug` output so that it cannot reach a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(text: impl Into<String>) -> Self {
        Password(text.into())
    }

    /// Reads a password file: its text without one trailing line break, the way
    /// `openssl -passin file:` and Kubernetes Secrets written by hand have it.
    pub fn from_file(path: &Path) -> Result<Self, Pkcs12Error> {
        let bytes = std::fs::read(path).map_err(|err| Pkcs12Error::PasswordFile {
            path: path.to_path_buf(),
            err,
        })?;
        let mut text = String::from_utf8(bytes).map_err(|_| Pkcs12Error::PasswordNotText {
            path: path.to_path_buf(),
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(Password(text))
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

/// What a bundle holds, in the order it is served.
pub struct Bundle {
    /// The key's certificate first, then the certificates that chain from it.
    pub chain: Vec<CertificateDer<'static>>,
    /// Certificates in the bundle that are not part of the chain.
    pub others: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8), when the bundle has one.
    pub key: Option<PrivateKeyDer<'static>>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("chain", &self.chain.len())
            .field("others", &self.others.len())
            .field("key", &self.key.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// True when the bytes look like a DER PKCS#12 PFX rather than PEM or an X.509
/// certificate: a SEQUENCE whose first element is the INTEGER version 3.
pub fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(&[0x30]) else {
        return false;
    };
    let header_len = match rest.first() {
        Some(n) if *n < 0x80 => 1,
        Some(n) if (0x81..=0x84).contains(n) => 1 + usize::from(n - 0x80),
        _ => return false,
    };
    rest.get(header_len..header_len + 3) == Some(&[0x02, 0x01, 0x03])
}

/// Reads a bundle for serving: it must hold a private key and a certificate that
/// matches it. `provider` loads the key, so an unsupported key type fails here.
pub fn load_identity(
    path: &Path,
    password: &Password,
    provider: &CryptoProvider,
) -> Result<Bundle, Pkcs12Error> {
    let bytes = std::fs::read(path).map_err(|err| Pkcs12Error::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let archive = decode(path, &bytes, std::slice::from_ref(password))?;
    let bundle = arrange(path, archive, Some(provider))?;
    if bundle.key.is_none() {
        return Err(Pkcs12Error::NoPrivateKey {
            path: path.to_path_buf(),
        });
    }
    Ok(bundle)
}

/// Reads a bundle for inspection, trying each password in turn; a bundle without
/// a key (a trust store) is fine here.
pub fn load_for_display(
    path: &Path,
    bytes: &[u8],
    passwords: &[Password],
) -> Result<Bundle, Pkcs12Error> {
    let archive = decode(path, bytes, passwords)?;
    arrange(path, archive, None)
}

fn decode(path: &Path, bytes: &[u8], passwords: &[Password]) -> Result<Pkcs12Archive, Pkcs12Error> {
    for password in passwords {
        match Pkcs12Archive::from_pkcs12(bytes, password.as_str()) {
            Ok(archive) => return Ok(archive),
            Err(e) if is_wrong_password(&e) => continue,
            Err(e) => return Err(decode_error(path, e)),
        }
    }
    Err(Pkcs12Error::WrongPassword {
        path: path.to_path_buf(),
        tried: describe_tried(passwords),
    })
}

fn describe_tried(passwords: &[Password]) -> String {
    match passwords {
        [p] if p.as_str().is_empty() => "tried the empty password".to_string(),
        [_] => "tried the given password".to_string(),
        _ => format!(
            "tried {} passwords, the empty one included",
            passwords.len()
        ),
    }
}

/// With a MAC (what every exporter writes), a wrong password fails its check;
/// without one, the decryption's padding or the decrypted DER does not parse.
fn is_wrong_password(e: &P12Error) -> bool {
    matches!(
        e,
        P12Error::MacError(_) | P12Error::UnpadError | P12Error::Pkcs5Error(_)
    )
}

fn decode_error(path: &Path, e: P12Error) -> Pkcs12Error {
    let path = path.to_path_buf();
    match e {
        P12Error::UnsupportedEncryptionScheme
        | P12Error::UnsupportedMacAlgorithm
        | P12Error::UnsupportedContentType => Pkcs12Error::Unsupported {
            path,
            reason: e.to_string(),
        },
        P12Error::InvalidParameters => Pkcs12Error::Unsupported {
            path,
            reason:
                "its parameters are out of range (iteration counts above 1,000,000 are refused)"
                    .to_string(),
        },
        other => Pkcs12Error::Malformed {
            path,
            reason: other.to_string(),
        },
    }
}

/// Picks the key and its certificate and orders the chain from it.
fn arrange(
    path: &Path,
    archive: Pkcs12Archive,
    provider: Option<&CryptoProvider>,
) -> Result<Bundle, Pkcs12Error> {
    let certs: Vec<CertificateDer<'static>> = archive
        .certs
        .iter()
        .map(|bag| CertificateDer::from(bag.cert.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(Pkcs12Error::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    let parsed: Vec<X509Certificate<'_>> = certs
        .iter()
        .map(|der| {
            X509Certificate::from_der(der.as_ref())
                .map(|(_, c)| c)
                .map_err(|e| Pkcs12Error::Malformed {
                    path: path.to_path_buf(),
                    reason: format!("a certificate in it is not valid X.509: {e}"),
                })
        })
        .collect::<Result<_, _>>()?;

    let Some(key_bag) = archive.keys.first() else {
        // A trust store: the certificates as stored.
        return Ok(Bundle {
            chain: Vec::new(),
            others: certs,
            key: None,
        });
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_bag.key.as_der().to_vec()));

    // The leaf is the certificate that holds the key's public half; the
    // localKeyId attribute links them too, but not every exporter writes it.
    let public_key = match provider {
        Some(p) => {
            let signing = p
                .key_provider
                .load_private_key(key.clone_key())
                .map_err(|e| Pkcs12Error::UnusableKey {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            signing.public_key().map(|spki| spki.as_ref().to_vec())
        }
        None => None,
    };
    let by_key = public_key.as_ref().and_then(|spki| {
        parsed
            .iter()
            .position(|c| c.tbs_certificate.subject_pki.raw == spki.as_slice())
    });
    let by_id = || {
        let id = key_bag.local_key_id.as_ref()?;
        archive
            .certs
            .iter()
            .position(|bag| bag.local_key_id.as_deref() == Some(id.0.as_slice()))
    };
    let leaf = match (by_key, public_key.is_some()) {
        (Some(i), _) => i,
        // The provider derived the public key and no certificate carries it.
        (None, true) => {
            return Err(Pkcs12Error::NoMatchingCertificate {
                path: path.to_path_buf(),
            })
        }
        (None, false) => by_id().unwrap_or(0),
    };

    let order = chain_order(&parsed, leaf);
    let chain = order.iter().map(|&i| certs[i].clone()).collect();
    let others = (0..certs.len())
        .filter(|i| !order.contains(i))
        .map(|i| certs[i].clone())
        .collect();
    Ok(Bundle {
        chain,
        others,
        key: Some(key),
    })
}

/// Indices from `leaf` up its issuers, each certificate used once, stopping at a
/// self-issued one or when no issuer is in the bundle.
fn chain_order(certs: &[X509Certificate<'_>], leaf: usize) -> Vec<usize> {
    let mut order = vec![leaf];
    let mut current = leaf;
    loop {
        let cert = &certs[current];
        if cert.subject().as_raw() == cert.issuer().as_raw() {
            break;
        }
        let next = (0..certs.len())
            .find(|i| !order.contains(i) && certs[*i].subject().as_raw() == cert.issuer().as_raw());
        match next {
            Some(i) => {
                order.push(i);
                current = i;
            }
            None => break,
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p
    }

    /// Root -> intermediate -> leaf, and an unrelated CA, as DER; and the leaf key.
    fn pki() -> ([Vec<u8>; 4], KeyPair) {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("root");
        let root = root_params.self_signed(&root_key).unwrap();
        let inter_key = KeyPair::generate().unwrap();
        let inter_params = ca_params("intermediate");
        let inter = inter_params
            .signed_by(&inter_key, &Issuer::from_params(&root_params, &root_key))
            .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["gis.example.com".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &Issuer::from_params(&inter_params, &inter_key))
            .unwrap();
        let other_key = KeyPair::generate().unwrap();
        let other = ca_params("unrelated").self_signed(&other_key).unwrap();
        (
            [root, inter, leaf, other].map(|c| c.der().to_vec()),
            leaf_key,
        )
    }

    #[test]
    fn the_chain_is_put_leaf_first_whatever_order_the_bundle_stores() {
        let ([root, inter, leaf, other], leaf_key) = pki();
        let stored = [&other, &root, &leaf, &inter].map(|der| Certificate::from_der(der).unwrap());
        let mut store = KeyStore::new();
        store.add_entry(
            "gis",
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
                b"id".to_vec(),
                PrivateKey::from_der(&leaf_key.serialize_der()).unwrap(),
                stored,
            )),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gis.pfx");
        std::fs::write(&path, store.writer("pw").write().unwrap()).unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let bundle = load_identity(&path, &Password::new("pw"), &provider).unwrap();
        let chain: Vec<&[u8]> = bundle.chain.iter().map(|c| c.as_ref()).collect();
        assert_eq!(chain, [&leaf[..], &inter[..], &root[..]]);
        let others: Vec<&[u8]> = bundle.others.iter().map(|c| c.as_ref()).collect();
        assert_eq!(others, [&other[..]]);
    }

    #[test]
    fn a_key_whose_certificate_is_missing_is_an_error() {
        let ([root, _, _, _], leaf_key) = pki();
        let mut store = KeyStore::new();
        store.add_entry(
            "gis",
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
                b"id".to_vec(),
                PrivateKey::from_der(&leaf_key.serialize_der()).unwrap(),
                [Certificate::from_der(&root).unwrap()],
            )),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gis.pfx");
        std::fs::write(&path, store.writer("").write().unwrap()).unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let err = load_identity(&path, &Password::default(), &provider).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("gis.pfx: no certificate in the PKCS#12 bundle matches its private key"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_pkcs12_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gis.pfx");
        std::fs::write(&path, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let err = load_identity(&path, &Password::default(), &provider).unwrap_err();
        assert!(
            err.to_string().contains("gis.pfx: not a PKCS#12 bundle"),
            "{err}"
        );
    }

    #[test]
    fn a_password_file_loses_one_trailing_line_break_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        for (written, read) in [
            ("secret\n", "secret"),
            ("secret\r\n", "secret"),
            ("secret", "secret"),
            (" spaced \n\n", " spaced \n"),
            ("", ""),
        ] {
            std::fs::write(&path, written).unwrap();
            assert_eq!(Password::from_file(&path).unwrap().as_str(), read);
        }
    }

    #[test]
    fn passwords_do_not_show_in_debug_output() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn a_missing_password_file_is_named() {
        let err = Password::from_file(Path::new("/nonexistent/pw")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/pw: cannot read the password file"),
            "{err}"
        );
    }

    #[test]
    fn pem_and_certificates_do_not_look_like_pkcs12() {
        assert!(!looks_like_pkcs12(b"-----BEGIN CERTIFICATE-----\n"));
        // A certificate: SEQUENCE { SEQUENCE (tbs) ... }.
        assert!(!looks_like_pkcs12(&[0x30, 0x82, 0x01, 0x00, 0x30, 0x82]));
        // A PFX: SEQUENCE { INTEGER 3, ... }.
        assert!(looks_like_pkcs12(&[
            0x30, 0x82, 0x09, 0x00, 0x02, 0x01, 0x03
        ]));
        assert!(looks_like_pkcs12(&[0x30, 0x40, 0x02, 0x01, 0x03]));
        assert!(!looks_like_pkcs12(&[]));
    }
}
