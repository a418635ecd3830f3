//! A [`NodeView`] as a Prometheus exposition: counters summed over the node's live workers,
//! gauges for the node's state, the database's change counters and table sizes.
//!
//! Names follow Prometheus's conventions: `sipguard_` prefix, base units (seconds), `_total`
//! on counters only (the crate appends it), `_timestamp_seconds` for moments (ages are
//! `time() - x` in PromQL). A counter summed over workers drops when a worker restarts, which
//! `rate()` and `increase()` read as a counter reset.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{DbView, NodeView};
use crate::stats;

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: what node_exporter's textfile collector and `promtool
    /// check metrics` read.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper that asks for it (`Accept`).
    OpenMetrics,
}

impl Format {
    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The checks of `sipguard_decisions_total{check}` and the results of `{result}`, as the
/// workers' `decided_<check>_<result>` counters name them ([`crate::stats::Counters`]).
pub const CHECKS: [&str; 6] = ["ip", "country", "ua", "user", "ban", "all"];
/// See [`CHECKS`].
pub const RESULTS: [&str; 4] = ["clear", "white", "black", "nodata"];

type Labels = Vec<(&'static str, &'static str)>;

/// Worker counters that become one labelled series each:
/// (counter, metric without `_total`, help, label, value).
const LABELLED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "check_blacklist",
        "sipguard_calls",
        CALLS,
        "function",
        "check_blacklist",
    ),
    (
        "get_countrycode",
        "sipguard_calls",
        CALLS,
        "function",
        "get_countrycode",
    ),
    (
        "check_country_blacklist",
        "sipguard_calls",
        CALLS,
        "function",
        "check_country_blacklist",
    ),
    (
        "check_user_blacklist",
        "sipguard_calls",
        CALLS,
        "function",
        "check_user_blacklist",
    ),
    (
        "check_user_agent",
        "sipguard_calls",
        CALLS,
        "function",
        "check_user_agent",
    ),
    (
        "sipguard_check",
        "sipguard_calls",
        CALLS,
        "function",
        "sipguard_check",
    ),
    ("bans_asked", "sipguard_calls", CALLS, "function", "ban"),
    (
        "cache_hits",
        "sipguard_cache_lookups",
        CACHE,
        "result",
        "hit",
    ),
    (
        "cache_misses",
        "sipguard_cache_lookups",
        CACHE,
        "result",
        "miss",
    ),
    (
        "bans_made",
        "sipguard_ban_requests",
        BAN_REQUESTS,
        "outcome",
        "made",
    ),
    (
        "bans_coalesced",
        "sipguard_ban_requests",
        BAN_REQUESTS,
        "outcome",
        "coalesced",
    ),
    (
        "bans_refused",
        "sipguard_ban_requests",
        BAN_REQUESTS,
        "outcome",
        "refused",
    ),
    (
        "bans_dropped",
        "sipguard_ban_requests",
        BAN_REQUESTS,
        "outcome",
        "dropped",
    ),
    ("list_loads", "sipguard_reloads", RELOADS, "kind", "lists"),
    (
        "country_loads",
        "sipguard_reloads",
        RELOADS,
        "kind",
        "countries",
    ),
    (
        "country_load_failures",
        "sipguard_reload_failures",
        RELOAD_FAILURES,
        "kind",
        "countries",
    ),
];
const CALLS: &str = "Calls of the module's functions, by function";
const CACHE: &str = "Per-source answers reused (hit: from the cache, or the last answer, kept even with cache_size 0 for back-to-back calls on one source) or computed (miss)";
const BAN_REQUESTS: &str = "Bans asked by sipguard.ban / sipguard_ban, by outcome: made \
    (enforced, queued for sipguard_ban), coalesced (already banned as long), refused (bad \
    arguments, too wide, allow-listed), dropped (queue full)";
const RELOADS: &str = "Times the workers (re)built their data from the database, by kind";
const RELOAD_FAILURES: &str = "Country loads that failed (each followed by a backoff)";

/// Worker counters that become an unlabelled counter: (counter, metric without `_total`, help).
const PLAIN: &[(&str, &str, &str)] = &[
    (
        "bad_input",
        "sipguard_bad_input",
        "Arguments that were not a usable address or country code",
    ),
    (
        "db_rounds",
        "sipguard_db_rounds",
        "Refresh rounds run by the workers' loaders",
    ),
    (
        "db_queries",
        "sipguard_db_queries",
        "Queries the workers sent to the database",
    ),
    (
        "db_errors",
        "sipguard_db_errors",
        "Refresh rounds that failed on a database error",
    ),
    (
        "db_timeouts",
        "sipguard_db_timeouts",
        "Refresh rounds that failed on a deadline (query_timeout_ms, load_timeout_ms)",
    ),
    (
        "loader_panics",
        "sipguard_loader_panics",
        "Refresh rounds that ended in an internal error (a panic, caught)",
    ),
    (
        "loader_stalls",
        "sipguard_loader_stalls",
        "Times a request saw its worker's loader go past the stall bound",
    ),
    (
        "ban_rows_written",
        "sipguard_ban_rows_written",
        "sipguard_ban rows written by the workers",
    ),
    (
        "ban_write_errors",
        "sipguard_ban_write_errors",
        "Failed writes of sipguard_ban (each retried)",
    ),
    (
        "ban_rows_dropped",
        "sipguard_ban_rows_dropped",
        "Bans a worker dropped: its queue full while the database was away",
    ),
];

