//! Decisions. Plain values in, plain values out: no Lua, no MySQL, no clocks.
//!
//! The adapters (`lua`, `db`, `process`) feed this module rows and addresses and turn its
//! answers into AVPs; everything that decides whether a source is dropped lives here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::addr;
use crate::netset::{parse_net, NetSet};
use crate::ranges::CountryRanges;

/// One row of a list table as stored: the engine validates `value` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    /// The table's primary key, reported in logs so the operator can fix the row.
    pub id: i64,
    /// The listed thing: an address or CIDR (`black_list.ip`) or a country code.
    pub value: String,
    /// The post's free-text `detail` column.
    pub detail: String,
}

/// What matched, for logs and for `$avp(wb_type)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListHit {
    /// Row id in `black_list`.
    pub id: i64,
    /// The network as parsed (a bare address is a /32 or /128).
    pub net: IpNet,
    /// The row's `detail`, shared rather than copied per cached answer.
    pub detail: Arc<str>,
}

/// A row the engine could not use, so the caller can log it once with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Which table it came from.
    pub table: &'static str,
    /// Row id.
    pub id: i64,
    /// The offending value, printable.
    pub value: String,
}

/// The lists, loaded whole: they are small (thousands of rows), so matching in memory beats a
/// query per source and keeps deciding while the database is away.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    black: NetSet<ListHit>,
    countries: HashMap<String, i64>,
}

impl Lists {
    /// Builds the lists from table rows, returning the rows that do not parse.
    pub fn build(black_rows: &[ListRow], country_rows: &[ListRow]) -> (Lists, Vec<Rejected>) {
        let mut lists = Lists::default();
        let mut rejected = Vec::new();
        for row in black_rows {
            match parse_net(&row.value) {
                Some(net) => lists.black.insert(
                    net,
                    ListHit {
                        id: row.id,
                        net,
                        detail: row.detail.as_str().into(),
                    },
                ),
                None => rejected.push(Rejected {
                    table: "black_list",
                    id: row.id,
                    value: addr::printable(&row.value),
                }),
            }
        }
        for row in country_rows {
            match normalize_country(&row.value) {
                Some(cc) => {
                    lists.countries.entry(cc).or_insert(row.id);
                }
                None => rejected.push(Rejected {
                    table: "black_list_country",
                    id: row.id,
                    value: addr::printable(&row.value),
                }),
            }
        }
        (lists, rejected)
    }

    /// The most specific `black_list` row containing `ip`.
    pub fn black_hit(&self, ip: IpAddr) -> Option<&ListHit> {
        self.black.lookup(ip)
    }

    /// True if `country` is in `black_list_country` (case-insensitive; `""` never is).
    pub fn country_listed(&self, country: &str) -> bool {
        normalize_country(country).is_some_and(|cc| self.countries.contains_key(&cc))
    }

    /// Entries held: (addresses and networks, countries).
    pub fn sizes(&self) -> (usize, usize) {
        (self.black.len(), self.countries.len())
    }
}

/// An ISO 3166 alpha-2 code (the data also has a few 3-letter pseudo codes), upper-cased.
pub fn normalize_country(raw: &str) -> Option<String> {
    let s = raw.trim();
    let ok = (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic());
    ok.then(|| s.to_ascii_uppercase())
}

/// What to answer while this process has never loaded the lists (database down at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoDataPolicy {
    /// Let traffic through (`wb_status` empty): SIP keeps working, lists are not enforced.
    Allow,
    /// Treat every source as listed (`wb_status` = `black`, `wb_type` = `nodata`).
    Block,
}

/// The answer to `check_blacklist` / `check_country_blacklist`, as the cfg reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not listed (or not decidable): `$avp(wb_status)` = `""`.
    Clear,
    /// Listed: `$avp(wb_status)` = `"black"`, `$avp(wb_type)` = the kind that matched.
    Black(BlackKind),
}

/// Which list matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlackKind {
    /// A `black_list` row (address or network).
    Ip(ListHit),
    /// A `black_list_country` code.
    Country,
    /// No lists were ever loaded and the policy is `block`.
    NoData,
}

impl Verdict {
    /// `$avp(wb_status)` value.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Clear => "",
            Verdict::Black(_) => "black",
        }
    }

    /// `$avp(wb_type)` value: what the post's alert line prints after "blacklisted".
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Clear => "",
            Verdict::Black(BlackKind::Ip(_)) => "ip",
            Verdict::Black(BlackKind::Country) => "country",
            Verdict::Black(BlackKind::NoData) => "nodata",
        }
    }
}

