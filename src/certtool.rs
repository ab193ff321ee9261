//! The `gisgate cert ...` and `gisgate upstream-fingerprint` commands.
//!
//! Everything here returns values or printable strings; argument parsing and printing
//! live with the CLI so that these functions stay testable.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use crate::tls::certs::{
    cert_facts, colon_hex, load_cert_chain, load_private_key, random_fill, sha256_fingerprint,
    write_private_key_file, write_public_file, CertError, CertFacts, KeyType, ENTRY_PRIVATE_KEY,
};
use crate::tls::pkcs12::{self, Password, Pkcs12Error};

/// Validity of a generated certificate when the caller does not choose one.
pub const DEFAULT_DAYS: u32 = 365;
/// Organisation put in the subject of generated certificates, so that they are
/// recognisable as gisgate's in browser warnings and keystores.
pub const GENERATED_ORG: &str = "gisgate";
/// How long `upstream-fingerprint` waits for the TCP connection, and again for the
/// TLS handshake.
pub const FINGERPRINT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `gisgate cert generate` should produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Subject common name.
    pub cn: String,
    /// DNS names or IP addresses for the subjectAltName; empty means "the CN".
    pub sans: Vec<String>,
    /// Validity in days from now.
    pub days: u32,
    pub cert_out: PathBuf,
    pub key_out: PathBuf,
    /// ECDSA P-256 by default; RSA is `rsa_size` bits.
    pub key_type: KeyType,
    /// Size of an RSA key; 2048 by default.
    pub rsa_size: RsaKeySize,
    /// Replace existing certificate and key files instead of refusing.
    pub overwrite: bool,
}

impl GenerateOptions {
    /// Options with the defaults: no extra SANs, [`DEFAULT_DAYS`], ECDSA P-256, no overwriting.
    pub fn new(
        cn: impl Into<String>,
        cert_out: impl Into<PathBuf>,
        key_out: impl Into<PathBuf>,
    ) -> Self {
        GenerateOptions {
            cn: cn.into(),
            sans: Vec::new(),
            days: DEFAULT_DAYS,
            cert_out: cert_out.into(),
            key_out: key_out.into(),
            key_type: KeyType::default(),
            rsa_size: RsaKeySize::_2048,
            overwrite: false,
        }
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions::new(String::new(), PathBuf::new(), PathBuf::new())
    }
}

/// Creates a self-signed server certificate and its key, writes both, and describes
/// the certificate.
///
/// The key file is created 0600 (never briefly world-readable); the certificate file
/// is 0644. An existing key or certificate file is refused unless `overwrite` is set,
/// and then neither is written. The returned facts
/// carry alias = the certificate file's stem and entry type `PrivateKeyEntry`.
pub fn generate_self_signed(opts: &GenerateOptions) -> Result<CertFacts, CertError> {
    check_common_name(&opts.cn)?;
    if opts.cert_out == opts.key_out {
        return Err(CertError::InvalidInput {
            reason: format!(
                "certificate and key would both be written to {}",
                opts.cert_out.display()
            ),
        });
    }
    // Fail before the (slow, for RSA) key generation; write_private_key_file repeats the
    // key's check atomically.
    if !opts.overwrite {
        if fs::symlink_metadata(&opts.key_out).is_ok() {
            return Err(CertError::KeyFileExists {
                path: opts.key_out.clone(),
            });
        }
        if fs::symlink_metadata(&opts.cert_out).is_ok() {
            return Err(CertError::CertFileExists {
                path: opts.cert_out.clone(),
            });
        }
    }

    let sans = if opts.sans.is_empty() {
        vec![san_from_cn(&opts.cn)?]
    } else {
        parse_sans(&opts.sans)?
    };
    let (not_before, not_after) = validity(opts.days)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = subject(&opts.cn, Some(GENERATED_ORG));
    params.subject_alt_names = sans;
    params.serial_number = Some(random_serial()?);
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = leaf_key_usages(opts.key_type);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let key =
        match opts.key_type {
            KeyType::Rsa => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, opts.rsa_size)
                .map_err(|e| CertError::InvalidInput {
                    reason: format!("could not generate an RSA key: {e}"),
                })?,
            other => generate_key(other)?,
        };
    let cert = params
        .self_signed(&key)
        .map_err(|e| generate_error(&opts.cert_out, e))?;

    for out in [&opts.key_out, &opts.cert_out] {
        create_parent(out)?;
    }
    write_private_key_file(&opts.key_out, &key.serialize_pem(), opts.overwrite)?;
    write_public_file(&opts.cert_out, &cert.pem())?;

    let mut facts = cert_facts(cert.der())?;
    facts.alias_name = opts
        .cert_out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    facts.entry_type = ENTRY_PRIVATE_KEY.to_string();
    Ok(facts)
}

