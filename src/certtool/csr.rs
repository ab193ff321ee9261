//! `gisgate cert csr`: a PKCS#10 request for an existing key.

use std::path::Path;

use rcgen::{CertificateParams, KeyPair};

use crate::tls::certs::{load_private_key, CertError};

use super::generate::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certtool::test_support::openssl_available;
    use rcgen::KeyPair;
    use rustls_pki_types::pem::PemObject;
    use std::fs;
    use std::path::Path;
    use std::process::Command;
    use x509_parser::prelude::{FromDer, X509CertificationRequest};

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
}
