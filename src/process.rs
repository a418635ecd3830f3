//! Per-process state: what one Kamailio worker knows, and the thread that keeps it fresh.
//!
//! Kamailio forks its workers after loading the Lua script, so anything created before the
//! fork (a tokio runtime, a socket) would be shared by every child and corrupt each other
//! (measured: a worker died with SIGSEGV). State is therefore keyed by `process::id()` and
//! built lazily on first use in each process; a child that finds its parent's state forgets it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use crate::addr::{self, AddrError};
use crate::cache::TtlLru;
use crate::config::Config;
use crate::db;
use crate::engine::{self, ListRows, Lists, Verdict};
use crate::listcheck;
use crate::logq::{Level, LogQueue, RateLimit};
use crate::ranges::CountryRanges;
use crate::snapshot;
use crate::stats::{self, bump, Counters, WorkerStats};
use crate::uamatch::UaMatcher;

/// Data shared between the Lua thread (reads) and the loader thread (writes).
///
/// `RwLock<Option<Arc<_>>>`: readers clone the `Arc` and drop the lock at once, so a reload
/// never blocks a request for longer than a pointer swap.
#[derive(Default)]
pub struct Data {
    lists: RwLock<Option<Arc<Lists>>>,
    countries: RwLock<Option<Arc<CountryRanges>>>,
    /// Bumped on every publish, so per-source cache entries know when they are stale.
    generation: AtomicU64,
    /// Set once the first attempt to load the lists and country ranges has ended, either way;
    /// the first request of a worker waits on it (bounded by the query deadline).
    first_attempt: (Mutex<bool>, Condvar),
    /// Lines for the Kamailio log, printed by the next request.
    pub logs: LogQueue,
    /// This worker's counters, published by the loader to `stats_dir`.
    pub counters: Counters,
}

impl Data {
    /// The lists as last loaded, if ever.
    pub fn lists(&self) -> Option<Arc<Lists>> {
        self.lists.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The country ranges as last loaded, if ever.
    pub fn countries(&self) -> Option<Arc<CountryRanges>> {
        self.countries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the lists for every later request.
    pub fn publish_lists(&self, lists: Lists) {
        *self.lists.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(lists));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Replaces the country ranges for every later request.
    pub fn publish_countries(&self, ranges: CountryRanges) {
        *self.countries.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ranges));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn first_attempt_done(&self) {
        let (m, cv) = &self.first_attempt;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    fn wait_first_attempt(&self, limit: std::time::Duration) {
        let (m, cv) = &self.first_attempt;
        let done = m.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv.wait_timeout_while(done, limit, |done| !*done);
    }
}

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
    limit: RateLimit,
    waited: bool,
}

/// One process's sipguard: config, shared data, and the request-side cache.
pub struct Guard {
    cfg: Arc<Config>,
    data: Arc<Data>,
    /// The config's scanner patterns, for `check_user_agent` before any list is loaded.
    default_user_agents: UaMatcher,
    local: Mutex<Local>,
}

impl Guard {
    /// State for this process with a loader thread feeding it from MySQL.
    pub fn start(cfg: Arc<Config>) -> Arc<Guard> {
        let guard = Guard::detached(cfg);
        let (cfg, data) = (guard.cfg.clone(), guard.data.clone());
        let spawned = std::thread::Builder::new()
            .name("sipguard-db".into())
            .spawn(move || loader::run(cfg, data));
        if let Err(e) = spawned {
            guard
                .data
                .logs
                .push(Level::Err, format!("cannot start the loader thread: {e}"));
            guard.data.first_attempt_done();
        }
        guard
    }

