//! How the upstream's certificate is trusted: by CA bundle, SHA-256 pins,
//! both, or the system's public roots; never "accept all". The client's
//! TLS configuration is built around that verifier.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::resume::TicketStore;
use crate::config::Upstream;
use crate::tls::{certs, BuildError};

/// The TLS configuration of every upstream connection (ALPN is set per
/// connector).
pub fn tls_config(settings: &Upstream) -> Result<ClientConfig, BuildError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let chain = match &settings.ca {
        Some(ca) => {
            let roots = certs::load_ca_bundle(ca).map_err(|e| BuildError::new("upstream.ca", e))?;
            Some(webpki_verifier(roots, &provider)?)
        }
        None if settings.pins.is_empty() => {
            let roots = system_roots()?;
            Some(webpki_verifier(roots, &provider)?)
        }
        None => None,
    };
    let verifier = Arc::new(UpstreamVerifier {
        chain,
        pins: settings.pins.clone(),
        algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::new("upstream", e))?;
    // The verifier is always ours: chain and/or pins, never "accept all".
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(Arc::new(TicketStore::default()));
    Ok(config)
}

fn webpki_verifier(
    roots: rustls::RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, BuildError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| BuildError::new("upstream.ca", e))
}

fn system_roots() -> Result<rustls::RootCertStore, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(BuildError::new("upstream.url", "no upstream.ca or upstream.pin_sha256 given and no system root certificates were found; set upstream.ca (the CA that signed the GIS server's certificate) or pin it with upstream.pin_sha256 (see `gisgate upstream-fingerprint`)"));
    }
    Ok(roots)
}

/// The pin check failed: the leaf is not one of `upstream.pin_sha256`.
#[derive(Debug, thiserror::Error)]
#[error("upstream certificate SHA-256 {got} matches no upstream.pin_sha256")]
pub struct PinMismatch {
    pub got: String,
}

#[derive(Debug)]
struct UpstreamVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pins: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        if !self.pins.is_empty() {
            // With pins alone the pin is the trust anchor: a GIS server's own
            // self-signed certificate (CN only, no SAN, SHA-1 signature) is
            // trusted by its fingerprint, which chain validation would refuse.
            let got = certs::sha256_fingerprint(end_entity.as_ref());
            if !self.pins.contains(&got) {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(PinMismatch {
                        got: certs::colon_hex(&got),
                    })),
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signature is always checked: it proves the server holds
    // the key of the certificate that was pinned or chained.
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
