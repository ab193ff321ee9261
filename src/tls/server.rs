//! The client-facing TLS policy: versions, suites, certificates by SNI,
//! ALPN and session resumption, built into one `rustls::ServerConfig`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::certs::{self, CertFacts};
use super::client_auth::{self, LoadedCrl};
use super::pkcs12::{self, Password, Pkcs12Error};
use super::suites;
use super::BuildError;
use crate::config::{CertSource, Tls};

/// Session cache and ticket keys live for the whole process, so a reload
/// that swaps the TLS policy does not invalidate clients' sessions.
#[derive(Clone)]
pub struct TlsSessions {
    cache: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl TlsSessions {
    pub fn new() -> Result<Self, rustls::Error> {
        Ok(TlsSessions {
            // About 20k sessions in a few MiB, like nginx's 10m shared cache.
            cache: rustls::server::ServerSessionMemoryCache::new(20_000),
            ticketer: aws_lc_rs::Ticketer::new()?,
        })
    }
}

/// A loaded certificate, with the facts that /sslcertificates and the
/// expiry metric report.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// `default` or the SNI server name.
    pub name: String,
    pub path: PathBuf,
    pub chain_len: usize,
    pub key_algorithm: rustls::SignatureAlgorithm,
    pub facts: CertFacts,
}

pub struct ServerTls {
    /// For the default certificate, and every server name whose client
    /// authentication is the default's.
    pub config: Arc<ServerConfig>,
    /// `config` and the configs chosen by server name.
    pub sides: Arc<ServerSides>,
    pub certs: Vec<LoadedCert>,
    /// Every CRL the client-certificate verifiers hold.
    pub crls: Vec<LoadedCrl>,
}

/// One server config and whether it asks for client certificates (rustls
/// keeps its verifier private).
#[derive(Clone)]
pub struct ServerSide {
    pub config: Arc<ServerConfig>,
    pub asks_client_cert: bool,
}

/// The server configs of one build.
pub struct ServerSides {
    /// For the default certificate, and every server name whose client
    /// authentication is the default's.
    pub default: ServerSide,
    /// Server names (`*.example.com` for one label) whose client
    /// authentication differs from the default's: the config is chosen
    /// after reading the ClientHello (`tls::hello`).
    pub by_name: HashMap<String, ServerSide>,
}

impl ServerSides {
    /// Whether the config depends on the ClientHello's server name.
    pub fn by_server_name(&self) -> bool {
        !self.by_name.is_empty()
    }

    /// The config for a ClientHello's server name.
    pub fn for_name(&self, server_name: Option<&str>) -> &ServerSide {
        server_name
            .and_then(|name| lookup(&self.by_name, &name.to_ascii_lowercase()))
            .unwrap_or(&self.default)
    }
}

pub fn provider_for(tls: &Tls) -> CryptoProvider {
    CryptoProvider {
        cipher_suites: tls.suites.clone(),
        ..aws_lc_rs::default_provider()
    }
}

pub fn build(tls: &Tls, sessions: &TlsSessions) -> Result<ServerTls, BuildError> {
    let provider = Arc::new(provider_for(tls));
    let (default_key, default_cert) = load_one("default", "tls", &tls.cert, &provider)?;
    let default = Choice::new(default_key, &default_cert);
    let mut loaded = vec![default_cert];
    let mut by_name = HashMap::new();
    for (i, sni) in tls.sni.iter().enumerate() {
        let (key, cert) = load_one(
            &sni.server_name,
            &format!("tls.sni.{i}"),
            &sni.cert,
            &provider,
        )?;
        by_name.insert(sni.server_name.clone(), Choice::new(key, &cert));
        loaded.push(cert);
    }
    check_suites_fit_keys(tls, &loaded)?;

    let resolver: Arc<dyn ResolvesServerCert> = Arc::new(SniResolver { default, by_name });
    let mut crls = Vec::new();
    let mut verifier = |auth, prefix: &str| -> Result<_, BuildError> {
        Ok(client_auth::verifier(auth, prefix, &provider)?.map(|v| {
            crls.extend(v.crls);
            v.verifier
        }))
    };
    let default_verifier = verifier(&tls.client_auth, "tls.client_auth")?;
    let mut others = Vec::new();
    for (i, sni) in tls.sni.iter().enumerate() {
        if !sni.client_auth.same_verifier(&tls.client_auth) {
            let v = verifier(&sni.client_auth, &format!("tls.sni.{i}.client_auth"))?;
            others.push((sni.server_name.clone(), v));
        }
    }
    let parts = ConfigParts {
        tls,
        provider: &provider,
        resolver: &resolver,
        sessions,
    };
    let default = parts.config(default_verifier)?;
    let mut by_name = HashMap::new();
    for (name, v) in others {
        by_name.insert(name, parts.config(v)?);
    }
    Ok(ServerTls {
        config: default.config.clone(),
        sides: Arc::new(ServerSides { default, by_name }),
        certs: loaded,
        crls,
    })
}

/// What every server config of one build shares.
struct ConfigParts<'a> {
    tls: &'a Tls,
    provider: &'a Arc<CryptoProvider>,
    resolver: &'a Arc<dyn ResolvesServerCert>,
    sessions: &'a TlsSessions,
}

impl ConfigParts<'_> {
    fn config(
        &self,
        verifier: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<ServerSide, BuildError> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.tls.versions)
            .map_err(|e| BuildError::new("tls.protocols", e))?;
        let asks = verifier.is_some();
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if asks {
            // No resumption where client certificates are verified: a
            // resumed session skips verification, so a certificate revoked
            // (or a mode made stricter) by a reload would still be let in.
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        } else {
            config.session_storage = self.sessions.cache.clone();
            config.ticketer = self.sessions.ticketer.clone();
        }
        Ok(ServerSide {
            config: Arc::new(config),
            asks_client_cert: asks,
        })
    }
}

