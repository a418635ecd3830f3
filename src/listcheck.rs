//! Guard rails for `black_list` / `white_list` entries: the typing mistakes that silently block
//! everyone or switch protection off. `sipguard-admin` refuses a too-wide entry (unless
//! `--force`) and says when it stores an IPv4-mapped entry as IPv4 or a network written with
//! host bits as the network it names; the module still enforces
//! what the database holds (the database is the truth) but logs one warning per such row at
//! load.

use ipnet::IpNet;

use crate::engine::ListRow;
use crate::netset::parse_net;

/// Entries wider than this IPv4 prefix length are refused without `--force`.
pub const WIDEST_V4: u8 = 8;
/// Entries wider than this IPv6 prefix length are refused without `--force`.
pub const WIDEST_V6: u8 = 16;

/// Something about an entry that the operator must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concern {
    /// Written in IPv4-mapped IPv6 space (`::ffff:0:0/96` or inside it): sources in it are
    /// IPv4 sources, so it is stored and matched as its IPv4 equivalent.
    Mapped {
        /// The IPv4 network it means.
        as_v4: IpNet,
    },
    /// Wider than a /8 (IPv4) or a /16 (IPv6), up to the whole of either space.
    Wide {
        /// The network.
        net: IpNet,
    },
}

impl Concern {
    /// One sentence for the operator, e.g. `0.0.0.0/0 covers 4,294,967,296 addresses (all of IPv4)`.
    pub fn describe(&self, raw: &str) -> String {
        match self {
            Concern::Mapped { as_v4 } => format!(
                "{:?} is IPv4-mapped IPv6 space: it means the IPv4 network {}",
                raw.trim(),
                show(*as_v4)
            ),
            Concern::Wide { net } => format!("{} covers {}", show(*net), addresses(*net)),
        }
    }
}

