//! Loading and inspecting certificates and private keys.
//!
//! Every error names the file it is about, because operators fix these problems by
//! editing or replacing files, and "invalid certificate" without a path sends them
//! hunting. Private key material never appears in an error or a log line: messages
//! about keys only ever describe the file, never its contents.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use time::{Month, OffsetDateTime, UtcOffset, Weekday};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// ArcGIS "Entry type" of a certificate that has its private key alongside it.
pub const ENTRY_PRIVATE_KEY: &str = "PrivateKeyEntry";
/// ArcGIS "Entry type" of a certificate on its own (a trust anchor or a chain member).
pub const ENTRY_TRUSTED_CERT: &str = "trustedCertEntry";

/// Mode of private key files: owner read/write only.
pub const PRIVATE_KEY_MODE: u32 = 0o600;
/// Mode of certificate files: they are public, so anyone may read them.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Everything that can go wrong loading, checking or writing certificate material.
///
/// Each message starts with the file it concerns (where there is one) so that it can be
/// shown to an operator as-is.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Reading or writing a file failed.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },

    /// The file is not well-formed PEM.
    #[error("{}: malformed PEM: {reason}", path.display())]
    MalformedPem { path: PathBuf, reason: String },

    /// The file holds no `CERTIFICATE` section.
    #[error("{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" sections)", path.display())]
    NoCertificate { path: PathBuf },

    /// A `CERTIFICATE` section does not hold a parsable X.509 certificate.
    #[error(
        "{}: not a valid X.509 certificate: {reason} (certificate {index} in the file)",
        path.display()
    )]
    InvalidCertificate {
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        reason: String,
    },

    /// DER bytes handed over in memory are not an X.509 certificate.
    #[error("not a valid X.509 certificate: {reason}")]
    InvalidDer { reason: String },

    /// The file holds no private key section gisgate understands.
    #[error("{}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM)", path.display())]
    NoPrivateKey { path: PathBuf },

    /// The file holds a password-protected key, which gisgate cannot use unattended.
    #[error(
        "{}: the private key is encrypted; gisgate needs an unencrypted PKCS#8, PKCS#1 or SEC1 key \
         (decrypt it with `openssl pkey -in <encrypted> -out <plain>`)",
        path.display()
    )]
    EncryptedPrivateKey { path: PathBuf },

    /// The key parsed as PEM but the crypto provider cannot use it.
    #[error("{}: unusable private key: {reason}", path.display())]
    UnusableKey { path: PathBuf, reason: String },

    /// The leaf certificate's public key is not the public half of the private key.
    #[error(
        "{}: certificate does not match the private key in {}",
        cert_path.display(),
        key_path.display()
    )]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },

    /// Generation was asked to write a key file that already exists.
    #[error(
        "{}: private key file already exists; refusing to overwrite it (--force replaces it)",
        path.display()
    )]
    KeyFileExists { path: PathBuf },

    /// Generation was asked to write a certificate file that already exists.
    #[error(
        "{}: certificate file already exists; refusing to overwrite it (--force replaces it)",
        path.display()
    )]
    CertFileExists { path: PathBuf },

    /// Building or signing a certificate or request failed.
    #[error("{}: could not generate: {reason}", path.display())]
    Generate { path: PathBuf, reason: String },

    /// A generation parameter (name, validity, key type) is unacceptable.
    #[error("invalid certificate parameters: {reason}")]
    InvalidInput { reason: String },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

fn io_err(path: &Path, err: io::Error) -> CertError {
    CertError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Key algorithm of a certificate's subject public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    Rsa,
    /// ECDSA; for generation this means P-256, the most widely supported curve.
    #[default]
    Ecdsa,
    Ed25519,
    Other,
}

impl KeyType {
    /// Short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::Ecdsa => "ECDSA",
            KeyType::Ed25519 => "Ed25519",
            KeyType::Other => "other",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about one certificate, shaped like ArcGIS Server's SSL certificate resource.
///
/// The serialised field names and value formats copy what ArcGIS (which shells out to
/// Java's keytool) reports, so that tools written against ArcGIS parse gisgate's answer
/// unchanged. Fields marked `serde(skip)` are for gisgate itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertFacts {
    /// Keystore alias; [`cert_facts`] leaves it empty for the caller to fill in.
    #[serde(rename = "Alias name")]
    pub alias_name: String,
    /// [`ENTRY_PRIVATE_KEY`] or [`ENTRY_TRUSTED_CERT`]; [`cert_facts`] sets the latter
    /// because it only sees the certificate.
    #[serde(rename = "Entry type")]
    pub entry_type: String,
    /// Number of certificates in the chain this one came with; "1" from [`cert_facts`].
    #[serde(rename = "Certificate chain length")]
    pub chain_length: String,
    /// Subject, most specific attribute first (`CN=..., O=...`), as keytool prints it.
    #[serde(rename = "Owner")]
    pub owner: String,
    #[serde(rename = "Issuer")]
    pub issuer: String,
    /// As `openssl x509 -noout -serial` prints it ([`serial_text`]); the one
    /// format of every place gisgate shows a serial.
    #[serde(rename = "Serial number")]
    pub serial_number: String,
    /// `<not before> until: <not after>` in Java's `Date.toString()` format, in UTC.
    #[serde(rename = "Valid from")]
    pub valid_from: String,
    #[serde(rename = "MD5")]
    pub md5: String,
    #[serde(rename = "SHA1")]
    pub sha1: String,
    #[serde(rename = "SHA256")]
    pub sha256: String,
    /// Java's name for the signature algorithm (`SHA256withRSA`), else its dotted OID.
    #[serde(rename = "Signature algorithm name")]
    pub signature_algorithm: String,
    #[serde(rename = "Version")]
    pub version: String,

