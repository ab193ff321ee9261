//! One request, top to bottom, in the order of SPEC §3:
//! canonical path -> client address -> listener rule -> preflight ->
//! admin gate -> access rules -> credentials in the URL -> rate limits ->
//! body size limit -> forward over HTTPS -> response headers -> log and
//! metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::body::ResponseBody;
use crate::client_cert;
use crate::conn::{ConnInfo, ListenerKind};
use crate::error::{Refusal, Route};
use crate::headers;
use crate::host::HostPort;
use crate::live::Live;
use crate::observe::access::{self, RequestRecord};
use crate::observe::metrics;
use crate::policy::prefixes::FoldedPath;
use crate::policy::{
    admin::AdminDecision, client_ip::client_ip, cors, path::canonical_path, query::check_query,
    redirect, sni_host,
};
use crate::request_body::{LimitWatch, RequestBody};
use crate::tunnel;
use crate::upstream::client::{Lease, UpstreamClient, UpstreamProtocol};
use crate::upstream::error::{ProtocolError, UpstreamError};

/// Serves one request on a gateway listener. Never fails: every refusal and
/// upstream failure becomes a response.
pub async fn handle(
    live: Arc<Live>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let mut record = RequestRecord::new(
        conn.clone(),
        req.method().clone(),
        req.body().is_end_stream(),
        started,
    );
    let outcome = route(&live, &conn, req, &mut record).await;
    let mut response = match outcome {
        Ok(r) => r,
        Err(refusal) => {
            record.route = refusal.route();
            refusal.response()
        }
    };
    finish_headers(&live, &conn, response.headers_mut());
    record.status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.with_record(record))
}

async fn route(
    live: &Live,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    record: &mut RequestRecord,
) -> Result<Response<ResponseBody>, Refusal> {
    let policy = &live.policy;
    // A gateway to one GIS server is no tunnel to anywhere (RFC 9110 §9.3.6).
    if req.method() == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    if record.fragment {
        return Err(Refusal::Fragment);
    }
    // HTTP/1.1 heads are held to the limit by hyper, as they arrive.
    if req.version() == Version::HTTP_2
        && header_list_size(&req) > live.settings.limits.max_header_bytes
    {
        return Err(Refusal::HeadersTooLarge);
    }
    // A body framed in a way the upstream may read differently is not
    // forwarded (RFC 9112 §6.1). A body of known length (none, or by
    // Content-Length) was not framed by Transfer-Encoding: hyper would
    // have taken its chunks instead, so the header lookup is spared.
    if req.body().size_hint().exact().is_none() {
        headers::request_transfer_coding(req.headers()).map_err(Refusal::TransferCoding)?;
    }
    let path = canonical_path(req.uri().path()).map_err(Refusal::BadPath)?;
    // The query goes upstream as received, so it must be one the upstream
    // reads as the gateway does.
    if let Some(query) = req.uri().query() {
        check_query(query).map_err(Refusal::BadQuery)?;
    }
    if access::enabled() {
        record.path = Some(path.clone());
        record.query = req.uri().query().map(str::to_string);
    }
    let client = client_ip(
        conn.peer.ip(),
        req.headers().get_all(&headers::X_FORWARDED_FOR).iter(),
        &policy.trusted_proxies,
    );
    record.client = client;
    let authority = request_authority(&req)?;
    sni_host(live, conn, &authority)?;

    if conn.kind == ListenerKind::Http && !policy.protocol.http_serves() {
        record.route = Route::Redirect;
        return redirect_to_https(live, &authority, &path, req.uri().query());
    }

    if cors::is_preflight(req.method(), req.headers()) && policy.cors.answers_preflights() {
        record.route = Route::Preflight;
        return Ok(answer_preflight(live, req.headers()));
    }

    admin_gate(live, &path, client, conn)?;
    // Case folded once for the rules below, not once per rule.
    let folded = FoldedPath::new(&path);
    access_rules(live, &req, &folded, client)?;
    credentials_in_url(live, &req, &folded, record)?;
    rate_limits(live, &req, &folded, client)?;
    let body_limit = body_limit(live, &req, &folded)?;

    record.route = Route::Proxy;
    let target = Target {
        path: &path,
        authority: &authority,
        body_limit,
    };
    forward(live, conn, req, target, record)
        .await
        .map_err(|refusal| counted(&live.upstream, refusal))
}

