//! `gisgate cert generate`: a self-signed server certificate and its key,
//! and the pieces the development PKI shares (keys, serials, validity, SANs).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::tls::certs::{
    cert_facts, random_fill, write_private_key_file, write_public_file, CertError, CertFacts,
    KeyType, ENTRY_PRIVATE_KEY,
};

/// Validity of a generated certificate when the caller does not choose one.
pub const DEFAULT_DAYS: u32 = 365;
/// Organisation put in the subject of generated certificates, so that they are
/// recognisable as gisgate's in browser warnings and keystores.
pub const GENERATED_ORG: &str = "gisgate";
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

pub(super) fn parse_san(name: &str) -> Result<SanType, CertError> {
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

pub(super) fn san_from_cn(cn: &str) -> Result<SanType, CertError> {
    parse_san(cn).map_err(|_| CertError::InvalidInput {
        reason: format!(
            "the common name {cn:?} is not a DNS name or IP address, so it cannot double as \
             the subject alternative name; give the names clients connect to explicitly"
        ),
    })
}

pub(super) fn check_common_name(cn: &str) -> Result<(), CertError> {
    // 64 characters is X.509's upper bound for a CN (ub-common-name); longer ones are
    // rejected by some clients.
    if cn.trim().is_empty() || cn.chars().count() > 64 || cn.chars().any(char::is_control) {
        return Err(CertError::InvalidInput {
            reason: format!("the common name {cn:?} must be 1 to 64 printable characters"),
        });
    }
    Ok(())
}

pub(super) fn generate_error(path: &Path, err: rcgen::Error) -> CertError {
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
    use crate::certtool::test_support::openssl_available;
    use crate::tls::certs::{cert_facts, load_cert_chain, load_private_key, CertError, KeyType};
    use std::fs;
    use std::net::IpAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;
    use time::OffsetDateTime;
    use x509_parser::prelude::{FromDer, X509Certificate};

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
}