    /// Start of validity, unix seconds.
    #[serde(skip)]
    pub not_before: i64,
    /// End of validity, unix seconds.
    #[serde(skip)]
    pub not_after: i64,
    #[serde(skip)]
    pub key_type: KeyType,
    /// DNS names from the subjectAltName extension, as written in the certificate.
    #[serde(skip)]
    pub dns_names: Vec<String>,
    /// IP addresses from the subjectAltName extension.
    #[serde(skip)]
    pub ip_addresses: Vec<IpAddr>,
    /// First common name of the subject.
    #[serde(skip)]
    pub common_name: Option<String>,
    /// Subject equals issuer and, where the signature algorithm can be checked, the
    /// certificate's own key verifies its signature.
    #[serde(skip)]
    pub self_signed: bool,
}

impl CertFacts {
    /// The ArcGIS fields in ArcGIS order, as (name, value) pairs; the text and JSON
    /// renderings both follow this order.
    pub fn arcgis_fields(&self) -> [(&'static str, &str); 12] {
        [
            ("Alias name", &self.alias_name),
            ("Entry type", &self.entry_type),
            ("Certificate chain length", &self.chain_length),
            ("Owner", &self.owner),
            ("Issuer", &self.issuer),
            ("Serial number", &self.serial_number),
            ("Valid from", &self.valid_from),
            ("MD5", &self.md5),
            ("SHA1", &self.sha1),
            ("SHA256", &self.sha256),
            ("Signature algorithm name", &self.signature_algorithm),
            ("Version", &self.version),
        ]
    }

    /// Whether a client connecting to `name` would accept this certificate's names.
    ///
    /// IP addresses (optionally in brackets) match IP SANs only; DNS names match DNS
    /// SANs, where `*.example.com` covers exactly one extra left-most label. The subject
    /// CN is consulted only when the certificate has no DNS or IP SANs at all, as
    /// RFC 6125 prescribes. Comparison is ASCII case-insensitive and ignores a trailing
    /// dot. This checks names only, not validity dates or trust.
    pub fn covers_name(&self, name: &str) -> bool {
        let name = name.trim();
        let unbracketed = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let has_sans = !self.dns_names.is_empty() || !self.ip_addresses.is_empty();

        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            if has_sans {
                return self.ip_addresses.contains(&ip);
            }
            return self
                .common_name
                .as_deref()
                .and_then(|cn| cn.trim().parse::<IpAddr>().ok())
                == Some(ip);
        }

        if has_sans {
            self.dns_names.iter().any(|san| dns_name_matches(san, name))
        } else {
            self.common_name
                .as_deref()
                .is_some_and(|cn| dns_name_matches(cn, name))
        }
    }
}

fn dns_name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    // A literal `*` in the requested name is never a real host name; refusing it keeps
    // `*.example.com` from "covering" itself through the wildcard branch.
    if pattern.is_empty() || name.is_empty() || name.contains('*') {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => match name.split_once('.') {
            Some((first, rest)) => !first.is_empty() && !suffix.is_empty() && rest == suffix,
            None => false,
        },
        None => pattern == name,
    }
}

