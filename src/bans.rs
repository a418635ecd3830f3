//! Bans in force: sources refused until a time, read from the `sipguard_ban` table that every
//! node shares (see `loader::bans`). Pure data: no Lua, no MySQL.
//!
//! New bans arrive a few at a time (a flood, a lockout) and each worker picks them up every
//! round, while a request must read them without waiting. So the set is two layers: a large
//! `base`, rebuilt rarely, and a small `recent` layer rebuilt on every change; a publish clones
//! only the small layer. When `recent` outgrows [`COMPACT_AT`], both fold into a new base and
//! expired bans are left out. Expiry needs no database round trip: every entry carries its
//! end, compared with the clock at lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// Entries in the recent layer before the two layers are folded into a new base.
pub const COMPACT_AT: usize = 4096;

/// One layer: banned addresses by address, banned networks (rare: scanned in order). Also what
/// a worker holds of its own bans until they come back from the table (`ban_request`).
/// Sources come canonical, as `netset::parse_net` gives them (IPv4-mapped as IPv4).
#[derive(Debug, Clone, Default)]
pub struct Layer {
    /// Single addresses (a /32 or /128 ban) and when each ban ends (Unix ms).
    addrs: HashMap<IpAddr, u64>,
    /// Wider networks and when each ban ends.
    nets: Vec<(IpNet, u64)>,
}

impl Layer {
    /// Records a ban of `net` until `until_ms` (Unix ms); a source banned twice keeps the later
    /// end.
    pub fn add(&mut self, net: IpNet, until_ms: u64) {
        if net.prefix_len() == net.max_prefix_len() {
            let e = self.addrs.entry(net.addr()).or_insert(0);
            *e = (*e).max(until_ms);
        } else if let Some(e) = self.nets.iter_mut().find(|(n, _)| *n == net) {
            e.1 = e.1.max(until_ms);
        } else {
            self.nets.push((net, until_ms));
        }
    }

    /// When the ban recorded for exactly `net` ends (expired or not).
    pub fn get(&self, net: IpNet) -> Option<u64> {
        if net.prefix_len() == net.max_prefix_len() {
            self.addrs.get(&net.addr()).copied()
        } else {
            self.nets.iter().find(|(n, _)| *n == net).map(|(_, u)| *u)
        }
    }

    /// Forgets the bans ended at `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        self.addrs.retain(|_, u| *u > now_ms);
        self.nets.retain(|(_, u)| *u > now_ms);
    }

    /// When the latest ban covering `ip` ends, if one is recorded (expired or not).
    pub fn until(&self, ip: IpAddr) -> Option<u64> {
        let own = self.addrs.get(&ip).copied();
        let nets = self
            .nets
            .iter()
            .filter(|(n, _)| n.contains(&ip))
            .map(|(_, u)| *u)
            .max();
        own.max(nets)
    }

    /// Every entry: source and end.
    fn entries(&self) -> impl Iterator<Item = (IpNet, u64)> + '_ {
        let addrs = self.addrs.iter().map(|(&ip, &u)| (IpNet::from(ip), u));
        addrs.chain(self.nets.iter().copied())
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.addrs.len() + self.nets.len()
    }

    /// No entry held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The bans a worker enforces: what a request reads (through an `Arc`, never locked).
#[derive(Debug, Clone, Default)]
pub struct Bans {
    base: Arc<Layer>,
    recent: Layer,
}

impl Bans {
    /// When the ban on `ip` ends (Unix ms), if it is banned at `now_ms`.
    pub fn banned_until(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let ip = crate::addr::canonical(ip);
        self.recent
            .until(ip)
            .max(self.base.until(ip))
            .filter(|&u| u > now_ms)
    }

    /// Entries held (expired ones included until the next fold).
    pub fn len(&self) -> usize {
        self.base.len() + self.recent.len()
    }

    /// No ban recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A set with `more` added: clones the small recent layer only, unless it has grown past
    /// [`COMPACT_AT`], when both layers fold into a new base without the bans ended at
    /// `now_ms`.
    pub fn with(&self, more: impl IntoIterator<Item = (IpNet, u64)>, now_ms: u64) -> Bans {
        let mut recent = self.recent.clone();
        for (net, until) in more {
            recent.add(net, until);
        }
        if recent.len() < COMPACT_AT {
            return Bans {
                base: self.base.clone(),
                recent,
            };
        }
        let live = self.base.entries().chain(recent.entries());
        Bans::from_all(live.filter(|&(_, u)| u > now_ms))
    }

    /// A set of exactly `all` (a full reload, after a ban was lifted).
    pub fn from_all(all: impl IntoIterator<Item = (IpNet, u64)>) -> Bans {
        let mut base = Layer::default();
        for (net, until) in all {
            base.add(net, until);
        }
        Bans {
            base: Arc::new(base),
            recent: Layer::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_ban_holds_until_its_end_and_not_after() {
        let b = Bans::default().with([(net("192.0.2.7"), 2_000)], 0);
        assert_eq!(b.banned_until(ip("192.0.2.7"), 1_999), Some(2_000));
        assert_eq!(b.banned_until(ip("192.0.2.7"), 2_000), None);
        assert_eq!(b.banned_until(ip("192.0.2.8"), 0), None);
        assert_eq!(b.banned_until(ip("::ffff:192.0.2.7"), 0), Some(2_000));
    }

    #[test]
    fn networks_and_repeated_bans_keep_the_latest_end() {
        let b = Bans::default().with(
            [
                (net("198.51.100.0/24"), 5_000),
                (net("198.51.100.9"), 3_000),
                (net("198.51.100.9"), 9_000),
                (net("198.51.100.9"), 1_000),
                (net("2001:db8::/32"), 4_000),
            ],
            0,
        );
        assert_eq!(b.banned_until(ip("198.51.100.200"), 0), Some(5_000));
        assert_eq!(b.banned_until(ip("198.51.100.9"), 0), Some(9_000));
        assert_eq!(b.banned_until(ip("2001:db8::1"), 0), Some(4_000));
        assert_eq!(b.banned_until(ip("2001:db9::1"), 0), None);
        assert_eq!(b.len(), 3, "one entry per source");
    }

    #[test]
    fn folding_keeps_live_bans_drops_ended_ones_and_leaves_the_old_set_alone() {
        let old = Bans::default().with([(net("203.0.113.1"), 100)], 0);
        let many =
            (0..COMPACT_AT as u32).map(|i| (IpNet::from(IpAddr::from(i.to_be_bytes())), 10_000));
        let new = old.with(many, 500);
        assert_eq!(new.recent.len(), 0, "folded into the base");
        assert_eq!(new.len(), COMPACT_AT, "the ended ban is not carried over");
        assert_eq!(new.banned_until(ip("0.0.0.5"), 600), Some(10_000));
        assert_eq!(new.banned_until(ip("203.0.113.1"), 50), None);
        // A request still holding the old set sees it unchanged.
        assert_eq!(old.banned_until(ip("203.0.113.1"), 50), Some(100));
        assert_eq!(old.len(), 1);
    }

    #[test]
    fn a_full_reload_is_exactly_what_it_is_given() {
        let b = Bans::default().with([(net("192.0.2.1"), 9_000)], 0);
        let reloaded = Bans::from_all([(net("192.0.2.2"), 9_000)]);
        assert!(b.banned_until(ip("192.0.2.1"), 0).is_some());
        assert!(reloaded.banned_until(ip("192.0.2.1"), 0).is_none());
        assert!(reloaded.banned_until(ip("192.0.2.2"), 0).is_some());
    }
}