/// An upstream failure is logged and counted by kind, here and nowhere
/// else, on its way to become the response.
fn counted(upstream: &UpstreamClient, refusal: Refusal) -> Refusal {
    if let Refusal::Upstream(e) = &refusal {
        match e.kind() {
            Some(kind) => {
                metrics::upstream_error(kind.as_str());
                tracing::warn!(upstream = %upstream.settings.url(), kind = kind.as_str(), "{e}");
            }
            None => tracing::debug!("{e}"),
        }
    }
    refusal
}

/// With `tls.strict_sni_host`, a request for a host that the connection's
/// certificate does not cover is misdirected (`policy::sni_host`).
fn sni_host(live: &Live, conn: &ConnInfo, authority: &HostPort) -> Result<(), Refusal> {
    let strict = live
        .settings
        .tls
        .as_ref()
        .is_some_and(|t| t.strict_sni_host);
    if !strict {
        return Ok(());
    }
    let covered = match &conn.certificate {
        Some(cert) => sni_host::host_covered(cert, authority),
        // Plain HTTP has no certificate to hold a host to; a TLS
        // connection whose certificate was not noted fails closed.
        None => conn.tls_version.is_none(),
    };
    match covered {
        true => Ok(()),
        false => Err(Refusal::Misdirected),
    }
}

/// An HTTP/2 request's header list size as SETTINGS_MAX_HEADER_LIST_SIZE
/// counts it (RFC 9113 §6.5.2): each field's name and value plus 32,
/// pseudo-header fields included.
fn header_list_size(req: &Request<Incoming>) -> usize {
    const PER_FIELD: usize = 32;
    let uri = req.uri();
    let pseudo = [
        (":method", req.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo.iter().map(|(n, v)| n.len() + v + PER_FIELD).sum();
    req.headers().iter().fold(pseudo, |sum, (name, value)| {
        sum + name.as_str().len() + value.len() + PER_FIELD
    })
}

/// The host the client asked for: the absolute-form or HTTP/2 authority,
/// else the Host header (RFC 9112 §3.2.2). Missing or malformed: 400, and
/// so is more than one Host line (RFC 9112 §3.2): which one the client
/// meant is unknowable.
fn request_authority(req: &Request<Incoming>) -> Result<HostPort, Refusal> {
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(Refusal::BadHost);
    }
    let parsed = match req.uri().authority() {
        Some(a) => HostPort::parse(a.as_str()),
        None => HostPort::from_header(req.headers().get(header::HOST).ok_or(Refusal::BadHost)?),
    };
    parsed.map_err(|_| Refusal::BadHost)
}

fn redirect_to_https(
    live: &Live,
    authority: &HostPort,
    path: &str,
    query: Option<&str>,
) -> Result<Response<ResponseBody>, Refusal> {
    let policy = &live.policy;
    let location = redirect::https_location(
        policy.public_host.as_ref(),
        Some(authority),
        policy.public_https_port,
        path,
        query,
    )
    .map_err(|_| Refusal::BadHost)?;
    let location = HeaderValue::from_str(&location).map_err(|_| Refusal::BadHost)?;
    Ok(Response::builder()
        .status(policy.redirect_status)
        .header(header::LOCATION, location)
        .header(header::CONTENT_LENGTH, "0")
        .body(ResponseBody::empty())
        .expect("static redirect response"))
}

fn answer_preflight(live: &Live, req_headers: &HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(ResponseBody::empty())
        .expect("static preflight response");
    *response.headers_mut() = live.policy.cors.preflight_response_headers(req_headers);
    response
}

/// Fail closed: an admin path from an address outside the allowlist, from
/// an unknown client, or with direct access off, is refused.
/// An allowed address must also bring a verified client certificate when
/// `admin.require_client_cert` says so.
fn admin_gate(
    live: &Live,
    path: &str,
    client: Option<IpAddr>,
    conn: &ConnInfo,
) -> Result<(), Refusal> {
    match live.policy.admin.decide(path, client) {
        AdminDecision::Denied => Err(Refusal::AdminDenied),
        AdminDecision::NotAdmin => Ok(()),
        AdminDecision::Allowed => live
            .policy
            .admin_cert
            .check(conn.client_cert.as_deref())
            .map_err(Refusal::AdminCertificate),
    }
}

/// `[[access]]`: the first rule that applies decides; 403 as for admin.
fn access_rules(
    live: &Live,
    req: &Request<Incoming>,
    path: &FoldedPath<'_>,
    client: Option<IpAddr>,
) -> Result<(), Refusal> {
    let decided = live
        .policy
        .access
        .decide(path, req.method(), req.uri().query(), client);
    decided.map_err(|denied| {
        metrics::access_denied(denied.rule);
        Refusal::AccessDenied
    })
}

/// `tokens.refuse_get_credentials`: a sign-in by GET with the password in
/// the query is refused, and the query is not logged (its values are
/// redacted anyway; this one is not kept at all).
fn credentials_in_url(
    live: &Live,
    req: &Request<Incoming>,
    path: &FoldedPath<'_>,
    record: &mut RequestRecord,
) -> Result<(), Refusal> {
    let refused = live
        .policy
        .credentials_in_url
        .refused(req.method(), path, req.uri().query());
    if refused {
        record.query = None;
        metrics::get_credentials_refused();
        return Err(Refusal::CredentialsInUrl);
    }
    Ok(())
}

/// `[[rate_limit]]`: 429 with Retry-After once a client is past a rule.
fn rate_limits(
    live: &Live,
    req: &Request<Incoming>,
    path: &FoldedPath<'_>,
    client: Option<IpAddr>,
) -> Result<(), Refusal> {
    let checked = live.policy.rate_limits.check(path, req.method(), client);
    checked.map_err(|limited| {
        metrics::rate_limited(limited.rule);
        Refusal::RateLimited {
            retry_after: limited.retry_after,
        }
    })
}

/// The request's body size limit. A declared length over it is refused
/// here, before the upstream is contacted; a streamed body is counted on
/// its way (`RequestBody`).
fn body_limit(
    live: &Live,
    req: &Request<Incoming>,
    path: &FoldedPath<'_>,
) -> Result<Option<u64>, Refusal> {
    let Some(limit) = live.policy.body_limits.limit_for(path) else {
        return Ok(None);
    };
    match req.body().size_hint().exact() {
        Some(declared) if declared > limit => {
            metrics::body_too_large("declared");
            Err(Refusal::BodyTooLarge)
        }
        // A body of known length within the limit needs no counting.
        Some(_) => Ok(None),
        None => Ok(Some(limit)),
    }
}

/// Where the request goes, as the policy judged it.
struct Target<'a> {
    /// The canonical path.
    path: &'a str,
    authority: &'a HostPort,
    /// Bytes the body may carry on its way; `None`: not counted.
    body_limit: Option<u64>,
}