/// Builds a PKCS#10 certificate signing request for an existing key, to be signed by
/// the organisation's CA. Returns the CSR as PEM.
///
/// The subject is `CN=<cn>` only, because the organisation fields belong to whoever
/// runs the CA. SANs are as for [`generate_self_signed`]: the CN when none are given.
/// PKCS#8, PKCS#1 and SEC1 keys are accepted.
pub fn make_csr(key_path: &Path, cn: &str, sans: &[String]) -> Result<String, CertError> {
    check_common_name(cn)?;
    let sans = if sans.is_empty() {
        vec![san_from_cn(cn)?]
    } else {
        parse_sans(sans)?
    };
    let key_der = load_private_key(key_path)?;
    let key = KeyPair::try_from(&key_der).map_err(|e| CertError::UnusableKey {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;

    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn, None);
    params.subject_alt_names = sans;
    params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| generate_error(key_path, e))
}

/// Environment variable `cert show` reads a PKCS#12 password from when no
/// password file is given, so that scripts need not write one to disk.
pub const PKCS12_PASSWORD_ENV: &str = "GISGATE_PKCS12_PASSWORD";

/// Why `cert show` could not describe a file.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Pkcs12(#[from] Pkcs12Error),
    /// A protected bundle and only the empty password to try.
    #[error("{err}; give the password with --password-file FILE or in ${PKCS12_PASSWORD_ENV}")]
    NeedsPassword { err: Pkcs12Error },
}

/// Describes every certificate in a PEM, DER or PKCS#12 file.
///
/// The format is recognised from the content, not the file name. Aliases are
/// `cert1`, `cert2`, ... and every entry's chain length is the number of
/// certificates in the file. The first certificate is a `PrivateKeyEntry` when the
/// file also holds its private key (a combined PEM, a PKCS#12 bundle with a key),
/// otherwise all are `trustedCertEntry`. PEM lists certificates in file order; a
/// PKCS#12 bundle lists the key's chain leaf first, then any other certificates.
/// Each of `passwords` is tried on a PKCS#12 bundle, in order.
pub fn show(path: &Path, passwords: &[Password]) -> Result<Vec<CertFacts>, ShowError> {
    let bytes = fs::read(path).map_err(|err| CertError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let (chain, has_key) = if pkcs12::looks_like_pkcs12(&bytes) {
        let bundle = match pkcs12::load_for_display(path, &bytes, passwords) {
            Err(err @ Pkcs12Error::WrongPassword { .. })
                if passwords.iter().all(|p| *p == Password::default()) =>
            {
                return Err(ShowError::NeedsPassword { err })
            }
            other => other?,
        };
        let has_key = bundle.key.is_some();
        let mut certs = bundle.chain;
        certs.extend(bundle.others);
        (certs, has_key)
    } else if contains_pem(&bytes) {
        // Only the presence of a key matters; its bytes are dropped unread.
        (
            load_cert_chain(path)?,
            PrivateKeyDer::from_pem_slice(&bytes).is_ok(),
        )
    } else {
        (vec![CertificateDer::from(bytes)], false)
    };
    let count = chain.len().to_string();
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            let mut facts = cert_facts(der).map_err(|e| CertError::InvalidCertificate {
                path: path.to_path_buf(),
                index: i + 1,
                reason: e.to_string(),
            })?;
            facts.alias_name = format!("cert{}", i + 1);
            facts.chain_length = count.clone();
            if i == 0 && has_key {
                facts.entry_type = ENTRY_PRIVATE_KEY.to_string();
            }
            Ok(facts)
        })
        .collect()
}

