//! The background side of a worker: the thread that keeps its [`Data`] fresh from MySQL.
//!
//! One thread (`sipguard-db`), one current-thread runtime, one kept connection, one loop: every
//! `refresh_secs` a round reads the change counters and reloads the lists when they moved
//! (`lists`). Country tables are big and slow to read, so they load on a thread of their own,
//! started only when they changed, with its own connection (`countries`): a list change never
//! waits behind them, and a failing country load backs off instead of rescanning a struggling
//! database every second. The snapshot on disk is read first, before any database attempt
//! (`boot`).
//!
//! Each round runs as its own task, so a panic ends that round only. The loop stops with the
//! process.

mod ban_writer;
mod bans;
mod boot;
mod countries;
mod lists;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::bans::Bans;
use crate::config::Config;
use crate::data::{Data, Phase};
use crate::db::{self, Generations};
use crate::engine::{ListRows, Lists};
use crate::logq::Level;
use crate::ranges::CountryRanges;
use crate::stats::{self, bump, WorkerStats};

/// Starts the loader thread of this process.
pub(crate) fn spawn(cfg: Arc<Config>, data: Arc<Data>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sipguard-db".into())
        .spawn(move || run(cfg, data))
        .map(|_| ())
}

/// What the list side remembers between rounds; reset after a panicked round.
#[derive(Default)]
struct Round {
    conn: Option<mysql_async::Conn>,
    last_lists: Option<ListRows>,
    /// `sipguard_generation.lists` the current lists were read at.
    lists_generation: Option<u64>,
    /// Missing list tables are reported once, not every round.
    reported_missing: bool,
    /// A missing `sipguard_generation` row is reported once, until it is back.
    reported_missing_generation: bool,
    /// A snapshot write failure is reported once.
    snapshot_write_failed: bool,
    healthy: Option<bool>,
    /// Bad rows are logged once per id, not on every refresh.
    logged_bad: HashSet<(&'static str, i64)>,
    /// Rows the driver could not convert, logged once per table and position.
    logged_unreadable: HashSet<(&'static str, usize)>,
    /// The ban side's state.
    bans: bans::BanRound,
}

/// What a round saw of the country tables, for the country side to decide on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CountryState {
    /// `sipguard_generation.countries`, if readable.
    pub generation: Option<u64>,
    /// The tables' fingerprint ([`db::country_marker`]); `None` when not read.
    pub marker: Option<String>,
    /// The fingerprint is settled (no edit within 2 s).
    pub settled: bool,
}

/// Old generations handed back by a publish, freed here (not on the request thread) once no
/// request holds them any more.
#[derive(Default)]
pub(super) struct Retired {
    lists: Vec<Arc<Lists>>,
    countries: Vec<Arc<CountryRanges>>,
    bans: Vec<Arc<Bans>>,
}

impl Retired {
    pub(super) fn lists(&mut self, old: Option<Arc<Lists>>) {
        self.lists.extend(old);
    }

    pub(super) fn countries(&mut self, old: Option<Arc<CountryRanges>>) {
        self.countries.extend(old);
    }

    pub(super) fn bans(&mut self, old: Option<Arc<Bans>>) {
        self.bans.extend(old);
    }

    /// Takes over what another list retired (a round's, run as its own task).
    fn absorb(&mut self, other: Retired) {
        self.lists.extend(other.lists);
        self.countries.extend(other.countries);
        self.bans.extend(other.bans);
    }

    /// Drops what only this list still holds: a request thread takes data from [`Data`] only,
    /// so a count of one cannot rise again.
    fn free_unused(&mut self) {
        let before = self.countries.len();
        self.lists.retain(|a| Arc::strong_count(a) > 1);
        self.countries.retain(|a| Arc::strong_count(a) > 1);
        self.bans.retain(|a| Arc::strong_count(a) > 1);
        if self.countries.len() < before {
            release_freed_memory();
        }
    }
}

/// Building the ranges peaks at several times their final size in the building thread's malloc
/// arena; glibc keeps freed arena memory unless asked, which would leave every worker tens of
/// MB larger for good.
pub(super) fn release_freed_memory() {
    // SAFETY: malloc_trim only walks glibc's own heaps; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// The runtime each loader thread runs on: one thread, timers and I/O.
pub(super) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn run(cfg: Arc<Config>, data: Arc<Data>) {
    // Large blocks (row vectors, the flattening map) straight from mmap, back to the system
    // when freed: glibc otherwise raises this threshold after the first large free, and a
    // reload's temporaries then stay in the arena (measured: a worker grew from 29 to 57 MB RSS
    // after one country reload, for good).
    // SAFETY: mallopt only tunes glibc's allocator; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            data.say(Level::Err, format!("cannot build the tokio runtime: {e}"));
            data.first_attempt_done();
            return;
        }
    };
    rt.block_on(rounds(cfg, data));
}