async fn forward(
    live: &Live,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    target: Target<'_>,
    record: &mut RequestRecord,
) -> Result<Response<ResponseBody>, Refusal> {
    let Target {
        path,
        authority,
        body_limit,
    } = target;
    let upstream = &live.upstream;
    let wants_upgrade = headers::websocket_requested(req.headers(), req.method(), req.version());
    // A WebSocket upgrade needs HTTP/1.1 (RFC 6455) whatever else is spoken.
    let protocol = match wants_upgrade {
        true => UpstreamProtocol::Http1,
        false => upstream.protocol().await,
    };
    let request = UpstreamRequest {
        path,
        authority,
        protocol,
        wants_upgrade,
        body_limit,
    };
    let (out, client) = upstream_request(live, conn, req, request)?;
    let (mut response, mut lease) = send_upstream(upstream, protocol, out)
        .await
        // A body cut at its limit fails the exchange: that is the answer.
        .map_err(|e| match client.body_limit.passed() {
            true => body_over_limit(),
            false => Refusal::Upstream(e),
        })?;
    record.upstream_status = Some(response.status().as_u16());
    if !upstream_framing(&mut response).map_err(Refusal::Upstream)? {
        // Closed once this response is read, never pooled.
        lease.keep_no_longer();
    }
    metrics::upstream_response(response.status());
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    // A 101 is spliced only as the answer to a WebSocket handshake, naming
    // websocket: any other would turn the connection into a raw tunnel
    // past the per-request policy. (The lease is dropped: closed.)
    if switching && !(wants_upgrade && headers::names_websocket(response.headers())) {
        return Err(Refusal::Upstream(ProtocolError::UnaskedSwitch.into()));
    }
    upstream_response_headers(live, conn, authority, &client, &mut response);
    if switching {
        let client_side = client.upgrade.ok_or(Refusal::NoUpgrade)?;
        conn.activity.tunnel_opened();
        let idle = conn.activity.idle_timeout();
        let conn = conn.clone();
        let closed = move || conn.activity.tunnel_closed();
        tunnel::splice(idle, closed, client_side, hyper::upgrade::on(&mut response));
        // The upgraded connection is the WebSocket's now, not the pool's.
        return Ok(response.map(|b| ResponseBody::upstream(b, None)));
    }
    Ok(response.map(|b| ResponseBody::upstream(b, Some(lease))))
}

