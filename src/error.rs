//! Every refusal the gateway makes, mapped to status, route label and a
//! short body in exactly one place. Bodies never echo request data.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::headers::TransferCodingError;
pub use crate::observe::metrics::Route;
use crate::policy::client_cert::CertRefusal;
use crate::policy::path::PathError;
use crate::policy::query::QueryError;
use crate::upstream::error::UpstreamError;

const BAD_BODY: &str = "400 Bad Request: malformed or truncated request body\n";
const BAD_GATEWAY: &str = "502 Bad Gateway: the GIS server could not be reached securely\n";

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("path cannot be made canonical: {0}")]
    BadPath(PathError),
    #[error("query refused: {0}")]
    BadQuery(QueryError),
    #[error("request transfer coding refused: {0}")]
    TransferCoding(TransferCodingError),
    #[error("missing or malformed Host")]
    BadHost,
    #[error("admin path refused for this client")]
    AdminDenied,
    /// The exchange with the upstream failed; its status (502, 504, or
    /// 400 for the client's own body) is the error's.
    #[error("{0}")]
    Upstream(UpstreamError),
    #[error("the client's connection cannot be upgraded")]
    NoUpgrade,
    #[error("the request target cannot be rebuilt for the upstream")]
    UnforwardableTarget,
    #[error("admin path refused: {0}")]
    AdminCertificate(CertRefusal),
    #[error("CONNECT is not served")]
    Connect,
    #[error("malformed or truncated request body")]
    BadBody,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("raw # in the request target")]
    Fragment,
    #[error("host not covered by the connection's certificate")]
    Misdirected,
    #[error("refused by an [[access]] rule")]
    AccessDenied,
    #[error("sign-in with the password in the URL")]
    CredentialsInUrl,
    #[error("over a [[rate_limit]] rule; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("request body over its size limit")]
    BodyTooLarge,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadPath(_)
            | Refusal::BadQuery(_)
            | Refusal::BadHost
            | Refusal::BadBody
            | Refusal::Fragment
            | Refusal::UnforwardableTarget
            | Refusal::TransferCoding(TransferCodingError::Malformed) => StatusCode::BAD_REQUEST,
            Refusal::TransferCoding(TransferCodingError::NotImplemented) => {
                StatusCode::NOT_IMPLEMENTED
            }
            Refusal::AdminDenied | Refusal::AdminCertificate(_) => StatusCode::FORBIDDEN,
            Refusal::Upstream(e) => e.status(),
            Refusal::NoUpgrade => StatusCode::BAD_GATEWAY,
            Refusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Refusal::AccessDenied => StatusCode::FORBIDDEN,
            Refusal::CredentialsInUrl => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    pub fn route(&self) -> Route {
        match self {
            Refusal::BadPath(_)
            | Refusal::BadQuery(_)
            | Refusal::TransferCoding(_)
            | Refusal::BadHost
            | Refusal::Connect
            | Refusal::BadBody
            | Refusal::HeadersTooLarge
            | Refusal::UnforwardableTarget
            | Refusal::Fragment
            | Refusal::Misdirected
            | Refusal::CredentialsInUrl
            | Refusal::BodyTooLarge => Route::Rejected,
            Refusal::AccessDenied => Route::AccessDenied,
            Refusal::RateLimited { .. } => Route::RateLimited,
            Refusal::AdminDenied | Refusal::AdminCertificate(_) => Route::AdminDenied,
            // The client's body failed: its request was refused, not proxied.
            Refusal::Upstream(e) if e.kind().is_none() => Route::Rejected,
            Refusal::Upstream(_) | Refusal::NoUpgrade => Route::Proxy,
        }
    }

    fn body(&self) -> &'static str {
        match self {
            Refusal::BadPath(_) => "400 Bad Request: the request path cannot be made canonical\n",
            Refusal::BadQuery(_) => "400 Bad Request: the request query is malformed\n",
            Refusal::TransferCoding(TransferCodingError::NotImplemented) => {
                "501 Not Implemented: only the chunked transfer coding is accepted\n"
            }
            Refusal::TransferCoding(TransferCodingError::Malformed) => {
                "400 Bad Request: malformed Transfer-Encoding\n"
            }
            Refusal::BadHost => "400 Bad Request: missing or malformed Host\n",
            Refusal::AdminDenied => {
                "403 Forbidden: administrative access is not allowed from this address\n"
            }
            Refusal::Upstream(e) => match e.status() {
                StatusCode::GATEWAY_TIMEOUT => {
                    "504 Gateway Timeout: the GIS server did not answer in time\n"
                }
                StatusCode::BAD_REQUEST => BAD_BODY,
                _ => BAD_GATEWAY,
            },
            Refusal::NoUpgrade => BAD_GATEWAY,
            Refusal::AdminCertificate(CertRefusal::Missing) => {
                "403 Forbidden: administrative access needs a verified client certificate\n"
            }
            Refusal::AdminCertificate(CertRefusal::SubjectNotAllowed) => {
                "403 Forbidden: this client certificate is not allowed administrative access\n"
            }
            Refusal::Connect => "405 Method Not Allowed: CONNECT is not served\n",
            Refusal::BadBody => BAD_BODY,
            Refusal::UnforwardableTarget => {
                "400 Bad Request: the request target cannot be forwarded\n"
            }
            Refusal::Fragment => {
                "400 Bad Request: a request target must not contain a fragment (#)\n"
            }
            Refusal::HeadersTooLarge => {
                "431 Request Header Fields Too Large: limits.max_header_bytes\n"
            }
            // RFC 9110 §15.5.20: the client may retry on a new connection.
            Refusal::Misdirected => {
                "421 Misdirected Request: this connection's certificate does not cover the requested host\n"
            }
            Refusal::AccessDenied => "403 Forbidden: this path is not allowed from this address\n",
            Refusal::CredentialsInUrl => {
                "405 Method Not Allowed: sign in with POST; a password in the URL ends up in logs and browser history\n"
            }
            Refusal::RateLimited { .. } => {
                "429 Too Many Requests: too many requests from this address; retry after the time in Retry-After\n"
            }
            Refusal::BodyTooLarge => "413 Content Too Large: the request body is over its size limit\n",
        }
    }

    pub fn response(&self) -> Response<ResponseBody> {
        let body = self.body();
        let mut r = Response::new(ResponseBody::full(body));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            // RFC 9110 §15.5.6: a 405 lists what the resource does allow.
            Refusal::Connect => {
                h.insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"),
                );
            }
            Refusal::CredentialsInUrl => {
                h.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            // RFC 6585 §4, RFC 9110 §10.2.3.
            Refusal::RateLimited { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        r
    }
}
