//! CORS (Fetch standard, "CORS protocol") and Private Network Access.
//!
//! The gateway either answers CORS preflights itself (when origins are
//! configured) or lets the upstream answer them. Either way, whether a public
//! web page may reach this private-network server (Private Network Access
//! draft, `Access-Control-Request-Private-Network`; Chrome's successor is
//! "Local Network Access") is the gateway's decision alone.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Sent by the browser on a preflight to a more-private network
/// (Private Network Access draft §3).
pub const ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");

/// The server's consent to being reached from a less-private network.
pub const ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// `Vary` of the gateway's own preflight answer: every request header the
/// answer depends on, so caches never replay it for a different request.
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, \
     Access-Control-Request-Private-Network",
);

const TRUE: HeaderValue = HeaderValue::from_static("true");
const STAR: HeaderValue = HeaderValue::from_static("*");

/// The gateway's CORS configuration.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// Allowed origins, `scheme://host[:port]`, compared exactly but ASCII
    /// case-insensitively. `"*"` in this list means any origin.
    pub allowed_origins: Vec<String>,
    /// Any origin is allowed (`"*"` was listed). Either this flag or a `"*"`
    /// entry in `allowed_origins` enables it.
    pub allow_any_origin: bool,
    /// Whether public web pages may reach this server over PNA preflights.
    pub allow_private_network: bool,
    /// `Access-Control-Allow-Methods`, e.g. `GET, POST, HEAD, OPTIONS`.
    pub allowed_methods: HeaderValue,
    /// `Access-Control-Allow-Headers`.
    pub allowed_headers: HeaderValue,
    /// `Access-Control-Max-Age` in seconds.
    pub max_age_secs: u64,
    /// Send `Access-Control-Allow-Credentials: true` to echoed origins.
    /// Never sent with `Access-Control-Allow-Origin: *` (the Fetch standard
    /// makes browsers reject that combination, and it must not be relied on).
    pub allow_credentials: bool,
}

/// What the policy grants the request's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// No grant: no `Access-Control-Allow-*` headers.
    Nothing,
    /// `Access-Control-Allow-Origin: *`, never with credentials.
    AnyOrigin,
    /// `Access-Control-Allow-Origin: <the request's Origin>`.
    Echo(HeaderValue),
}

/// Whether the request is a CORS preflight: `OPTIONS` with both `Origin` and
/// `Access-Control-Request-Method` (Fetch standard, "CORS-preflight
/// request"). A plain `OPTIONS` is an ordinary request.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

impl CorsPolicy {
    /// Whether the gateway governs CORS: it answers preflights itself and
    /// rewrites CORS headers on responses. False when no origin (not even
    /// `"*"`) is configured; CORS is then left to the upstream, except for
    /// Private Network Access (see
    /// [`apply_pna_to_upstream_preflight`](Self::apply_pna_to_upstream_preflight)).
    pub fn answers_preflights(&self) -> bool {
        self.allow_any_origin || !self.allowed_origins.is_empty()
    }