fn body_over_limit() -> Refusal {
    metrics::body_too_large("streamed");
    Refusal::BodyTooLarge
}

/// RFC 9112 §6.3: a response with Transfer-Encoding is framed by it, never
/// by a Content-Length beside it, which is removed: forwarded, it would
/// tell the client a length the body does not have. A response carrying
/// both is a broken server or a smuggling attempt, so its connection is not
/// used again (`false`). A coding other than one `chunked` cannot be
/// forwarded as it came (hyper has decoded the chunks): 502.
fn upstream_framing(response: &mut Response<Incoming>) -> Result<bool, UpstreamError> {
    // Framed by its length alone (hyper would have taken the chunks of a
    // Transfer-Encoding instead): nothing to look up.
    if response.body().size_hint().exact().is_some() {
        return Ok(true);
    }
    let headers = response.headers_mut();
    match headers::transfer_coding(headers) {
        headers::TransferCoding::Absent => Ok(true),
        headers::TransferCoding::Chunked => Ok(headers.remove(header::CONTENT_LENGTH).is_none()),
        _ => Err(ProtocolError::TransferCoding.into()),
    }
}

/// What the response step still needs from the client's request.
struct ClientSide {
    is_preflight: bool,
    /// The request headers, kept only when CORS rules will read them.
    cors_headers: Option<HeaderMap>,
    wants_upgrade: bool,
    /// The client's side of a WebSocket upgrade, resolved once we answer 101.
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// Whether the request body passed its size limit on its way.
    body_limit: LimitWatch,
}

/// Where and how a request goes upstream.
struct UpstreamRequest<'a> {
    /// The canonical path the policy judged.
    path: &'a str,
    authority: &'a HostPort,
    protocol: UpstreamProtocol,
    wants_upgrade: bool,
    /// Bytes the body may carry on its way; `None`: not counted.
    body_limit: Option<u64>,
}

/// The request the upstream receives: the canonical path, hop-by-hop and
/// path-override headers removed, X-Forwarded-* set, and the client's host
/// as Host (HTTP/1.1) or `:authority` (HTTP/2, RFC 9113 §8.3.1).
fn upstream_request(
    live: &Live,
    conn: &ConnInfo,
    req: Request<Incoming>,
    to: UpstreamRequest<'_>,
) -> Result<(Request<RequestBody>, ClientSide), Refusal> {
    let UpstreamRequest {
        path,
        authority,
        protocol,
        wants_upgrade,
        body_limit,
    } = to;
    let (mut parts, body) = req.into_parts();
    let is_preflight = cors::is_preflight(&parts.method, &parts.headers);
    // Kept only when a CORS rule will read them: every preflight (PNA), and
    // requests with an Origin when the gateway grants origins itself.
    let cors_rules_apply = is_preflight
        || (live.policy.cors.answers_preflights() && parts.headers.contains_key(header::ORIGIN));
    let cors_headers = cors_rules_apply.then(|| parts.headers.clone());
    let upgrade = wants_upgrade
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();

    let mut headers = std::mem::take(&mut parts.headers);
    headers::remove_hop_by_hop(&mut headers, wants_upgrade);
    headers::remove_path_overrides(&mut headers);
    headers::remove_client_addresses(&mut headers);
    client_cert::forward_headers(
        &mut headers,
        live.policy.forward_cert_header.as_ref(),
        conn.client_cert.as_deref(),
    );
    let peer = conn.peer.ip().to_canonical();
    let peer_trusted = live
        .policy
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&peer));
    headers::set_forwarded(
        &mut headers,
        &conn.forwarded_for,
        peer_trusted,
        conn.kind.scheme(),
        authority,
    );

    let (body, body_limit) = RequestBody::new(body, body_limit);
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    match protocol {
        UpstreamProtocol::Http1 => {
            // Origin-form on the wire: the pool's connection is already to
            // the upstream.
            *out.uri_mut() = origin_form(path, parts.uri.query())?;
            *out.version_mut() = Version::HTTP_11;
            // Host kept: the GIS server builds its URLs from it.
            headers.insert(header::HOST, authority.header_value().clone());
        }
        UpstreamProtocol::Http2 => {
            *out.uri_mut() = absolute_form(authority, path, parts.uri.query())?;
            *out.version_mut() = Version::HTTP_2;
            headers.remove(header::HOST);
        }
    }
    *out.headers_mut() = headers;
    let client = ClientSide {
        is_preflight,
        cors_headers,
        wants_upgrade,
        upgrade,
        body_limit,
    };
    Ok((out, client))
}

