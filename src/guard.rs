//! The request path of a worker: its [`Guard`] answers every check from the data in force,
//! never waiting on I/O (only a worker's very first request waits, bounded, for the first load).
//!
//! The other side, the loader threads that keep the data fresh, is in `loader`; the two share
//! a [`Data`].

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::addr::{self, AddrError};
use crate::ban_request::{self, BanOutcome};
use crate::bans::{Bans, Layer as BanLayer};
use crate::cache::TtlLru;
use crate::config::Config;
use crate::data::Data;
use crate::engine::{self, Lists, Verdict};
use crate::loader;
use crate::logq::{Level, RateLimit};
use crate::ranges::CountryRanges;
use crate::stats::bump;
use crate::uamatch::UaMatcher;

/// A per-source answer, cached: both questions are answered together on a miss because the
/// post's cfg asks them back to back for the same `$si`.
#[derive(Clone)]
struct SourceAnswer {
    verdict: Verdict,
    country: &'static str,
}

/// State only the Lua thread touches; the mutex is never contended.
struct Local {
    /// The last source answered: the post's cfg asks `check_blacklist($si)` and then
    /// `get_countrycode($si)` for the same address, so the second is answered from here.
    last: Option<(IpAddr, SourceAnswer)>,
    /// Optional per-source LRU (`cache_size` > 0). Off by default: a fresh lookup costs two or
    /// three cache lines, about what an LRU probe and its list update cost (scripts/bench).
    cache: Option<TtlLru<IpAddr, SourceAnswer>>,
    /// The data generation `lists` and `countries` were taken at. Holding them here spares each
    /// call a lock and two reference-count updates on cache lines the loader thread shares.
    cache_generation: u64,
    lists: Option<Arc<Lists>>,
    countries: Option<Arc<CountryRanges>>,
    /// The bans in force, and the [`Data::bans_generation`] they were taken at.
    bans: Option<Arc<Bans>>,
    bans_generation: u64,
    /// Bans this worker made, enforced here from the moment they are made (also while the
    /// database is away), until they end; at most [`ban_request::OWN_MAX`].
    own_bans: BanLayer,
    /// Allow-listed sources a ban was refused for, said once each (at most 1,024 remembered).
    white_bans_said: HashSet<IpNet>,
    /// "ban_db_url is not set" has been said.
    said_no_ban_db: bool,
    /// The [`Data::ban_lifts`] the own bans were kept at.
    ban_lifts: u64,
    limit: RateLimit,
    waited: bool,
    /// Calls since start; every [`STALL_CHECK_EVERY`]th one looks at the loader's heartbeat.
    calls: u32,
    /// The current stall of the loader has been logged.
    stall_reported: bool,
}

/// How often (in calls) the request path reads the clock to see whether the loader stalled:
/// a clock read costs ~20 ns, so 1 in 16 calls adds ~1 ns to a call (a request costs tens of
/// µs in Kamailio), and a quiet worker still notices within a few requests.
const STALL_CHECK_EVERY: u32 = 16;

/// The check a caller asked for, under which a clear or no-data answer is counted.
#[derive(Clone, Copy)]
enum Asked {
    Ip,
    Country,
    Ua,
    User,
    /// `sipguard_check`: every check in one call.
    All,
}

/// One process's sipguard: config, shared data, and the request-side cache.
pub struct Guard {
    cfg: Arc<Config>,
    data: Arc<Data>,
    /// A loader feeds `data` (not a detached guard): its heartbeat is watched.
    watch_loader: bool,
    /// The config's scanner patterns, for `check_user_agent` before any list is loaded.
    default_user_agents: UaMatcher,
    local: Mutex<Local>,
}

impl Guard {
    /// State for this process with a loader thread feeding it from MySQL.
    pub fn start(cfg: Arc<Config>) -> Arc<Guard> {
        let data = Arc::new(Data::new(cfg.alerts()));
        let guard = Guard::with_data(cfg, data, true);
        if let Err(e) = loader::spawn(guard.cfg.clone(), guard.data.clone()) {
            guard
                .data
                .say(Level::Err, format!("cannot start the loader thread: {e}"));
            guard.data.first_attempt_done();
        }
        guard
    }

    /// State without a loader: data comes only through [`Guard::data`]. For tests and tools.
    pub fn detached(cfg: Arc<Config>) -> Arc<Guard> {
        Guard::with_data(cfg, Arc::new(Data::default()), false)
    }