    /// State without a loader: data comes only through [`Guard::data`]. For tests and tools.
    pub fn detached(cfg: Arc<Config>) -> Arc<Guard> {
        let local = Local {
            last: None,
            lists: None,
            countries: None,
            cache: (cfg.cache_size > 0).then(|| TtlLru::new(cfg.cache_size, cfg.cache_ttl())),
            cache_generation: 0,
            limit: RateLimit::new(cfg.log_interval()),
            waited: false,
        };
        let default_user_agents =
            UaMatcher::new(engine::default_ua_patterns(&cfg.scanner_user_agents));
        Arc::new(Guard {
            cfg,
            data: Arc::new(Data::default()),
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

    /// `check_blacklist($si)`.
    pub fn check_blacklist(&self, raw: &str) -> Verdict {
        bump(&self.data.counters.check_blacklist);
        let v = self
            .answer(raw, "check_blacklist")
            .map(|a| a.verdict)
            .unwrap_or(Verdict::Clear);
        self.count(v)
    }

    /// Counts a decision by kind and passes it through (by value: no clone on the request path).
    fn count(&self, v: Verdict) -> Verdict {
        let c = &self.data.counters;
        match &v {
            Verdict::Clear => {}
            Verdict::White(_) => bump(&c.decided_white),
            Verdict::Black(k) => bump(match k {
                engine::BlackKind::Ip(_) => &c.decided_black_ip,
                engine::BlackKind::Country => &c.decided_black_country,
                engine::BlackKind::User => &c.decided_black_user,
                engine::BlackKind::Ua(_) => &c.decided_black_ua,
                engine::BlackKind::NoData => &c.decided_nodata,
            }),
        }
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
        self.count(v)
    }

    /// `check_user_blacklist($au)` or `($fU)`.
    pub fn check_user(&self, raw: &str) -> Verdict {
        bump(&self.data.counters.check_user_blacklist);
        let v = self.with_lists(|lists| engine::check_user(lists, raw, self.cfg.on_no_data));
        self.count(v)
    }

    /// `check_user_agent($ua)`.
    pub fn check_user_agent(&self, raw: &str) -> Verdict {
        bump(&self.data.counters.check_user_agent);
        let v = self
            .with_lists(|lists| engine::check_user_agent(lists, &self.default_user_agents, raw));
        self.count(v)
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
            return (self.count(verdict), cc);
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
        (self.count(v), cc)
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

    fn answer(&self, raw: &str, func: &str) -> Option<SourceAnswer> {
        // Every source check passes here (check_blacklist, get_countrycode, sipguard.check).
        if self.cfg.test_hooks && raw == "sipguard-test-panic" {
            panic!("test hook: deliberate panic");
        }
        let mut local = self.lock_local();
        self.first_wait(&mut local);
        let ip = match addr::parse_source(raw) {
            Ok(ip) => ip,
            Err(e) => {
                let e: AddrError = e;
                bump(&self.data.counters.bad_input);
                self.log_bad(
                    &mut local,
                    "address",
                    format_args!("{func}: {e}; answering \"\""),
                );
                return None;
            }
        };
        self.refresh(&mut local);
        if let Some((last, a)) = &local.last {
            if *last == ip {
                bump(&self.data.counters.cache_hits);
                return Some(a.clone());
            }
        }
        let now = local.cache.as_ref().map(|_| Instant::now());
        if let (Some(c), Some(now)) = (local.cache.as_mut(), now) {
            if let Some(hit) = c.get(&ip, now) {
                bump(&self.data.counters.cache_hits);
                local.last = Some((ip, hit.clone()));
                return Some(hit);
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
        Some(answer)
    }
}

static CURRENT: Mutex<Option<(u64, Arc<Guard>)>> = Mutex::new(None);

/// Forks seen by this process image, counted by a `pthread_atfork` child handler: knowing
/// "am I still the process that built the guard" without a `getpid` syscall per call.
static FORKS: AtomicU64 = AtomicU64::new(0);
static ATFORK: std::sync::Once = std::sync::Once::new();

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn fork_generation() -> u64 {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, which is async-signal-safe
        // and therefore safe in a child right after fork.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        // Without the handler, fall back to the pid (one syscall per call, still correct).
        if rc != 0 {
            FORKS.store(u64::MAX, Ordering::Relaxed);
        }
    });
    match FORKS.load(Ordering::Relaxed) {
        u64::MAX => u64::from(std::process::id()) | 1 << 63,
        n => n,
    }
}

/// The config of this process's guard, if this process has built one (its first check call):
/// from then on its settings are in force and a config read again cannot change them.
pub fn running_config() -> Option<Arc<Config>> {
    let generation = fork_generation();
    let slot = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref() {
        Some((g_at, g)) if *g_at == generation => Some(g.cfg.clone()),
        _ => None,
    }
}

/// This process's guard; on first use (in this process) started with the config `cfg` gives,
/// which is asked for only then.
///
/// A guard inherited across `fork` is forgotten, not dropped: its loader thread does not exist
/// here, and dropping could close descriptors the parent still uses.
pub fn current<E>(cfg: impl FnOnce() -> Result<Arc<Config>, E>) -> Result<Arc<Guard>, E> {
    let generation = fork_generation();
    let mut slot = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref() {
        Some((g_at, g)) if *g_at == generation => Ok(g.clone()),
        _ => {
            let g = Guard::start(cfg()?);
            if let Some(inherited) = slot.take() {
                std::mem::forget(inherited);
            }
            *slot = Some((generation, g.clone()));
            Ok(g)
        }
    }
}

/// The loader thread: one connection, one current-thread runtime, one loop.
mod loader {
    use super::*;

    /// What the loader remembers between rounds.
    #[derive(Default)]
    struct Round {
        conn: Option<mysql_async::Conn>,
        last_lists: Option<ListRows>,
        /// `sipguard_generation.lists` the current lists were read at.
        lists_generation: Option<u64>,
        /// `sipguard_generation.countries` the current ranges were read at.
        countries_generation: Option<u64>,
        /// Missing list tables are reported once, not every round.
        reported_missing: bool,
        /// A missing `sipguard_generation` row is reported once, until it is back.
        reported_missing_generation: bool,
        /// A snapshot write failure is reported once.
        snapshot_write_failed: bool,
        country_marker: Option<String>,
        healthy: Option<bool>,
        /// Bad rows are logged once per id, not on every refresh.
        logged_bad: HashSet<(&'static str, i64)>,
    }

    /// Building the ranges peaks at several times their final size in this thread's malloc
    /// arena; glibc keeps freed arena memory unless asked, which would leave every worker
    /// tens of MB larger for good.
    fn release_freed_memory() {
        // SAFETY: malloc_trim only walks glibc's own heaps; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    pub(super) fn run(cfg: Arc<Config>, data: Arc<Data>) {
        // Large blocks (row vectors, the flattening map) straight from mmap, back to the
        // system when freed: glibc otherwise raises this threshold after the first large free,
        // and a reload's temporaries then stay in the arena (measured: a worker grew from 29
        // to 57 MB RSS after one country reload, for good).
        // SAFETY: mallopt only tunes glibc's allocator; any value is valid.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                data.logs
                    .push(Level::Err, format!("cannot build the tokio runtime: {e}"));
                data.first_attempt_done();
                return;
            }
        };
        rt.block_on(async {
            // The snapshot first, before and whatever the database does: a first request still
            // waits (bounded) for live data, but a database that never answers no longer leaves
            // it to on_no_data while a valid snapshot is on disk. Live data replaces the
            // snapshot at the first successful round.
            let mut snapshot_lines =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_snapshot(&cfg, &data)))
                    .unwrap_or_default();
            let mut snapshot_tried = false;
            let mut round = Round::default();
            let mut panicking = false;
            let mut stats_failed = false;
            loop {
                bump(&data.counters.db_rounds);
                // The round runs as its own task, so a panic in it (a driver conversion, a
                // bug) ends that round only: the loader logs it and goes on from a fresh state
                // (reconnect, reload everything) instead of freezing this worker's data.
                let task = tokio::spawn({
                    let (cfg, data) = (cfg.clone(), data.clone());
                    let mut r = std::mem::take(&mut round);
                    async move {
                        let result = refresh(&cfg, &data, &mut r).await;
                        (r, result)
                    }
                });
                match task.await {
                    Ok((r, result)) => {
                        round = r;
                        panicking = false;
                        if !snapshot_tried {
                            snapshot_tried = true;
                            // Database unavailable at start: say what is in force instead.
                            if result.is_err() {
                                for (level, line) in std::mem::take(&mut snapshot_lines) {
                                    data.logs.push(level, line);
                                }
                            }
                        }
                        report(&cfg, &data, &mut round, result);
                    }
                    Err(e) => {
                        let why = e
                            .try_into_panic()
                            .ok()
                            .and_then(|p| {
                                p.downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| p.downcast_ref::<String>().cloned())
                            })
                            .unwrap_or_else(|| "cancelled".into());
                        bump(&data.counters.loader_panics);
                        // Said once per streak (counted each time), not every round.
                        if !panicking {
                            data.logs.push(
                                Level::Err,
                                format!("internal error in a refresh round ({why}); starting over every round until one succeeds"),
                            );
                        }
                        panicking = true;
                        // What the panicked round held is gone; health is left as it was.
                        let healthy = round.healthy;
                        round = Round {
                            healthy,
                            ..Round::default()
                        };
                    }
                }
                data.first_attempt_done();
                if let Some(dir) = &cfg.stats_dir {
                    // Logged when writing starts failing, not every round.
                    match publish(dir, &data, &round) {
                        Err(e) if !stats_failed => {
                            stats_failed = true;
                            data.logs.push(
                                Level::Warn,
                                format!("cannot write stats to {}: {e}", dir.display()),
                            );
                        }
                        Err(_) => {}
                        Ok(()) => stats_failed = false,
                    }
                }
                tokio::time::sleep(cfg.refresh()).await;
            }
        });
    }