/// `check_blacklist`: is this source address listed?
pub fn check_ip(lists: Option<&Lists>, ip: IpAddr, policy: NoDataPolicy) -> Verdict {
    match lists {
        None => no_data(policy),
        Some(l) => match l.black_hit(ip) {
            Some(hit) => Verdict::Black(BlackKind::Ip(hit.clone())),
            None => Verdict::Clear,
        },
    }
}

/// `check_country_blacklist`: is this country listed?
pub fn check_country(lists: Option<&Lists>, country: &str, policy: NoDataPolicy) -> Verdict {
    match lists {
        None => no_data(policy),
        Some(l) if l.country_listed(country) => Verdict::Black(BlackKind::Country),
        Some(_) => Verdict::Clear,
    }
}

fn no_data(policy: NoDataPolicy) -> Verdict {
    match policy {
        NoDataPolicy::Allow => Verdict::Clear,
        NoDataPolicy::Block => Verdict::Black(BlackKind::NoData),
    }
}

/// `get_countrycode`: the ISO code for a source, `""` when unknown, local or not loaded.
pub fn country_of(ranges: Option<&CountryRanges>, ip: IpAddr) -> &str {
    if !addr::is_public(ip) {
        return "";
    }
    ranges.and_then(|r| r.lookup(ip)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::CountryRangesBuilder;

    fn row(id: i64, v: &str) -> ListRow {
        ListRow {
            id,
            value: v.into(),
            detail: format!("row {id}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lists_skip_bad_rows_and_report_them() {
        let (lists, rejected) = Lists::build(
            &[
                row(1, "192.0.2.1"),
                row(2, "not-an-ip"),
                row(3, "2001:db8::/32"),
                row(4, "198.51.100.0/24"),
            ],
            &[row(10, "es"), row(11, "E$"), row(12, " FR ")],
        );
        assert_eq!(lists.sizes(), (3, 2));
        assert_eq!(
            rejected.iter().map(|r| (r.table, r.id)).collect::<Vec<_>>(),
            vec![("black_list", 2), ("black_list_country", 11)]
        );
        let v = check_ip(Some(&lists), ip("198.51.100.77"), NoDataPolicy::Allow);
        assert_eq!((v.status(), v.kind()), ("black", "ip"));
        match v {
            Verdict::Black(BlackKind::Ip(hit)) => {
                assert_eq!(hit.id, 4);
                assert_eq!(&*hit.detail, "row 4");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            check_ip(Some(&lists), ip("2001:db8:5::1"), NoDataPolicy::Allow).kind(),
            "ip"
        );
        assert_eq!(
            check_ip(Some(&lists), ip("192.0.2.2"), NoDataPolicy::Allow),
            Verdict::Clear
        );
    }

    #[test]
    fn countries_match_case_insensitively_and_empty_never() {
        let (lists, _) = Lists::build(&[], &[row(1, "ES")]);
        for listed in ["ES", "es", " Es "] {
            assert_eq!(
                check_country(Some(&lists), listed, NoDataPolicy::Allow).status(),
                "black"
            );
        }
        for clear in ["", "FR", "ESP", "' OR 1=1 --", "E"] {
            assert_eq!(
                check_country(Some(&lists), clear, NoDataPolicy::Allow),
                Verdict::Clear
            );
        }
    }

    #[test]
    fn policy_applies_only_without_lists() {
        let none: Option<&Lists> = None;
        assert_eq!(
            check_ip(none, ip("192.0.2.1"), NoDataPolicy::Allow),
            Verdict::Clear
        );
        assert_eq!(
            check_ip(none, ip("192.0.2.1"), NoDataPolicy::Block).kind(),
            "nodata"
        );
        assert_eq!(
            check_country(none, "ES", NoDataPolicy::Block).status(),
            "black"
        );
        let empty = Lists::default();
        assert_eq!(
            check_ip(Some(&empty), ip("192.0.2.1"), NoDataPolicy::Block),
            Verdict::Clear
        );
    }

    #[test]
    fn country_of_ignores_local_addresses() {
        let mut b = CountryRangesBuilder::default();
        b.add_v4(0, u32::MAX, "ZZ");
        let r = b.build();
        assert_eq!(country_of(Some(&r), ip("8.8.8.8")), "ZZ");
        assert_eq!(country_of(Some(&r), ip("10.0.0.1")), "");
        assert_eq!(country_of(Some(&r), ip("127.0.0.1")), "");
        assert_eq!(country_of(None, ip("8.8.8.8")), "");
    }
}
