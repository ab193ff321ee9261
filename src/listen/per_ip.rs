//! `limits.max_connections_per_ip`: open connections counted per client
//! address at accept; one over the limit is closed at once. The table
//! holds only addresses with a connection open, so it is bounded by
//! `limits.max_connections`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct PerIpConnections {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count, given back on drop.
pub struct PerIpGuard {
    table: Arc<PerIpConnections>,
    ip: IpAddr,
}

impl PerIpConnections {
    /// Counts a new connection from `ip`: `None` when that address already
    /// holds `limit` connections. IPv4-mapped IPv6 addresses count as the
    /// IPv4 address they carry.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<PerIpGuard> {
        let ip = ip.to_canonical();
        let mut open = self.lock();
        let count = open.entry(ip).or_default();
        if *count >= limit {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(PerIpGuard {
            table: self.clone(),
            ip,
        })
    }

    /// Addresses with a connection open now.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map stays valid whatever panicked while holding it.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_at_its_limit_is_refused_until_one_closes() {
        let table = Arc::new(PerIpConnections::default());
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let a = table.admit(ip, 2).expect("first");
        let _b = table.admit(ip, 2).expect("second");
        assert!(table.admit(ip, 2).is_none());
        assert!(table
            .admit("::ffff:10.0.0.1".parse().expect("ip"), 2)
            .is_none());
        assert!(table.admit("10.0.0.2".parse().expect("ip"), 2).is_some());
        drop(a);
        assert!(table.admit(ip, 2).is_some());
    }

    #[test]
    fn closed_connections_leave_no_entry_behind() {
        let table = Arc::new(PerIpConnections::default());
        for i in 0..100u8 {
            let _g = table.admit(IpAddr::from([10, 0, 0, i]), 1);
        }
        assert_eq!(table.addresses(), 0);
    }
}
