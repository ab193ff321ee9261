//! Every refusal the gateway makes, mapped to status, route label and a
//! short body in exactly one place. Bodies never echo request data.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::headers::TransferCodingError;
pub use crate::observe::metrics::Route;
use crate::policy::client_cert::CertRefusal;
use crate::policy::path::PathError;
use crate::policy::query::QueryError;

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
    #[error("admin path refused: {0}")]
    AdminCertificate(CertRefusal),
    #[error("upstream unreachable or not trusted")]
    UpstreamFailed,
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("CONNECT is not served")]
    Connect,
    #[error("malformed or truncated request body")]
    BadBody,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("raw # in the request target")]
    Fragment,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadPath(_)
            | Refusal::BadQuery(_)
            | Refusal::BadHost
            | Refusal::BadBody
            | Refusal::Fragment
            | Refusal::TransferCoding(TransferCodingError::Malformed) => StatusCode::BAD_REQUEST,
            Refusal::TransferCoding(TransferCodingError::NotImplemented) => {
                StatusCode::NOT_IMPLEMENTED
            }
            Refusal::AdminDenied | Refusal::AdminCertificate(_) => StatusCode::FORBIDDEN,
            Refusal::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
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
            | Refusal::Fragment => Route::Rejected,
            Refusal::AdminDenied | Refusal::AdminCertificate(_) => Route::AdminDenied,
            Refusal::UpstreamFailed | Refusal::UpstreamTimeout => Route::Proxy,
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
            Refusal::AdminCertificate(CertRefusal::Missing) => {
                "403 Forbidden: administrative access needs a verified client certificate\n"
            }
            Refusal::AdminCertificate(CertRefusal::SubjectNotAllowed) => {
                "403 Forbidden: this client certificate is not allowed administrative access\n"
            }
            Refusal::UpstreamFailed => {
                "502 Bad Gateway: the GIS server could not be reached securely\n"
            }
            Refusal::UpstreamTimeout => {
                "504 Gateway Timeout: the GIS server did not answer in time\n"
            }
            Refusal::Connect => "405 Method Not Allowed: CONNECT is not served\n",
            Refusal::BadBody => "400 Bad Request: malformed or truncated request body\n",
            Refusal::Fragment => {
                "400 Bad Request: a request target must not contain a fragment (#)\n"
            }
            Refusal::HeadersTooLarge => {
                "431 Request Header Fields Too Large: limits.max_header_bytes\n"
            }
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
        if let Refusal::Connect = self {
            // RFC 9110 §15.5.6: a 405 lists what the resource does allow.
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"),
            );
        }
        r
    }
}