fn load_one(
    name: &str,
    key_prefix: &str,
    source: &CertSource,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, LoadedCert), BuildError> {
    let err =
        |key: &str, e: &dyn std::fmt::Display| BuildError::new(format!("{key_prefix}.{key}"), e);
    let (chain, private, key_path) = match source {
        CertSource::Pem { cert, key } => (
            certs::load_cert_chain(cert).map_err(|e| err("cert", &e))?,
            certs::load_private_key(key).map_err(|e| err("key", &e))?,
            key.as_path(),
        ),
        CertSource::Pkcs12 {
            bundle,
            password_file,
        } => {
            let password = match password_file {
                Some(file) => {
                    Password::from_file(file).map_err(|e| err("pkcs12_password_file", &e))?
                }
                None => Password::default(),
            };
            let loaded = pkcs12::load_identity(bundle, &password, provider).map_err(|e| {
                // A wrong password is fixed in the password file, when there is one.
                let at = match (&e, password_file) {
                    (Pkcs12Error::WrongPassword { .. }, Some(_)) => "pkcs12_password_file",
                    _ => "pkcs12",
                };
                err(at, &e)
            })?;
            let key = loaded.key.ok_or_else(|| {
                err(
                    "pkcs12",
                    &Pkcs12Error::NoPrivateKey {
                        path: bundle.clone(),
                    },
                )
            })?;
            (loaded.chain, key, bundle.as_path())
        }
    };
    let cert_key = match source {
        CertSource::Pem { .. } => ("cert", "key"),
        CertSource::Pkcs12 { .. } => ("pkcs12", "pkcs12"),
    };
    let cert_path = source.cert_path();
    let facts = certs::cert_facts(&chain[0]).map_err(|e| err(cert_key.0, &e))?;
    let chain_len = chain.len();
    let certified = certs::certified_key(chain, private, provider, cert_path, key_path)
        .map_err(|e| err(cert_key.1, &e))?;
    let key_algorithm = certified.key.algorithm();
    Ok((
        certified,
        LoadedCert {
            name: name.to_string(),
            path: cert_path.to_path_buf(),
            chain_len,
            key_algorithm,
            facts,
        },
    ))
}

/// Each enabled version must keep at least one suite that every loaded
/// certificate's key can sign with: an RSA key cannot serve ECDHE_ECDSA.
/// The error names the suites that would fit, so that an operator who pasted
/// an RSA-only list (ArcGIS's, trimmed) for an ECDSA certificate knows what
/// to add.
fn check_suites_fit_keys(tls: &Tls, certs: &[LoadedCert]) -> Result<(), BuildError> {
    for version in &tls.versions {
        for cert in certs {
            let fits = tls
                .suites
                .iter()
                .filter(|s| s.version() == *version)
                .any(|s| suites::fits_key(s, cert.key_algorithm));
            if !fits {
                let version_name = suites::version_name(version.version);
                return Err(BuildError::new(
                    "tls.cipher_suites",
                    format!(
                        "no cipher suite for {version_name} fits the {:?} key of certificate {} ({}): add one of {} to tls.cipher_suites, or remove {version_name:?} from tls.protocols",
                        cert.key_algorithm,
                        cert.name,
                        cert.path.display(),
                        suites::fitting(version, cert.key_algorithm).join(", "),
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The suites a client can really negotiate: configured, of an enabled
/// version, and usable with at least one loaded certificate's key (an
/// ECDSA-only site never negotiates an ECDHE_RSA suite).
pub fn offered_suites(tls: &Tls, certs: &[LoadedCert]) -> Vec<&'static str> {
    tls.suites
        .iter()
        .filter(|s| certs.iter().any(|c| suites::fits_key(s, c.key_algorithm)))
        .map(suites::suite_name)
        .collect()
}

/// Picks the certificate by SNI; clients that send none (connecting by IP)
/// get the default one.
#[derive(Debug)]
struct SniResolver {
    default: Choice,
    by_name: HashMap<String, Choice>,
}

/// A certificate the resolver can choose, with the facts that
/// `tls.strict_sni_host` checks a request's host against.
#[derive(Debug)]
struct Choice {
    key: Arc<CertifiedKey>,
    facts: Arc<CertFacts>,
}

impl Choice {
    fn new(key: Arc<CertifiedKey>, loaded: &LoadedCert) -> Self {
        Choice {
            key,
            facts: Arc::new(loaded.facts.clone()),
        }
    }
}

/// `name` (lower case) in a map by server name: exactly, else by a
/// wildcard; `*.example.com` covers exactly one label, as RFC 6125 §6.4.3
/// has it.
fn lookup<'m, T>(map: &'m HashMap<String, T>, name: &str) -> Option<&'m T> {
    if let Some(k) = map.get(name) {
        return Some(k);
    }
    let (_, parent) = name.split_once('.')?;
    map.get(&format!("*.{parent}"))
}

impl SniResolver {
    fn lookup(&self, name: &str) -> Option<&Choice> {
        lookup(&self.by_name, name)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|name| {
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                self.lookup(&name.to_ascii_lowercase())
            } else {
                self.lookup(name)
            }
        });
        let choice = found.unwrap_or(&self.default);
        super::chosen_cert::note(&choice.facts);
        Some(choice.key.clone())
    }
}
