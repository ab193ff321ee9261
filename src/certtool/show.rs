//! `gisgate cert show`: what is in a PEM, DER or PKCS#12 file, in the
//! fields ArcGIS Server's certificate pages show.

use std::fs;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::certs::{cert_facts, load_cert_chain, CertError, CertFacts, ENTRY_PRIVATE_KEY};
use crate::tls::pkcs12::{self, Password, Pkcs12Error};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certtool::*;
    use std::fs;
    use std::path::{Path, PathBuf};

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
}