fn contains_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// One `Name: value` line per ArcGIS field, a blank line between certificates.
pub fn show_text(facts: &[CertFacts]) -> String {
    facts
        .iter()
        .map(|f| {
            f.arcgis_fields()
                .iter()
                .map(|(name, value)| format!("{name}: {value}\n"))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pretty-printed JSON array of the ArcGIS fields, one object per certificate.
pub fn show_json(facts: &[CertFacts]) -> String {
    // Serialising a struct of strings into memory has no failure mode.
    serde_json::to_string_pretty(facts).expect("CertFacts serialise to JSON")
}

/// Why `upstream-fingerprint` could not produce a fingerprint.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("invalid upstream URL {url:?}: {reason} (expected https://host[:port])")]
    InvalidUrl { url: String, reason: String },
    #[error("could not connect to {addr}: {err}")]
    Connect { addr: String, err: io::Error },
    #[error("{stage} with {addr} timed out after {} s", FINGERPRINT_TIMEOUT.as_secs())]
    Timeout { addr: String, stage: &'static str },
    #[error("TLS handshake with {addr} failed: {err}")]
    Handshake { addr: String, err: io::Error },
    #[error("could not set up TLS: {reason}")]
    Config { reason: String },
    #[error("{addr} completed the handshake without presenting a certificate")]
    NoCertificate { addr: String },
}

/// Connects to an `https://host[:port]` URL and returns the SHA-256 fingerprint of the
/// certificate the server presents, as colon-separated upper-case hex.
///
/// The certificate is deliberately not validated (the point is to learn what to pin),
/// but the handshake signature is, so the answer proves the server holds the key for
/// the certificate rather than replaying someone else's. A path after the authority
/// is ignored, since the certificate depends only on host and port.
pub async fn upstream_fingerprint(url: &str) -> Result<String, FingerprintError> {
    let target = parse_https_url(url)?;
    let addr = target.display_addr();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(RecordingVerifier {
        algorithms: provider.signature_verification_algorithms,
        leaf: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FingerprintError::Config {
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let tcp = tokio::time::timeout(
        FINGERPRINT_TIMEOUT,
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| FingerprintError::Timeout {
        addr: addr.clone(),
        stage: "TCP connect",
    })?
    .map_err(|err| FingerprintError::Connect {
        addr: addr.clone(),
        err,
    })?;

    let mut tls = tokio::time::timeout(
        FINGERPRINT_TIMEOUT,
        connector.connect(target.server_name, tcp),
    )
    .await
    .map_err(|_| FingerprintError::Timeout {
        addr: addr.clone(),
        stage: "TLS handshake",
    })?
    .map_err(|err| FingerprintError::Handshake {
        addr: addr.clone(),
        err,
    })?;

    let recorded = verifier
        .leaf
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let leaf = recorded.or_else(|| {
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.clone().into_owned())
    });
    // Closing politely is a courtesy to the server's logs; its failure changes nothing.
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.shutdown()).await;

    let leaf = leaf.ok_or(FingerprintError::NoCertificate { addr })?;
    Ok(colon_hex(&sha256_fingerprint(leaf.as_ref())))
}

/// The text `upstream-fingerprint` prints: the fingerprint, then a line ready to paste
/// into the configuration.
pub fn fingerprint_report(url: &str, fp: &str) -> String {
    format!(
        "SHA256 fingerprint of the certificate at {url}: {fp}\n\
         \n\
         # Paste into the [upstream] section of the gisgate configuration to pin this certificate:\n\
         pin_sha256 = [\"{fp}\"]\n"
    )
}

struct HttpsTarget {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl HttpsTarget {
    fn display_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn parse_https_url(url: &str) -> Result<HttpsTarget, FingerprintError> {
    let invalid = |reason: &str| FingerprintError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = url.trim();
    let rest = trimmed
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map(|_| &trimmed[8..])
        .ok_or_else(|| invalid("the scheme must be https"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid("user information is not supported"));
    }

    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("unterminated [IPv6] address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid("junk after [IPv6] address"))?,
            ),
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid("the bracketed host is not an IPv6 address"));
        }
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            Some(_) => return Err(invalid("IPv6 addresses must be in brackets")),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("the host is missing"));
    }
    let port = match port {
        None => 443,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
    };
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string())
            .map_err(|_| invalid("the host is not a valid DNS name or IP address"))?,
    };
    Ok(HttpsTarget {
        host: host.to_string(),
        port,
        server_name,
    })
}

