//! `[[rate_limit]]` rules: requests per client address, by GCRA (the
//! `governor` crate), with state held in a bounded store of our own so
//! memory stays bounded whatever an attacker does.
//!
//! Each rule tracks at most [`MAX_TRACKED_CLIENTS`] addresses. When full, a
//! new address evicts the one that was first seen longest ago (a fresh
//! bucket for it, as if it had been quiet). The alternative, refusing
//! addresses once full (fail closed), would let anyone with enough
//! addresses lock every other client out of sign-in: a denial of service
//! for the price of a botnet. Evicting costs the attacker nothing extra
//! either, but bounds memory and keeps everyone else served.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use http::Method;

use super::prefixes::{FoldedPath, Scope};
use crate::config::RateLimitRule;

/// Client addresses tracked per rule. About 100 bytes each: 10 MB a rule.
pub const MAX_TRACKED_CLIENTS: usize = 100_000;
/// Shards of the store, so concurrent requests seldom wait on one lock.
const SHARDS: usize = 32;

type Limiter = RateLimiter<IpAddr, BoundedStore, DefaultClock>;

#[derive(Default)]
pub struct RateLimits {
    rules: Vec<Rule>,
}

struct Rule {
    /// The metric label: the rule's name, or its index in the file.
    label: String,
    scope: Scope,
    /// The settings the limiter was built from: a reload with the same
    /// ones keeps the limiter, and the clients' buckets with it.
    built_from: (Vec<String>, Vec<Method>, Duration, NonZeroU32, NonZeroU32),
    limiter: Arc<Limiter>,
    /// A second handle on the limiter's store, to count what it holds.
    store: BoundedStore,
}

/// A request over the rule labelled `rule`; try again in `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited<'a> {
    pub rule: &'a str,
    /// Whole seconds, at least 1 (RFC 9110 §10.2.3 `Retry-After`).
    pub retry_after: u64,
}

impl RateLimits {
    /// Builds the rules; a rule whose paths, methods, rate and burst are
    /// those of one in `previous` keeps its limiter.
    pub fn new(rules: &[RateLimitRule], previous: Option<&RateLimits>) -> Self {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let built_from = (
                    r.scope.paths.clone(),
                    r.scope.methods.clone(),
                    r.rate.per,
                    r.rate.count,
                    r.burst,
                );
                let kept = previous
                    .into_iter()
                    .flat_map(|p| &p.rules)
                    .find(|p| p.built_from == built_from)
                    .map(|p| (p.limiter.clone(), p.store.clone()));
                let (limiter, store) = kept.unwrap_or_else(|| {
                    let store = BoundedStore::new(MAX_TRACKED_CLIENTS);
                    (Arc::new(limiter(r, store.clone())), store)
                });
                Rule {
                    label: r.name.clone().unwrap_or_else(|| i.to_string()),
                    scope: Scope::new(&r.scope.paths, &r.scope.methods),
                    built_from,
                    limiter,
                    store,
                }
            })
            .collect();
        Self { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Counts the request against every rule that applies; the first that
    /// has no room refuses it. Clients whose address is unknown share one
    /// bucket (fail closed: they are limited together, not let through).
    pub fn check(
        &self,
        path: &FoldedPath<'_>,
        method: &Method,
        client: Option<IpAddr>,
    ) -> Result<(), RateLimited<'_>> {
        let key = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.to_canonical());
        for rule in &self.rules {
            if !rule.scope.applies(path, method) {
                continue;
            }
            if let Err(not_until) = rule.limiter.check_key(&key) {
                let wait = not_until.wait_time_from(rule.limiter.clock().now());
                let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(RateLimited {
                    rule: &rule.label,
                    retry_after: whole.max(1),
                });
            }
        }
        Ok(())
    }

    /// Addresses tracked by the rule at `index`.
    pub fn tracked_clients(&self, index: usize) -> usize {
        self.rules.get(index).map_or(0, |r| r.store.tracked())
    }
}

fn limiter(r: &RateLimitRule, store: BoundedStore) -> Limiter {
    // `count` requests per `per`: one every per/count, `burst` at once.
    let period = (r.rate.per / r.rate.count.get()).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .expect("a period of at least 1 ns")
        .allow_burst(r.burst);
    RateLimiter::new(quota, store, DefaultClock::default())
}

