//! The test environment in one expression: a site (test CA and
//! certificates), the in-process GIS upstream, and a gateway in front of it
//! with a config overlay, as in
//! `Env::new().upstream(Http::V2).config("[hsts]\nenabled = true").start()`.
//! The upstream stops when the environment is dropped; the gateway's
//! listeners are tasks of the test's runtime and end with it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::{
    get, https_request, raw_http, raw_https, Issued, Reply, Site, TestGateway, TestUpstream,
};

/// The HTTP version a peer speaks over TLS (by ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1 only.
    V1,
    /// HTTP/2 offered first, HTTP/1.1 as well (a client chooses).
    V2,
}

impl Http {
    /// The ALPN protocols a server speaking this offers, most preferred first.
    pub fn server_alpn(self) -> Vec<Vec<u8>> {
        match self {
            Http::V1 => vec![b"http/1.1".to_vec()],
            Http::V2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    /// For the helpers that still take a flag: HTTP/2 or not.
    pub fn is_h2(self) -> bool {
        self == Http::V2
    }
}

/// What to start: the upstream's protocols, certificates beside the site's
/// own, and the gateway's config overlay.
#[must_use = "nothing runs until `start`"]
pub struct Env {
    upstream: Http,
    overlay: String,
    certs: Vec<ExtraCert>,
}

/// A leaf the site's CA issues and writes as `<file>.crt` / `<file>.key`
/// before the gateway starts, for an overlay to name.
struct ExtraCert {
    file: String,
    names: Vec<String>,
    rsa: bool,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    /// An HTTP/1.1 upstream and the base config (`Site::config`).
    pub fn new() -> Env {
        Env {
            upstream: Http::V1,
            overlay: String::new(),
            certs: Vec::new(),
        }
    }

    /// The protocols the upstream offers in ALPN.
    pub fn upstream(mut self, http: Http) -> Env {
        self.upstream = http;
        self
    }

    /// TOML merged over the base config, table by table.
    pub fn config(mut self, overlay: &str) -> Env {
        self.overlay = overlay.to_string();
        self
    }

    /// A leaf for `names` with an ECDSA P-256 key, written as
    /// `<file>.crt` / `<file>.key` in the site (`gateway` replaces the
    /// gateway's own); [`Running::cert`] returns it.
    pub fn cert(self, file: &str, names: &[&str]) -> Env {
        self.with_cert(file, names, false)
    }

    /// As [`cert`](Self::cert), with an RSA-2048 key.
    pub fn rsa_cert(self, file: &str, names: &[&str]) -> Env {
        self.with_cert(file, names, true)
    }

    fn with_cert(mut self, file: &str, names: &[&str], rsa: bool) -> Env {
        self.certs.push(ExtraCert {
            file: file.to_string(),
            names: names.iter().map(|n| n.to_string()).collect(),
            rsa,
        });
        self
    }

    /// Makes the site and its extra certificates, starts the upstream,
    /// then the gateway in front of it.
    pub async fn start(self) -> Running {
        let site = Site::new();
        let mut certs = BTreeMap::new();
        for c in self.certs {
            let names: Vec<&str> = c.names.iter().map(String::as_str).collect();
            let issued = if c.rsa {
                site.ca.issue_rsa(&names)
            } else {
                site.ca.issue(&names)
            };
            site.ca.write(&c.file, &issued);
            certs.insert(c.file, issued);
        }
        let upstream = site.upstream(self.upstream).await;
        let gateway = site.gateway(&upstream, &self.overlay).await;
        Running {
            site,
            upstream,
            gateway,
            certs,
        }
    }
}

/// A started environment. Its parts are public for what the shortcuts
/// below do not cover.
pub struct Running {
    pub site: Site,
    pub upstream: TestUpstream,
    pub gateway: TestGateway,
    certs: BTreeMap<String, Issued>,
}

impl Running {
    /// The certificate [`Env::cert`] or [`Env::rsa_cert`] wrote as `file`.
    pub fn cert(&self, file: &str) -> &Issued {
        self.certs
            .get(file)
            .unwrap_or_else(|| panic!("no certificate {file} was asked of Env"))
    }

    /// The full config text for `overlay` over the base config, in front
    /// of this environment's upstream: what a test writes to reload with.
    pub fn config_text(&self, overlay: &str) -> String {
        self.site.config(self.upstream.addr, overlay)
    }

    /// The gateway's HTTPS listener.
    pub fn https(&self) -> SocketAddr {
        self.gateway.https()
    }

    /// The gateway's plain-HTTP listener.
    pub fn http(&self) -> SocketAddr {
        self.gateway.http()
    }

    /// A GET of `path` over a fresh HTTP/1.1 HTTPS connection.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Http::V1, get(path, &[])).await
    }

    /// One request over a fresh HTTPS connection speaking `http`.
    pub async fn request(&self, http: Http, req: Request<Full<Bytes>>) -> Reply {
        https_request(&self.site, self.https(), http.is_h2(), req).await
    }

    /// Raw bytes over TLS to the HTTPS listener, read until it closes.
    pub async fn raw_https(&self, request: &str) -> String {
        raw_https(&self.site, self.https(), request).await
    }

    /// Raw bytes to the plain-HTTP listener, read until it closes.
    pub async fn raw_http(&self, request: &str) -> String {
        raw_http(self.http(), request).await
    }

    /// The gateway's metrics page.
    pub async fn metrics(&self) -> String {
        self.gateway.metrics().await
    }

    /// The metrics page once it contains `line` (see
    /// [`TestGateway::metrics_with`]).
    pub async fn metrics_with(&self, line: &str) -> String {
        self.gateway.metrics_with(line).await
    }
}