async fn rounds(cfg: Arc<Config>, data: Arc<Data>) {
    // The snapshot first, before and whatever the database does: a first request still waits
    // (bounded) for live data, but a database that never answers no longer leaves it to
    // on_no_data while a valid snapshot is on disk. Live data replaces it at the first success.
    let mut retired = Retired::default();
    let mut snapshot_lines = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        boot::load_snapshot(&cfg, &data, &mut retired)
    }))
    .unwrap_or_default();
    // The heartbeat starts now: reading a large snapshot is not a stalled round.
    data.beat();
    let start_time = stats::process_start_time(std::process::id());
    // Bans this worker makes are written beside the rounds, never in their way.
    tokio::spawn(ban_writer::run(cfg.clone(), data.clone()));
    let mut snapshot_tried = false;
    let mut round = Round::default();
    let mut country = countries::Supervisor::default();
    let mut panicking = false;
    let mut stats_failed = false;
    loop {
        bump(&data.counters.db_rounds);
        data.set_phase(Phase::Database);
        // The round runs as its own task, so a panic in it (a driver conversion, a bug) ends
        // that round only: the loader logs it and goes on from a fresh state (reconnect,
        // reload everything) instead of freezing this worker's data.
        let task = tokio::spawn({
            let (cfg, data) = (cfg.clone(), data.clone());
            let mut r = std::mem::take(&mut round);
            async move {
                let mut retired = Retired::default();
                let result = refresh(&cfg, &data, &mut r, &mut retired).await;
                (r, result, retired)
            }
        });
        let seen = match task.await {
            Ok((r, result, old)) => {
                round = r;
                retired.absorb(old);
                panicking = false;
                if !snapshot_tried {
                    snapshot_tried = true;
                    // Database unavailable at start: say what is in force instead.
                    if result.is_err() {
                        for (level, line) in std::mem::take(&mut snapshot_lines) {
                            data.say(level, line);
                        }
                    }
                }
                let seen = result.as_ref().ok().cloned();
                report(&cfg, &data, &mut round, result.map(|_| ()));
                seen
            }
            Err(e) => {
                let why = e
                    .try_into_panic()
                    .map(|p| panic_message(&*p))
                    .unwrap_or_else(|_| "cancelled".into());
                bump(&data.counters.loader_panics);
                // Said once per streak (counted each time), not every round.
                if !panicking {
                    data.say(
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
                None
            }
        };
        // The lists' first attempt has ended; the countries' too unless a load is under way
        // (its thread says when it ends).
        data.first_attempt_ended(true, false);
        match seen {
            Some(state) => country.round(&cfg, &data, &state),
            // No answer from the database: no country load can start this round either.
            None => data.first_attempt_ended(false, true),
        }
        country.collect(&cfg, &data, &mut retired);
        retired.free_unused();
        if let Some(dir) = &cfg.stats_dir {
            data.set_phase(Phase::Stats);
            // Logged when writing starts failing, not every round.
            match publish(&cfg, dir, &data, &round, &country, start_time) {
                Err(e) if !stats_failed => {
                    stats_failed = true;
                    data.say(
                        Level::Warn,
                        format!("cannot write stats to {}: {e}", dir.display()),
                    );
                }
                Err(_) => {}
                Ok(()) => stats_failed = false,
            }
        }
        data.set_phase(Phase::Sleeping);
        // Measured as the request path and the stats file see it: since the last beat, pause
        // included.
        let since = data.since_beat(Instant::now());
        data.beat();
        if since > cfg.stall_after() {
            data.say(
                Level::Warn,
                format!(
                    "a refresh round completed {} s after the previous one (stall bound {} s); rounds resumed",
                    since.as_secs(),
                    cfg.stall_after().as_secs()
                ),
            );
        }
        tokio::time::sleep(cfg.refresh()).await;
    }
}

fn publish(
    cfg: &Config,
    dir: &std::path::Path,
    data: &Data,
    round: &Round,
    country: &countries::Supervisor,
    start_time: Option<u64>,
) -> std::io::Result<()> {
    stats::write(
        dir,
        &WorkerStats {
            pid: std::process::id(),
            start_time,
            written_ms: stats::now_ms(),
            stall_after_ms: cfg.stall_after().as_millis() as u64,
            lists_generation: round.last_lists.as_ref().and(round.lists_generation),
            countries_generation: country.generation(cfg),
            bans_generation: round.bans.generation(),
            db_down: round.healthy == Some(false),
            counters: data.counters.values(),
        },
    )
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
                data.say(
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
                data.say(
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

/// One round on the kept connection (opened if needed); the connection is kept only if the
/// round succeeded, since after an error or a deadline its state is unknown. Returns what it
/// saw of the country tables.
async fn refresh(
    cfg: &Config,
    data: &Data,
    round: &mut Round,
    retired: &mut Retired,
) -> Result<CountryState, db::DbError> {
    let mut conn = match round.conn.take() {
        Some(c) => c,
        None => db::connect(&cfg.db_url, cfg.query_timeout()).await?,
    };
    let result = refresh_on(cfg, data, round, retired, &mut conn).await;
    if result.is_ok() {
        round.conn = Some(conn);
    }
    result
}

async fn refresh_on(
    cfg: &Config,
    data: &Data,
    round: &mut Round,
    retired: &mut Retired,
    conn: &mut mysql_async::Conn,
) -> Result<CountryState, db::DbError> {
    // Generations first, data second: a change between the two is seen again next round.
    let gens = db::generations(conn, cfg.query_timeout()).await?;
    data.counters.db_queries.fetch_add(1, Ordering::Relaxed);
    report_missing_generation(data, round, gens);
    let lists_due = round.last_lists.is_none()
        || gens.is_none_or(|g| g.lists_missing)
        || gens.map(|g| g.lists) != round.lists_generation;
    if lists_due {
        lists::load(cfg, data, round, retired, conn).await?;
        round.lists_generation = gens.map(|g| g.lists);
    }
    // Bans are their own table: a failed read of them (a deadline on a huge set) leaves the
    // bans in force and is retried next round; it does not make the lists look unavailable.
    if let Err(e) = bans::load(cfg, data, &mut round.bans, retired, conn, gens).await {
        round.bans.failed(data, &e);
        if e.is_timeout() {
            // The connection's state is unknown after a deadline.
            return Err(e);
        }
    }
    let mut state = CountryState {
        generation: gens.map(|g| g.countries),
        marker: None,
        settled: true,
    };
    if cfg.country {
        let m = db::country_marker(conn, cfg.query_timeout()).await?;
        state.marker = Some(m.text);
        state.settled = m.settled;
        data.counters.db_queries.fetch_add(1, Ordering::Relaxed);
    }
    Ok(state)
}

fn report_missing_generation(data: &Data, round: &mut Round, gens: Option<Generations>) {
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
        data.say(
            Level::Warn,
            format!(
                "sipguard_generation has no usable {} row (deleted, or not a counter): {what} until a list change or `sipguard-admin reload` puts it back",
                missing.join(" and ")
            ),
        );
    }
    round.reported_missing_generation = !missing.is_empty();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_generation_is_freed_here_once_no_request_holds_it() {
        let data = Data::default();
        let mut retired = Retired::default();
        retired.lists(data.publish_lists(Lists::default()));
        // A request took the first generation and still holds it.
        let held = data.lists().unwrap();
        let weak = Arc::downgrade(&held);
        retired.lists(data.publish_lists(Lists::default()));
        retired.free_unused();
        assert_eq!(retired.lists.len(), 1, "kept while a request holds it");
        // The request moves on: its drop only decrements, the loader frees.
        drop(held);
        assert_eq!(weak.strong_count(), 1);
        retired.free_unused();
        assert!(retired.lists.is_empty());
        assert_eq!(weak.strong_count(), 0);
    }
}
