//! `[[access]]` rules: who may reach which paths beyond the admin gate.
//! Evaluated in order after it, on the canonical path; the first rule that
//! applies to the request decides, and a request no rule applies to passes.

use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;

use super::params;
use super::prefixes::{FoldedPath, Scope};
use crate::config::AccessRule;

#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// The metric label: the rule's name, or its index in the file.
    label: String,
    scope: Scope,
    /// ArcGIS `f` values the rule is limited to; empty: any.
    f: Vec<String>,
    /// `None`: no allow list; `Some([])`: nobody.
    allow: Option<Vec<IpNet>>,
    deny: Vec<IpNet>,
}

/// A request refused by the `[[access]]` rule labelled so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDenied<'a> {
    pub rule: &'a str,
}

impl AccessRules {
    pub fn new(rules: &[AccessRule]) -> Self {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule {
                label: r.name.clone().unwrap_or_else(|| i.to_string()),
                scope: Scope::new(&r.scope.paths, &r.scope.methods),
                f: r.f.clone(),
                allow: r.allow.clone(),
                deny: r.deny.clone(),
            })
            .collect();
        Self { rules }
    }

    /// The first rule that applies decides: a client in its `deny` list,
    /// or outside its `allow` list when it has one, is refused. An unknown client
    /// is refused by any rule that applies (fail closed).
    pub fn decide(
        &self,
        path: &FoldedPath<'_>,
        method: &Method,
        query: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(), AccessDenied<'_>> {
        let Some(rule) = self.rules.iter().find(|r| r.applies(path, method, query)) else {
            return Ok(());
        };
        match client.map(|c| c.to_canonical()) {
            Some(c)
                if !rule.deny.iter().any(|n| n.contains(&c))
                    && rule
                        .allow
                        .as_ref()
                        .is_none_or(|allow| allow.iter().any(|n| n.contains(&c))) =>
            {
                Ok(())
            }
            _ => Err(AccessDenied { rule: &rule.label }),
        }
    }
}

impl Rule {
    fn applies(&self, path: &FoldedPath<'_>, method: &Method, query: Option<&str>) -> bool {
        self.scope.applies(path, method) && self.f_applies(query)
    }

    /// ArcGIS answers a request without `f` as `f=html`. Any `f` value in
    /// the list makes the rule apply (a servlet may read either of two).
    fn f_applies(&self, query: Option<&str>) -> bool {
        if self.f.is_empty() {
            return true;
        }
        let mut given = query
            .into_iter()
            .flat_map(|q| params::values(q, "f"))
            .peekable();
        if given.peek().is_none() {
            return self.f.iter().any(|f| f == "html");
        }
        given.any(|v| self.f.iter().any(|f| v.trim().eq_ignore_ascii_case(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleScope;
    use crate::policy::parse_ip_or_cidr;

    fn rule(
        name: Option<&str>,
        paths: &[&str],
        f: &[&str],
        allow: &[&str],
        deny: &[&str],
    ) -> AccessRule {
        let nets = |l: &[&str]| {
            l.iter()
                .map(|s| parse_ip_or_cidr(s).expect("net"))
                .collect()
        };
        AccessRule {
            name: name.map(str::to_string),
            scope: RuleScope {
                paths: paths.iter().map(|s| s.to_string()).collect(),
                methods: Vec::new(),
            },
            f: f.iter().map(|s| s.to_string()).collect(),
            allow: (!allow.is_empty()).then(|| nets(allow)),
            deny: nets(deny),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn the_first_rule_that_applies_decides() {
        let rules = AccessRules::new(&[
            rule(None, &["/arcgis/help"], &[], &["10.0.0.0/8"], &[]),
            rule(
                Some("closed"),
                &["/arcgis"],
                &[],
                &[],
                &["0.0.0.0/0", "::/0"],
            ),
        ]);
        let get = Method::GET;
        assert_eq!(
            rules.decide(
                &FoldedPath::new("/arcgis/help/x"),
                &get,
                None,
                ip("10.1.1.1")
            ),
            Ok(())
        );
        assert_eq!(
            rules.decide(
                &FoldedPath::new("/arcgis/help/x"),
                &get,
                None,
                ip("8.8.8.8")
            ),
            Err(AccessDenied { rule: "0" })
        );
        assert_eq!(
            rules.decide(&FoldedPath::new("/arcgis/rest"), &get, None, ip("10.1.1.1")),
            Err(AccessDenied { rule: "closed" })
        );
        assert_eq!(
            rules.decide(&FoldedPath::new("/other"), &get, None, ip("8.8.8.8")),
            Ok(())
        );
    }

    #[test]
    fn deny_wins_over_allow_in_one_rule_and_unknown_clients_are_refused() {
        let rules =
            AccessRules::new(&[rule(None, &["/x"], &[], &["10.0.0.0/8"], &["10.9.0.0/16"])]);
        assert!(rules
            .decide(&FoldedPath::new("/x"), &Method::GET, None, ip("10.9.1.1"))
            .is_err());
        assert!(rules
            .decide(
                &FoldedPath::new("/x"),
                &Method::GET,
                None,
                ip("::ffff:10.1.1.1")
            )
            .is_ok());
        assert!(rules
            .decide(&FoldedPath::new("/x"), &Method::GET, None, None)
            .is_err());
    }

    #[test]
    fn an_empty_allow_list_admits_nobody() {
        let mut r = rule(None, &["/x"], &[], &[], &[]);
        r.allow = Some(Vec::new());
        let rules = AccessRules::new(&[r]);
        assert!(rules
            .decide(&FoldedPath::new("/x"), &Method::GET, None, ip("127.0.0.1"))
            .is_err());
    }

    #[test]
    fn an_f_limited_rule_applies_to_html_and_to_no_f() {
        let rules = AccessRules::new(&[rule(
            None,
            &["/arcgis/rest/services"],
            &["html"],
            &["10.0.0.0/8"],
            &[],
        )]);
        let outside = ip("8.8.8.8");
        let path = FoldedPath::new("/arcgis/rest/services/Map/MapServer");
        let decide = |query| rules.decide(&path, &Method::GET, query, outside);
        // No f, or f=html in any spelling or position: the HTML directory.
        for query in [
            None,
            Some("f=html"),
            Some("f=HT%4DL"),
            Some("f=json&f=html"),
        ] {
            assert!(decide(query).is_err(), "{query:?}");
        }
        for query in [Some("f=json"), Some("f=pjson")] {
            assert!(decide(query).is_ok(), "{query:?}");
        }
    }
}