    fn publish(dir: &std::path::Path, data: &Data, round: &Round) -> std::io::Result<()> {
        let written_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        stats::write(
            dir,
            &WorkerStats {
                pid: std::process::id(),
                written_ms,
                lists_generation: round.last_lists.as_ref().and(round.lists_generation),
                countries_generation: round.countries_generation,
                db_down: round.healthy == Some(false),
                counters: data.counters.values(),
            },
        )
    }

    /// At start, before the first database attempt: publish the last snapshot, so requests are
    /// decided from it until live data comes. Returns the lines to log should the database turn
    /// out to be unavailable (they say what is in force).
    fn load_snapshot(cfg: &Config, data: &Data) -> Vec<(Level, String)> {
        let mut lines = Vec::new();
        let Some(dir) = &cfg.snapshot_dir else {
            return lines;
        };
        if data.lists().is_none() {
            match snapshot::read_lists(dir) {
                Ok(rows) => {
                    let (lists, _) = Lists::build(&rows, &cfg.scanner_user_agents);
                    lines.push((
                        Level::Warn,
                        format!(
                            "database unavailable at start: enforcing the lists saved in {} ({})",
                            dir.display(),
                            lists.summary()
                        ),
                    ));
                    data.publish_lists(lists);
                }
                Err(e) => lines.push((
                    Level::Err,
                    format!(
                        "no usable list snapshot ({e}); policy on_no_data={:?} applies",
                        cfg.on_no_data
                    ),
                )),
            }
        }
        if cfg.country && data.countries().is_none() {
            match snapshot::read_countries(dir) {
                Ok(b) => {
                    let rows = b.rows();
                    data.publish_countries(b.build());
                    release_freed_memory();
                    lines.push((
                        Level::Warn,
                        format!("database unavailable at start: using the {rows} country ranges saved in {}", dir.display()),
                    ));
                }
                Err(e) => lines.push((
                    Level::Err,
                    format!("no usable country snapshot ({e}); get_countrycode answers \"\" until the database is back"),
                )),
            }
        }
        lines
    }