/// Encodes `view` in `format`.
pub fn encode(view: &NodeView, format: Format) -> String {
    let registry = registry(view);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    out
}

fn registry(view: &NodeView) -> Registry {
    let mut reg = Registry::default();
    let total = stats::total(&view.workers);
    let get = |name: &str| total.get(name).copied().unwrap_or(0);

    let decisions = Family::<Labels, Counter>::default();
    // Every pair this module counts is present (0 before any traffic), so rate() has a series
    // from the start; pairs it never produces (a white country) are not.
    let known = stats::Counters::default().values();
    for check in CHECKS {
        for result in RESULTS {
            let name = format!("decided_{check}_{result}");
            if known.contains_key(&name) || total.contains_key(&name) {
                decisions
                    .get_or_create(&vec![("check", check), ("result", result)])
                    .inc_by(get(&name));
            }
        }
    }
    reg.register(
        "sipguard_decisions",
        "Answers of the module's checks (one per check called), summed over the node's live \
         workers. A black or white answer counts under the check that matched (ban: a ban in \
         force); a clear or nodata (on_no_data policy) answer under the check asked (all: \
         sipguard_check). Requests the cfg drops before asking (ipban, pike) are not here",
        decisions,
    );

    let mut families: Vec<(&str, &str, Family<Labels, Counter>)> = Vec::new();
    for &(counter, metric, help, label, value) in LABELLED {
        let i = match families.iter().position(|f| f.0 == metric) {
            Some(i) => i,
            None => {
                families.push((metric, help, Family::default()));
                families.len() - 1
            }
        };
        families[i]
            .2
            .get_or_create(&vec![(label, value)])
            .inc_by(get(counter));
    }
    for (metric, help, family) in families {
        reg.register(metric, help, family);
    }
    for &(counter, metric, help) in PLAIN {
        let c = Counter::<u64>::default();
        c.inc_by(get(counter));
        reg.register(metric, help, c);
    }
    let durations = Family::<Labels, Counter<f64, AtomicU64>>::default();
    for (counter, kind) in [("list_load_ms", "lists"), ("country_load_ms", "countries")] {
        durations
            .get_or_create(&vec![("kind", kind)])
            .inc_by(get(counter) as f64 / 1000.0);
    }
    reg.register(
        "sipguard_reload_duration_seconds",
        "Time from the start of each (re)load until the worker had the new data, summed over sipguard_reloads_total (countries: including the wait for another worker of the node to build the shared file)",
        durations,
    );

    gauge(
        &mut reg,
        "sipguard_workers",
        "Live workers that have published their stats (a worker publishes after its first request)",
        view.workers.len(),
    );
    gauge(
        &mut reg,
        "sipguard_workers_stalled",
        "Live workers whose loader has not completed a round within its stall bound",
        view.workers
            .iter()
            .filter(|w| w.stalled(view.now_ms))
            .count(),
    );
    gauge(
        &mut reg,
        "sipguard_workers_db_down",
        "Live workers whose last refresh round failed (deciding from the data loaded before)",
        view.workers.iter().filter(|w| w.db_down).count(),
    );

    let snapshots = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for &(kind, ms) in &view.snapshots {
        snapshots
            .get_or_create(&vec![("kind", kind)])
            .set(ms as f64 / 1000.0);
    }
    reg.register(
        "sipguard_snapshot_timestamp_seconds",
        "When each kind of data was last written to snapshot_dir (lists: lists.snap; countries: the newest countries.*.map node file, or countries.snap)",
        snapshots,
    );

    if let Some(db) = &view.db {
        gauge(
            &mut reg,
            "sipguard_db_up",
            "1 if this read of the database (sipguard_generation, table sizes) worked",
            db.is_ok() as usize,
        );
        if let Ok(db) = db {
            register_db(&mut reg, view, db);
        }
    }
    reg
}

/// Registers an unlabelled gauge holding `value`.
fn gauge(reg: &mut Registry, name: &str, help: &str, value: usize) {
    let g = Gauge::<i64>::default();
    g.set(value as i64);
    reg.register(name, help, g);
}

