//! `[tls.client_auth]` (and the same table in a `[[tls.sni]]` entry) and
//! the admin paths' client-certificate policy, as typed settings. The
//! files named here are read when the TLS config is built
//! (`tls::client_auth`), so a broken CA bundle or CRL is refused there with
//! its key, and on reload keeps the running policy.

use std::path::PathBuf;

use http::HeaderName;

/// Whether a listener asks for a client certificate, and whether it must
/// get one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    Off,
    /// Asked for; a client without one connects, one with an untrusted one
    /// does not.
    Optional,
    /// The handshake fails without a certificate that verifies.
    Required,
}

impl ClientAuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMode::Off => "off",
            ClientAuthMode::Optional => "optional",
            ClientAuthMode::Required => "required",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(ClientAuthMode::Off),
            "optional" => Some(ClientAuthMode::Optional),
            "required" => Some(ClientAuthMode::Required),
            _ => None,
        }
    }
}

/// What a client certificate whose issuer has no CRL among `crl` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlUnknown {
    Deny,
    Allow,
}

impl CrlUnknown {
    pub fn as_str(self) -> &'static str {
        match self {
            CrlUnknown::Deny => "deny",
            CrlUnknown::Allow => "allow",
        }
    }
}

/// Client-certificate verification for one TLS server config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    /// PEM bundle of the CAs client certificates must chain to; set
    /// whenever `mode` is not `Off`.
    pub ca: Option<PathBuf>,
    /// CRLs (PEM or DER) checked for client certificates.
    pub crls: Vec<PathBuf>,
    pub crl_unknown: CrlUnknown,
    /// The header that carries the verified certificate to the upstream
    /// (only in `[tls.client_auth]`, for every connection).
    pub forward_header: Option<HeaderName>,
}

impl ClientAuth {
    pub const OFF: ClientAuth = ClientAuth {
        mode: ClientAuthMode::Off,
        ca: None,
        crls: Vec::new(),
        crl_unknown: CrlUnknown::Deny,
        forward_header: None,
    };

    /// Every file read to build the verifier: what a reload watches.
    pub fn files(&self) -> Vec<PathBuf> {
        self.ca.iter().chain(&self.crls).cloned().collect()
    }

    /// The verifier's policy, without `forward_header` (which is not the
    /// TLS config's): two entries with equal policies share a config.
    pub fn same_verifier(&self, other: &ClientAuth) -> bool {
        self.mode == other.mode
            && self.ca == other.ca
            && self.crls == other.crls
            && self.crl_unknown == other.crl_unknown
    }
}

/// `admin.allowed_subjects`: a pattern over a client certificate's subject
/// DN (RFC 4514, as `X-SSL-Client-Subject` carries it), its SAN emails or
/// its SAN UPNs. `*` stands for any run of characters; the rest matches
/// ASCII case-insensitively (DN attribute values and mail domains compare
/// without case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPattern(String);

impl SubjectPattern {
    pub fn new(text: &str) -> Self {
        SubjectPattern(text.trim().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, value: &str) -> bool {
        glob_matches(self.0.as_bytes(), value.as_bytes())
    }
}

/// Iterative `*` glob with backtracking to the last star: linear in
/// practice, no recursion on hostile input.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_pattern_matches_with_stars_and_without_case() {
        let p = SubjectPattern::new("CN=*,OU=GIS Admins,O=Example");
        assert!(p.matches("CN=alice,OU=GIS Admins,O=Example"));
        assert!(p.matches("cn=Bob Smith,ou=gis admins,o=example"));
        assert!(!p.matches("CN=alice,OU=GIS Users,O=Example"));
        assert!(!p.matches("CN=alice,OU=GIS Admins,O=Example,C=US"));
        let mail = SubjectPattern::new("*@gis.example.com");
        assert!(mail.matches("alice@GIS.example.com"));
        assert!(!mail.matches("alice@gis.example.com.evil"));
        assert!(SubjectPattern::new("alice@example.com").matches("alice@example.com"));
        assert!(!SubjectPattern::new("alice@example.com").matches("malice@example.com"));
    }
}