    fn save_snapshot(
        cfg: &Config,
        data: &Data,
        round: &mut Round,
        what: &str,
        result: std::io::Result<()>,
    ) {
        match result {
            Err(e) if !round.snapshot_write_failed => {
                round.snapshot_write_failed = true;
                let dir = cfg
                    .snapshot_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"));
                data.logs.push(
                    Level::Warn,
                    format!("cannot save the {what} snapshot in {}: {e}", dir.display()),
                );
            }
            Err(_) => {}
            Ok(()) => round.snapshot_write_failed = false,
        }
    }

    fn report(cfg: &Config, data: &Data, round: &mut Round, result: Result<(), db::DbError>) {
        if let Err(e) = &result {
            bump(if e.is_timeout() {
                &data.counters.db_timeouts
            } else {
                &data.counters.db_errors
            });
        }
        match result {
            Ok(()) => {
                if round.healthy == Some(false) {
                    data.logs.push(
                        Level::Info,
                        "database reachable again, live data restored".into(),
                    );
                }
                round.healthy = Some(true);
            }
            Err(e) => {
                // The connection's state is unknown after any error: start over next round.
                round.conn = None;
                if round.healthy != Some(false) {
                    let fallback = if data.lists().is_some() {
                        "deciding from the lists loaded before".to_string()
                    } else {
                        format!(
                            "no lists loaded yet, policy on_no_data={:?}",
                            cfg.on_no_data
                        )
                    };
                    data.logs.push(
                        Level::Err,
                        format!(
                            "database unavailable ({e}); {fallback}; retrying every {} s",
                            cfg.refresh_secs
                        ),
                    );
                }
                round.healthy = Some(false);
            }
        }
    }