/// Reads every certificate from a PEM file, leaf first as written.
///
/// Each certificate is parsed as X.509 here, so that a damaged file is reported at
/// load time with its path instead of as an obscure handshake failure later.
pub fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e, false))?;
    let mut chain = Vec::new();
    for item in iter {
        chain.push(item.map_err(|e| pem_error(path, e, false))?);
    }
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    for (i, der) in chain.iter().enumerate() {
        parse_x509(der).map_err(|e| CertError::InvalidCertificate {
            path: path.to_path_buf(),
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(chain)
}

/// Reads the first private key from a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1
/// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let looks_encrypted =
        contains(&bytes, b"ENCRYPTED PRIVATE KEY") || contains(&bytes, b"Proc-Type: 4,ENCRYPTED");
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(_) if looks_encrypted => Err(CertError::EncryptedPrivateKey {
            path: path.to_path_buf(),
        }),
        Err(pem::Error::NoItemsFound) => Err(CertError::NoPrivateKey {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(pem_error(path, e, true)),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Turns a PEM parser error into a [`CertError`]. For secret files the parser's detail
/// is dropped, because it can quote bytes of the file.
fn pem_error(path: &Path, err: pem::Error, secret: bool) -> CertError {
    let reason = match err {
        pem::Error::Io(err) => return io_err(path, err),
        pem::Error::NoItemsFound => "no PEM sections found".to_string(),
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_string(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_string(),
        pem::Error::Base64Decode(detail) if !secret => format!("bad base64: {detail}"),
        pem::Error::Base64Decode(_) => "bad base64".to_string(),
        pem::Error::SectionTooLarge => "a section is larger than 256 MB".to_string(),
        other if !secret => other.to_string(),
        _ => "unreadable".to_string(),
    };
    CertError::MalformedPem {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads a PEM bundle of trust anchors (for verifying an upstream or client certs).
pub fn load_ca_bundle(path: &Path) -> Result<rustls::RootCertStore, CertError> {
    let certs = load_cert_chain(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, der) in certs.into_iter().enumerate() {
        roots.add(der).map_err(|e| CertError::InvalidCertificate {
            path: path.to_path_buf(),
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Pairs a chain with its private key for a rustls server or client config.
///
/// The key is loaded by `provider` (so unsupported key types fail here, at startup)
/// and checked against the leaf's public key, because a mismatched pair otherwise only
/// shows up as every handshake failing.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, CertError> {
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertError::UnusableKey {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Providers that cannot derive the public key from a private key report
        // Unknown; rustls itself accepts that, so do we.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::KeyMismatch {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        }),
        Err(e) => Err(CertError::InvalidCertificate {
            path: cert_path.to_path_buf(),
            index: 1,
            reason: e.to_string(),
        }),
    }
}

/// Upper-case hex bytes joined by colons, as `openssl x509 -fingerprint` prints them.
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// SHA-256 over a certificate's DER encoding: the value pinned in `pin_sha256`.
pub fn sha256_fingerprint(der: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(der).into()
}

/// A SHA-256 pin that is not 64 hex digits; each message is a sentence for
/// a configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error(
        "SHA-256 pin {0:?} is not 32 colon-separated hex byte pairs \
         (expected e.g. AB:CD:... with 32 pairs, or 64 hex digits without colons)"
    )]
    NotPairs(String),
    #[error("SHA-256 pin {pin:?} contains {bad:?}, which is not a hex digit")]
    NotHex { pin: String, bad: char },
    #[error("SHA-256 pin {pin:?} has {digits} hex digits; a SHA-256 fingerprint has 64")]
    Length { pin: String, digits: usize },
}

/// Parses a SHA-256 pin: 64 hex digits, either plain or as 32 colon-separated pairs,
/// in any case.
pub fn parse_pin(s: &str) -> Result<[u8; 32], PinError> {
    let trimmed = s.trim();
    let digits: String = if trimmed.contains(':') {
        let groups: Vec<&str> = trimmed.split(':').collect();
        if groups.len() != 32 || groups.iter().any(|g| g.len() != 2) {
            return Err(PinError::NotPairs(trimmed.to_string()));
        }
        groups.concat()
    } else {
        trimmed.to_string()
    };
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(PinError::NotHex {
            pin: trimmed.to_string(),
            bad,
        });
    }
    if digits.len() != 64 {
        return Err(PinError::Length {
            pin: trimmed.to_string(),
            digits: digits.len(),
        });
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.as_bytes().chunks(2)) {
        // Every byte is an ASCII hex digit (checked above).
        *byte = hex_value(pair[0]) << 4 | hex_value(pair[1]);
    }
    Ok(out)
}

/// The value of one ASCII hex digit (the caller has checked it is one).
fn hex_value(digit: u8) -> u8 {
    (digit as char).to_digit(16).unwrap_or(0) as u8
}

/// Describes one certificate. Alias, entry type and chain length get neutral defaults
/// (empty, [`ENTRY_TRUSTED_CERT`], "1") because only the caller knows the context.
pub fn cert_facts(der: &CertificateDer<'_>) -> Result<CertFacts, CertError> {
    facts_from_der(der.as_ref()).map_err(|e| CertError::InvalidDer {
        reason: e.to_string(),
    })
}

/// Why DER bytes are not one X.509 certificate.
#[derive(Debug, thiserror::Error)]
pub enum DerError {
    #[error("{0}")]
    X509(#[from] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("{0} bytes of trailing data after the certificate")]
    Trailing(usize),
    #[error("bad subjectAltName extension: {0}")]
    SubjectAltName(x509_parser::error::X509Error),
}

fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, DerError> {
    let (rest, cert) = X509Certificate::from_der(der)?;
    if !rest.is_empty() {
        return Err(DerError::Trailing(rest.len()));
    }
    // x509-parser keeps a damaged extension as an error that only its
    // accessor reports: without this a certificate with a damaged
    // subjectAltName loaded here and was refused later by `cert_facts`
    // (`cert show`, the served leaf). Found by fuzzing (fuzz/regressions).
    cert.subject_alternative_name()
        .map_err(DerError::SubjectAltName)?;
    Ok(cert)
}

fn facts_from_der(der: &[u8]) -> Result<CertFacts, DerError> {
    let cert = parse_x509(der)?;

    let owner = keytool_name(cert.subject());
    let issuer = keytool_name(cert.issuer());

    let serial_number = serial_text(cert.raw_serial());

    let validity = cert.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();

    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(DerError::SubjectAltName)?
    {
        for general_name in &san.value.general_names {
            match general_name {
                GeneralName::DNSName(name) => dns_names.push((*name).to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
    }

    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .map(attribute_value);

    let key_type = match cert
        .public_key()
        .algorithm
        .algorithm
        .to_id_string()
        .as_str()
    {
        // rsaEncryption, and RSASSA-PSS keys which are RSA keys restricted to PSS.
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => KeyType::Rsa,
        "1.2.840.10045.2.1" => KeyType::Ecdsa,
        "1.3.101.112" => KeyType::Ed25519,
        _ => KeyType::Other,
    };

    let self_signed = owner == issuer && own_signature_plausible(&cert);

    Ok(CertFacts {
        alias_name: String::new(),
        entry_type: ENTRY_TRUSTED_CERT.to_string(),
        chain_length: "1".to_string(),
        owner,
        issuer,
        serial_number,
        valid_from: format!("{} until: {}", java_date(not_before), java_date(not_after)),
        md5: colon_hex(&md5::Md5::digest(der)),
        sha1: colon_hex(&sha1::Sha1::digest(der)),
        sha256: colon_hex(&sha256_fingerprint(der)),
        signature_algorithm: java_signature_name(
            &cert.signature_algorithm.algorithm.to_id_string(),
        ),
        version: (cert.version().0 + 1).to_string(),
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
        key_type,
        dns_names,
        ip_addresses,
        common_name,
        self_signed,
    })
}

/// Whether a certificate whose subject equals its issuer really signed itself.
///
/// x509-parser can check the signature (rcgen's `aws_lc_rs` feature turns on its
/// `verify-aws` support). Where it cannot judge the algorithm or key size, name equality
/// alone decides, which is what keytool does.
fn own_signature_plausible(cert: &X509Certificate<'_>) -> bool {
    match cert.verify_signature(None) {
        Ok(()) => true,
        Err(X509Error::SignatureVerificationError) => {
            // aws-lc only verifies RSA signatures for 2048..=8192-bit keys (1024 for
            // SHA-1), so a failure with another size says nothing about the signature.
            matches!(rsa_modulus_bits(cert), Some(bits) if !(2048..=8192).contains(&bits))
        }
        Err(_) => true,
    }
}

fn rsa_modulus_bits(cert: &X509Certificate<'_>) -> Option<usize> {
    match cert.public_key().parsed().ok()? {
        PublicKey::RSA(rsa) => {
            let modulus = rsa.modulus;
            let first = modulus.iter().position(|b| *b != 0)?;
            let significant = &modulus[first..];
            Some(significant.len() * 8 - significant[0].leading_zeros() as usize)
        }
        _ => None,
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Formats a distinguished name the way Java's `X500Name.toString()` does: RDNs in
/// reverse encoding order (most specific first), multi-valued RDNs joined with ` + `,
/// Java's attribute keywords, and values with special characters quoted.
fn keytool_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let keyword = java_keyword(&oid)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("OID.{oid}"));
                    format!("{keyword}={}", quote_dn_value(&attribute_value(atv)))
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}

fn java_keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SURNAME",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATION",
        "2.5.4.46" => "DNQ",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        _ => return None,
    })
}

/// Decodes an attribute value to text, covering the legacy string types that
/// x509-parser's `as_str` leaves out; anything else is shown as `#hex` like Java does.
fn attribute_value(atv: &AttributeTypeAndValue<'_>) -> String {
    if let Ok(s) = atv.as_str() {
        return s.to_string();
    }
    let value = atv.attr_value();
    let data = value.data;
    match value.tag() {
        x509_parser::der_parser::asn1_rs::Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        x509_parser::der_parser::asn1_rs::Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
        // T.61 is in practice Latin-1 text.
        x509_parser::der_parser::asn1_rs::Tag::TeletexString => {
            data.iter().map(|b| char::from(*b)).collect()
        }
        _ => format!(
            "#{}",
            data.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

fn quote_dn_value(value: &str) -> String {
    let needs_quotes = value.is_empty()
        || value.starts_with(' ')
        || value.ends_with(' ')
        || value.contains("  ")
        || value.chars().any(|c| {
            matches!(
                c,
                ',' | '+' | '=' | '\n' | '<' | '>' | '#' | ';' | '\\' | '"'
            )
        });
    // Java leaves hex-encoded values (`#...`) from unknown types unquoted.
    if !needs_quotes
        || (value.starts_with('#') && value[1..].chars().all(|c| c.is_ascii_hexdigit()))
    {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Java `BigInteger(bytes).toString(16)`: two's complement, lower-case, no leading zeros.
/// A serial number exactly as `openssl x509 -noout -serial` prints it:
/// upper-case hex of the integer's magnitude, two digits per byte (so a
/// leading zero nibble stays, `0DEF...`), without the 00 sign byte that DER
/// puts before a first byte >= 0x80, and a `-` before the negative serials
/// some broken issuers produce. `raw` is the DER INTEGER's content octets.
pub fn serial_text(raw: &[u8]) -> String {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude = if negative {
        negate_twos_complement(raw)
    } else {
        raw.to_vec()
    };
    let first = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    let hex: String = magnitude[first.min(magnitude.len())..]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let hex = if hex.is_empty() {
        "00".to_string()
    } else {
        hex
    };
    if negative {
        format!("-{hex}")
    } else {
        hex
    }
}

fn negate_twos_complement(raw: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = raw.iter().map(|b| !b).collect();
    for byte in out.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    out
}

/// Java's `Date.toString()` (`EEE MMM dd HH:mm:ss zzz yyyy`) rendered in UTC.
fn java_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let weekday = match t.weekday() {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    };
    let month = match t.month() {
        Month::January => "Jan",
        Month::February => "Feb",
        Month::March => "Mar",
        Month::April => "Apr",
        Month::May => "May",
        Month::June => "Jun",
        Month::July => "Jul",
        Month::August => "Aug",
        Month::September => "Sep",
        Month::October => "Oct",
        Month::November => "Nov",
        Month::December => "Dec",
    };
    format!(
        "{weekday} {month} {:02} {:02}:{:02}:{:02} UTC {}",
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

fn java_signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.4" => "MD5withRSA",
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => "SHA1withRSA",
        "1.2.840.113549.1.1.14" => "SHA224withRSA",
        "1.2.840.113549.1.1.11" => "SHA256withRSA",
        "1.2.840.113549.1.1.12" => "SHA384withRSA",
        "1.2.840.113549.1.1.13" => "SHA512withRSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.4.1" => "SHA1withECDSA",
        "1.2.840.10045.4.3.2" => "SHA256withECDSA",
        "1.2.840.10045.4.3.3" => "SHA384withECDSA",
        "1.2.840.10045.4.3.4" => "SHA512withECDSA",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        other => return other.to_string(),
    }
    .to_string()
}

/// Writes a private key file that is never readable by anyone but the owner.
///
/// Without `overwrite` the file is created exclusively (`O_EXCL`), so an existing key
/// is refused without a check-then-write race. With `overwrite` the key goes to a fresh
/// 0600 temporary file that is renamed over the old one: opening the old file would
/// keep whatever mode it had, possibly world-readable.
pub fn write_private_key_file(path: &Path, pem: &str, overwrite: bool) -> Result<(), CertError> {
    if overwrite {
        return write_via_temp(path, pem.as_bytes(), PRIVATE_KEY_MODE);
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_KEY_MODE)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => CertError::KeyFileExists {
                path: path.to_path_buf(),
            },
            _ => io_err(path, e),
        })?;
    let written = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A truncated key would fail confusingly later; better no file at all.
        let _ = fs::remove_file(path);
        return Err(io_err(path, e));
    }
    Ok(())
}

/// Writes a public file (certificate, CSR) with mode 0644, replacing any old one
/// atomically so readers never see half a certificate.
pub fn write_public_file(path: &Path, contents: &str) -> Result<(), CertError> {
    write_via_temp(path, contents.as_bytes(), PUBLIC_FILE_MODE)
}

/// `contents` to a temporary file beside `path` (tempfile: an unguessable
/// name, created exclusively, removed if anything fails), synced, then
/// renamed over `path`: readers see the old file or the new one, never half.
fn write_via_temp(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let file_name = path.file_name().ok_or_else(|| CertError::InvalidInput {
        reason: format!("{} is not a file path", path.display()),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let result = (|| {
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{}.", file_name.to_string_lossy()))
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(dir)?;
        // The mode given at creation is reduced by the umask; set it exactly so a
        // restrictive umask cannot make a certificate unreadable to the service user.
        file.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.as_file().sync_all()?;
        file.persist(path).map(drop).map_err(|e| e.error)
    })();
    result.map_err(|e| io_err(path, e))
}

/// Fills `buf` from the aws-lc random generator (the crate has no separate RNG dependency).
pub fn random_fill(buf: &mut [u8]) -> Result<(), CertError> {
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| CertError::Random)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SerialNumber};
    use std::process::Command;

    fn openssl_available() -> bool {
        Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn params(cn: &str, sans: &[&str]) -> CertificateParams {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("valid SANs");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Example Org");
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params
    }

    fn self_signed(
        params: &CertificateParams,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate_for(alg).expect("key generation");
        let cert = params.self_signed(&key).expect("self-signing");
        (cert.der().clone(), key)
    }

    fn utc(year: i32, month: Month, day: u8, h: u8, m: u8, s: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(year, month, day)
            .unwrap()
            .with_hms(h, m, s)
            .unwrap()
            .assume_utc()
    }

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    #[test]
    fn facts_of_an_rcgen_ecdsa_certificate_describe_it() {
        let mut p = params("gis.example.com", &["gis.example.com", "10.1.2.3"]);
        p.not_before = utc(2019, Month::January, 1, 0, 0, 1);
        p.not_after = utc(2047, Month::December, 19, 10, 40, 41);
        p.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x08, 0x0d, 0x19, 0x93]));
        let (der, _key) = self_signed(&p, &rcgen::PKCS_ECDSA_P256_SHA256);

        let facts = cert_facts(&der).expect("facts");
        assert_eq!(facts.owner, "CN=gis.example.com, O=Example Org");
        assert_eq!(facts.issuer, facts.owner);
        assert_eq!(facts.serial_number, "080D1993");
        assert_eq!(
            facts.valid_from,
            "Tue Jan 01 00:00:01 UTC 2019 until: Thu Dec 19 10:40:41 UTC 2047"
        );
        assert_eq!(facts.not_before, 1_546_300_801);
        assert_eq!(facts.signature_algorithm, "SHA256withECDSA");
        assert_eq!(facts.version, "3");
        assert_eq!(facts.key_type, KeyType::Ecdsa);
        assert_eq!(facts.dns_names, vec!["gis.example.com".to_string()]);
        assert_eq!(
            facts.ip_addresses,
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(facts.common_name.as_deref(), Some("gis.example.com"));
        assert!(facts.self_signed);
        assert_eq!(facts.entry_type, ENTRY_TRUSTED_CERT);
        assert_eq!(facts.chain_length, "1");
        assert_eq!(facts.alias_name, "");
    }

    #[test]
    fn facts_of_an_rcgen_rsa_certificate_name_the_rsa_algorithm() {
        let (der, _key) = self_signed(
            &params("rsa.example", &["rsa.example"]),
            &rcgen::PKCS_RSA_SHA256,
        );
        let facts = cert_facts(&der).expect("facts");
        assert_eq!(facts.signature_algorithm, "SHA256withRSA");
        assert_eq!(facts.key_type, KeyType::Rsa);
        assert!(facts.self_signed);
    }

    #[test]
    fn a_leaf_issued_by_a_ca_is_not_self_signed_even_with_the_same_subject() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = params("Same Name", &[]);
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params.clone(), ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        // Same subject as the CA, so only the signature check can tell them apart.
        let leaf = ca_params.signed_by(&leaf_key, &issuer).unwrap();
        let facts = cert_facts(leaf.der()).unwrap();
        assert_eq!(facts.owner, facts.issuer);
        assert!(!facts.self_signed);

        let other_leaf = params("leaf", &["leaf.example"])
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let facts = cert_facts(other_leaf.der()).unwrap();
        assert_eq!(facts.issuer, "CN=Same Name, O=Example Org");
        assert!(!facts.self_signed);
    }

    #[test]
    fn fingerprints_match_independently_computed_digests() {
        let (der, _key) = self_signed(
            &params("fp", &["fp.example"]),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        let facts = cert_facts(&der).unwrap();

        let hex = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        assert_eq!(facts.md5, hex(&md5::Md5::digest(der.as_ref())));
        assert_eq!(facts.sha1, hex(&sha1::Sha1::digest(der.as_ref())));
        assert_eq!(facts.sha256, hex(&sha2::Sha256::digest(der.as_ref())));
        assert_eq!(facts.sha256.len(), 32 * 3 - 1);
        assert_eq!(facts.md5.len(), 16 * 3 - 1);
        assert_eq!(facts.sha1.len(), 20 * 3 - 1);
        assert_eq!(
            sha256_fingerprint(der.as_ref()).to_vec(),
            sha2::Sha256::digest(der.as_ref()).to_vec()
        );
    }

    #[test]
    fn a_certificate_with_a_damaged_subject_alt_name_is_refused_when_its_file_loads() {
        // Found by the certificates fuzz target: it loaded, then `cert show`
        // and the served leaf's checks refused it. Read at run time, not
        // embedded: no file outside src/ may end up in a build.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "fuzz/regressions/certificates/damaged-subjectaltname-loads-but-cannot-be-shown.pem",
        );
        match load_cert_chain(&path) {
            Err(CertError::InvalidCertificate {
                index: 1, reason, ..
            }) => {
                assert!(reason.contains("subjectAltName"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fingerprints_match_openssl_when_openssl_is_installed() {
        if !openssl_available() {
            eprintln!("openssl not found on PATH; skipping the cross-check");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (der, _key) = self_signed(&params("ossl", &["ossl.example"]), &rcgen::PKCS_RSA_SHA256);
        let pem_path = dir.path().join("c.pem");
        fs::write(&pem_path, rcgen_pem(&der)).unwrap();
        let facts = cert_facts(&der).unwrap();

        for (flag, ours) in [
            ("-md5", &facts.md5),
            ("-sha1", &facts.sha1),
            ("-sha256", &facts.sha256),
        ] {
            let out = Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint", flag, "-in"])
                .arg(&pem_path)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl failed: {out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let theirs = text.trim().split_once('=').unwrap().1;
            assert_eq!(theirs, ours.as_str(), "{flag}");
        }
    }

    fn rcgen_pem(der: &CertificateDer<'_>) -> String {
        pem_encode("CERTIFICATE", der.as_ref())
    }

    /// Minimal PEM encoder for test fixtures; the production code only ever writes PEM
    /// that rcgen produced.
    fn pem_encode(label: &str, der: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk.len();
            let v = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= n {
                    b64.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    #[test]
    fn arcgis_json_uses_the_exact_field_names_in_order() {
        let (der, _key) = self_signed(
            &params("json", &["json.example"]),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        let facts = cert_facts(&der).unwrap();
        let json = serde_json::to_string(&facts).unwrap();
        let expected_order = [
            "Alias name",
            "Entry type",
            "Certificate chain length",
            "Owner",
            "Issuer",
            "Serial number",
            "Valid from",
            "MD5",
            "SHA1",
            "SHA256",
            "Signature algorithm name",
            "Version",
        ];
        let mut last = 0;
        for name in expected_order {
            let at = json
                .find(&format!("\"{name}\":"))
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(at >= last, "{name} out of order");
            last = at;
        }
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value.as_object().unwrap().len(),
            12,
            "internal fields leaked: {json}"
        );
        let names: Vec<&str> = facts.arcgis_fields().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, expected_order);
    }

    #[test]
    fn owner_lists_the_most_specific_attribute_first_and_quotes_specials() {
        let mut p = params("x", &[]);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Acme, Inc.");
        dn.push(DnType::OrganizationalUnitName, "GIS");
        dn.push(DnType::CommonName, "maps.acme.test");
        p.distinguished_name = dn;
        let (der, _key) = self_signed(&p, &rcgen::PKCS_ECDSA_P256_SHA256);
        let facts = cert_facts(&der).unwrap();
        assert_eq!(
            facts.owner,
            "CN=maps.acme.test, OU=GIS, O=\"Acme, Inc.\", C=US"
        );
    }

    #[test]
    fn serials_are_formatted_as_openssl_x509_serial_prints_them() {
        assert_eq!(serial_text(&[0x00, 0x80, 0xd1, 0x99, 0x3f]), "80D1993F");
        assert_eq!(serial_text(&[0x08, 0x0d]), "080D");
        assert_eq!(serial_text(&[0x0d, 0xef]), "0DEF");
        assert_eq!(serial_text(&[0x00]), "00");
        assert_eq!(serial_text(&[0xff]), "-01");
        assert_eq!(serial_text(&[0xff, 0x00]), "-0100");
    }

    #[test]
    fn rcgen_serials_are_printed_as_openssl_prints_them() {
        let Ok(probe) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            eprintln!("openssl not found on PATH; skipping");
            return;
        };
        assert!(probe.status.success());
        let dir = tempfile::tempdir().unwrap();
        // A zero first nibble, a first byte >= 0x80 (DER adds a 00 sign
        // byte), and a short one.
        for serial in [
            &[0x0d, 0xef, 0xfb, 0x0f, 0x01][..],
            &[0x9a, 0x00, 0xff, 0x01][..],
            &[0x05][..],
        ] {
            let mut p = params("serial.example", &["serial.example"]);
            p.serial_number = Some(SerialNumber::from_slice(serial));
            let (der, _key) = self_signed(&p, &rcgen::PKCS_ECDSA_P256_SHA256);
            let path = dir.path().join("serial.crt");
            fs::write(&path, rcgen_pem(&der)).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(&path)
                .output()
                .unwrap();
            let openssl = String::from_utf8(out.stdout).unwrap();
            let facts = cert_facts(&der).unwrap();
            assert_eq!(format!("serial={}\n", facts.serial_number), openssl);
        }
    }

    fn write_cert_and_key(
        dir: &Path,
        name: &str,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (PathBuf, PathBuf) {
        let (der, key) = self_signed(&params(name, &[name]), alg);
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        fs::write(&cert_path, rcgen_pem(&der)).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn a_matching_certificate_and_key_make_a_certified_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) =
            write_cert_and_key(dir.path(), "ok.example", &rcgen::PKCS_ECDSA_P256_SHA256);
        let chain = load_cert_chain(&cert_path).unwrap();
        let key = load_private_key(&key_path).unwrap();
        let ck = certified_key(chain, key, &provider(), &cert_path, &key_path).unwrap();
        assert_eq!(ck.cert.len(), 1);
    }

    #[test]
    fn a_certificate_and_key_that_do_not_match_is_an_error_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, _) =
            write_cert_and_key(dir.path(), "a.example", &rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) =
            write_cert_and_key(dir.path(), "b.example", &rcgen::PKCS_ECDSA_P256_SHA256);
        let chain = load_cert_chain(&cert_path).unwrap();
        let key = load_private_key(&other_key).unwrap();
        let err = certified_key(chain, key, &provider(), &cert_path, &other_key).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&cert_path.display().to_string()), "{msg}");
        assert!(msg.contains(&other_key.display().to_string()), "{msg}");
    }

    #[test]
    fn an_rsa_key_paired_with_an_ecdsa_certificate_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, _) =
            write_cert_and_key(dir.path(), "ec.example", &rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, rsa_key) = write_cert_and_key(dir.path(), "rsa.example", &rcgen::PKCS_RSA_SHA256);
        let err = certified_key(
            load_cert_chain(&cert_path).unwrap(),
            load_private_key(&rsa_key).unwrap(),
            &provider(),
            &cert_path,
            &rsa_key,
        )
        .unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
    }

    fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> Option<PathBuf> {
        if !openssl_available() {
            eprintln!("openssl not found on PATH; skipping");
            return None;
        }
        let path = dir.join(name);
        let status = Command::new("openssl")
            .args(args)
            .arg("-out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "openssl {args:?} failed: {status:?}"
        );
        Some(path)
    }

    #[test]
    fn a_pkcs1_rsa_key_file_loads_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = openssl_key(dir.path(), "rsa1.key", &["genrsa", "-traditional"]) else {
            return;
        };
        assert!(fs::read_to_string(&path)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY"));
        let key = load_private_key(&path).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs1(_)));
        provider().key_provider.load_private_key(key).unwrap();
    }

    #[test]
    fn a_sec1_ec_key_file_loads_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = openssl_key(
            dir.path(),
            "ec.key",
            &["ecparam", "-genkey", "-name", "prime256v1", "-noout"],
        ) else {
            return;
        };
        assert!(fs::read_to_string(&path)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY"));
        let key = load_private_key(&path).unwrap();
        assert!(matches!(key, PrivateKeyDer::Sec1(_)));
        provider().key_provider.load_private_key(key).unwrap();
    }

    #[test]
    fn a_pkcs8_key_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        fs::write(&path, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(matches!(
            load_private_key(&path).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
    }

    #[test]
    fn an_encrypted_key_is_reported_as_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = openssl_key(
            dir.path(),
            "enc.key",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-aes-128-cbc",
                "-pass",
                "pass:test",
            ],
        ) else {
            return;
        };
        let err = load_private_key(&path).unwrap_err();
        assert!(
            matches!(err, CertError::EncryptedPrivateKey { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_file_without_a_key_names_the_file_and_the_accepted_formats() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, _) =
            write_cert_and_key(dir.path(), "c.example", &rcgen::PKCS_ECDSA_P256_SHA256);
        let err = load_private_key(&cert_path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM)",
                cert_path.display()
            )
        );
    }

    #[test]
    fn a_file_without_certificates_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.crt");
        fs::write(&path, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let err = load_cert_chain(&path).unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }));
        assert!(err
            .to_string()
            .starts_with(&format!("{}: no certificate found", path.display())));
    }

    #[test]
    fn garbage_in_a_certificate_section_is_not_a_valid_x509_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.crt");
        fs::write(&path, pem_encode("CERTIFICATE", b"definitely not DER")).unwrap();
        let err = load_cert_chain(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: not a valid X.509 certificate: ",
                path.display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_file_error_names_the_path() {
        let err = load_cert_chain(Path::new("/nonexistent/gisgate/gw.crt")).unwrap_err();
        assert!(matches!(err, CertError::Io { .. }));
        assert!(err.to_string().starts_with("/nonexistent/gisgate/gw.crt: "));
        let err = load_private_key(Path::new("/nonexistent/gisgate/gw.key")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/gisgate/gw.key: "));
    }

    #[test]
    fn a_ca_bundle_holds_every_certificate_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _k1) = self_signed(&params("CA one", &[]), &rcgen::PKCS_ECDSA_P256_SHA256);
        let (b, _k2) = self_signed(&params("CA two", &[]), &rcgen::PKCS_RSA_SHA256);
        let path = dir.path().join("bundle.pem");
        fs::write(&path, format!("{}{}", rcgen_pem(&a), rcgen_pem(&b))).unwrap();
        assert_eq!(load_ca_bundle(&path).unwrap().len(), 2);
    }

    #[test]
    fn colon_hex_is_upper_case_and_colon_separated() {
        assert_eq!(colon_hex(&[0xab, 0x01, 0xff]), "AB:01:FF");
        assert_eq!(colon_hex(&[]), "");
    }

    #[test]
    fn parse_pin_accepts_plain_or_colon_separated_hex_in_any_case() {
        let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
        let upper = colon_hex(&bytes);
        let plain_lower = upper.replace(':', "").to_lowercase();
        assert_eq!(parse_pin(&upper).unwrap().to_vec(), bytes);
        assert_eq!(parse_pin(&upper.to_lowercase()).unwrap().to_vec(), bytes);
        assert_eq!(parse_pin(&plain_lower).unwrap().to_vec(), bytes);
        assert_eq!(
            parse_pin(&format!("  {plain_lower}\n")).unwrap().to_vec(),
            bytes
        );
    }

    #[test]
    fn parse_pin_rejects_wrong_lengths_and_non_hex_with_a_clear_message() {
        let err = parse_pin("abcd").unwrap_err().to_string();
        assert!(err.contains("has 4 hex digits"), "{err}");
        let err = parse_pin(&"zz".repeat(32)).unwrap_err().to_string();
        assert!(err.contains("not a hex digit"), "{err}");
        let err = parse_pin(&["AB"; 31].join(":")).unwrap_err().to_string();
        assert!(err.contains("32 colon-separated"), "{err}");
        let err = parse_pin(&format!("{}:", ["AB"; 32].join(":")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("32 colon-separated"), "{err}");
        let err = parse_pin(&"é".repeat(32)).unwrap_err().to_string();
        assert!(err.contains("not a hex digit"), "{err}");
        assert!(parse_pin("").is_err());
    }

    fn facts_for(cn: &str, sans: &[&str]) -> CertFacts {
        let (der, _key) = self_signed(&params(cn, sans), &rcgen::PKCS_ECDSA_P256_SHA256);
        cert_facts(&der).unwrap()
    }

    #[test]
    fn covers_name_honours_a_single_left_most_wildcard_label() {
        let facts = facts_for(
            "ignored.example.net",
            &["*.example.com", "Exact.Example.org"],
        );
        assert!(facts.covers_name("a.example.com"));
        assert!(facts.covers_name("A.EXAMPLE.COM."));
        assert!(!facts.covers_name("a.b.example.com"));
        assert!(!facts.covers_name("example.com"));
        assert!(!facts.covers_name(".example.com"));
        assert!(!facts.covers_name("*.example.com"));
        assert!(facts.covers_name("exact.example.org"));
        assert!(!facts.covers_name("other.example.org"));
        // The CN is ignored because SANs exist.
        assert!(!facts.covers_name("ignored.example.net"));
    }

    #[test]
    fn covers_name_matches_ip_names_against_ip_sans_only() {
        let facts = facts_for("10.0.0.1", &["localhost", "127.0.0.1", "::1"]);
        assert!(facts.covers_name("127.0.0.1"));
        assert!(facts.covers_name("::1"));
        assert!(facts.covers_name("[::1]"));
        assert!(facts.covers_name("0:0:0:0:0:0:0:1"));
        assert!(!facts.covers_name("10.0.0.1"));
        assert!(facts.covers_name("localhost"));
    }

    #[test]
    fn covers_name_falls_back_to_the_cn_only_without_any_sans() {
        let facts = facts_for("legacy.example.com", &[]);
        assert!(facts.dns_names.is_empty() && facts.ip_addresses.is_empty());
        assert!(facts.covers_name("LEGACY.example.com"));
        assert!(!facts.covers_name("other.example.com"));
        let ip_cn = facts_for("192.0.2.7", &[]);
        assert!(ip_cn.covers_name("192.0.2.7"));
    }

    #[test]
    fn write_private_key_file_creates_mode_0600_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_private_key_file(&path, "secret", false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_private_key_file(&path, "other", false).unwrap_err();
        assert!(matches!(err, CertError::KeyFileExists { .. }));
        assert_eq!(fs::read_to_string(&path).unwrap(), "secret");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_key_file(&path, "replaced", true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "replaced");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "overwriting must not inherit the old mode");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }
}
