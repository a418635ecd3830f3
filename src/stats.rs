//! Per-worker counters, and the files through which workers publish them.
//!
//! Each Kamailio worker has its own copy of the module, so counters live in the worker. Its
//! loader thread writes them every refresh round to `<stats_dir>/<pid>.json` (replaced whole:
//! a reader never sees half a file); `sipguard-admin stats` reads
//! the files of live workers and adds them up. No shared memory, no database writes: the
//! module's database user stays read-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Monotonic counters, bumped on the request path with relaxed atomics (a few ns each).
        #[derive(Default)]
        pub struct Counters {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Current values by name, for publishing.
            pub fn values(&self) -> BTreeMap<String, u64> {
                let mut m = BTreeMap::new();
                $(m.insert(stringify!($name).to_string(), self.$name.load(Ordering::Relaxed));)*
                m
            }
        }
    };
}

counters! {
    check_blacklist: "Calls of check_blacklist.",
    get_countrycode: "Calls of get_countrycode.",
    check_country_blacklist: "Calls of check_country_blacklist.",
    check_user_blacklist: "Calls of check_user_blacklist.",
    check_user_agent: "Calls of check_user_agent.",
    sipguard_check: "Calls of sipguard_check (all checks in one call).",
    cache_hits: "Per-source answers reused: from the LRU, or the last answer (kept also with cache_size 0).",
    cache_misses: "Per-source answers computed.",
    bad_input: "Arguments that were not a usable address or country code.",
    // Decisions, named decided_<check>_<result> (`sipguard-admin metrics` splits them into the
    // labels of sipguard_decisions_total). A black or white answer counts under the check that
    // matched (ban: a ban in force); a clear or no-data answer under the check asked (all:
    // sipguard_check).
    decided_ip_clear: "check_blacklist answers with no match.",
    decided_ip_white: "white_list matches.",
    decided_ip_black: "black_list matches.",
    decided_ip_nodata: "check_blacklist answers given by the on_no_data policy.",
    decided_country_clear: "check_country_blacklist answers with no match.",
    decided_country_black: "black_list_country matches.",
    decided_country_nodata: "check_country_blacklist answers given by the on_no_data policy.",
    decided_ua_clear: "check_user_agent answers with no match.",
    decided_ua_black: "Scanner User-Agent matches (config patterns and black_list_ua).",
    decided_ua_nodata: "check_user_agent answers given by the on_no_data policy.",
    decided_user_clear: "check_user_blacklist answers with no match.",
    decided_user_black: "black_list_user matches.",
    decided_user_nodata: "check_user_blacklist answers given by the on_no_data policy.",
    decided_ban_black: "Sources refused by a ban in force (sipguard_ban).",
    decided_all_clear: "sipguard_check answers with no match in any check.",
    decided_all_nodata: "sipguard_check answers given by the on_no_data policy.",
    bans_asked: "Calls of sipguard.ban (request path).",
    bans_made: "Bans made by this worker: enforced here, and queued for sipguard_ban when ban_db_url is set (request path).",
    bans_coalesced: "Bans not queued: the source was already banned as long (request path).",
    bans_refused: "Bans refused: bad arguments, too wide, or an allow-listed source (request path).",
    bans_dropped: "Bans dropped at a full queue or own-ban table (request path).",
    ban_rows_written: "sipguard_ban rows written by the background thread.",
    ban_write_errors: "Failed writes of sipguard_ban (each retried next round).",
    ban_rows_dropped: "Bans the background thread dropped: its queue full while the database was away.",
    db_rounds: "Refresh rounds run by the loader.",
    db_queries: "Queries sent.",
    db_errors: "Rounds that failed on a database error.",
    db_timeouts: "Rounds that failed on a deadline.",
    loader_panics: "Refresh rounds that ended in an internal error (a panic, caught).",
    loader_stalls: "Times the request path saw the loader go past its stall bound without a round.",
    country_load_failures: "Country loads that failed (each followed by a backoff).",
    list_loads: "Times the lists were (re)built.",
    country_loads: "Times the country ranges were (re)built.",
    list_load_ms: "Milliseconds from the start of each list load until the new lists were in force, summed over list_loads.",
    country_load_ms: "Milliseconds from the start of each country load until the new ranges were in force (including a wait for another worker's build), summed over country_loads.",
}