    /// The headers of the gateway's own `204` answer to a preflight.
    ///
    /// Always carries `Vary`. Only a granted origin gets
    /// `Access-Control-Allow-Origin`, `-Methods`, `-Headers`, `Max-Age`,
    /// `-Credentials` (echoed origins only, when enabled) and
    /// `Access-Control-Allow-Private-Network: true` (only when the preflight
    /// asked for it with exactly `true` and private network access is
    /// enabled).
    pub fn preflight_response_headers(&self, req: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(8);
        out.insert(VARY, PREFLIGHT_VARY);
        let grant = self.grant(req);
        if grant == Grant::Nothing {
            return out;
        }
        self.insert_origin_grant(grant, &mut out);
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allowed_methods.clone());
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allowed_headers.clone());
        out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age_secs));
        if self.private_network_granted(req) {
            out.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        }
        out
    }

    /// Applies the gateway's Private Network Access decision to a preflight
    /// answer that came from the upstream.
    ///
    /// When enabled and requested, `Access-Control-Allow-Private-Network:
    /// true` is set; otherwise any such header from the upstream is removed,
    /// so the upstream cannot open the private network on its own. The CORS
    /// origin decision itself stays with the upstream here. `Vary: Origin,
    /// Access-Control-Request-Private-Network` is appended (tokens already
    /// present are not repeated; an existing `Vary` is never replaced).
    pub fn apply_pna_to_upstream_preflight(&self, req: &HeaderMap, resp: &mut HeaderMap) {
        resp.remove(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK);
        if self.private_network_granted(req) {
            resp.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        }
        append_vary(resp, &["Origin", "Access-Control-Request-Private-Network"]);
    }

    /// Applies CORS to an ordinary (non-preflight) response.
    ///
    /// Does nothing unless the gateway governs CORS
    /// ([`answers_preflights`](Self::answers_preflights)). When it does, every
    /// `Access-Control-*` header of the upstream's is removed first, whether
    /// or not the request has an `Origin`, so only the gateway's policy
    /// grants anything (an upstream's `*` with credentials, cached from a
    /// request without `Origin`, would otherwise be replayed to any origin);
    /// `req` without `Origin` (an empty map will do) then:
    /// * a listed origin is echoed, with `Access-Control-Allow-Credentials:
    ///   true` when enabled;
    /// * otherwise, with any origin allowed, `*` is sent (also to requests
    ///   without `Origin`, so cached copies serve every origin alike), never
    ///   with credentials;
    /// * otherwise nothing is granted.
    ///
    /// `Vary: Origin` is appended whenever specific origins are configured,
    /// i.e. whenever the answer depends on `Origin`, including the responses
    /// that grant nothing, so a cache never serves one origin's answer to
    /// another (Fetch standard, "CORS protocol and HTTP caches").
    pub fn apply_to_response(&self, req: &HeaderMap, resp: &mut HeaderMap) {
        if !self.answers_preflights() {
            return;
        }
        remove_upstream_cors(resp);
        let grant = self.grant(req);
        self.insert_origin_grant(grant, resp);
        if self.has_specific_origins() {
            append_vary(resp, &["Origin"]);
        }
    }

    fn any_origin(&self) -> bool {
        self.allow_any_origin || self.allowed_origins.iter().any(|o| o == "*")
    }

    fn has_specific_origins(&self) -> bool {
        self.allowed_origins.iter().any(|o| o != "*")
    }

    /// Decides the origin grant. A listed origin is echoed; `null` (opaque
    /// origins such as sandboxed frames or `file:`) is never echoed, even if
    /// listed, because any page can produce it; a request with several
    /// `Origin` headers is not echoed either, since which one a browser meant
    /// is unknowable.
    fn grant(&self, req: &HeaderMap) -> Grant {
        let mut origins = req.get_all(ORIGIN).iter();
        if let (Some(value), None) = (origins.next(), origins.next()) {
            if let Ok(origin) = value.to_str() {
                let listed = !origin.is_empty()
                    && !origin.eq_ignore_ascii_case("null")
                    && self
                        .allowed_origins
                        .iter()
                        .any(|o| o != "*" && o.eq_ignore_ascii_case(origin));
                if listed {
                    return Grant::Echo(value.clone());
                }
            }
        }
        if self.any_origin() {
            Grant::AnyOrigin
        } else {
            Grant::Nothing
        }
    }

    fn insert_origin_grant(&self, grant: Grant, out: &mut HeaderMap) {
        match grant {
            Grant::Nothing => {}
            Grant::AnyOrigin => {
                out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
            }
            Grant::Echo(origin) => {
                out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                if self.allow_credentials {
                    out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
                }
            }
        }
    }

    /// PNA is granted only when enabled and the preflight asked for it with
    /// exactly `true`. For the gateway's own answer the caller additionally
    /// requires an origin grant.
    fn private_network_granted(&self, req: &HeaderMap) -> bool {
        self.allow_private_network
            && req
                .get(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.as_bytes() == b"true")
    }
}

