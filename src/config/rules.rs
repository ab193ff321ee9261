//! The per-client limits and request rules as validated settings:
//! `[tokens]`, `[[access]]`, `[[rate_limit]]`, `[[body_limit]]` (issue 25).
//! Every rule names canonical-path prefixes matched as `admin.paths` are.
//! Their validation is `validate_rules.rs`.

use std::num::NonZeroU32;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;

/// What a rule applies to: canonical-path prefixes and, optionally, methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleScope {
    /// Canonical, as written after canonicalisation.
    pub paths: Vec<String>,
    /// Empty: every method.
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub name: Option<String>,
    pub scope: RuleScope,
    /// ArcGIS's `f` parameter values the rule is limited to (lower-case);
    /// empty: any. A request without `f` counts as `html`, as ArcGIS
    /// Server answers it.
    pub f: Vec<String>,
    /// `None`: no allow list (only `deny` decides). `Some([])` admits
    /// nobody, as `admin.allowed_ips = []` does.
    pub allow: Option<Vec<IpNet>>,
    pub deny: Vec<IpNet>,
}

/// A request rate: `count` requests per `per`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
    /// As written, for `check` and `/security/config`.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRule {
    pub name: Option<String>,
    pub scope: RuleScope,
    pub rate: Rate,
    /// Requests a client may make at once before the rate applies.
    pub burst: NonZeroU32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLimitRule {
    pub paths: Vec<String>,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub refuse_get_credentials: bool,
}

/// Why a `rate` is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("{0:?} is not a rate; write a whole number, \"/\" and a unit, e.g. \"10/min\"")]
    Shape(String),
    #[error("{0:?}: the count before \"/\" is not a whole number")]
    Count(String),
    #[error("{0:?}: the count must be at least 1 (to refuse every request use [[access]])")]
    Zero(String),
    #[error("{0:?}: unknown unit after \"/\"; use s, sec, second, m, min, minute, h, hour or day")]
    Unit(String),
}

/// Parses `N/unit`: `10/s`, `10/sec`, `30/min`, `100/h`, `1000/day`.
pub fn parse_rate(text: &str) -> Result<Rate, RateError> {
    let (count, unit) = text
        .split_once('/')
        .ok_or_else(|| RateError::Shape(text.to_string()))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| RateError::Count(text.to_string()))?;
    let count = NonZeroU32::new(count).ok_or_else(|| RateError::Zero(text.to_string()))?;
    let secs = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(RateError::Unit(text.to_string())),
    };
    Ok(Rate {
        count,
        per: Duration::from_secs(secs),
        text: text.to_string(),
    })
}

impl RuleScope {
    /// `/a, /b` and, when limited, ` (GET, POST)`.
    pub fn describe(&self) -> String {
        let mut out = self.paths.join(", ");
        if !self.methods.is_empty() {
            let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
            out.push_str(&format!(" ({})", methods.join(", ")));
        }
        out
    }
}

fn nets(list: &[IpNet]) -> String {
    let list: Vec<String> = list.iter().map(IpNet::to_string).collect();
    list.join(", ")
}

impl AccessRule {
    /// One line for `check` and its diff.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(name) = &self.name {
            out.push_str(&format!("{name}: "));
        }
        out.push_str(&self.scope.describe());
        if !self.f.is_empty() {
            out.push_str(&format!(" with f {}", self.f.join("|")));
        }
        if !self.deny.is_empty() {
            out.push_str(&format!("; deny [{}]", nets(&self.deny)));
        }
        if let Some(allow) = &self.allow {
            out.push_str(&format!("; allow only [{}]", nets(allow)));
        }
        out
    }
}

impl RateLimitRule {
    pub fn describe(&self) -> String {
        let name = self
            .name
            .as_ref()
            .map(|n| format!("{n}: "))
            .unwrap_or_default();
        format!(
            "{name}{}: {} per client address, burst {}",
            self.scope.describe(),
            self.rate.text,
            self.burst
        )
    }
}

impl BodyLimitRule {
    pub fn describe(&self) -> String {
        format!("{}: {} bytes", self.paths.join(", "), self.max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_every_unit_parse() {
        for (text, count, secs) in [
            ("10/s", 10, 1),
            ("10/sec", 10, 1),
            ("5 / second", 5, 1),
            ("30/min", 30, 60),
            ("30/m", 30, 60),
            ("100/h", 100, 3600),
            ("100/hour", 100, 3600),
            ("1000/day", 1000, 86_400),
        ] {
            let rate = parse_rate(text).expect(text);
            assert_eq!(rate.count.get(), count, "{text}");
            assert_eq!(rate.per, Duration::from_secs(secs), "{text}");
        }
    }

    #[test]
    fn a_rate_that_is_not_one_is_refused_with_its_reason() {
        assert!(matches!(parse_rate("ten/min"), Err(RateError::Count(_))));
        assert!(matches!(parse_rate("0/min"), Err(RateError::Zero(_))));
        assert!(matches!(
            parse_rate("10/fortnight"),
            Err(RateError::Unit(_))
        ));
        assert!(matches!(parse_rate("10"), Err(RateError::Shape(_))));
        assert!(matches!(parse_rate("-1/s"), Err(RateError::Count(_))));
    }
}