/// Adds `n` to a counter with a single writer (see [`bump`]).
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Bumps a counter. Each counter has a single writer (the request path, the list loop or the
/// country load thread writes it, never two of them), so a plain load and store suffice: a locked read-modify-write on a
/// cold cache line would stall the request for a full memory round trip.
pub fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// What one worker publishes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStats {
    /// The worker's process id.
    pub pid: u32,
    /// The process's start time (`/proc/PID/stat` field 22, clock ticks after boot): a pid
    /// reused by another process after the worker died does not make its file look live.
    #[serde(default)]
    pub start_time: Option<u64>,
    /// When the file was written (Unix ms).
    pub written_ms: u64,
    /// How old `written_ms` may get before the worker's loader counts as stalled (it writes
    /// the file every round); 0 in files from before this field.
    #[serde(default)]
    pub stall_after_ms: u64,
    /// `sipguard_generation.lists` the worker's lists were loaded at (None: never, or no table).
    pub lists_generation: Option<u64>,
    /// `sipguard_generation.countries` the worker's country ranges were loaded at.
    pub countries_generation: Option<u64>,
    /// `sipguard_generation.bans` the worker's bans were read at (None: never, or no table).
    #[serde(default)]
    pub bans_generation: Option<u64>,
    /// True while the last refresh round failed.
    pub db_down: bool,
    /// Counter values by name.
    pub counters: BTreeMap<String, u64>,
}

/// Writes `stats` to `<dir>/<pid>.json`, replaced whole ([`crate::atomicfile`]).
pub fn write(dir: &Path, stats: &WorkerStats) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(stats).map_err(std::io::Error::other)?;
    crate::atomicfile::replace_volatile(dir, &format!("{}.json", stats.pid), &bytes)
}

/// Reads the files of workers that are still alive; files of dead processes are skipped (and
/// removed when possible, so restarts do not pile them up). A directory that does not exist yet
/// (no worker has had a request) holds no live worker.
pub fn read_live(dir: &Path) -> std::io::Result<Vec<WorkerStats>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // Workers create the directory at their first request: none has had one yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path: PathBuf = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let Ok(stats) = serde_json::from_slice::<WorkerStats>(&text) else {
            continue;
        };
        let alive = match stats.start_time {
            Some(t) => process_start_time(stats.pid) == Some(t),
            None => Path::new(&format!("/proc/{}", stats.pid)).exists(),
        };
        if alive {
            out.push(stats);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    out.sort_by_key(|s| s.pid);
    Ok(out)
}

/// Now, in Unix milliseconds (what `written_ms` holds).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Start time of process `pid` (field 22 of `/proc/PID/stat`, in clock ticks after boot), or
/// `None` if there is no such process. With the pid it names one process for good.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl WorkerStats {
    /// Whether the worker's loader has gone longer than its `stall_after_ms` without a round,
    /// at `now_ms` (Unix ms).
    pub fn stalled(&self, now_ms: u64) -> bool {
        self.stall_after_ms > 0 && now_ms.saturating_sub(self.written_ms) > self.stall_after_ms
    }
}

/// Sums the counters of several workers.
pub fn total(workers: &[WorkerStats]) -> BTreeMap<String, u64> {
    let mut t = BTreeMap::new();
    for w in workers {
        for (k, v) in &w.counters {
            *t.entry(k.clone()).or_insert(0) += v;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_dead_workers_are_dropped() {
        let dir = std::env::temp_dir().join(format!("sipguard-stats-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = Counters::default();
        bump(&c.check_blacklist);
        bump(&c.check_blacklist);
        let me = WorkerStats {
            pid: std::process::id(),
            counters: c.values(),
            lists_generation: Some(7),
            ..WorkerStats::default()
        };
        write(&dir, &me).unwrap();
        let dead = WorkerStats {
            pid: u32::MAX - 1,
            counters: c.values(),
            ..WorkerStats::default()
        };
        write(&dir, &dead).unwrap();
        // A file from a process that died, whose pid is now someone else's (here: ours, with
        // another start time), is not live either.
        let mut reused = WorkerStats {
            start_time: process_start_time(std::process::id()).map(|t| t + 1),
            ..me.clone()
        };
        assert!(reused.start_time.is_some());
        reused.pid = std::process::id();
        write(&dir.join("reused"), &reused).unwrap();
        assert!(read_live(&dir.join("reused")).unwrap().is_empty());
        let me = WorkerStats {
            start_time: process_start_time(std::process::id()),
            ..me
        };
        write(&dir, &me).unwrap();
        let live = read_live(&dir).unwrap();
        assert_eq!(live, vec![me.clone()]);
        assert!(!dir.join(format!("{}.json", u32::MAX - 1)).exists());
        assert_eq!(total(&[me.clone(), me])["check_blacklist"], 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
