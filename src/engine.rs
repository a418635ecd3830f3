//! Decisions. Plain values in, plain values out: no Lua, no MySQL, no clocks.
//!
//! The adapters (`lua`, `db`, `process`) feed this module rows and addresses and turn its
//! answers into AVPs; everything that decides whether a source is dropped lives here.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::addr;
use crate::netset::{parse_net, NetSet};
use crate::ranges::CountryRanges;
use crate::uamatch::{UaMatcher, UaPattern};

/// One row of a list table as stored: the engine validates `value` itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Every list table's rows, as read: the engine validates the values itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListRows {
    /// `black_list`: addresses and networks.
    pub black: Vec<ListRow>,
    /// `white_list`: addresses and networks exempt from every check.
    pub white: Vec<ListRow>,
    /// `black_list_country`: ISO codes.
    pub countries: Vec<ListRow>,
    /// `black_list_user`: SIP user names (`$au`, `$fU`).
    pub users: Vec<ListRow>,
    /// `black_list_ua`: User-Agent substrings.
    pub user_agents: Vec<ListRow>,
}

/// The lists, loaded whole: they are small (thousands of rows), so matching in memory beats a
/// query per source and keeps deciding while the database is away.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    /// Distinct addresses and networks in `black_list` and `white_list`, for the log line.
    black_len: usize,
    white_len: usize,
    /// Both lists in one set, allow-list entries ranked first: the request path answers
    /// `check_blacklist` with one lookup (a fresh source costs cache misses, not instructions).
    decide: NetSet<Verdict>,
    countries: HashMap<CountryKey, i64>,
    /// Two-letter codes in `countries`, one bit each (26 × 26): the request path answers
    /// "is this country listed" from the struct itself, without touching the map.
    country_bits: [u64; 11],
    users: HashMap<String, i64>,
    user_agents: UaMatcher,
}

fn parse_hits(
    rows: &[ListRow],
    table: &'static str,
    rejected: &mut Vec<Rejected>,
) -> Vec<(IpNet, ListHit)> {
    let mut hits = Vec::with_capacity(rows.len());
    for row in rows {
        match parse_net(&row.value) {
            Some(net) => hits.push((
                net,
                ListHit {
                    id: row.id,
                    net,
                    detail: row.detail.as_str().into(),
                },
            )),
            None => rejected.push(Rejected::of(table, row)),
        }
    }
    hits
}

fn distinct_nets(hits: &[(IpNet, ListHit)]) -> usize {
    hits.iter().map(|(n, _)| *n).collect::<HashSet<_>>().len()
}

/// `black_list` and `white_list` as separate sets, to explain a decision step by step
/// (`sipguard-admin explain`). Workers build only [`Lists`], whose one combined set is all the
/// request path needs.
#[derive(Debug, Clone, Default)]
pub struct IpLists {
    black: NetSet<ListHit>,
    white: NetSet<ListHit>,
}

impl IpLists {
    /// Builds both sets; rows that do not parse are left out (`Lists::build` reports them).
    pub fn build(rows: &ListRows) -> IpLists {
        let mut rejected = Vec::new();
        IpLists {
            black: NetSet::build(parse_hits(&rows.black, "black_list", &mut rejected)),
            white: NetSet::build(parse_hits(&rows.white, "white_list", &mut rejected)),
        }
    }

    /// The most specific `black_list` row containing `ip`.
    pub fn black_hit(&self, ip: IpAddr) -> Option<&ListHit> {
        self.black.lookup(ip)
    }

    /// The most specific `white_list` row containing `ip`.
    pub fn white_hit(&self, ip: IpAddr) -> Option<&ListHit> {
        self.white.lookup(ip)
    }
}

impl Rejected {
    fn of(table: &'static str, row: &ListRow) -> Rejected {
        Rejected {
            table,
            id: row.id,
            value: addr::printable(&row.value),
        }
    }
}