/// Accepts whatever certificate the server presents and remembers the leaf, while still
/// checking the handshake signatures against it.
#[derive(Debug)]
struct RecordingVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    leaf: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No trust decision is made here: the operator is about to decide whether to
        // pin this certificate, after seeing its fingerprint.
        *self.leaf.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---- helpers shared with crate::devpki ----

/// Generates a fresh key of the given type (RSA is 2048-bit, ECDSA is P-256).
pub(crate) fn generate_key(key_type: KeyType) -> Result<KeyPair, CertError> {
    let alg = match key_type {
        KeyType::Ecdsa => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::Rsa => &rcgen::PKCS_RSA_SHA256,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        KeyType::Other => {
            return Err(CertError::InvalidInput {
                reason: "choose RSA, ECDSA or Ed25519 as the key type".to_string(),
            })
        }
    };
    KeyPair::generate_for(alg).map_err(|e| CertError::InvalidInput {
        reason: format!("could not generate a {key_type} key: {e}"),
    })
}

/// A random positive 16-byte serial number.
///
/// Random serials keep two certificates generated for the same key distinguishable
/// (rcgen's default derives the serial from the key). The top bit is cleared so the
/// INTEGER is positive and the next one set so it always takes exactly 16 bytes.
pub(crate) fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    random_fill(&mut bytes)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Validity from an hour ago (tolerating clients whose clocks run slow) to `days`
/// from now, at whole seconds because X.509 times have no fractions.
pub(crate) fn validity(days: u32) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    if days == 0 {
        return Err(CertError::InvalidInput {
            reason: "the validity must be at least one day".to_string(),
        });
    }
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .map_err(|e| CertError::InvalidInput {
            reason: e.to_string(),
        })?;
    let not_after = now
        .checked_add(time::Duration::days(i64::from(days)))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| CertError::InvalidInput {
            reason: format!("a validity of {days} days ends after the year 9999"),
        })?;
    Ok((now - time::Duration::hours(1), not_after))
}

