//! A verified client certificate as the request path uses it: the names the
//! admin policy matches (subject DN, SAN emails, SAN UPNs) and the values
//! forwarded to the upstream. Read once per connection, after rustls has
//! verified the chain.

use http::HeaderValue;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Microsoft's User Principal Name otherName (smart-card logon).
const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The subject DN as RFC 4514 writes it (most significant RDN last,
    /// `CN=alice,OU=GIS,O=Example`), as nginx's `$ssl_client_s_dn`.
    pub subject: String,
    pub emails: Vec<String>,
    pub upns: Vec<String>,
    /// The certificate as URL-encoded PEM, as nginx's
    /// `$ssl_client_escaped_cert`.
    pub escaped_pem: HeaderValue,
    /// `subject` as a header value (control characters were escaped).
    pub subject_header: HeaderValue,
}

/// The certificate could not be read after rustls accepted it (a feature
/// x509-parser does not know): the connection is treated as without one.
#[derive(Debug, thiserror::Error)]
#[error("client certificate cannot be parsed: {0}")]
pub struct ClientCertError(String);

impl ClientCert {
    pub fn from_der(der: &CertificateDer<'_>) -> Result<ClientCert, ClientCertError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| ClientCertError(e.to_string()))?;
        let subject = rfc4514(cert.subject());
        let (mut emails, mut upns) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::RFC822Name(mail) => emails.push(mail.to_string()),
                    GeneralName::OtherName(oid, value) if oid.to_id_string() == UPN_OID => {
                        upns.extend(upn_text(value));
                    }
                    _ => {}
                }
            }
        }
        let subject_header = HeaderValue::from_str(&subject)
            .or_else(|_| HeaderValue::from_bytes(subject.as_bytes()))
            .map_err(|e| ClientCertError(e.to_string()))?;
        let escaped_pem =
            HeaderValue::from_str(&escaped_pem(der)).map_err(|e| ClientCertError(e.to_string()))?;
        Ok(ClientCert {
            subject,
            emails,
            upns,
            escaped_pem,
            subject_header,
        })
    }

    /// The names `admin.allowed_subjects` patterns are matched against.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.subject.as_str())
            .chain(self.emails.iter().map(String::as_str))
            .chain(self.upns.iter().map(String::as_str))
    }
}

/// An otherName's value is `[0] EXPLICIT UTF8String` for a UPN.
fn upn_text(value: &[u8]) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::{Any, FromDer as _};
    let (_, explicit) = Any::from_der(value).ok()?;
    let (_, inner) = Any::from_der(explicit.data).ok()?;
    std::str::from_utf8(inner.data).ok().map(str::to_string)
}

/// RFC 4514 §2: RDNs in reverse order, joined by `,`; multi-valued RDNs by
/// `+`; special characters escaped (§2.4). Control characters are escaped
/// as `\XX` so the text is a valid header value.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| format!("{}={}", attribute_type(atv), attribute_value(atv)))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute_type(atv: &AttributeTypeAndValue<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    match x509_parser::objects::oid2abbrev(atv.attr_type(), registry) {
        Ok(short) => short.to_string(),
        Err(_) => atv.attr_type().to_id_string(),
    }
}