impl Lists {
    /// Builds the lists from table rows plus the config's scanner patterns, returning the rows
    /// that cannot be used (so the caller can log each once, with its id).
    pub fn build(rows: &ListRows, default_user_agents: &[String]) -> (Lists, Vec<Rejected>) {
        let mut rejected = Vec::new();
        let black = parse_hits(&rows.black, "black_list", &mut rejected);
        let white = parse_hits(&rows.white, "white_list", &mut rejected);
        let (black_len, white_len) = (distinct_nets(&black), distinct_nets(&white));
        let decide = NetSet::build_ranked(
            white
                .into_iter()
                .map(|(n, h)| (n, Verdict::White(h), 0))
                .chain(
                    black
                        .into_iter()
                        .map(|(n, h)| (n, Verdict::Black(BlackKind::Ip(h)), 1)),
                ),
        );
        let mut countries = HashMap::new();
        for row in &rows.countries {
            match country_key(&row.value) {
                Some(cc) => {
                    countries.entry(cc).or_insert(row.id);
                }
                None => rejected.push(Rejected::of("black_list_country", row)),
            }
        }
        let mut users = HashMap::new();
        for row in &rows.users {
            match normalize_user(&row.value) {
                Some(u) => {
                    users.entry(u.to_string()).or_insert(row.id);
                }
                None => rejected.push(Rejected::of("black_list_user", row)),
            }
        }
        let mut patterns = default_ua_patterns(default_user_agents);
        for row in &rows.user_agents {
            match row.value.trim() {
                "" => rejected.push(Rejected::of("black_list_ua", row)),
                p => patterns.push(UaPattern {
                    id: row.id,
                    pattern: p.to_string(),
                }),
            }
        }
        let mut country_bits = [0u64; 11];
        for k in countries.keys() {
            if let Some(bit) = country_bit(k) {
                country_bits[bit / 64] |= 1 << (bit % 64);
            }
        }
        let lists = Lists {
            black_len,
            white_len,
            decide,
            countries,
            country_bits,
            users,
            user_agents: UaMatcher::new(patterns),
        };
        (lists, rejected)
    }

    /// `check_blacklist`'s answer for `ip` from the lists: allow-listed, listed, or neither.
    pub fn ip_verdict(&self, ip: IpAddr) -> Option<&Verdict> {
        self.decide.lookup(ip)
    }

    /// True if `country` is in `black_list_country` (case-insensitive; `""` never is).
    pub fn country_listed(&self, country: &str) -> bool {
        let Some(cc) = country_key(country) else {
            return false;
        };
        match country_bit(&cc) {
            Some(bit) => self.country_bits[bit / 64] & (1 << (bit % 64)) != 0,
            None => self.countries.contains_key(&cc),
        }
    }

    /// The `black_list_country` row id listing `country`.
    pub fn country_id(&self, country: &str) -> Option<i64> {
        country_key(country).and_then(|cc| self.countries.get(&cc).copied())
    }

    /// The `black_list_user` row id listing `user`.
    pub fn user_id(&self, user: &str) -> Option<i64> {
        normalize_user(user).and_then(|u| self.users.get(u).copied())
    }

    /// True if `user` is in `black_list_user` (exact, as SIP user parts are case-sensitive).
    pub fn user_listed(&self, user: &str) -> bool {
        normalize_user(user).is_some_and(|u| self.users.contains_key(u))
    }

    /// The scanner pattern found in `ua`, from the config or `black_list_ua`.
    pub fn user_agent_hit(&self, ua: &str) -> Option<&UaPattern> {
        self.user_agents.find(ua)
    }

    /// Entries held, for the log line after each load.
    pub fn summary(&self) -> String {
        format!(
            "{} black addresses/networks, {} white, {} countries, {} users, {} User-Agent patterns",
            self.black_len,
            self.white_len,
            self.countries.len(),
            self.users.len(),
            self.user_agents.len()
        )
    }

    /// Entries held: (black addresses and networks, countries).
    pub fn sizes(&self) -> (usize, usize) {
        (self.black_len, self.countries.len())
    }
}

/// Scanner patterns from the config, as list entries with id 0.
pub fn default_ua_patterns(patterns: &[String]) -> Vec<UaPattern> {
    patterns
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| UaPattern {
            id: 0,
            pattern: p.to_string(),
        })
        .collect()
}