    /// One round on the kept connection (opened if needed); the connection is kept only if
    /// the round succeeded, since after an error or a deadline its state is unknown.
    async fn refresh(cfg: &Config, data: &Data, round: &mut Round) -> Result<(), db::DbError> {
        let mut conn = match round.conn.take() {
            Some(c) => c,
            None => db::connect(&cfg.db_url, cfg.query_timeout()).await?,
        };
        let result = refresh_on(cfg, data, round, &mut conn).await;
        if result.is_ok() {
            round.conn = Some(conn);
        }
        result
    }

    async fn refresh_on(
        cfg: &Config,
        data: &Data,
        round: &mut Round,
        conn: &mut mysql_async::Conn,
    ) -> Result<(), db::DbError> {
        // Generations first, data second: a change between the two is seen again next round.
        let gens = db::generations(conn, cfg.query_timeout()).await?;
        bump(&data.counters.db_queries);
        let missing: Vec<&str> = gens
            .map(|g| {
                [
                    ("lists", g.lists_missing),
                    ("countries", g.countries_missing),
                ]
                .into_iter()
                .filter_map(|(n, m)| m.then_some(n))
                .collect()
            })
            .unwrap_or_default();
        if !missing.is_empty() && !round.reported_missing_generation {
            let what = if missing.contains(&"lists") {
                "re-reading the lists every round"
            } else {
                "country imports are still seen through the tables themselves"
            };
            data.logs.push(
                Level::Warn,
                format!(
                    "sipguard_generation has no usable {} row (deleted, or not a counter): {what} until a list change or `sipguard-admin reload` puts it back",
                    missing.join(" and ")
                ),
            );
        }
        round.reported_missing_generation = !missing.is_empty();
        let lists_due = round.last_lists.is_none()
            || gens.is_none_or(|g| g.lists_missing)
            || gens.map(|g| g.lists) != round.lists_generation;
        if lists_due {
            load_lists(cfg, data, round, conn).await?;
            round.lists_generation = gens.map(|g| g.lists);
        }
        if !cfg.country {
            // Nothing to load: this worker is at every countries generation it has seen, so
            // `sipguard-admin warm` can tell it is done.
            round.countries_generation = gens.map(|g| g.countries);
        } else {
            let marker = db::country_marker(conn, cfg.query_timeout()).await?;
            bump(&data.counters.db_queries);
            let gen = gens.map(|g| g.countries);
            if marker.is_none()
                || round.country_marker != marker
                || round.countries_generation != gen
            {
                load_countries(cfg, data, round, conn).await?;
                round.country_marker = marker;
                round.countries_generation = gen;
            }
        }
        Ok(())
    }