/// A network as stored: a bare address for a /32 or /128.
pub fn show(net: IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// How many addresses `net` covers, in words: exact with digit groups for IPv4, as a power of
/// two for IPv6; "(all of IPv4)" / "(all of IPv6)" for a /0.
pub fn addresses(net: IpNet) -> String {
    let bits = u32::from(net.max_prefix_len() - net.prefix_len());
    let count = match net {
        IpNet::V4(_) => grouped(1u128 << bits),
        IpNet::V6(_) => format!("2^{bits}"),
    };
    let all = match (net, net.prefix_len()) {
        (IpNet::V4(_), 0) => " (all of IPv4)",
        (IpNet::V6(_), 0) => " (all of IPv6)",
        _ => "",
    };
    format!("{count} addresses{all}")
}

fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The concerns about an entry written as `raw` that parsed to `net`.
pub fn concerns(raw: &str, net: IpNet) -> Vec<Concern> {
    let mut out = Vec::new();
    // parse_net folds IPv4-mapped IPv6 to IPv4: a colon in what was typed tells it apart.
    if net.addr().is_ipv4() && raw.contains(':') {
        out.push(Concern::Mapped { as_v4: net });
    }
    let widest = match net {
        IpNet::V4(_) => WIDEST_V4,
        IpNet::V6(_) => WIDEST_V6,
    };
    if net.prefix_len() < widest {
        out.push(Concern::Wide { net });
    }
    out
}

/// True when `raw` names a network by an address inside it (`198.51.100.77/24`): it is stored
/// as the network (`198.51.100.0/24`), as iptables and Kamailio's permissions read it, and the
/// admin tool says so, since every address of the network is then listed.
pub fn has_host_bits(raw: &str, net: IpNet) -> bool {
    raw.trim()
        .split_once('/')
        .and_then(|(a, _)| crate::addr::parse_source(a).ok())
        .is_some_and(|ip| ip != net.addr())
}

/// One warning line per row of `table` with a concern, for the module's log at load:
/// `(row id, line)`.
pub fn review(table: &str, rows: &[ListRow]) -> Vec<(i64, String)> {
    rows.iter()
        .filter_map(|row| {
            let net = parse_net(&row.value)?;
            let found = concerns(&row.value, net);
            if found.is_empty() {
                return None;
            }
            let what: Vec<String> = found.iter().map(|c| c.describe(&row.value)).collect();
            let wide = found.iter().any(|c| matches!(c, Concern::Wide { .. }));
            Some((
                row.id,
                format!(
                    "{table} id={}: {}; enforced as stored{}",
                    row.id,
                    what.join("; "),
                    if wide {
                        " (sipguard-admin would refuse it without --force)"
                    } else {
                        ""
                    }
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: &str) -> Vec<Concern> {
        concerns(raw, parse_net(raw).unwrap())
    }

    #[test]
    fn mapped_and_wide_entries_are_named() {
        assert_eq!(
            c("::ffff:0:0/96"),
            vec![
                Concern::Mapped {
                    as_v4: "0.0.0.0/0".parse().unwrap()
                },
                Concern::Wide {
                    net: "0.0.0.0/0".parse().unwrap()
                }
            ]
        );
        assert_eq!(
            c("::ffff:192.0.2.0/120"),
            vec![Concern::Mapped {
                as_v4: "192.0.2.0/24".parse().unwrap()
            }]
        );
        for wide in ["0.0.0.0/0", "0.0.0.0/1", "10.0.0.0/7", "::/0", "2001::/15"] {
            assert!(matches!(c(wide)[..], [Concern::Wide { .. }]), "{wide}");
        }
        for fine in ["10.0.0.0/8", "2001:db8::/16", "192.0.2.1", "2001:db8::1"] {
            assert!(c(fine).is_empty(), "{fine}");
        }
    }

    #[test]
    fn host_bits_are_seen() {
        let h = |raw: &str| has_host_bits(raw, parse_net(raw).unwrap());
        assert!(h("198.51.100.77/24") && h("::ffff:198.51.100.77/120") && h("2001:db8::1/64"));
        assert!(
            !h("198.51.100.0/24") && !h("192.0.2.7") && !h("192.0.2.7/32") && !h("2001:db8::/64")
        );
    }

    #[test]
    fn descriptions_count_addresses() {
        let d = |raw: &str| c(raw).iter().map(|x| x.describe(raw)).collect::<Vec<_>>();
        assert_eq!(
            d("0.0.0.0/0"),
            vec!["0.0.0.0/0 covers 4,294,967,296 addresses (all of IPv4)"]
        );
        assert_eq!(
            d("10.0.0.0/7"),
            vec!["10.0.0.0/7 covers 33,554,432 addresses"]
        );
        assert_eq!(d("::/0"), vec!["::/0 covers 2^128 addresses (all of IPv6)"]);
        assert_eq!(
            d("::ffff:0:0/96")[0],
            "\"::ffff:0:0/96\" is IPv4-mapped IPv6 space: it means the IPv4 network 0.0.0.0/0"
        );
    }

    #[test]
    fn review_names_the_row() {
        let rows = vec![
            ListRow {
                id: 3,
                value: "192.0.2.1".into(),
                detail: String::new(),
            },
            ListRow {
                id: 7,
                value: "::ffff:0:0/96".into(),
                detail: String::new(),
            },
        ];
        let r = review("black_list", &rows);
        assert_eq!(r.len(), 1);
        assert!(r[0]
            .1
            .ends_with("enforced as stored (sipguard-admin would refuse it without --force)"));
        let mapped = vec![ListRow {
            id: 9,
            value: "::ffff:192.0.2.0/120".into(),
            detail: String::new(),
        }];
        let m = review("white_list", &mapped);
        assert!(
            m[0].1
                .ends_with("it means the IPv4 network 192.0.2.0/24; enforced as stored"),
            "{}",
            m[0].1
        );
        assert_eq!(r[0].0, 7);
        assert!(
            r[0].1
                .starts_with("black_list id=7: \"::ffff:0:0/96\" is IPv4-mapped"),
            "{}",
            r[0].1
        );
        assert!(
            r[0].1.contains("0.0.0.0/0 covers 4,294,967,296 addresses"),
            "{}",
            r[0].1
        );
    }
}