/// The gauges read from the database, and the workers measured against it.
fn register_db(reg: &mut Registry, view: &NodeView, db: &DbView) {
    let generation = Family::<Labels, Gauge<i64>>::default();
    let changed = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let behind = Family::<Labels, Gauge<i64>>::default();
    for kind in ["lists", "countries", "bans"] {
        let Some(row) = db.generations.iter().find(|r| r.name == kind) else {
            continue;
        };
        let labels = vec![("kind", kind)];
        generation.get_or_create(&labels).set(row.gen as i64);
        changed
            .get_or_create(&labels)
            .set(row.changed_ms as f64 / 1000.0);
        let held = |w: &stats::WorkerStats| match kind {
            "lists" => w.lists_generation,
            "countries" => w.countries_generation,
            _ => w.bans_generation,
        };
        let n = view
            .workers
            .iter()
            .filter(|w| held(w) != Some(row.gen))
            .count();
        behind.get_or_create(&labels).set(n as i64);
    }
    reg.register(
        "sipguard_data_generation",
        "Change counter of each kind of data in sipguard_generation",
        generation,
    );
    reg.register(
        "sipguard_data_changed_timestamp_seconds",
        "When each kind of data last changed in the database (sipguard_generation.changed)",
        changed,
    );
    reg.register(
        "sipguard_workers_behind",
        "Live workers not yet on the database's current generation of each kind (normal for \
         up to a refresh round after a change; bans: up to 10 s while an id is missing, as after \
         a rolled-back insert, or a lift or purge just before a ban is added)",
        behind,
    );
    let entries = Family::<Labels, Gauge<i64>>::default();
    for &(list, n) in &db.list_entries {
        entries.get_or_create(&vec![("list", list)]).set(n as i64);
    }
    reg.register(
        "sipguard_list_entries",
        "Rows of each list table (white_list, black_list, black_list_country, black_list_user, \
         black_list_ua)",
        entries,
    );
    let ranges = Family::<Labels, Gauge<i64>>::default();
    for &(family, n) in &db.country_ranges {
        ranges
            .get_or_create(&vec![("family", family)])
            .set(n as i64);
    }
    reg.register(
        "sipguard_country_ranges",
        "Rows of the country tables: ipcountry (ipv4) and ipcountry6 (ipv6)",
        ranges,
    );
    if let Some(n) = db.bans_in_force {
        gauge(
            reg,
            "sipguard_bans_in_force",
            "Sources (addresses or networks) with a ban in force in sipguard_ban",
            n as usize,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::GenerationRow;
    use crate::stats::WorkerStats;

    fn worker(pid: u32, lists_gen: u64, counters: &[(&str, u64)]) -> WorkerStats {
        WorkerStats {
            pid,
            lists_generation: Some(lists_gen),
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..WorkerStats::default()
        }
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.split(' ').next() == Some(series))
            .and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn counters_are_summed_over_workers_and_labelled() {
        let view = NodeView {
            workers: vec![
                worker(
                    1,
                    5,
                    &[
                        ("decided_ip_black", 3),
                        ("decided_all_clear", 10),
                        ("cache_hits", 2),
                    ],
                ),
                worker(
                    2,
                    4,
                    &[
                        ("decided_ip_black", 4),
                        ("decided_ban_black", 1),
                        ("list_load_ms", 1500),
                    ],
                ),
            ],
            now_ms: 1,
            snapshots: vec![("lists", 1_700_000_000_500)],
            db: Some(Ok(DbView {
                generations: vec![GenerationRow {
                    name: "lists".into(),
                    gen: 5,
                    changed_ms: 1_700_000_000_000,
                }],
                list_entries: vec![("black_list", 12)],
                country_ranges: vec![("ipv4", 7)],
                bans_in_force: Some(2),
            })),
        };
        let text = encode(&view, Format::Prometheus);
        let v = |s: &str| line(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
        assert_eq!(
            v(r#"sipguard_decisions_total{check="ip",result="black"}"#),
            "7"
        );
        assert_eq!(
            v(r#"sipguard_decisions_total{check="ban",result="black"}"#),
            "1"
        );
        assert_eq!(
            v(r#"sipguard_decisions_total{check="all",result="clear"}"#),
            "10"
        );
        assert_eq!(v(r#"sipguard_cache_lookups_total{result="hit"}"#), "2");
        assert_eq!(
            v(r#"sipguard_reload_duration_seconds_total{kind="lists"}"#),
            "1.5"
        );
        assert_eq!(v("sipguard_workers"), "2");
        assert_eq!(v(r#"sipguard_workers_behind{kind="lists"}"#), "1");
        assert_eq!(v(r#"sipguard_list_entries{list="black_list"}"#), "12");
        assert_eq!(v(r#"sipguard_country_ranges{family="ipv4"}"#), "7");
        assert_eq!(v("sipguard_bans_in_force"), "2");
        assert_eq!(v("sipguard_db_up"), "1");
        assert_eq!(
            v(r#"sipguard_snapshot_timestamp_seconds{kind="lists"}"#),
            "1700000000.5"
        );
        // A counter's HELP and TYPE name the series (Prometheus text format), no EOF marker.
        assert!(
            text.contains("# TYPE sipguard_decisions_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let om = encode(&view, Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n") && om.contains("# TYPE sipguard_decisions counter"));
    }

    #[test]
    fn a_failed_database_read_says_so_and_leaves_its_gauges_out() {
        let view = NodeView {
            db: Some(Err("refused".into())),
            ..NodeView::default()
        };
        let text = encode(&view, Format::Prometheus);
        assert_eq!(line(&text, "sipguard_db_up"), Some("0"));
        assert!(!text.contains("sipguard_data_generation"), "{text}");
        assert_eq!(line(&text, "sipguard_workers"), Some("0"));
    }
}
