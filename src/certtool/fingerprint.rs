//! `gisgate upstream-fingerprint`: the SHA-256 pin of the certificate an
//! HTTPS server presents, taken without trusting it.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::AsyncWriteExt;

use crate::tls::certs::{colon_hex, sha256_fingerprint};

/// How long `upstream-fingerprint` waits for the TCP connection, and again for the
/// TLS handshake.
pub const FINGERPRINT_TIMEOUT: Duration = Duration::from_secs(10);

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

    // The gateway's one authority parser; a bracketed IPv6 address is
    // dialled and named without its brackets.
    let (host, port) = crate::host::parse_host(authority).map_err(|e| invalid(&e.to_string()))?;
    let port = port.unwrap_or(443);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certtool::*;
    use crate::tls::certs::{cert_facts, colon_hex, sha256_fingerprint};
    use rcgen::{CertificateParams, KeyPair};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::sync::Arc;

    fn provider() -> rustls::crypto::CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
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
