//! Validation of `[tokens]`, `[[access]]`, `[[rate_limit]]` and
//! `[[body_limit]]` into the settings of `rules.rs`, each error at its
//! rule's key (`rate_limit.1.rate`).

use std::num::NonZeroU32;

use http::Method;

use super::keys;
use super::raw::{RawAccess, RawBodyLimit, RawRateLimit, RawTokens};
use super::rules::{parse_rate, AccessRule, BodyLimitRule, RateLimitRule, RuleScope, Tokens};
use super::validate::Validator;

impl Validator<'_> {
    pub(super) fn tokens(&mut self, raw: &RawTokens) -> Tokens {
        Tokens {
            refuse_get_credentials: raw.refuse_get_credentials.unwrap_or(true),
        }
    }

    fn scope(&mut self, key: &str, paths: &[String], methods: Option<&[String]>) -> RuleScope {
        let paths_key = format!("{key}.paths");
        if paths.is_empty() {
            self.error(&paths_key, "must name at least one path");
        }
        let mut canonical = Vec::new();
        for p in paths {
            match crate::policy::path::canonical_path(p) {
                Ok(c) => canonical.push(c),
                Err(e) => self.error(
                    &paths_key,
                    format!("{p:?} is not a canonical absolute path: {e}"),
                ),
            }
        }
        let mut parsed = Vec::new();
        for m in methods.unwrap_or_default() {
            match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
                Ok(m) => parsed.push(m),
                Err(_) => self.error(
                    &format!("{key}.methods"),
                    format!("{m:?} is not an HTTP method"),
                ),
            }
        }
        RuleScope {
            paths: canonical,
            methods: parsed,
        }
    }

    fn name(&mut self, key: &str, name: &Option<String>) -> Option<String> {
        let name = name.as_ref()?;
        // The name is a metric label value: kept short and plain.
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain {
            self.error(
                &format!("{key}.name"),
                format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
            );
        }
        Some(name.clone())
    }

    pub(super) fn access_rules(&mut self, raw: &[RawAccess]) -> Vec<AccessRule> {
        let mut out: Vec<AccessRule> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let key = format!("{}.{i}", keys::ACCESS);
            let scope = self.scope(&key, &r.paths, r.methods.as_deref());
            let name = self.name(&key, &r.name);
            if name.is_some() && out.iter().any(|o| o.name == name) {
                self.error(
                    &format!("{key}.name"),
                    "another [[access]] rule has this name",
                );
            }
            let allow = r
                .allow
                .as_ref()
                .map(|l| self.cidrs(&format!("{key}.allow"), &l.items()));
            let deny = r
                .deny
                .as_ref()
                .map(|l| self.cidrs(&format!("{key}.deny"), &l.items()))
                .unwrap_or_default();
            if r.allow.is_none() && r.deny.is_none() {
                self.error(
                    &key,
                    "an [[access]] rule needs allow = [...] and/or deny = [...]",
                );
            }
            let f =
                r.f.iter()
                    .flatten()
                    .map(|v| v.trim().to_ascii_lowercase())
                    .collect();
            out.push(AccessRule {
                name,
                scope,
                f,
                allow,
                deny,
            });
        }
        out
    }

    pub(super) fn rate_limits(&mut self, raw: &[RawRateLimit]) -> Vec<RateLimitRule> {
        let mut out: Vec<RateLimitRule> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let key = format!("{}.{i}", keys::RATE_LIMIT);
            let scope = self.scope(&key, &r.paths, r.methods.as_deref());
            let name = self.name(&key, &r.name);
            if name.is_some() && out.iter().any(|o| o.name == name) {
                self.error(
                    &format!("{key}.name"),
                    "another [[rate_limit]] rule has this name",
                );
            }
            let rate = match parse_rate(&r.rate) {
                Ok(rate) => rate,
                Err(e) => {
                    self.error(&format!("{key}.rate"), e.to_string());
                    continue;
                }
            };
            let burst = match r.burst {
                None => rate.count,
                Some(b) => match NonZeroU32::new(b) {
                    Some(b) => b,
                    None => {
                        self.error(
                            &format!("{key}.burst"),
                            "must be at least 1 (requests a client may make at once)",
                        );
                        continue;
                    }
                },
            };
            out.push(RateLimitRule {
                name,
                scope,
                rate,
                burst,
            });
        }
        out
    }

    pub(super) fn body_limits(&mut self, raw: &[RawBodyLimit]) -> Vec<BodyLimitRule> {
        raw.iter()
            .enumerate()
            .map(|(i, r)| {
                let key = format!("{}.{i}", keys::BODY_LIMIT);
                let scope = self.scope(&key, &r.paths, None);
                BodyLimitRule {
                    paths: scope.paths,
                    max_bytes: r.max_bytes,
                }
            })
            .collect()
    }
}