    fn with_data(cfg: Arc<Config>, data: Arc<Data>, watch_loader: bool) -> Arc<Guard> {
        let local = Local {
            calls: 0,
            stall_reported: false,
            last: None,
            lists: None,
            countries: None,
            bans: None,
            bans_generation: 0,
            own_bans: BanLayer::default(),
            white_bans_said: HashSet::new(),
            said_no_ban_db: false,
            ban_lifts: 0,
            cache: (cfg.cache_size > 0).then(|| TtlLru::new(cfg.cache_size, cfg.cache_ttl())),
            cache_generation: 0,
            limit: RateLimit::new(cfg.log_interval()),
            waited: false,
        };
        let default_user_agents =
            UaMatcher::new(engine::default_ua_patterns(&cfg.scanner_user_agents));
        Arc::new(Guard {
            cfg,
            data,
            watch_loader,
            default_user_agents,
            local: Mutex::new(local),
        })
    }

    /// The shared data, e.g. to publish lists in a test.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The config this process runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The config this process runs with, shared.
    pub fn config_arc(&self) -> Arc<Config> {
        self.cfg.clone()
    }

    /// `check_blacklist($si)`.
    pub fn check_blacklist(&self, raw: &str) -> Verdict {
        bump(&self.data.counters.check_blacklist);
        let v = self
            .answer(raw, "check_blacklist")
            .map(|a| a.verdict)
            .unwrap_or(Verdict::Clear);
        self.count(Asked::Ip, v)
    }

    /// Counts a decision and passes it through (by value: no clone on the request path). A
    /// black or white answer counts under the check that matched, a clear or no-data answer
    /// under `asked`, the check the caller asked for.
    fn count(&self, asked: Asked, v: Verdict) -> Verdict {
        let c = &self.data.counters;
        bump(match (&v, asked) {
            (Verdict::White(_), _) => &c.decided_ip_white,
            (Verdict::Black(engine::BlackKind::Ip(_)), _) => &c.decided_ip_black,
            (Verdict::Black(engine::BlackKind::Country), _) => &c.decided_country_black,
            (Verdict::Black(engine::BlackKind::User), _) => &c.decided_user_black,
            (Verdict::Black(engine::BlackKind::Ua(_)), _) => &c.decided_ua_black,
            (Verdict::Black(engine::BlackKind::Ban { .. }), _) => &c.decided_ban_black,
            (Verdict::Black(engine::BlackKind::NoData), Asked::Ip) => &c.decided_ip_nodata,
            (Verdict::Black(engine::BlackKind::NoData), Asked::Country) => {
                &c.decided_country_nodata
            }
            (Verdict::Black(engine::BlackKind::NoData), Asked::Ua) => &c.decided_ua_nodata,
            (Verdict::Black(engine::BlackKind::NoData), Asked::User) => &c.decided_user_nodata,
            (Verdict::Black(engine::BlackKind::NoData), Asked::All) => &c.decided_all_nodata,
            (Verdict::Clear, Asked::Ip) => &c.decided_ip_clear,
            (Verdict::Clear, Asked::Country) => &c.decided_country_clear,
            (Verdict::Clear, Asked::Ua) => &c.decided_ua_clear,
            (Verdict::Clear, Asked::User) => &c.decided_user_clear,
            (Verdict::Clear, Asked::All) => &c.decided_all_clear,
        });
        v
    }

