//! A set of IP addresses and CIDR networks, each carrying a value (the list row it came from).
//!
//! Lists hold thousands of entries mixing single addresses and networks. They are flattened
//! into the same disjoint segments as the country table ([`Segments`]): nested networks
//! resolve to the most specific one at build time, so a lookup is one two-level search (two or
//! three cache lines) whatever the mix of prefix lengths. A hash map per prefix length cost one
//! random probe per length in use, each a cache miss on a fresh source.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ranges::Segments;

/// Address and CIDR set with longest-prefix match; `T` is what a hit reports (row id, detail…).
#[derive(Debug, Clone)]
pub struct NetSet<T> {
    entries: Vec<T>,
    v4: Segments<u32, u32>,
    v6: Segments<u128, u32>,
}

impl<T> Default for NetSet<T> {
    fn default() -> Self {
        NetSet {
            entries: Vec::new(),
            v4: Segments::default(),
            v6: Segments::default(),
        }
    }
}

impl<T> NetSet<T> {
    /// Builds the set from networks (a bare address is a /32 or /128). A duplicate network
    /// keeps the first value, so the lowest row id wins when rows come in id order.
    pub fn build(items: impl IntoIterator<Item = (IpNet, T)>) -> Self {
        Self::build_ranked(items.into_iter().map(|(net, v)| (net, v, 0)))
    }

    /// Like [`Self::build`], but a lower `rank` wins over a more specific network (an
    /// allow-list entry over a block-list entry inside it). A duplicate network keeps the
    /// first value given, whatever its rank.
    pub fn build_ranked(items: impl IntoIterator<Item = (IpNet, T, u8)>) -> Self {
        let mut seen = HashSet::new();
        let (mut entries, mut v4, mut v6) = (Vec::new(), Vec::new(), Vec::new());
        for (net, value, rank) in items {
            if !seen.insert(net) {
                continue;
            }
            let Ok(i) = u32::try_from(entries.len()) else {
                break;
            };
            entries.push(value);
            match net {
                IpNet::V4(n) => v4.push((n.network().into(), n.broadcast().into(), i, rank)),
                IpNet::V6(n) => v6.push((n.network().into(), n.broadcast().into(), i, rank)),
            }
        }
        NetSet {
            entries,
            v4: Segments::build_ranked(v4),
            v6: Segments::build_ranked(v6),
        }
    }

    /// The most specific entry containing `ip`, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        let i = match ip {
            IpAddr::V4(v4) => self.v4.lookup(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.lookup(u128::from(v6)),
        }?;
        self.entries.get(i as usize)
    }

    /// Number of distinct entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, in the order given (duplicates dropped).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
        NetSet::build(
            entries
                .iter()
                .map(|(net, id)| (parse_net(net).unwrap(), *id)),
        )
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

    /// Flattening must answer what a longest-prefix scan over the entries answers.
    #[test]
    fn agrees_with_a_longest_prefix_scan() {
        let mut seed = 0x9e37_79b9_u32;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        // Networks inside 10.0.0.0/16 so they nest often; lengths /16../32.
        let nets: Vec<(IpNet, u32)> = (0..300)
            .map(|id| {
                let len = 16 + (rnd() % 17) as u8;
                let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (rnd() & 0xffff));
                (IpNet::new(addr.into(), len).unwrap().trunc(), id)
            })
            .collect();
        let s = NetSet::build(nets.clone());
        for _ in 0..20_000 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x09ff_0000 + (rnd() % 0x3_0000)));
            let want = nets
                .iter()
                .filter(|(n, _)| n.contains(&a))
                .max_by_key(|(n, id)| (n.prefix_len(), std::cmp::Reverse(*id)))
                .map(|(_, id)| id);
            assert_eq!(s.lookup(a), want, "{a}");
        }
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