/// Sends within `upstream.response_timeout`. A response comes with what
/// it holds of the upstream: its pooled connection, or its HTTP/2 stream.
async fn send_upstream(
    upstream: &UpstreamClient,
    protocol: UpstreamProtocol,
    out: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), UpstreamError> {
    let started = Instant::now();
    let limit = upstream.settings.response_timeout;
    let result = tokio::time::timeout(limit, upstream.send(protocol, out)).await;
    metrics::upstream_duration(started.elapsed());
    result.unwrap_or(Err(UpstreamError::ResponseTimeout(limit)))
}

/// The upstream's headers on their way back: hop-by-hop removed (the
/// upgrade pair kept on a 101), `Location` turned to the public origin, and
/// CORS / Private Network Access per the gateway's policy.
fn upstream_response_headers(
    live: &Live,
    conn: &ConnInfo,
    authority: &HostPort,
    client: &ClientSide,
    response: &mut Response<Incoming>,
) {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers::remove_hop_by_hop(headers, switching && client.wants_upgrade);
    rewrite_location(live, conn, authority, headers);
    let cors = &live.policy.cors;
    match &client.cors_headers {
        Some(req_headers) if client.is_preflight => {
            cors.apply_pna_to_upstream_preflight(req_headers, headers)
        }
        Some(req_headers) => cors.apply_to_response(req_headers, headers),
        // No Origin: the gateway's policy still replaces the upstream's
        // (an empty map allocates nothing).
        None => cors.apply_to_response(&HeaderMap::new(), headers),
    }
}

fn origin_form(path: &str, query: Option<&str>) -> Result<Uri, Refusal> {
    Ok(Uri::from(path_and_query(path, query)?))
}

/// `https://` + the client's host + the canonical path: HTTP/2 carries the
/// host as `:authority`.
fn absolute_form(authority: &HostPort, path: &str, query: Option<&str>) -> Result<Uri, Refusal> {
    let host = Authority::try_from(authority.as_str()).map_err(|_| Refusal::BadHost)?;
    Uri::builder()
        .scheme(Scheme::HTTPS)
        .authority(host)
        .path_and_query(path_and_query(path, query)?)
        .build()
        .map_err(|_| Refusal::UnforwardableTarget)
}

fn path_and_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, Refusal> {
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    PathAndQuery::from_maybe_shared(Bytes::from(pq)).map_err(|_| Refusal::UnforwardableTarget)
}

/// An upstream `Location` pointing at the upstream's own origin is turned
/// into the public origin the client used, as nginx's `proxy_redirect
/// default` does, so redirects never leak the internal address.
fn rewrite_location(live: &Live, conn: &ConnInfo, authority: &HostPort, headers: &mut HeaderMap) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    for origin in &live.policy.upstream_origins {
        let Some(prefix) = location.get(..origin.len()) else {
            continue;
        };
        let rest = &location[origin.len()..];
        if prefix.eq_ignore_ascii_case(origin)
            && (rest.is_empty() || rest.starts_with(['/', '?', '#']))
        {
            let public = format!("{}://{}{}", conn.kind.scheme(), authority, rest);
            if let Ok(v) = HeaderValue::from_str(&public) {
                headers.insert(header::LOCATION, v);
            }
            return;
        }
    }
}

/// Headers every response gets, gateway-made or proxied: HSTS on HTTPS
/// only (RFC 6797 §7.2: never over plain HTTP), replacing the upstream's.
fn finish_headers(live: &Live, conn: &ConnInfo, headers: &mut HeaderMap) {
    headers.remove(header::STRICT_TRANSPORT_SECURITY);
    if conn.kind == ListenerKind::Https {
        if let Some(hsts) = &live.policy.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_that_cannot_be_rebuilt_is_not_called_bad_percent_encoding() {
        let refused = path_and_query("/a b", None).unwrap_err();
        assert!(
            matches!(refused, Refusal::UnforwardableTarget),
            "{refused:?}"
        );
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn an_absolute_form_target_keeps_the_clients_host() {
        let host = HostPort::parse("gis.example.com:6443").unwrap();
        let uri = absolute_form(&host, "/arcgis/rest", Some("f=json")).unwrap();
        assert_eq!(uri, "https://gis.example.com:6443/arcgis/rest?f=json");
    }
}
