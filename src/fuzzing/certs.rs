//! PEM, DER and PKCS#12 certificate and key files, and SHA-256 pins.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

use crate::certtool;
use crate::tls::certs::{
    cert_facts, colon_hex, load_ca_bundle, load_cert_chain, load_private_key, parse_pin,
    sha256_fingerprint,
};
use crate::tls::pkcs12::{self, Password};

/// A password no input contains by chance; it must never appear in an error.
const PASSWORD: &str = "fuzz-Pa55word-7Qx";

/// The input is a file's content, read the ways the gateway reads
/// certificate files: `cert show` (PEM, DER or PKCS#12 by content), a
/// certificate chain, a private key, a CA bundle, a PKCS#12 identity.
/// Checked:
/// - a chain that loads is shown with one entry per certificate, each
///   with the SHA-256 of that certificate's DER;
/// - DER that parses as a certificate is shown with its own SHA-256;
/// - errors about a private key or a PKCS#12 bundle never quote the file
///   (no base64 run of 16 characters or more from it) nor the password;
/// - text that parses as a SHA-256 pin prints back (`AB:CD:...`) to a text
///   that parses to the same pin.
pub fn certificate_files(data: &[u8]) {
    let path = input_file();
    std::fs::write(&path, data).expect("scratch file");
    check_files(&path, data);
    let _ = std::fs::remove_file(&path);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(pin) = parse_pin(text) {
            assert_eq!(parse_pin(&colon_hex(&pin)), Ok(pin));
        }
    }
}

fn check_files(path: &Path, data: &[u8]) {
    let passwords = [Password::default(), Password::new(PASSWORD)];
    let shown = certtool::show(path, &passwords);
    if let Ok(chain) = load_cert_chain(path) {
        let facts = shown
            .as_ref()
            .unwrap_or_else(|e| panic!("chain loads, show fails: {e}"));
        assert_eq!(facts.len(), chain.len());
        for (fact, der) in facts.iter().zip(&chain) {
            assert_eq!(fact.sha256, colon_hex(&sha256_fingerprint(der)));
        }
    }
    if let Ok(facts) = cert_facts(&CertificateDer::from(data)) {
        assert_eq!(facts.sha256, colon_hex(&sha256_fingerprint(data)));
    }
    let _ = load_ca_bundle(path);
    if let Err(e) = load_private_key(path) {
        assert_quotes_nothing(&e.to_string(), path, data);
    }
    if let Err(e) = pkcs12::load_identity(path, &passwords[1], provider()) {
        assert_quotes_nothing(&e.to_string(), path, data);
    }
}

/// Secrets must not reach logs: no run of 16 or more base64 characters of
/// the file, and not the password, in `message` (its path aside). Only
/// runs that mix upper case, lower case and digits count, as key material
/// does: a file may hold words of an error message (`unknown/unsupported`
/// is base64 too) without the message quoting the file.
fn assert_quotes_nothing(message: &str, path: &Path, data: &[u8]) {
    let message = message.replace(&path.display().to_string(), "");
    assert!(!message.contains(PASSWORD), "{message}");
    let is_base64 = |b: &u8| b.is_ascii_alphanumeric() || b"+/=".contains(b);
    let mixed = |run: &&[u8]| {
        run.iter().any(u8::is_ascii_uppercase)
            && run.iter().any(u8::is_ascii_lowercase)
            && run.iter().any(u8::is_ascii_digit)
    };
    for run in data
        .split(|b| !is_base64(b))
        .filter(|run| run.len() >= 16)
        .filter(mixed)
    {
        let run = std::str::from_utf8(run).expect("ascii");
        assert!(!message.contains(run), "{message:?} quotes {run:?}");
    }
}

/// This thread's scratch file: runs in parallel (tests, fuzzers) use their own.
fn input_file() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    super::config::scratch_dir().join(format!("input-{}-{thread}.bin", std::process::id()))
}

fn provider() -> &'static CryptoProvider {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    PROVIDER.get_or_init(rustls::crypto::aws_lc_rs::default_provider)
}