/// governor's state per client address, in shards each holding at most
/// its share of the cap; when one is full, its oldest address goes.
#[derive(Clone)]
pub struct BoundedStore {
    shards: Arc<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    states: HashMap<IpAddr, InMemoryState>,
    /// Addresses in the order first seen, oldest first.
    order: VecDeque<IpAddr>,
}

impl BoundedStore {
    pub fn new(cap: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: cap.div_ceil(SHARDS).max(1),
        }
    }

    /// Addresses held now.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| lock(s).states.len()).sum()
    }

    fn shard(&self, key: &IpAddr) -> &Mutex<Shard> {
        // The last bytes of an address vary most between clients; the
        // shard only spreads lock contention, so no keyed hash is needed.
        let low = match key {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => u128::from(*v6) as usize,
        };
        &self.shards[low % SHARDS]
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic elsewhere while holding the lock leaves valid data behind.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateStore for BoundedStore {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = lock(self.shard(key));
        if let Some(state) = shard.states.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        while shard.states.len() >= self.per_shard {
            let Some(oldest) = shard.order.pop_front() else {
                break;
            };
            shard.states.remove(&oldest);
        }
        shard.order.push_back(*key);
        shard
            .states
            .entry(*key)
            .or_default()
            .measure_and_replace(&NotKeyed::NonKey, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_rate, RuleScope};

    fn rule(paths: &[&str], rate: &str, burst: u32) -> RateLimitRule {
        RateLimitRule {
            name: None,
            scope: RuleScope {
                paths: paths.iter().map(|s| s.to_string()).collect(),
                methods: Vec::new(),
            },
            rate: parse_rate(rate).expect("rate"),
            burst: NonZeroU32::new(burst).expect("burst"),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn a_client_past_its_burst_is_limited_and_told_when_to_retry() {
        let limits = RateLimits::new(&[rule(&["/arcgis/login"], "6/min", 2)], None);
        let get = Method::GET;
        assert!(limits
            .check(&FoldedPath::new("/arcgis/login"), &get, ip("10.0.0.1"))
            .is_ok());
        assert!(limits
            .check(&FoldedPath::new("/arcgis/login"), &get, ip("10.0.0.1"))
            .is_ok());
        let refused = limits
            .check(&FoldedPath::new("/arcgis/login"), &get, ip("10.0.0.1"))
            .unwrap_err();
        assert_eq!(refused.rule, "0");
        assert!((1..=10).contains(&refused.retry_after), "{refused:?}");
        // Another client, another bucket; another path, no rule.
        assert!(limits
            .check(&FoldedPath::new("/arcgis/login"), &get, ip("10.0.0.2"))
            .is_ok());
        assert!(limits
            .check(&FoldedPath::new("/arcgis/rest"), &get, ip("10.0.0.1"))
            .is_ok());
    }

    #[test]
    fn an_unchanged_rule_keeps_its_buckets_across_a_rebuild() {
        let rules = [rule(&["/x"], "1/min", 1)];
        let before = RateLimits::new(&rules, None);
        assert!(before
            .check(&FoldedPath::new("/x"), &Method::GET, ip("10.0.0.1"))
            .is_ok());
        let after = RateLimits::new(&rules, Some(&before));
        assert!(after
            .check(&FoldedPath::new("/x"), &Method::GET, ip("10.0.0.1"))
            .is_err());
        let changed = RateLimits::new(&[rule(&["/x"], "2/min", 1)], Some(&before));
        assert!(changed
            .check(&FoldedPath::new("/x"), &Method::GET, ip("10.0.0.1"))
            .is_ok());
    }

    #[test]
    fn the_store_holds_no_more_than_its_cap_and_evicts_the_oldest() {
        let store = BoundedStore::new(SHARDS * 2);
        let ok = |_: Option<Nanos>| Ok::<_, ()>(((), Nanos::from(Duration::from_secs(1))));
        for i in 0..10_000u32 {
            let key = IpAddr::V4(Ipv4Addr::from(i));
            store.measure_and_replace(&key, ok).expect("ok");
        }
        assert_eq!(store.tracked(), SHARDS * 2);
        // The newest addresses are the ones kept.
        let newest = IpAddr::V4(Ipv4Addr::from(9_999u32));
        let seen = std::cell::Cell::new(None);
        let _ = store.measure_and_replace(&newest, |prev| {
            seen.set(Some(prev.is_some()));
            Err::<((), Nanos), ()>(())
        });
        assert_eq!(seen.get(), Some(true));
    }
}