    /// `get_countrycode($si)`: the ISO code or `""`.
    pub fn country_code(&self, raw: &str) -> &'static str {
        bump(&self.data.counters.get_countrycode);
        self.answer(raw, "get_countrycode")
            .map(|a| a.country)
            .unwrap_or("")
    }

    /// `check_country_blacklist($avp(countryCode))`.
    pub fn check_country(&self, raw: &str) -> Verdict {
        bump(&self.data.counters.check_country_blacklist);
        let mut local = self.lock_local();
        self.first_wait(&mut local);
        self.refresh(&mut local);
        let plausible = raw.trim().is_empty() || engine::is_country_code(raw);
        if !plausible {
            bump(&self.data.counters.bad_input);
            self.log_bad(
                &mut local,
                "country",
                format_args!("not a country code: {:?}", addr::printable(raw)),
            );
        }
        let v = engine::check_country(local.lists.as_deref(), raw, self.cfg.on_no_data);
        drop(local);
        self.count(Asked::Country, v)
    }

    /// `check_user_blacklist($au)` or `($fU)`.
    pub fn check_user(&self, raw: &str) -> Verdict {
        bump(&self.data.counters.check_user_blacklist);
        let v = self.with_lists(|lists| engine::check_user(lists, raw, self.cfg.on_no_data));
        self.count(Asked::User, v)
    }

    /// `check_user_agent($ua)`.
    pub fn check_user_agent(&self, raw: &str) -> Verdict {
        bump(&self.data.counters.check_user_agent);
        let v = self
            .with_lists(|lists| engine::check_user_agent(lists, &self.default_user_agents, raw));
        self.count(Asked::Ua, v)
    }

    /// `sipguard_check($si, $ua, $fU)`: every check in the shipped cfg's order (allow-list,
    /// blacklist, scanner User-Agent, country, user) in one call, with the source's country.
    /// One `lua_run` instead of five is most of the saving: app_lua's own cost per call
    /// dwarfs the lookups.
    pub fn check_all(&self, ip: &str, ua: &str, user: &str) -> (Verdict, &'static str) {
        bump(&self.data.counters.sipguard_check);
        let (verdict, cc) = match self.answer(ip, "sipguard_check") {
            Some(a) => (a.verdict, a.country),
            None => (Verdict::Clear, ""),
        };
        if verdict != Verdict::Clear {
            return (self.count(Asked::All, verdict), cc);
        }
        let v = self.with_lists(|lists| {
            let mut v = engine::check_user_agent(lists, &self.default_user_agents, ua);
            if v == Verdict::Clear {
                v = engine::check_country(lists, cc, self.cfg.on_no_data);
            }
            if v == Verdict::Clear && !user.is_empty() {
                v = engine::check_user(lists, user, self.cfg.on_no_data);
            }
            v
        });
        (self.count(Asked::All, v), cc)
    }

    /// Log lines queued since the last call, for the Lua side to print.
    pub fn take_logs(&self) -> Vec<(Level, String)> {
        self.data.logs.drain()
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the current lists (after the first load, or its deadline).
    fn with_lists<R>(&self, f: impl FnOnce(Option<&Lists>) -> R) -> R {
        let mut local = self.lock_local();
        self.first_wait(&mut local);
        self.refresh(&mut local);
        f(local.lists.as_deref())
    }

    /// Takes the data published since the last call, if any, and forgets answers computed from
    /// the previous data.
    fn refresh(&self, local: &mut Local) {
        local.calls = local.calls.wrapping_add(1);
        if self.watch_loader && local.calls.is_multiple_of(STALL_CHECK_EVERY) {
            self.check_stall(local);
        }
        let bans = self.data.bans_generation();
        if local.bans_generation != bans {
            local.bans = self.data.bans();
            local.bans_generation = bans;
            let lifts = self.data.ban_lifts();
            if local.ban_lifts != lifts {
                local.ban_lifts = lifts;
                // Some ban was lifted in the table. With a ban_db_url this worker's own bans
                // are there (written) or on their way, so the table decides from now on;
                // without one they exist nowhere else and stay.
                if self.cfg.ban_db_url.is_some() {
                    local.own_bans = BanLayer::default();
                }
            }
        }
        let generation = self.data.generation();
        if local.cache_generation != generation {
            local.lists = self.data.lists();
            local.countries = self.data.countries();
            local.last = None;
            if let Some(c) = local.cache.as_mut() {
                c.clear();
            }
            local.cache_generation = generation;
        }
    }

    /// Logs, once per stall, a loader that has not completed a round for `stall_after`: its
    /// data is frozen (lists, `black add`, stats) and only the request path can say so.
    fn check_stall(&self, local: &mut Local) {
        let since = self.data.since_beat(Instant::now());
        let stalled = since > self.cfg.stall_after();
        if stalled && !local.stall_reported {
            bump(&self.data.counters.loader_stalls);
            self.data.logs.push(
                Level::Err,
                format!(
                    "the loader thread has not completed a refresh round for {} s (busy: {}); deciding from the data it loaded before, list changes are not seen",
                    since.as_secs(),
                    self.data.phase().describe()
                ),
            );
        }
        local.stall_reported = stalled;
    }

    fn first_wait(&self, local: &mut Local) {
        if !local.waited {
            local.waited = true;
            self.data.wait_first_attempt(self.cfg.query_timeout());
        }
    }

    fn log_bad(&self, local: &mut Local, kind: &'static str, msg: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = local.limit.allow(kind, Instant::now()) {
            let tail = if suppressed > 0 {
                format!(" ({suppressed} more suppressed)")
            } else {
                String::new()
            };
            self.data.logs.push(Level::Warn, format!("{msg}{tail}"));
        }
    }

    /// The source's answer from the lists and the country tables (cached per source), then
    /// the bans: checked on every call for a source the lists let through (the allow-list
    /// wins, a `black_list` match keeps its `ip`), never cached, so a ban ends on time
    /// without a reload.
    fn answer(&self, raw: &str, func: &str) -> Option<SourceAnswer> {
        // Every source check passes here (check_blacklist, get_countrycode, sipguard.check).
        if self.cfg.test_hooks && raw == "sipguard-test-panic" {
            panic!("test hook: deliberate panic");
        }
        // One lock for the lists' answer and the bans.
        let mut local = self.lock_local();
        let (ip, mut a) = self.answer_lists(&mut local, raw, func)?;
        // White and black_list answers stand (the list is the lasting reason); a ban refuses
        // what the lists let through.
        if matches!(
            a.verdict,
            Verdict::Clear | Verdict::Black(engine::BlackKind::NoData)
        ) {
            let loaded = local.bans.as_ref().filter(|b| !b.is_empty());
            if loaded.is_some() || !local.own_bans.is_empty() {
                let now = crate::stats::now_ms();
                let until = loaded
                    .and_then(|b| b.banned_until(ip, now))
                    .max(local.own_bans.until(ip).filter(|&u| u > now));
                if let Some(until_ms) = until {
                    a.verdict = Verdict::Black(engine::BlackKind::Ban { until_ms });
                }
            }
        }
        Some(a)
    }

    /// `sipguard.ban(source, seconds, reason)`: bans an address or network on every node.
    /// Enforced by this worker at once; queued (never waited for) for the background thread,
    /// which writes `sipguard_ban`, from where every worker of every node reads it. An
    /// allow-listed source is refused (said once); a source already banned as long is not
    /// queued again. Never blocks: a full queue drops the ban and counts it.
    pub fn ban(&self, source: &str, seconds: &str, reason: &str) -> BanOutcome {
        let c = &self.data.counters;
        bump(&c.bans_asked);
        let now = crate::stats::now_ms();
        let mut local = self.lock_local();
        let req = match ban_request::parse(source, seconds, reason, now) {
            Ok(r) => r,
            Err(e) => {
                bump(&c.bans_refused);
                self.log_bad(&mut local, "ban", format_args!("{e}"));
                return BanOutcome::Invalid;
            }
        };
        // The allow-list wins: a white-listed address is never banned.
        if req.source.prefix_len() == req.source.max_prefix_len() {
            let white = self
                .answer_lists(&mut local, &req.source.addr().to_string(), "ban")
                .is_some_and(|(_, a)| matches!(a.verdict, Verdict::White(_)));
            if white {
                bump(&c.bans_refused);
                if local.white_bans_said.len() < 1024 && local.white_bans_said.insert(req.source) {
                    self.data.logs.push(
                        Level::Warn,
                        format!(
                            "ban of {} refused: it is allow-listed (white_list)",
                            req.source.addr()
                        ),
                    );
                }
                return BanOutcome::White;
            }
        }
        let held = local.own_bans.get(req.source).max(
            (req.source.prefix_len() == req.source.max_prefix_len())
                .then(|| local.bans.as_ref()?.banned_until(req.source.addr(), now))
                .flatten(),
        );
        if held.is_some_and(|u| ban_request::covers(u, req.until_ms, now)) {
            bump(&c.bans_coalesced);
            return BanOutcome::Already;
        }
        if local.own_bans.len() >= ban_request::OWN_MAX {
            local.own_bans.prune(now);
            if local.own_bans.len() >= ban_request::OWN_MAX {
                bump(&c.bans_dropped);
                return BanOutcome::Dropped;
            }
        }
        if self.cfg.ban_db_url.is_none() {
            local.own_bans.add(req.source, req.until_ms);
            if !local.said_no_ban_db {
                local.said_no_ban_db = true;
                self.data.logs.push(
                    Level::Info,
                    "ban_db_url is not set: bans stay in the worker that makes them (set it to share them with every node)".into(),
                );
            }
            bump(&c.bans_made);
            return BanOutcome::Banned;
        }
        let (source, until_ms) = (req.source, req.until_ms);
        if self.data.ban_outbox.offer(req) {
            local.own_bans.add(source, until_ms);
            bump(&c.bans_made);
            BanOutcome::Banned
        } else {
            // Neither written nor held: counted, as the cap says; a later call may try again.
            bump(&c.bans_dropped);
            BanOutcome::Dropped
        }
    }

    /// The lists' and country tables' answer for `raw`, cached per source; the caller holds
    /// the lock.
    fn answer_lists(
        &self,
        local: &mut Local,
        raw: &str,
        func: &str,
    ) -> Option<(IpAddr, SourceAnswer)> {
        self.first_wait(local);
        let ip = match addr::parse_source(raw) {
            Ok(ip) => ip,
            Err(e) => {
                let e: AddrError = e;
                bump(&self.data.counters.bad_input);
                self.log_bad(
                    local,
                    "address",
                    format_args!("{func}: {e}; answering \"\""),
                );
                return None;
            }
        };
        self.refresh(local);
        if let Some((last, a)) = &local.last {
            if *last == ip {
                bump(&self.data.counters.cache_hits);
                return Some((ip, a.clone()));
            }
        }
        let now = local.cache.as_ref().map(|_| Instant::now());
        if let (Some(c), Some(now)) = (local.cache.as_mut(), now) {
            if let Some(hit) = c.get(&ip, now) {
                bump(&self.data.counters.cache_hits);
                local.last = Some((ip, hit.clone()));
                return Some((ip, hit));
            }
        }
        bump(&self.data.counters.cache_misses);
        let answer = SourceAnswer {
            verdict: engine::check_ip(local.lists.as_deref(), ip, self.cfg.on_no_data),
            country: engine::country_of(local.countries.as_deref(), ip),
        };
        if let (Some(c), Some(now)) = (local.cache.as_mut(), now) {
            c.put(ip, answer.clone(), now);
        }
        local.last = Some((ip, answer.clone()));
        Some((ip, answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::ListRows;
    use crate::ranges::CountryRangesBuilder;
    use std::path::Path;

    fn guard() -> Arc<Guard> {
        let cfg = Config::parse(
            r#"{"db_url":"mysql://u@127.0.0.1:1/db","log_interval_secs":3600,"stats_dir":null,"snapshot_dir":null}"#,
            Path::new("t"),
        )
        .unwrap();
        let g = Guard::detached(Arc::new(cfg));
        g.data().first_attempt_done();
        g
    }

    fn row(id: i64, v: &str) -> crate::engine::ListRow {
        crate::engine::ListRow {
            id,
            value: v.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn answers_follow_published_data() {
        let g = guard();
        assert_eq!(
            g.check_blacklist("192.0.2.1"),
            Verdict::Clear,
            "no data, policy allow"
        );
        let rows = ListRows {
            black: vec![row(1, "192.0.2.0/24")],
            countries: vec![row(2, "ES")],
            ..ListRows::default()
        };
        g.data().publish_lists(Lists::build(&rows, &[]).0);
        assert_eq!(g.check_blacklist("192.0.2.1").status(), "black");
        assert_eq!(g.check_blacklist("[::ffff:192.0.2.1]").status(), "black");
        let mut b = CountryRangesBuilder::default();
        b.add_v4(
            u32::from(std::net::Ipv4Addr::new(2, 20, 179, 0)),
            u32::from(std::net::Ipv4Addr::new(2, 20, 179, 255)),
            "es",
        );
        g.data().publish_countries(b.build());
        assert_eq!(g.country_code("2.20.179.9"), "ES");
        assert_eq!(g.check_country("ES").status(), "black");
        // Publishing new lists invalidates cached answers.
        g.data().publish_lists(Lists::default());
        assert_eq!(g.check_blacklist("192.0.2.1"), Verdict::Clear);
    }

    #[test]
    fn bad_input_answers_empty_and_logs_once() {
        let g = guard();
        for junk in ["", "x".repeat(1023).as_str(), "' OR 1=1 --", "1.2.3.4\u{0}"] {
            assert_eq!(g.check_blacklist(junk), Verdict::Clear);
            assert_eq!(g.country_code(junk), "");
        }
        let logs = g.take_logs();
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert!(logs[0].1.contains("check_blacklist"), "{logs:?}");
        assert_eq!(g.check_country("' OR 1=1 --"), Verdict::Clear);
        assert_eq!(g.take_logs().len(), 1);
    }

    #[test]
    fn scanner_patterns_from_config_work_without_data() {
        let g = guard();
        assert_eq!(g.check_user_agent("friendly-scanner").kind(), "ua");
        assert_eq!(g.check_user_agent(&"\u{1}".repeat(1023)), Verdict::Clear);
        assert_eq!(
            g.check_user("1000"),
            Verdict::Clear,
            "policy allow without lists"
        );
    }
}
