//! CORS origin matching and the Private Network Access grant.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_METHOD,
    ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::policy::cors::{
    CorsPolicy, ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK,
};

use super::input;

/// Input: a flags byte (bits: allow any origin, allow private network,
/// allow credentials, the preflight asks for private network access, the
/// request carries its `Origin` twice), then the lines: allowed origins
/// (comma-separated, as in the config), the request's `Origin`, the value
/// of its `Access-Control-Request-Private-Network`, and upstream response
/// headers `name: value`, one a line. Checked, against a model of the
/// README's rules (a listed origin, compared ASCII case-insensitively, is
/// echoed byte for byte; `null`, an empty or a doubled `Origin` never is;
/// `*` otherwise when any origin is allowed):
/// - the gateway's preflight answer always has `Vary`; grants exactly the
///   model's origin; credentials only with an echoed origin, never with
///   `*`; private network only with a grant, when enabled and asked with
///   exactly `true`;
/// - on an ordinary response, when origins are configured, no upstream
///   `Access-Control-*` header survives: only the model's grant is there;
///   without any, the response is left as it was;
/// - on the upstream's preflight answer, `Access-Control-Allow-Private-
///   Network` is there exactly when enabled and asked for.
pub fn cors_origin(data: &[u8]) {
    let (flags, rest) = input::flags(data);
    let [listed, origin, pna, upstream] =
        <[&[u8]; 4]>::try_from(input::fields(rest, 4)).expect("4 fields");
    let policy = CorsPolicy {
        allowed_origins: input::text(listed)
            .split(',')
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect(),
        allow_any_origin: flags & 1 != 0,
        allow_private_network: flags & 2 != 0,
        allowed_methods: HeaderValue::from_static("GET, POST"),
        allowed_headers: HeaderValue::from_static("Content-Type"),
        max_age_secs: 600,
        allow_credentials: flags & 4 != 0,
    };
    let Ok(origin) = HeaderValue::from_bytes(origin) else {
        return;
    };
    let mut req = HeaderMap::new();
    req.append(ORIGIN, origin.clone());
    if flags & 16 != 0 {
        req.append(ORIGIN, origin.clone());
    }
    req.insert(
        ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_static("POST"),
    );
    if flags & 8 != 0 {
        let Ok(pna) = HeaderValue::from_bytes(pna) else {
            return;
        };
        req.insert(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, pna);
    }
    let grant = model_grant(&policy, &req);
    let pna_asked = policy.allow_private_network
        && req
            .get(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK)
            .is_some_and(|v| v == "true");

    let answer = policy.preflight_response_headers(&req);
    assert!(answer.contains_key(VARY));
    assert_grant(&policy, &answer, grant.as_ref());
    assert_eq!(
        answer.contains_key(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK),
        grant.is_some() && pna_asked
    );

    let upstream = upstream_headers(upstream);
    let mut response = upstream.clone();
    policy.apply_to_response(&req, &mut response);
    if policy.answers_preflights() {
        let cors: Vec<&HeaderName> = response
            .keys()
            .filter(|n| n.as_str().starts_with("access-control-"))
            .collect();
        assert!(
            cors.iter()
                .all(|n| **n == ACCESS_CONTROL_ALLOW_ORIGIN
                    || **n == ACCESS_CONTROL_ALLOW_CREDENTIALS),
            "{cors:?} left"
        );
        assert_grant(&policy, &response, grant.as_ref());
    } else {
        assert_eq!(response, upstream);
    }

    let mut upstream_preflight = upstream;
    policy.apply_pna_to_upstream_preflight(&req, &mut upstream_preflight);
    let pna: Vec<_> = upstream_preflight
        .get_all(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK)
        .iter()
        .collect();
    assert_eq!(pna, if pna_asked { vec!["true"] } else { vec![] });
}

/// What the README's rules grant: `Some(value of Access-Control-Allow-Origin)`.
fn model_grant(policy: &CorsPolicy, req: &HeaderMap) -> Option<HeaderValue> {
    let origins: Vec<&HeaderValue> = req.get_all(ORIGIN).iter().collect();
    if let [origin] = origins[..] {
        let text = origin.to_str().unwrap_or("");
        let listed = policy
            .allowed_origins
            .iter()
            .any(|o| o != "*" && o.eq_ignore_ascii_case(text));
        if listed && !text.is_empty() && !text.eq_ignore_ascii_case("null") {
            return Some(origin.clone());
        }
    }
    let any = policy.allow_any_origin || policy.allowed_origins.iter().any(|o| o == "*");
    any.then(|| HeaderValue::from_static("*"))
}

fn assert_grant(policy: &CorsPolicy, headers: &HeaderMap, grant: Option<&HeaderValue>) {
    let origins: Vec<&HeaderValue> = headers
        .get_all(ACCESS_CONTROL_ALLOW_ORIGIN)
        .iter()
        .collect();
    assert_eq!(origins, grant.into_iter().collect::<Vec<_>>());
    let credentials = headers.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS);
    assert_eq!(
        credentials,
        policy.allow_credentials && grant.is_some_and(|g| g != "*")
    );
}

/// `name: value` lines; lines that are no valid header are left out.
fn upstream_headers(lines: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    headers
}
