//! Client-certificate verification for one TLS server config, built on
//! rustls' `WebPkiClientVerifier` (chain to the configured CAs, validity,
//! extended key usage clientAuth, CRLs, and webpki's bound of 6
//! intermediates); and what the handshake's outcome says about it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, Error as TlsError};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::certs;
use super::BuildError;
use crate::config::{ClientAuth, ClientAuthMode, CrlUnknown};

/// A CRL as loaded: its file and when its issuer promises the next one
/// (Unix seconds; `None` when the CRL names no nextUpdate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedCrl {
    pub path: PathBuf,
    pub next_update: Option<i64>,
}

/// Why a CRL file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no X509 CRL (PEM \"BEGIN X509 CRL\" or DER)")]
    Empty { path: PathBuf },
    #[error("{path}: not a certificate revocation list: {message}")]
    Malformed { path: PathBuf, message: String },
}

/// A client-certificate verifier and the CRLs it holds.
pub struct Verifier {
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub crls: Vec<LoadedCrl>,
}

/// The CRLs of one file, for rustls, and what the gateway reports of them.
type FileCrls = (Vec<CertificateRevocationListDer<'static>>, Vec<LoadedCrl>);

/// The verifier for `auth` (`None` when it is off) and the CRLs it holds.
/// `prefix` is the table's key (`tls.client_auth`, `tls.sni.0.client_auth`)
/// for errors.
pub fn verifier(
    auth: &ClientAuth,
    prefix: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Verifier>, BuildError> {
    let Some(ca) = auth
        .ca
        .as_ref()
        .filter(|_| auth.mode != ClientAuthMode::Off)
    else {
        return Ok(None);
    };
    let roots =
        certs::load_ca_bundle(ca).map_err(|e| BuildError::new(format!("{prefix}.ca"), e))?;
    let mut crls = Vec::new();
    let mut loaded = Vec::new();
    for path in &auth.crls {
        let (ders, facts) =
            load_crl(path).map_err(|e| BuildError::new(format!("{prefix}.crl"), e))?;
        crls.extend(ders);
        loaded.extend(facts);
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(crls);
    if auth.crl_unknown == CrlUnknown::Allow {
        builder = builder.allow_unknown_revocation_status();
    }
    if auth.mode == ClientAuthMode::Optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder
        .build()
        .map_err(|e| BuildError::new(format!("{prefix}.crl"), e))?;
    Ok(Some(Verifier {
        verifier: Arc::new(ClientAuthUsageRequired(verifier)),
        crls: loaded,
    }))
}

/// webpki accepts a client certificate without an extended key usage
/// extension (RFC 5280 §4.2.1.12 reads its absence as any purpose); a
/// smart-card certificate for logging in names clientAuth, and the gateway
/// asks for it to be named. Everything else is webpki's, unchanged.
#[derive(Debug)]
struct ClientAuthUsageRequired(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ClientAuthUsageRequired {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        let names_client_auth = X509Certificate::from_der(end_entity)
            .ok()
            .and_then(|(_, cert)| {
                cert.extended_key_usage()
                    .ok()
                    .flatten()
                    .map(|e| e.value.client_auth)
            })
            .unwrap_or(false);
        match names_client_auth {
            true => Ok(verified),
            false => Err(TlsError::InvalidCertificate(
                CertificateError::InvalidPurpose,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Every CRL in a file: PEM (one or more `X509 CRL` blocks) or one DER.
/// Each is parsed here so a broken file is refused with its name, before
/// rustls would refuse it without one.
fn load_crl(path: &Path) -> Result<FileCrls, CrlError> {
    let bytes = std::fs::read(path).map_err(|source| CrlError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let ders: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| CrlError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if ders.is_empty() {
        return Err(CrlError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut facts = Vec::new();
    for der in &ders {
        let (_, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| CrlError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        facts.push(LoadedCrl {
            path: path.to_path_buf(),
            next_update: crl.next_update().map(|t| t.timestamp()),
        });
    }
    Ok((ders, facts))
}

/// The `result` label of `gisgate_client_cert_verifications_total` for a
/// handshake that failed on the client's certificate; `None` when the
/// failure was about something else.
pub fn failure_label(error: &TlsError) -> Option<&'static str> {
    use CertificateError as C;
    Some(match error {
        TlsError::NoCertificatesPresented => "none",
        TlsError::InvalidCertificate(e) => match e {
            C::UnknownIssuer => "unknown_ca",
            C::Revoked => "revoked",
            C::UnknownRevocationStatus => "revocation_unknown",
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => "expired",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "bad_usage",
            _ => "other",
        },
        TlsError::InvalidCertRevocationList(_) => "other",
        _ => return None,
    })
}

/// Every `result` label, for docs and tests.
pub const RESULTS: [&str; 8] = [
    "ok",
    "none",
    "unknown_ca",
    "revoked",
    "revocation_unknown",
    "expired",
    "bad_usage",
    "other",
];