/// Removes every `Access-Control-*` header, from one pass over the names
/// present (usually none) rather than a hashed removal per CORS header.
fn remove_upstream_cors(resp: &mut HeaderMap) {
    let upstream: Vec<HeaderName> = resp
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in upstream {
        resp.remove(name);
    }
}

/// Appends the `tokens` missing from the response's `Vary` as one more
/// `Vary` line. Existing lines are kept; `Vary: *` already covers everything.
fn append_vary(resp: &mut HeaderMap, tokens: &[&str]) {
    let present = |token: &str| {
        resp.get_all(VARY).iter().any(|line| {
            line.to_str().is_ok_and(|line| {
                line.split(',')
                    .map(str::trim)
                    .any(|t| t == "*" || t.eq_ignore_ascii_case(token))
            })
        })
    };
    let missing: Vec<&str> = tokens.iter().copied().filter(|t| !present(t)).collect();
    if missing.is_empty() {
        return;
    }
    // The tokens are header-name literals from this module, always valid.
    if let Ok(value) = HeaderValue::from_str(&missing.join(", ")) {
        resp.append(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "https://maps.example.com";

    fn policy(origins: &[&str]) -> CorsPolicy {
        CorsPolicy {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_any_origin: origins.contains(&"*"),
            allow_private_network: true,
            allowed_methods: HeaderValue::from_static("GET, POST, HEAD, OPTIONS"),
            allowed_headers: HeaderValue::from_static("Content-Type, Authorization"),
            max_age_secs: 600,
            allow_credentials: true,
        }
    }

    fn request(origin: Option<&str>, pna: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(origin) = origin {
            h.insert(ORIGIN, HeaderValue::from_str(origin).expect("origin"));
        }
        h.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        if let Some(pna) = pna {
            h.insert(
                ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK,
                HeaderValue::from_str(pna).expect("pna"),
            );
        }
        h
    }

    fn get<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
        h.get(name).map(|v| v.to_str().expect("ascii"))
    }

    fn vary_lines(h: &HeaderMap) -> Vec<&str> {
        h.get_all(VARY)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect()
    }

    fn has_grant_headers(h: &HeaderMap) -> bool {
        h.keys()
            .any(|k| k.as_str().starts_with("access-control-allow-") || k == ACCESS_CONTROL_MAX_AGE)
    }

    #[test]
    fn options_with_origin_and_request_method_is_a_preflight() {
        let h = request(Some(SITE), None);
        assert!(is_preflight(&Method::OPTIONS, &h));
        assert!(!is_preflight(&Method::GET, &h));
        assert!(!is_preflight(&Method::OPTIONS, &request(None, None)));
        let mut no_method = h.clone();
        no_method.remove(ACCESS_CONTROL_REQUEST_METHOD);
        assert!(!is_preflight(&Method::OPTIONS, &no_method));
    }

    #[test]
    fn gateway_answers_preflights_only_when_origins_are_configured() {
        assert!(!policy(&[]).answers_preflights());
        assert!(policy(&["*"]).answers_preflights());
        assert!(policy(&[SITE]).answers_preflights());
    }

    #[test]
    fn listed_origin_gets_a_full_preflight_grant() {
        let h = policy(&[SITE]).preflight_response_headers(&request(Some(SITE), None));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some(SITE));
        assert_eq!(
            get(&h, &ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET, POST, HEAD, OPTIONS")
        );
        assert_eq!(
            get(&h, &ACCESS_CONTROL_ALLOW_HEADERS),
            Some("Content-Type, Authorization")
        );
        assert_eq!(get(&h, &ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(
            get(&h, &VARY),
            Some(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, \
                 Access-Control-Request-Private-Network"
            )
        );
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK), None);
    }

    #[test]
    fn origin_match_ignores_ascii_case_and_echoes_the_request_value() {
        let h = policy(&["HTTPS://Maps.Example.com"])
            .preflight_response_headers(&request(Some(SITE), None));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some(SITE));
    }

    #[test]
    fn origin_match_is_exact_not_a_prefix_or_suffix() {
        let p = policy(&[SITE]);
        for origin in [
            "https://maps.example.com.evil.com",
            "https://evilmaps.example.com",
            "http://maps.example.com",
            "https://maps.example.com:8443",
        ] {
            let h = p.preflight_response_headers(&request(Some(origin), None));
            assert!(!has_grant_headers(&h), "{origin}");
        }
    }

    #[test]
    fn unlisted_origin_gets_no_grant_headers_but_still_vary() {
        let h = policy(&[SITE])
            .preflight_response_headers(&request(Some("https://evil.com"), Some("true")));
        assert!(!has_grant_headers(&h));
        assert!(h.contains_key(VARY));
    }

    #[test]
    fn null_origin_is_never_echoed_even_when_listed() {
        let h = policy(&["null"]).preflight_response_headers(&request(Some("null"), None));
        assert!(!has_grant_headers(&h));
    }

    #[test]
    fn several_origin_headers_are_not_echoed() {
        let mut req = request(Some(SITE), None);
        req.append(ORIGIN, HeaderValue::from_static("https://evil.com"));
        let h = policy(&[SITE]).preflight_response_headers(&req);
        assert!(!has_grant_headers(&h));
    }

    #[test]
    fn any_origin_gets_a_star_and_never_credentials() {
        let h = policy(&["*"]).preflight_response_headers(&request(Some("https://x.org"), None));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert_eq!(
            get(&h, &ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET, POST, HEAD, OPTIONS")
        );
    }

    #[test]
    fn listed_origin_is_echoed_even_when_any_origin_is_allowed() {
        let p = policy(&["*", SITE]);
        let h = p.preflight_response_headers(&request(Some(SITE), None));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some(SITE));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        let h = p.preflight_response_headers(&request(Some("https://x.org"), None));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    }

    #[test]
    fn credentials_are_omitted_when_disabled() {
        let mut p = policy(&[SITE]);
        p.allow_credentials = false;
        let h = p.preflight_response_headers(&request(Some(SITE), None));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some(SITE));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    }

    #[test]
    fn private_network_is_granted_when_requested_enabled_and_origin_granted() {
        let h = policy(&[SITE]).preflight_response_headers(&request(Some(SITE), Some("true")));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK), Some("true"));
    }

    #[test]
    fn private_network_is_not_granted_when_disabled() {
        let mut p = policy(&[SITE]);
        p.allow_private_network = false;
        let h = p.preflight_response_headers(&request(Some(SITE), Some("true")));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK), None);
    }

    #[test]
    fn private_network_is_not_granted_when_not_requested_with_true() {
        let p = policy(&[SITE]);
        for pna in [None, Some("false"), Some("TRUE"), Some("")] {
            let h = p.preflight_response_headers(&request(Some(SITE), pna));
            assert_eq!(
                get(&h, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK),
                None,
                "{pna:?}"
            );
        }
    }

    #[test]
    fn private_network_is_not_granted_to_an_unlisted_origin() {
        let h = policy(&[SITE])
            .preflight_response_headers(&request(Some("https://evil.com"), Some("true")));
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK), None);
    }

    #[test]
    fn upstream_preflight_gets_private_network_when_enabled_and_requested() {
        let mut resp = HeaderMap::new();
        policy(&[]).apply_pna_to_upstream_preflight(&request(Some(SITE), Some("true")), &mut resp);
        assert_eq!(
            get(&resp, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK),
            Some("true")
        );
    }

    #[test]
    fn upstream_private_network_grant_is_removed_when_disabled() {
        let mut p = policy(&[]);
        p.allow_private_network = false;
        let mut resp = HeaderMap::new();
        resp.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        p.apply_pna_to_upstream_preflight(&request(Some(SITE), Some("true")), &mut resp);
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK), None);
    }

    #[test]
    fn upstream_private_network_grant_is_removed_when_not_requested() {
        let mut resp = HeaderMap::new();
        resp.append(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        resp.append(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        policy(&[]).apply_pna_to_upstream_preflight(&request(Some(SITE), None), &mut resp);
        assert!(!resp.contains_key(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK));
    }

    #[test]
    fn upstream_preflight_vary_is_appended_not_replaced() {
        let mut resp = HeaderMap::new();
        resp.insert(VARY, HeaderValue::from_static("Accept-Encoding, origin"));
        policy(&[]).apply_pna_to_upstream_preflight(&request(Some(SITE), None), &mut resp);
        assert_eq!(
            vary_lines(&resp),
            [
                "Accept-Encoding, origin",
                "Access-Control-Request-Private-Network"
            ]
        );
    }

    #[test]
    fn upstream_preflight_without_vary_gets_both_tokens() {
        let mut resp = HeaderMap::new();
        policy(&[]).apply_pna_to_upstream_preflight(&request(Some(SITE), None), &mut resp);
        assert_eq!(
            vary_lines(&resp),
            ["Origin, Access-Control-Request-Private-Network"]
        );
    }

    #[test]
    fn simple_response_to_a_listed_origin_is_echoed_with_credentials_and_vary() {
        let mut resp = HeaderMap::new();
        resp.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        policy(&[SITE]).apply_to_response(&request(Some(SITE), None), &mut resp);
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN), Some(SITE));
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(vary_lines(&resp), ["Accept-Encoding", "Origin"]);
    }

    #[test]
    fn simple_response_with_any_origin_gets_a_star_without_credentials() {
        let mut resp = HeaderMap::new();
        policy(&["*"]).apply_to_response(&request(Some("https://x.org"), None), &mut resp);
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert!(vary_lines(&resp).is_empty());
    }

    #[test]
    fn star_and_credentials_are_never_combined_even_if_misconfigured() {
        let mut p = policy(&["*"]);
        p.allow_credentials = true;
        let mut resp = HeaderMap::new();
        resp.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        p.apply_to_response(&request(Some(SITE), None), &mut resp);
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    }

    #[test]
    fn simple_response_to_an_unlisted_origin_loses_the_upstream_grant() {
        let mut resp = HeaderMap::new();
        resp.insert(ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
        resp.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        policy(&[SITE]).apply_to_response(&request(Some("https://evil.com"), None), &mut resp);
        assert!(!resp.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(!resp.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
        assert_eq!(vary_lines(&resp), ["Origin"]);
    }

    #[test]
    fn simple_response_without_origin_loses_every_upstream_cors_header() {
        let mut resp = HeaderMap::new();
        resp.insert(ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
        resp.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        resp.insert("access-control-expose-headers", STAR);
        resp.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        resp.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        policy(&[SITE]).apply_to_response(&HeaderMap::new(), &mut resp);
        assert_eq!(resp.keys().collect::<Vec<_>>(), [&VARY]);
        assert_eq!(vary_lines(&resp), ["Accept-Encoding", "Origin"]);
    }

    #[test]
    fn simple_response_vary_origin_is_not_repeated() {
        let mut resp = HeaderMap::new();
        resp.insert(VARY, HeaderValue::from_static("Origin"));
        policy(&[SITE]).apply_to_response(&request(Some(SITE), None), &mut resp);
        assert_eq!(vary_lines(&resp), ["Origin"]);
    }

    #[test]
    fn simple_response_is_untouched_when_the_gateway_does_not_govern_cors() {
        let mut resp = HeaderMap::new();
        resp.insert(ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
        policy(&[]).apply_to_response(&request(Some(SITE), None), &mut resp);
        assert_eq!(get(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert!(vary_lines(&resp).is_empty());
    }
}