/// A user name as matched: trimmed, non-empty, at most 128 bytes (longer is junk, not a user).
fn normalize_user(raw: &str) -> Option<&str> {
    let u = raw.trim();
    (!u.is_empty() && u.len() <= 128).then_some(u)
}

/// A country code as a map key: upper-cased in place, no allocation on the request path.
type CountryKey = [u8; 3];

/// The bit of a two-letter code in [`Lists::country_bits`]; three-letter codes have none.
fn country_bit(k: &CountryKey) -> Option<usize> {
    (k[2] == 0).then(|| usize::from(k[0] - b'A') * 26 + usize::from(k[1] - b'A'))
}

fn country_key(raw: &str) -> Option<CountryKey> {
    let s = raw.trim().as_bytes();
    if !(2..=3).contains(&s.len()) || !s.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let mut k = [0u8; 3];
    for (d, b) in k.iter_mut().zip(s) {
        *d = b.to_ascii_uppercase();
    }
    Some(k)
}

/// True if `raw` has the shape of a country code (two or three letters, spaces around).
pub fn is_country_code(raw: &str) -> bool {
    country_key(raw).is_some()
}

/// An ISO 3166 alpha-2 code (the data also has a few 3-letter pseudo codes), upper-cased.
pub fn normalize_country(raw: &str) -> Option<String> {
    let k = country_key(raw)?;
    Some(
        k.iter()
            .take_while(|&&b| b != 0)
            .map(|&b| char::from(b))
            .collect(),
    )
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

/// The answer to the `check_*` functions, as the cfg reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not listed (or not decidable): `$avp(wb_status)` = `""`.
    Clear,
    /// In `white_list`: `$avp(wb_status)` = `"white"`; the cfg skips every other check.
    White(ListHit),
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
    /// A `black_list_user` name.
    User,
    /// A scanner User-Agent pattern.
    Ua(UaPattern),
    /// No lists were ever loaded and the policy is `block`.
    NoData,
    /// A `sipguard_ban` row in force (see [`crate::bans`]): banned until `until_ms` (Unix ms).
    Ban {
        /// When the ban ends.
        until_ms: u64,
    },
}

impl Verdict {
    /// `$avp(wb_status)` value.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Clear => "",
            Verdict::White(_) => "white",
            Verdict::Black(_) => "black",
        }
    }

    /// `$avp(wb_type)` value: what the post's alert line prints after "blacklisted".
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Clear => "",
            Verdict::White(_) | Verdict::Black(BlackKind::Ip(_)) => "ip",
            Verdict::Black(BlackKind::Country) => "country",
            Verdict::Black(BlackKind::User) => "user",
            Verdict::Black(BlackKind::Ua(_)) => "ua",
            Verdict::Black(BlackKind::NoData) => "nodata",
            Verdict::Black(BlackKind::Ban { .. }) => "ban",
        }
    }
}

/// `check_blacklist`: is this source allow-listed, or listed? The allow-list wins, so a
/// carrier inside a blocked network keeps working.
pub fn check_ip(lists: Option<&Lists>, ip: IpAddr, policy: NoDataPolicy) -> Verdict {
    let Some(l) = lists else {
        return no_data(policy);
    };
    l.ip_verdict(ip).cloned().unwrap_or(Verdict::Clear)
}

/// `check_user_blacklist`: is this SIP user name listed?
pub fn check_user(lists: Option<&Lists>, user: &str, policy: NoDataPolicy) -> Verdict {
    match lists {
        None => no_data(policy),
        Some(l) if l.user_listed(user) => Verdict::Black(BlackKind::User),
        Some(_) => Verdict::Clear,
    }
}

