//! What a worker's two sides share: the data in force, published by the loader thread and read
//! by the request path, plus the counters, the log lines and the loader's heartbeat.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::alert::Alerts;
use crate::ban_request::BanOutbox;
use crate::bans::Bans;
use crate::engine::Lists;
use crate::logq::{Level, LogQueue};
use crate::ranges::CountryRanges;
use crate::stats::Counters;

/// What the loader thread is doing, so a stalled one can be described ("busy: …").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Between rounds.
    Sleeping = 0,
    /// Talking to the database (connect, generations, marker, lists).
    Database = 1,
    /// Writing a snapshot file.
    Snapshot = 2,
    /// Writing the stats file.
    Stats = 3,
    /// Building and publishing new lists.
    Building = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Database,
            2 => Phase::Snapshot,
            3 => Phase::Stats,
            4 => Phase::Building,
            _ => Phase::Sleeping,
        }
    }

    /// For the log: what the loader was doing.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Sleeping => "between rounds",
            Phase::Database => "waiting on the database",
            Phase::Snapshot => "writing a snapshot file",
            Phase::Stats => "writing its stats file",
            Phase::Building => "building the lists",
        }
    }
}

/// Data shared between the Lua thread (reads) and the loader threads (writes).
///
/// `RwLock<Option<Arc<_>>>`: readers clone the `Arc` and drop the lock at once, so a reload
/// never blocks a request for longer than a pointer swap. The publisher gets the previous
/// `Arc` back and frees it itself, once no request holds it (see `loader`), so the request
/// thread never pays for freeing a generation's arrays.
pub struct Data {
    lists: RwLock<Option<Arc<Lists>>>,
    countries: RwLock<Option<Arc<CountryRanges>>>,
    /// The bans in force; published apart from the lists, without touching `generation`: a
    /// request checks them on every call, so answers cached per source stay valid.
    bans: RwLock<Option<Arc<Bans>>>,
    /// Bumped on every publish of `bans`.
    bans_generation: AtomicU64,
    /// Bumped when the bans are re-read whole because some were lifted: each worker then
    /// forgets its own bans (they are in the table, or lifted there).
    ban_lifts: AtomicU64,
    /// Bans this worker made (`sipguard.ban`), on their way to the background thread.
    pub ban_outbox: BanOutbox,
    /// Bumped on every publish, so per-source cache entries know when they are stale.
    generation: AtomicU64,
    /// (lists, countries): set once the first attempt to load each has ended, either way;
    /// the first request of a worker waits on both (bounded by the query deadline).
    first_attempt: (Mutex<(bool, bool)>, Condvar),
    /// Lines for Kamailio's log through `KSR.log`, printed by the next request: the request
    /// path's own lines (bad input), and the loader's with `log_target` `kamailio`.
    pub logs: LogQueue,
    /// Where the loader's lines go (see [`crate::alert`]).
    alerts: Alerts,
    /// This worker's counters, published by the loader to `stats_dir`.
    pub counters: Counters,
    /// When this state was made; the heartbeat is measured from it.
    epoch: Instant,
    /// Milliseconds after `epoch` at which the loader last completed a round.
    heartbeat_ms: AtomicU64,
    /// The loader's current [`Phase`].
    phase: AtomicU8,
}

impl Default for Data {
    fn default() -> Self {
        Data::new(Alerts::queue())
    }
}

impl Data {
    /// Empty data whose loader lines go to `alerts`.
    pub fn new(alerts: Alerts) -> Data {
        Data {
            lists: RwLock::default(),
            countries: RwLock::default(),
            bans: RwLock::default(),
            bans_generation: AtomicU64::new(0),
            ban_lifts: AtomicU64::new(0),
            ban_outbox: BanOutbox::default(),
            generation: AtomicU64::new(0),
            first_attempt: (Mutex::new((false, false)), Condvar::new()),
            logs: LogQueue::default(),
            alerts,
            counters: Counters::default(),
            epoch: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Sleeping as u8),
        }
    }

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

    /// Replaces the lists for every later request; returns the previous ones.
    pub fn publish_lists(&self, lists: Lists) -> Option<Arc<Lists>> {
        self.publish(&self.lists, lists)
    }

    /// Replaces the country ranges for every later request; returns the previous ones.
    pub fn publish_countries(&self, ranges: CountryRanges) -> Option<Arc<CountryRanges>> {
        self.publish(&self.countries, ranges)
    }

    /// The bans in force, if any were loaded.
    pub fn bans(&self) -> Option<Arc<Bans>> {
        self.bans.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the bans for every later request; returns the previous ones.
    pub fn publish_bans(&self, bans: Bans) -> Option<Arc<Bans>> {
        let old = self
            .bans
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(bans));
        self.bans_generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// Replaces the bans with a set re-read whole after a lift (see [`Data::ban_lifts`]).
    pub fn publish_bans_after_lift(&self, bans: Bans) -> Option<Arc<Bans>> {
        self.ban_lifts.fetch_add(1, Ordering::AcqRel);
        self.publish_bans(bans)
    }

    /// Bumped by every whole re-read of the bans after a lift.
    pub fn ban_lifts(&self) -> u64 {
        self.ban_lifts.load(Ordering::Acquire)
    }

    /// Bumped by every publish of the bans.
    pub fn bans_generation(&self) -> u64 {
        self.bans_generation.load(Ordering::Acquire)
    }

    fn publish<T>(&self, slot: &RwLock<Option<Arc<T>>>, value: T) -> Option<Arc<T>> {
        let old = slot
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(value));
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// Bumped by every publish.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A loader line: logged at once where `log_target` says, or queued for `KSR.log`.
    pub fn say(&self, level: Level, msg: String) {
        self.alerts.say(&self.logs, level, msg);
    }

    /// The first attempt at the lists (`lists`) or at the country ranges has ended.
    pub fn first_attempt_ended(&self, lists: bool, countries: bool) {
        let (m, cv) = &self.first_attempt;
        let mut done = m.lock().unwrap_or_else(|p| p.into_inner());
        done.0 |= lists;
        done.1 |= countries;
        cv.notify_all();
    }

    /// Both first attempts have ended (or there is no loader): requests stop waiting.
    pub fn first_attempt_done(&self) {
        self.first_attempt_ended(true, true);
    }

    /// Waits, at most `limit`, until both first attempts have ended.
    pub fn wait_first_attempt(&self, limit: Duration) {
        let (m, cv) = &self.first_attempt;
        let done = m.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv.wait_timeout_while(done, limit, |d| !(d.0 && d.1));
    }

    /// The loader completed a round now.
    pub fn beat(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Release);
    }

    /// Time since the loader last completed a round (or since start, before its first).
    pub fn since_beat(&self, now: Instant) -> Duration {
        let at = self.epoch + Duration::from_millis(self.heartbeat_ms.load(Ordering::Acquire));
        now.saturating_duration_since(at)
    }

    /// Records what the loader is doing.
    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    /// What the loader is doing.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }
}
