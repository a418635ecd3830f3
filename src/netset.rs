//! A set of IP addresses and CIDR networks, each carrying a value (the list row it came from).
//!
//! Lists hold a few thousand entries mixing single addresses and networks. A hash map per
//! prefix length answers "which entry contains this address" with at most one probe per
//! distinct prefix length in use (typically a handful), independent of the list's size.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Address and CIDR set with longest-prefix match; `T` is what a hit reports (row id, detail…).
#[derive(Debug, Clone)]
pub struct NetSet<T> {
    v4: Family<T>,
    v6: Family<T>,
}

#[derive(Debug, Clone)]
struct Family<T> {
    /// Prefix lengths present, longest first, so the first hit is the most specific entry.
    lens: Vec<u8>,
    map: HashMap<(u8, u128), T>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family {
            lens: Vec::new(),
            map: HashMap::new(),
        }
    }
}

impl<T> Default for NetSet<T> {
    fn default() -> Self {
        NetSet {
            v4: Family::default(),
            v6: Family::default(),
        }
    }
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(addr: u128, len: u8, bits: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let host = bits - len;
        (addr >> host) << host
    }
}

impl<T> NetSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a network (a bare address is a /32 or /128). A duplicate keeps the first value,
    /// so the lowest row id wins when rows are inserted in id order.
    pub fn insert(&mut self, net: IpNet, value: T) {
        let (fam, bits) = match net {
            IpNet::V4(_) => (&mut self.v4, 32),
            IpNet::V6(_) => (&mut self.v6, 128),
        };
        let len = net.prefix_len();
        let k = (len, mask(key(net.network()), len, bits));
        fam.map.entry(k).or_insert(value);
        if let Err(pos) = fam.lens.binary_search_by(|l| len.cmp(l)) {
            fam.lens.insert(pos, len);
        }
    }

    /// The most specific entry containing `ip`, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        let (fam, bits) = match ip {
            IpAddr::V4(_) => (&self.v4, 32),
            IpAddr::V6(_) => (&self.v6, 128),
        };
        let addr = key(ip);
        fam.lens
            .iter()
            .find_map(|&len| fam.map.get(&(len, mask(addr, len, bits))))
    }

    /// Number of distinct entries.
    pub fn len(&self) -> usize {
        self.v4.map.len() + self.v6.map.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a list cell: an address or a CIDR network, IPv4 or IPv6, spaces trimmed.
///
/// A network with host bits set (`192.0.2.7/24`) is taken as the network it names
/// (`192.0.2.0/24`), as iptables and Kamailio's permissions module do.
pub fn parse_net(cell: &str) -> Option<IpNet> {
    let s = cell.trim();
    let (addr_part, len_part) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    // std's strict address parser (no leading zeros), then the prefix as plain digits.
    let ip = crate::addr::parse_source(addr_part).ok()?;
    let Some(len_part) = len_part else {
        return Some(IpNet::from(ip));
    };
    if len_part.is_empty() || len_part.len() > 3 || !len_part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut len: u8 = len_part.parse().ok()?;
    // parse_source folded an IPv4-mapped address to IPv4: fold its prefix the same way.
    if ip.is_ipv4() && addr_part.contains(':') {
        len = len.checked_sub(96)?;
    }
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(entries: &[(&str, u32)]) -> NetSet<u32> {
        let mut s = NetSet::new();
        for (net, id) in entries {
            s.insert(parse_net(net).unwrap(), *id);
        }
        s
    }

    #[test]
    fn matches_addresses_and_networks_longest_first() {
        let s = set(&[
            ("203.0.113.0/24", 1),
            ("203.0.113.7", 2),
            ("2001:db8::/32", 3),
            ("2001:db8:1::5", 4),
            ("0.0.0.0/0", 5),
        ]);
        assert_eq!(s.lookup(ip("203.0.113.7")), Some(&2));
        assert_eq!(s.lookup(ip("203.0.113.8")), Some(&1));
        assert_eq!(s.lookup(ip("203.0.114.1")), Some(&5));
        assert_eq!(s.lookup(ip("2001:db8:1::5")), Some(&4));
        assert_eq!(s.lookup(ip("2001:db8:ffff::1")), Some(&3));
        assert_eq!(s.lookup(ip("2001:db9::1")), None);
    }

    #[test]
    fn families_do_not_mix() {
        let s = set(&[("::/0", 1)]);
        assert_eq!(s.lookup(ip("1.2.3.4")), None);
        let s = set(&[("0.0.0.0/0", 1)]);
        assert_eq!(s.lookup(ip("::1")), None);
    }

    #[test]
    fn duplicates_keep_the_first_row() {
        let s = set(&[("192.0.2.1", 7), ("192.0.2.1/32", 9)]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.lookup(ip("192.0.2.1")), Some(&7));
    }

    #[test]
    fn parse_net_normalises() {
        assert_eq!(
            parse_net(" 192.0.2.7/24 ").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            parse_net("::ffff:192.0.2.0/120").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            parse_net("[2001:db8::1]").unwrap().to_string(),
            "2001:db8::1/128"
        );
        for bad in [
            "",
            "192.0.2.0/33",
            "192.0.2.0/",
            "abc",
            "1.2.3.4/24/1",
            "010.0.0.0/8",
        ] {
            assert!(parse_net(bad).is_none(), "{bad:?}");
        }
    }
}
