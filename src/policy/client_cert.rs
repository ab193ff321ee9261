//! The admin paths' client-certificate policy: a verified certificate is
//! needed as well as an allowed address (`admin.require_client_cert`), and
//! its subject DN, a SAN email or a SAN UPN may have to match one of
//! `admin.allowed_subjects`.

use crate::client_cert::ClientCert;
use crate::config::SubjectPattern;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCertPolicy {
    pub required: bool,
    pub subjects: Vec<SubjectPattern>,
}

/// Why an admin request was refused for its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertRefusal {
    #[error("no verified client certificate")]
    Missing,
    #[error("client certificate subject not allowed")]
    SubjectNotAllowed,
}

impl AdminCertPolicy {
    /// Fail closed: required and absent, or a subject list none of the
    /// certificate's names matches, is refused.
    pub fn check(&self, cert: Option<&ClientCert>) -> Result<(), CertRefusal> {
        if !self.required {
            return Ok(());
        }
        let cert = cert.ok_or(CertRefusal::Missing)?;
        if self.subjects.is_empty()
            || cert
                .names()
                .any(|name| self.subjects.iter().any(|p| p.matches(name)))
        {
            Ok(())
        } else {
            Err(CertRefusal::SubjectNotAllowed)
        }
    }
}