/// Subject in encoding order O then CN, which keytool and ArcGIS print as `CN=..., O=...`.
pub(crate) fn subject(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// Key usage for a TLS server leaf: RSA key exchange in TLS 1.2 also needs
/// keyEncipherment.
pub(crate) fn leaf_key_usages(key_type: KeyType) -> Vec<KeyUsagePurpose> {
    match key_type {
        KeyType::Rsa => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    }
}

/// Turns user-supplied names into SANs: anything that parses as an IP address
/// (brackets allowed) becomes an IP SAN, the rest must be DNS names, optionally with a
/// `*.` wildcard label.
pub(crate) fn parse_sans(names: &[String]) -> Result<Vec<SanType>, CertError> {
    names.iter().map(|n| parse_san(n)).collect()
}

fn parse_san(name: &str) -> Result<SanType, CertError> {
    let name = name.trim();
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let checked = name.strip_prefix("*.").unwrap_or(name);
    let valid = !checked.contains('*')
        && !checked.ends_with('.')
        && rustls_pki_types::DnsName::try_from(checked).is_ok();
    if !valid {
        return Err(CertError::InvalidInput {
            reason: format!("{name:?} is neither a DNS name nor an IP address"),
        });
    }
    let ia5 = rcgen::string::Ia5String::try_from(name).map_err(|e| CertError::InvalidInput {
        reason: format!("{name:?}: {e}"),
    })?;
    Ok(SanType::DnsName(ia5))
}

fn san_from_cn(cn: &str) -> Result<SanType, CertError> {
    parse_san(cn).map_err(|_| CertError::InvalidInput {
        reason: format!(
            "the common name {cn:?} is not a DNS name or IP address, so it cannot double as \
             the subject alternative name; give the names clients connect to explicitly"
        ),
    })
}

fn check_common_name(cn: &str) -> Result<(), CertError> {
    // 64 characters is X.509's upper bound for a CN (ub-common-name); longer ones are
    // rejected by some clients.
    if cn.trim().is_empty() || cn.chars().count() > 64 || cn.chars().any(char::is_control) {
        return Err(CertError::InvalidInput {
            reason: format!("the common name {cn:?} must be 1 to 64 printable characters"),
        });
    }
    Ok(())
}

fn generate_error(path: &Path, err: rcgen::Error) -> CertError {
    CertError::Generate {
        path: path.to_path_buf(),
        reason: err.to_string(),
    }
}

pub(crate) fn create_parent(path: &Path) -> Result<(), CertError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).map_err(|err| CertError::Io {
                path: parent.to_path_buf(),
                err,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

    fn openssl_available() -> bool {
        Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn opts(dir: &Path, cn: &str) -> GenerateOptions {
        GenerateOptions::new(cn, dir.join("gw.crt"), dir.join("gw.key"))
    }

    fn provider() -> rustls::crypto::CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    #[test]
    fn a_generated_ecdsa_certificate_has_the_requested_names_and_validity() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), "gis.example.com");
        o.sans = vec![
            "gis.example.com".into(),
            "*.maps.example.com".into(),
            "10.0.0.5".into(),
            "[::1]".into(),
        ];
        o.days = 30;
        let facts = generate_self_signed(&o).unwrap();

        assert_eq!(facts.owner, "CN=gis.example.com, O=gisgate");
        assert_eq!(facts.issuer, facts.owner);
        assert!(facts.self_signed);
        assert_eq!(facts.key_type, KeyType::Ecdsa);
        assert_eq!(facts.signature_algorithm, "SHA256withECDSA");
        assert_eq!(facts.alias_name, "gw");
        assert_eq!(facts.entry_type, "PrivateKeyEntry");
        assert_eq!(
            facts.dns_names,
            vec!["gis.example.com", "*.maps.example.com"]
        );
        assert_eq!(
            facts.ip_addresses,
            vec![
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (facts.not_before - (now - 3600)).abs() < 60,
            "not_before {}",
            facts.not_before
        );
        assert!(
            (facts.not_after - (now + 30 * 86400)).abs() < 60,
            "not_after {}",
            facts.not_after
        );
        assert!(facts.covers_name("tiles.maps.example.com"));

        // What was written is what was described.
        let chain = load_cert_chain(&o.cert_out).unwrap();
        assert_eq!(cert_facts(&chain[0]).unwrap().sha256, facts.sha256);
        let key = load_private_key(&o.key_out).unwrap();
        crate::tls::certs::certified_key(chain, key, &provider(), &o.cert_out, &o.key_out).unwrap();
    }

    #[test]
    fn a_generated_certificate_is_a_non_ca_server_certificate_with_a_random_16_byte_serial() {
        let dir = tempfile::tempdir().unwrap();
        let facts = generate_self_signed(&opts(dir.path(), "svc.example")).unwrap();
        let der = load_cert_chain(&dir.path().join("gw.crt"))
            .unwrap()
            .remove(0);
        let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();

        let bc = cert
            .basic_constraints()
            .unwrap()
            .expect("basicConstraints present");
        assert!(!bc.value.ca);
        let ku = cert.key_usage().unwrap().expect("keyUsage present").value;
        assert!(ku.digital_signature() && !ku.key_encipherment() && !ku.key_cert_sign());
        let eku = cert
            .extended_key_usage()
            .unwrap()
            .expect("EKU present")
            .value;
        assert!(eku.server_auth && !eku.client_auth);

        let serial = cert.raw_serial();
        assert_eq!(serial.len(), 16);
        assert_eq!(serial[0] & 0x80, 0, "serial must be positive");
        assert_eq!(facts.serial_number.len(), 32);

        let again = generate_self_signed(&GenerateOptions {
            overwrite: true,
            ..opts(dir.path(), "svc.example")
        })
        .unwrap();
        assert_ne!(again.serial_number, facts.serial_number);
    }

    #[test]
    fn the_cn_becomes_the_san_when_no_san_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let facts = generate_self_signed(&opts(dir.path(), "only-cn.example")).unwrap();
        assert_eq!(facts.dns_names, vec!["only-cn.example"]);
        let dir2 = tempfile::tempdir().unwrap();
        let facts = generate_self_signed(&opts(dir2.path(), "192.0.2.10")).unwrap();
        assert!(facts.dns_names.is_empty());
        assert_eq!(
            facts.ip_addresses,
            vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn a_cn_that_is_not_a_host_name_needs_explicit_sans() {
        let dir = tempfile::tempdir().unwrap();
        let err = generate_self_signed(&opts(dir.path(), "My GIS Server")).unwrap_err();
        assert!(err.to_string().contains("cannot double as"), "{err}");
        let mut o = opts(dir.path(), "My GIS Server");
        o.sans = vec!["gis.example".into()];
        let facts = generate_self_signed(&o).unwrap();
        assert_eq!(facts.owner, "CN=My GIS Server, O=gisgate");
    }

    #[test]
    fn invalid_names_and_validity_are_rejected_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), "ok.example");
        o.sans = vec!["bad name!".into()];
        assert!(matches!(
            generate_self_signed(&o),
            Err(CertError::InvalidInput { .. })
        ));
        let mut o = opts(dir.path(), "ok.example");
        o.days = 0;
        assert!(matches!(
            generate_self_signed(&o),
            Err(CertError::InvalidInput { .. })
        ));
        let mut o = opts(dir.path(), "ok.example");
        o.days = u32::MAX;
        assert!(matches!(
            generate_self_signed(&o),
            Err(CertError::InvalidInput { .. })
        ));
        assert!(generate_self_signed(&opts(dir.path(), "")).is_err());
        assert!(generate_self_signed(&opts(dir.path(), &"a".repeat(65))).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_generated_rsa_certificate_works_as_a_rustls_certified_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), "rsa.example");
        o.key_type = KeyType::Rsa;
        let facts = generate_self_signed(&o).unwrap();
        assert_eq!(facts.key_type, KeyType::Rsa);
        assert_eq!(facts.signature_algorithm, "SHA256withRSA");
        assert!(facts.self_signed);

        let der = load_cert_chain(&o.cert_out).unwrap().remove(0);
        let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());

        let ck = crate::tls::certs::certified_key(
            load_cert_chain(&o.cert_out).unwrap(),
            load_private_key(&o.key_out).unwrap(),
            &provider(),
            &o.cert_out,
            &o.key_out,
        );
        assert!(ck.is_ok());
    }

    #[test]
    fn the_key_file_is_private_and_the_certificate_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), "perm.example");
        o.cert_out = dir.path().join("sub/dir/gw.crt");
        o.key_out = dir.path().join("sub/private/gw.key");
        generate_self_signed(&o).unwrap();
        assert_eq!(mode(&o.key_out), 0o600);
        assert_eq!(mode(&o.cert_out), 0o644);
    }

    #[test]
    fn generating_refuses_to_overwrite_an_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path(), "keep.example");
        fs::write(&o.key_out, "precious").unwrap();
        let err = generate_self_signed(&o).unwrap_err();
        assert!(matches!(err, CertError::KeyFileExists { .. }), "{err:?}");
        assert!(err.to_string().contains(&o.key_out.display().to_string()));
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(fs::read_to_string(&o.key_out).unwrap(), "precious");
        assert!(!o.cert_out.exists());
    }

    #[test]
    fn overwriting_replaces_the_key_and_makes_it_private() {
        let dir = tempfile::tempdir().unwrap();
        let o = GenerateOptions {
            overwrite: true,
            ..opts(dir.path(), "replace.example")
        };
        fs::write(&o.key_out, "old").unwrap();
        fs::set_permissions(&o.key_out, fs::Permissions::from_mode(0o644)).unwrap();
        generate_self_signed(&o).unwrap();
        assert_eq!(mode(&o.key_out), 0o600);
        assert!(load_private_key(&o.key_out).is_ok());
    }

    #[test]
    fn openssl_reads_the_generated_certificate_when_installed() {
        if !openssl_available() {
            eprintln!("openssl not found on PATH; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path(), "ossl.example");
        let facts = generate_self_signed(&o).unwrap();
        let out = Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-serial",
                "-in",
            ])
            .arg(&o.cert_out)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&facts.sha256), "{text}");
        assert!(
            text.contains(&format!("serial={}\n", facts.serial_number)),
            "{text}"
        );
        let out = Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
            .arg(&o.cert_out)
            .arg(&o.cert_out)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    fn csr_names(pem: &str) -> (String, Vec<String>) {
        let der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
        csr.verify_signature().expect("CSR self-signature");
        let subject = csr.certification_request_info.subject.to_string();
        let mut sans = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    sans.push(name.to_string());
                }
            }
        }
        (subject, sans)
    }

    #[test]
    fn a_csr_carries_the_subject_and_sans_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k.key");
        fs::write(&key_path, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let pem = make_csr(
            &key_path,
            "gis.corp.example",
            &["gis.corp.example".into(), "10.9.8.7".into()],
        )
        .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let (subject, sans) = csr_names(&pem);
        assert_eq!(subject, "CN=gis.corp.example");
        assert_eq!(
            sans,
            ["DNSName(gis.corp.example)", "IPAddress(0a:09:08:07)"]
        );

        if !openssl_available() {
            eprintln!("openssl not found on PATH; skipping openssl req -verify");
            return;
        }
        let csr_path = dir.path().join("csr.pem");
        fs::write(&csr_path, &pem).unwrap();
        let out = Command::new("openssl")
            .args(["req", "-verify", "-noout", "-in"])
            .arg(&csr_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("verify OK"), "{said}");
    }

    #[test]
    fn csrs_can_be_made_from_pkcs1_and_sec1_keys() {
        if !openssl_available() {
            eprintln!("openssl not found on PATH; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for (name, args) in [
            ("rsa.key", &["genrsa", "-traditional"][..]),
            (
                "ec.key",
                &["ecparam", "-genkey", "-name", "prime256v1", "-noout"][..],
            ),
        ] {
            let path = dir.path().join(name);
            let out = Command::new("openssl")
                .args(args)
                .arg("-out")
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let pem = make_csr(&path, "legacy.example", &[]).unwrap();
            let (subject, sans) = csr_names(&pem);
            assert_eq!(subject, "CN=legacy.example");
            assert_eq!(sans, ["DNSName(legacy.example)"]);
        }
    }

    #[test]
    fn a_csr_for_a_missing_key_names_the_file() {
        let err = make_csr(Path::new("/nonexistent/k.key"), "x.example", &[]).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/k.key: "), "{err}");
    }

    fn two_cert_file(dir: &Path, with_key: bool) -> PathBuf {
        let a = generate_self_signed(&GenerateOptions::new(
            "a.example",
            dir.join("a.crt"),
            dir.join("a.key"),
        ))
        .unwrap();
        let b = generate_self_signed(&GenerateOptions::new(
            "b.example",
            dir.join("b.crt"),
            dir.join("b.key"),
        ))
        .unwrap();
        assert_ne!(a.sha256, b.sha256);
        let path = dir.join("both.pem");
        let mut text = fs::read_to_string(dir.join("a.crt")).unwrap()
            + &fs::read_to_string(dir.join("b.crt")).unwrap();
        if with_key {
            text += &fs::read_to_string(dir.join("a.key")).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn show_lists_every_certificate_with_numbered_aliases_and_the_chain_length() {
        let dir = tempfile::tempdir().unwrap();
        let facts = show(&two_cert_file(dir.path(), false), &[]).unwrap();
        assert_eq!(facts.len(), 2);
        assert_eq!(facts[0].alias_name, "cert1");
        assert_eq!(facts[1].alias_name, "cert2");
        assert!(facts.iter().all(|f| f.chain_length == "2"));
        assert!(facts.iter().all(|f| f.entry_type == "trustedCertEntry"));
        assert_eq!(facts[0].owner, "CN=a.example, O=gisgate");
        assert_eq!(facts[1].owner, "CN=b.example, O=gisgate");
    }

    #[test]
    fn show_marks_the_first_certificate_of_a_combined_pem_as_a_private_key_entry() {
        let dir = tempfile::tempdir().unwrap();
        let facts = show(&two_cert_file(dir.path(), true), &[]).unwrap();
        assert_eq!(facts[0].entry_type, "PrivateKeyEntry");
        assert_eq!(facts[1].entry_type, "trustedCertEntry");
        let text = show_text(&facts);
        assert!(!text.contains("PRIVATE KEY"));
    }

    #[test]
    fn show_text_prints_the_arcgis_fields_in_order_with_a_blank_line_between_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let facts = show(&two_cert_file(dir.path(), false), &[]).unwrap();
        let text = show_text(&facts);
        let blocks: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(blocks.len(), 2, "{text}");
        let keys: Vec<&str> = blocks[0]
            .lines()
            .map(|l| l.split_once(": ").unwrap().0)
            .collect();
        assert_eq!(
            keys,
            [
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
                "Version"
            ]
        );
        assert!(blocks[0].starts_with(
            "Alias name: cert1\nEntry type: trustedCertEntry\nCertificate chain length: 2\n"
        ));
        assert!(blocks[1].starts_with("Alias name: cert2\n"));
        assert!(text.contains(&format!("SHA256: {}\n", facts[1].sha256)));
        assert!(text.ends_with("Version: 3\n"));
    }

    #[test]
    fn show_json_is_an_array_of_objects_with_the_arcgis_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let facts = show(&two_cert_file(dir.path(), false), &[]).unwrap();
        let json = show_json(&facts);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let array = value.as_array().unwrap();
        assert_eq!(array.len(), 2);
        assert_eq!(array[1]["Alias name"], "cert2");
        assert_eq!(array[0]["Certificate chain length"], "2");
        assert_eq!(array[0]["Version"], "3");
        assert_eq!(array[0]["SHA256"], facts[0].sha256.as_str());
        assert_eq!(array[0].as_object().unwrap().len(), 12);
        assert!(json.contains("\n  {"), "not pretty-printed: {json}");
    }

    async fn serve_once(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> std::net::SocketAddr {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut buf = [0u8; 64];
                let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
            }
        });
        addr
    }

    /// A certificate like many internal GIS servers have: self-signed, CN only, no SAN.
    fn cn_only_cert(
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject("arcgis-internal", None);
        let cert = params.self_signed(&key).unwrap();
        let facts = cert_facts(cert.der()).unwrap();
        assert!(facts.dns_names.is_empty() && facts.ip_addresses.is_empty());
        (cert.der().clone(), PrivateKeyDer::from(key))
    }

    #[tokio::test]
    async fn upstream_fingerprint_is_the_sha256_of_the_served_certificate() {
        let (der, key) = cn_only_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        let expected = colon_hex(&sha256_fingerprint(der.as_ref()));
        let addr = serve_once(vec![der], key, &[&rustls::version::TLS13]).await;
        let fp = upstream_fingerprint(&format!("https://{addr}"))
            .await
            .unwrap();
        assert_eq!(fp, expected);
    }

    #[tokio::test]
    async fn upstream_fingerprint_works_over_tls12_with_an_rsa_certificate() {
        let (der, key) = cn_only_cert(&rcgen::PKCS_RSA_SHA256);
        let expected = colon_hex(&sha256_fingerprint(der.as_ref()));
        let addr = serve_once(vec![der], key, &[&rustls::version::TLS12]).await;
        let fp = upstream_fingerprint(&format!("https://127.0.0.1:{}/arcgis/rest", addr.port()))
            .await
            .unwrap();
        assert_eq!(fp, expected);
    }

    #[tokio::test]
    async fn a_refused_connection_is_reported_with_the_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = upstream_fingerprint(&format!("https://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(matches!(err, FingerprintError::Connect { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn upstream_urls_must_be_https_with_a_host_and_an_optional_port() {
        let t = parse_https_url("https://gis.example.com").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("gis.example.com", 443));
        let t = parse_https_url("HTTPS://gis.example.com:6443/arcgis").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("gis.example.com", 6443));
        let t = parse_https_url("https://[::1]:8443").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert_eq!(t.display_addr(), "[::1]:8443");
        assert!(matches!(t.server_name, ServerName::IpAddress(_)));

        for bad in [
            "http://gis.example.com",
            "gis.example.com",
            "https://",
            "https://:443",
            "https://gis.example.com:0",
            "https://gis.example.com:99999",
            "https://gis.example.com:abc",
            "https://user@gis.example.com",
            "https://::1",
            "https://[gis]:443",
            "https://bad_host name",
        ] {
            let err = parse_https_url(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(
                err.to_string().contains("expected https://host[:port]"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_fingerprint_report_ends_with_a_ready_to_paste_pin() {
        let fp = colon_hex(&[0xab; 32]);
        let report = fingerprint_report("https://gis.example.com", &fp);
        assert!(report.starts_with(&format!(
            "SHA256 fingerprint of the certificate at https://gis.example.com: {fp}\n"
        )));
        let lines: Vec<&str> = report.lines().collect();
        let pin_line = *lines.last().unwrap();
        assert_eq!(pin_line, format!("pin_sha256 = [\"{fp}\"]"));
        assert!(
            lines[lines.len() - 2].starts_with('#')
                && lines[lines.len() - 2].contains("[upstream]")
        );
        let pinned = pin_line.split('"').nth(1).unwrap();
        assert_eq!(crate::tls::certs::parse_pin(pinned).unwrap(), [0xab; 32]);
    }
}