    async fn load_lists(
        cfg: &Config,
        data: &Data,
        round: &mut Round,
        conn: &mut mysql_async::Conn,
    ) -> Result<(), db::DbError> {
        let tables = db::load_lists(conn, cfg.query_timeout()).await?;
        data.counters.db_queries.fetch_add(5, Ordering::Relaxed);
        if cfg.test_hooks
            && tables
                .rows
                .black
                .iter()
                .any(|r| r.detail == "sipguard-test-loader-panic")
        {
            panic!("test hook: deliberate loader panic");
        }
        if !tables.missing.is_empty() && !round.reported_missing {
            round.reported_missing = true;
            data.logs.push(
                Level::Warn,
                format!(
                    "tables not found, read as empty: {} (apply kamailio/sql/schema.sql)",
                    tables.missing.join(", ")
                ),
            );
        }
        if round.last_lists.as_ref() != Some(&tables.rows) {
            let (lists, rejected) = Lists::build(&tables.rows, &cfg.scanner_user_agents);
            for r in rejected {
                if round.logged_bad.insert((r.table, r.id)) {
                    data.logs.push(
                        Level::Warn,
                        format!(
                            "{} id={}: {:?} is not valid, row skipped",
                            r.table, r.id, r.value
                        ),
                    );
                }
            }
            // Rows the admin tool would have refused (too wide, IPv4-mapped form): enforced,
            // since the database is the truth, but named once so a typo does not go unseen.
            for (table, rows) in [
                ("black_list", &tables.rows.black),
                ("white_list", &tables.rows.white),
            ] {
                for (id, line) in listcheck::review(table, rows) {
                    if round.logged_bad.insert((table, id)) {
                        data.logs.push(Level::Warn, line);
                    }
                }
            }
            data.logs
                .push(Level::Info, format!("lists loaded: {}", lists.summary()));
            data.publish_lists(lists);
            bump(&data.counters.list_loads);
            if let Some(dir) = &cfg.snapshot_dir {
                let saved = snapshot::write_lists(dir, &tables.rows);
                save_snapshot(cfg, data, round, "lists", saved);
            }
            round.last_lists = Some(tables.rows);
        }
        Ok(())
    }

    async fn load_countries(
        cfg: &Config,
        data: &Data,
        round: &mut Round,
        conn: &mut mysql_async::Conn,
    ) -> Result<(), db::DbError> {
        let started = Instant::now();
        let (builder, load) = db::load_countries(conn, cfg.load_timeout()).await?;
        if let Some(dir) = &cfg.snapshot_dir {
            let saved = snapshot::write_countries(dir, &builder);
            save_snapshot(cfg, data, round, "countries", saved);
        }
        let ranges = builder.build();
        data.counters.db_queries.fetch_add(2, Ordering::Relaxed);
        let (v4, v6) = ranges.sizes();
        data.publish_countries(ranges);
        bump(&data.counters.country_loads);
        release_freed_memory();
        let missing = if load.missing.is_empty() {
            String::new()
        } else {
            format!(", missing tables: {}", load.missing.join(", "))
        };
        data.logs.push(
            Level::Info,
            format!(
                "country ranges loaded: {} rows ({} skipped) -> {v4} IPv4 + {v6} IPv6 segments in {} ms{missing}",
                load.rows,
                load.skipped,
                started.elapsed().as_millis()
            ),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
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

    #[test]
    fn same_process_reuses_its_guard() {
        let cfg = Arc::new(guard().config().clone());
        let a = current(|| Ok::<_, ()>(cfg.clone())).unwrap();
        let b = current(|| Err(())).expect("second call reuses the guard, no config needed");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