/// `check_user_agent`: does the User-Agent contain a scanner pattern? Without loaded lists the
/// config's patterns still apply: they need no database.
pub fn check_user_agent(lists: Option<&Lists>, defaults: &UaMatcher, ua: &str) -> Verdict {
    let hit = match lists {
        Some(l) => l.user_agent_hit(ua),
        None => defaults.find(ua),
    };
    match hit {
        Some(p) => Verdict::Black(BlackKind::Ua(p.clone())),
        None => Verdict::Clear,
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
pub fn country_of(ranges: Option<&CountryRanges>, ip: IpAddr) -> &'static str {
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

    fn lists_of(black: &[ListRow], countries: &[ListRow]) -> (Lists, Vec<Rejected>) {
        let rows = ListRows {
            black: black.to_vec(),
            countries: countries.to_vec(),
            ..ListRows::default()
        };
        Lists::build(&rows, &[])
    }

    #[test]
    fn lists_skip_bad_rows_and_report_them() {
        let (lists, rejected) = lists_of(
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
        let (lists, _) = lists_of(&[], &[row(1, "ES")]);
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
        // Both ends of the two-letter space, and a three-letter pseudo code.
        let (lists, _) = lists_of(&[], &[row(1, "AA"), row(2, "zz"), row(3, "EUR")]);
        for listed in ["AA", "ZZ", "eur"] {
            assert!(lists.country_listed(listed), "{listed}");
        }
        for clear in ["AB", "ZY", "EU", "EUU", "ES"] {
            assert!(!lists.country_listed(clear), "{clear}");
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
    fn white_list_wins_over_black_list() {
        let rows = ListRows {
            black: vec![row(1, "198.51.100.0/24")],
            white: vec![row(2, "198.51.100.7"), row(3, "bad/99")],
            ..ListRows::default()
        };
        let (l, rejected) = Lists::build(&rows, &[]);
        assert_eq!(
            rejected.iter().map(|r| (r.table, r.id)).collect::<Vec<_>>(),
            vec![("white_list", 3)]
        );
        let v = check_ip(Some(&l), ip("198.51.100.7"), NoDataPolicy::Block);
        assert_eq!((v.status(), v.kind()), ("white", "ip"));
        assert_eq!(
            check_ip(Some(&l), ip("198.51.100.8"), NoDataPolicy::Allow).status(),
            "black"
        );
        // A more specific black entry inside an allow-listed network: the allow-list wins.
        let rows = ListRows {
            black: vec![row(1, "203.0.113.9"), row(2, "203.0.114.0/24")],
            white: vec![row(3, "203.0.113.0/24")],
            ..ListRows::default()
        };
        let (l, _) = Lists::build(&rows, &[]);
        for (a, want) in [
            ("203.0.113.9", "white"),
            ("203.0.113.10", "white"),
            ("203.0.114.1", "black"),
            ("203.0.115.1", ""),
        ] {
            assert_eq!(
                check_ip(Some(&l), ip(a), NoDataPolicy::Allow).status(),
                want,
                "{a}"
            );
        }
    }

    #[test]
    fn users_and_user_agents() {
        let rows = ListRows {
            users: vec![row(1, "1000"), row(2, " admin "), row(3, "  ")],
            user_agents: vec![row(4, "EvilDialer"), row(5, " ")],
            ..ListRows::default()
        };
        let (l, rejected) = Lists::build(&rows, &["friendly-scanner".to_string()]);
        assert_eq!(rejected.len(), 2);
        assert_eq!(
            check_user(Some(&l), "admin", NoDataPolicy::Allow).kind(),
            "user"
        );
        assert_eq!(
            check_user(Some(&l), "Admin", NoDataPolicy::Allow),
            Verdict::Clear,
            "user parts are case-sensitive"
        );
        assert_eq!(
            check_user(Some(&l), "", NoDataPolicy::Block),
            Verdict::Clear
        );
        assert_eq!(
            check_user(None, "admin", NoDataPolicy::Block).kind(),
            "nodata"
        );
        let none = UaMatcher::default();
        assert_eq!(
            check_user_agent(Some(&l), &none, "evildialer 2.0").kind(),
            "ua"
        );
        assert_eq!(
            check_user_agent(Some(&l), &none, "Friendly-Scanner").kind(),
            "ua"
        );
        assert_eq!(
            check_user_agent(Some(&l), &none, "Linphone"),
            Verdict::Clear
        );
        let defaults = UaMatcher::new(default_ua_patterns(&["sipvicious".to_string()]));
        assert_eq!(
            check_user_agent(None, &defaults, "SIPVicious").kind(),
            "ua",
            "config patterns work without the DB"
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
