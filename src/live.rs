//! The running state: settings, TLS config, upstream client and policy,
//! built completely off the request path and published with one atomic swap.
//! A request loads one snapshot and uses it from start to end.

use std::sync::Arc;

use http::HeaderValue;
use ipnet::IpNet;

use crate::config::{ConfigErrors, Protocol, Settings};
use crate::host::HostPort;
use crate::policy::access::AccessRules;
use crate::policy::admin::AdminGate;
use crate::policy::body_limit::BodyLimits;
use crate::policy::client_cert::AdminCertPolicy;
use crate::policy::cors::CorsPolicy;
use crate::policy::rate_limit::RateLimits;
use crate::policy::tokens::CredentialsInUrl;
use crate::tls::server::{self, LoadedCert, ServerTls, TlsSessions};
use crate::upstream::client::UpstreamClient;

pub struct Live {
    pub settings: Arc<Settings>,
    pub tls: Option<ServerTls>,
    pub upstream: Arc<UpstreamClient>,
    pub policy: Policy,
}

/// The HTTP policy, as plain data derived from settings once.
pub struct Policy {
    pub protocol: Protocol,
    pub hsts: Option<HeaderValue>,
    pub admin: AdminGate,
    pub admin_cert: AdminCertPolicy,
    /// `tls.client_auth.forward_header`.
    pub forward_cert_header: Option<http::HeaderName>,
    pub cors: CorsPolicy,
    pub trusted_proxies: Vec<IpNet>,
    pub redirect_status: http::StatusCode,
    pub public_host: Option<HostPort>,
    pub public_https_port: u16,
    /// `https://host:port` of the upstream, and the same without `:443`,
    /// as upstream `Location` headers may spell it.
    pub upstream_origins: Vec<String>,
    /// `[[access]]`, judged after the admin gate.
    pub access: AccessRules,
    /// `tokens.refuse_get_credentials`.
    pub credentials_in_url: CredentialsInUrl,
    /// `[[rate_limit]]`; an unchanged rule keeps its clients' buckets
    /// across a reload.
    pub rate_limits: RateLimits,
    /// `[[body_limit]]` and `limits.max_body_bytes`.
    pub body_limits: BodyLimits,
}

impl Live {
    /// Builds a whole new state. `previous` lets an unchanged upstream keep
    /// its warm connection pool across a reload.
    pub fn build(
        settings: Settings,
        sessions: &TlsSessions,
        previous: Option<&Live>,
    ) -> Result<Live, ConfigErrors> {
        let tls = match &settings.tls {
            Some(t) => Some(
                server::build(t, sessions)
                    .map_err(|e| ConfigErrors(vec![settings.error_at(&e.key, e.message)]))?,
            ),
            None => None,
        };
        let upstream = match previous {
            // Settings include the CA bundle's digest, so equal means equal.
            Some(p) if p.upstream.settings == settings.upstream => p.upstream.clone(),
            _ => Arc::new(
                UpstreamClient::build(&settings.upstream)
                    .map_err(|e| ConfigErrors(vec![settings.error_at(&e.key, e.message)]))?,
            ),
        };
        let policy = Policy::from_settings(&settings, previous.map(|p| &p.policy));
        Ok(Live {
            settings: Arc::new(settings),
            tls,
            upstream,
            policy,
        })
    }

    pub fn certs(&self) -> &[LoadedCert] {
        self.tls.as_ref().map(|t| t.certs.as_slice()).unwrap_or(&[])
    }

    /// The suites a client can really negotiate with the loaded
    /// certificates ([`crate::tls::server::offered_suites`]).
    pub fn offered_suites(&self) -> Vec<&'static str> {
        match &self.settings.tls {
            Some(tls) => crate::tls::server::offered_suites(tls, self.certs()),
            None => Vec::new(),
        }
    }
}

impl Policy {
    fn from_settings(s: &Settings, previous: Option<&Policy>) -> Policy {
        let cors = &s.cors;
        let join = |v: &[String]| {
            HeaderValue::from_str(&v.join(", ")).unwrap_or(HeaderValue::from_static(""))
        };
        let origin = &s.upstream.origin;
        let mut upstream_origins = vec![format!("https://{origin}")];
        if s.upstream.port == 443 && origin.port().is_none() {
            upstream_origins.push(format!("https://{origin}:443"));
        } else if s.upstream.port == 443 {
            upstream_origins.push(format!("https://{}", origin.host()));
        }
        Policy {
            protocol: s.server.protocol,
            hsts: s.hsts.header_value(),
            admin: AdminGate::new(
                &s.admin.paths,
                s.admin.allowed_ips.clone(),
                s.admin.direct_access,
            ),
            admin_cert: AdminCertPolicy {
                required: s.admin.require_client_cert,
                subjects: s.admin.allowed_subjects.clone(),
            },
            forward_cert_header: s
                .tls
                .as_ref()
                .and_then(|t| t.client_auth.forward_header.clone()),
            cors: CorsPolicy {
                allowed_origins: cors
                    .allowed_origins
                    .iter()
                    .filter(|o| *o != "*")
                    .cloned()
                    .collect(),
                allow_any_origin: cors.allowed_origins.iter().any(|o| o == "*"),
                allow_private_network: cors.allow_private_network,
                allowed_methods: join(&cors.allowed_methods),
                allowed_headers: join(&cors.allowed_headers),
                max_age_secs: cors.max_age.as_secs(),
                allow_credentials: cors.allow_credentials,
            },
            trusted_proxies: s.trusted_proxies.clone(),
            redirect_status: s.server.redirect_status,
            public_host: s.server.public_host.clone(),
            public_https_port: s.server.public_https_port,
            upstream_origins,
            access: AccessRules::new(&s.access),
            credentials_in_url: CredentialsInUrl::new(s.tokens.refuse_get_credentials),
            rate_limits: RateLimits::new(&s.rate_limits, previous.map(|p| &p.rate_limits)),
            body_limits: BodyLimits::new(&s.body_limits, s.limits.max_body_bytes),
        }
    }
}