fn attribute_value(atv: &AttributeTypeAndValue<'_>) -> String {
    let Ok(text) = atv.as_str() else {
        // §2.4: a value of a type without a string form, as `#` and its DER.
        let raw = atv.attr_value();
        let hex: String = raw.data.iter().map(|b| format!("{b:02x}")).collect();
        return format!("#{hex}");
    };
    let last = text.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// PEM, percent-encoded except RFC 3986's unreserved characters.
fn escaped_pem(der: &CertificateDer<'_>) -> String {
    let pem = pem_text(der);
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pem_text(der: &CertificateDer<'_>) -> String {
    let pem = pem::Pem::new("CERTIFICATE", der.as_ref());
    pem::encode_config(
        &pem,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The subject header always set beside the configured certificate header,
/// as nginx deployments conventionally name it.
pub const SUBJECT_HEADER: http::HeaderName = http::HeaderName::from_static("x-ssl-client-subject");
/// The conventional certificate header, removed from every request even
/// when another name is configured: an upstream configured for it must
/// never read one a client wrote.
pub const CERT_HEADER: http::HeaderName = http::HeaderName::from_static("x-ssl-client-cert");

/// Removes every client-supplied certificate header (the conventional
/// names and the configured one), then, when `forward` names a header and
/// the connection has a verified certificate, sets it and the subject.
pub fn forward_headers(
    headers: &mut http::HeaderMap,
    forward: Option<&http::HeaderName>,
    cert: Option<&ClientCert>,
) {
    headers.remove(CERT_HEADER);
    headers.remove(SUBJECT_HEADER);
    let Some(name) = forward else {
        return;
    };
    headers.remove(name);
    if let Some(cert) = cert {
        headers.insert(name.clone(), cert.escaped_pem.clone());
        headers.insert(SUBJECT_HEADER, cert.subject_header.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, OtherNameValue, SanType};

    fn cert(cn: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "US");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example, Inc.");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![
            SanType::Rfc822Name("alice@gis.example.com".try_into().unwrap()),
            SanType::OtherName((
                vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                OtherNameValue::Utf8String("alice@corp.example.com".into()),
            )),
        ];
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_subject_is_written_as_rfc_4514_with_its_specials_escaped() {
        let c = ClientCert::from_der(&cert(" alice+admin ")).unwrap();
        assert_eq!(c.subject, "CN=\\ alice\\+admin\\ ,O=Example\\, Inc.,C=US");
        assert_eq!(c.subject_header, c.subject.as_str());
    }

    #[test]
    fn san_emails_and_upns_are_names_the_admin_policy_matches() {
        let c = ClientCert::from_der(&cert("alice")).unwrap();
        let names: Vec<&str> = c.names().collect();
        assert_eq!(
            names,
            [
                "CN=alice,O=Example\\, Inc.,C=US",
                "alice@gis.example.com",
                "alice@corp.example.com"
            ]
        );
    }

    #[test]
    fn the_forwarded_certificate_is_url_encoded_pem_of_the_same_der() {
        let der = cert("alice");
        let c = ClientCert::from_der(&der).unwrap();
        let escaped = c.escaped_pem.to_str().unwrap();
        assert!(
            escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
            "{escaped}"
        );
        assert!(!escaped.contains(['+', '/', '=', '\n', ' ']));
        let mut decoded = Vec::new();
        let bytes = escaped.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                decoded.push(u8::from_str_radix(&escaped[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        let pem = pem::parse(decoded).unwrap();
        assert_eq!(pem.contents(), der.as_ref());
    }

    #[test]
    fn forwarding_replaces_client_sent_headers_and_removes_them_without_a_certificate() {
        let c = ClientCert::from_der(&cert("alice")).unwrap();
        let forged = |h: &mut http::HeaderMap| {
            for name in ["x-ssl-client-cert", "x-ssl-client-subject", "x-client-cert"] {
                h.append(name, HeaderValue::from_static("forged"));
            }
        };
        let configured = http::HeaderName::from_static("x-client-cert");
        let mut h = http::HeaderMap::new();
        forged(&mut h);
        forward_headers(&mut h, Some(&configured), Some(&c));
        assert_eq!(h.get_all("x-client-cert").iter().count(), 1);
        assert_eq!(h["x-client-cert"], c.escaped_pem);
        assert_eq!(h["x-ssl-client-subject"], c.subject_header);
        assert!(!h.contains_key("x-ssl-client-cert"));
        let mut h = http::HeaderMap::new();
        forged(&mut h);
        forward_headers(&mut h, Some(&configured), None);
        assert!(h.is_empty(), "{h:?}");
        let mut h = http::HeaderMap::new();
        forged(&mut h);
        forward_headers(&mut h, None, None);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-client-cert"]);
    }
}
