//! The country side: loads `ipcountry`/`ipcountry6` on a thread of its own, only when they
//! changed, and backs off when a load fails.
//!
//! A load reads hundreds of thousands of rows (up to `load_timeout_ms`) and builds ~10 MB of
//! tables: done in the list loop, it held every list change behind it. Here the list loop only
//! decides (from the generation and the tables' fingerprint it reads anyway) and starts a
//! short-lived thread with its own connection, which publishes the ranges and ends. A failed
//! load is retried after 2, 4, 8 … × `refresh_secs` (at most [`MAX_BACKOFF`], spread by pid),
//! not at every round by every worker; a change of the tables (an import) is tried at once.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{panic_message, release_freed_memory, CountryState, Retired};
use crate::config::Config;
use crate::data::Data;
use crate::db;
use crate::logq::Level;
use crate::nodefile::{self, Header, Obtained};
use crate::ranges::{CountryRanges, CountryRangesBuilder};
use crate::stats::bump;

/// The longest wait between two attempts at a failing country load.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before attempt `failures + 1`: `refresh` (at least 1 s) × 2^failures, capped at
/// [`MAX_BACKOFF`], plus up to 25 % by `pid` so a node's workers do not retry in step.
pub fn backoff(refresh: Duration, failures: u32, pid: u32) -> Duration {
    let base = refresh.max(Duration::from_secs(1));
    let wait = base.saturating_mul(1u32 << failures.min(16));
    (wait + wait.mul_f64(f64::from(pid % 256) / 1024.0)).min(MAX_BACKOFF)
}

/// What a load thread hands back.
struct Outcome {
    result: Result<Loaded, String>,
    /// The ranges it replaced, to be freed off the request path.
    old: Option<Arc<CountryRanges>>,
}

/// A load that did not fail.
enum Loaded {
    /// New ranges are in force.
    Published,
    /// Another worker of the node is building this generation's file: look again next round.
    Busy,
}

/// A load under way.
struct Running {
    /// What the tables looked like when it started.
    wanted: CountryState,
    started: Instant,
    rx: mpsc::Receiver<Outcome>,
    slow_reported: bool,
}

/// Decides when to load the country tables, runs the loads, and remembers failures.
#[derive(Default)]
pub(super) struct Supervisor {
    /// The tables' state the ranges in force were loaded at; `None`: none loaded.
    loaded: Option<CountryState>,
    /// The last generation seen, reported as loaded when countries are off (for `warm`).
    seen_generation: Option<u64>,
    running: Option<Running>,
    /// Failed attempts in a row.
    failures: u32,
    /// No attempt before this, unless the tables change.
    retry_at: Option<Instant>,
    /// The state the last failed attempt was for.
    failed_for: Option<CountryState>,
    /// The tables' fingerprint at the previous round: a change the generation does not
    /// announce (a hand edit, or an import between its swap and its generation bump) is
    /// loaded once the same fingerprint is seen two rounds in a row.
    previous_marker: Option<String>,
}

impl Supervisor {
    /// `sipguard_generation.countries` of the ranges in force (with countries off: the last
    /// one seen, since there is nothing to load).
    pub(super) fn generation(&self, cfg: &Config) -> Option<u64> {
        if cfg.country {
            self.loaded.as_ref().and_then(|s| s.generation)
        } else {
            self.seen_generation
        }
    }

    /// After a round that read `state`: starts a load if the tables changed (or were never
    /// loaded, or have no stable fingerprint yet) and no backoff holds it.
    pub(super) fn round(&mut self, cfg: &Arc<Config>, data: &Arc<Data>, state: &CountryState) {
        self.seen_generation = state.generation;
        if !cfg.country {
            data.first_attempt_ended(false, true);
            return;
        }
        if self.running.is_some() {
            return;
        }
        let shared = cfg.snapshot_dir.is_some();
        let generation_moved = state.generation.is_some()
            && self.loaded.as_ref().map(|l| l.generation) != Some(state.generation);
        let marker_new =
            std::mem::replace(&mut self.previous_marker, state.marker.clone()) != state.marker;
        let announced = generation_moved || self.loaded.is_none();
        if shared && !announced && (!state.settled || marker_new) {
            // Tables edited by hand less than 2 s ago have no fingerprint yet (it names the
            // node's file), and one seen for the first time may be an import's swap whose
            // generation bump is still coming: wait a round rather than build twice. An
            // import moves the generation once its tables are complete: loaded at once.
            data.first_attempt_ended(false, true);
            return;
        }
        // Loaded before the fingerprint settled: once more when it has (an edit in that second
        // would not show); with a node file that only maps the same file again.
        let due = (!shared && !state.settled) || self.loaded.as_ref() != Some(state);
        if !due {
            return;
        }
        if self.failed_for.as_ref() != Some(state) {
            // The tables changed since the failure (an import, a repair): worth a try now.
            self.retry_at = None;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let (c, d, st) = (cfg.clone(), data.clone(), state.clone());
        let spawned = std::thread::Builder::new()
            .name("sipguard-cc".into())
            .spawn(move || {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&c, &d, &st)))
                        .unwrap_or_else(|p| Outcome {
                            result: Err(format!("internal error ({})", panic_message(&*p))),
                            old: None,
                        });
                d.first_attempt_ended(false, true);
                // The load's runtime and connection are gone now; what they freed stays in this
                // thread's malloc arena after the thread ends unless handed back here (measured:
                // ~230 kB per worker, in every worker).
                release_freed_memory();
                let _ = tx.send(outcome);
            });
        match spawned {
            Ok(_) => {
                self.running = Some(Running {
                    wanted: state.clone(),
                    started: Instant::now(),
                    rx,
                    slow_reported: false,
                })
            }
            Err(e) => self.failed(
                cfg,
                data,
                state.clone(),
                format!("cannot start a thread: {e}"),
            ),
        }
    }

    /// Takes the result of a finished load, if any.
    pub(super) fn collect(&mut self, cfg: &Config, data: &Data, retired: &mut Retired) {
        let Some(run) = self.running.as_mut() else {
            return;
        };
        let outcome = match run.rx.try_recv() {
            Ok(o) => o,
            Err(mpsc::TryRecvError::Empty) => {
                let limit = 2 * cfg.load_timeout() + 4 * cfg.query_timeout();
                if run.started.elapsed() > limit && !run.slow_reported {
                    run.slow_reported = true;
                    data.say(
                        Level::Warn,
                        format!(
                            "a country load has been running for {} s (deadline {} s per table); list refresh goes on",
                            run.started.elapsed().as_secs(),
                            cfg.load_timeout().as_secs()
                        ),
                    );
                }
                return;
            }
            Err(mpsc::TryRecvError::Disconnected) => Outcome {
                result: Err("the load thread ended without a result".into()),
                old: None,
            },
        };
        let wanted = self.running.take().map(|r| r.wanted).unwrap_or_default();
        retired.countries(outcome.old);
        match outcome.result {
            Ok(Loaded::Busy) => {}
            Ok(Loaded::Published) => {
                if self.failures > 0 {
                    data.say(
                        Level::Info,
                        format!(
                            "country ranges loaded again after {} failed attempts",
                            self.failures
                        ),
                    );
                }
                self.loaded = Some(wanted);
                self.failures = 0;
                self.retry_at = None;
                self.failed_for = None;
            }
            Err(e) => self.failed(cfg, data, wanted, e),
        }
    }

    fn failed(&mut self, cfg: &Config, data: &Data, wanted: CountryState, why: String) {
        // No load thread will say its first attempt ended (it may never have started).
        data.first_attempt_ended(false, true);
        self.failures += 1;
        bump(&data.counters.country_load_failures);
        let wait = backoff(cfg.refresh(), self.failures, std::process::id());
        self.retry_at = Some(Instant::now() + wait);
        self.failed_for = Some(wanted);
        // Said once per streak; the attempts are counted (`country_load_failures`).
        if self.failures == 1 {
            let in_force = match data.countries() {
                Some(r) => {
                    let (v4, v6) = r.sizes();
                    format!("keeping the {v4} IPv4 + {v6} IPv6 segments in force")
                }
                None => "no country data yet: get_countrycode answers \"\"".into(),
            };
            data.say(
                Level::Err,
                format!(
                    "country load failed ({why}); {in_force}; retrying in {} s, backing off to at most {} s, or at once when the tables change",
                    wait.as_secs(),
                    MAX_BACKOFF.as_secs()
                ),
            );
        }
    }
}

/// Reads both country tables on this thread's own runtime and connection.
fn read(cfg: &Config, data: &Data) -> Result<(CountryRangesBuilder, db::CountryLoad), String> {
    let rt = super::runtime().map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
    let read = rt.block_on(async {
        let mut conn = db::connect(&cfg.db_url, cfg.query_timeout()).await?;
        let read = db::load_countries(&mut conn, cfg.load_timeout()).await;
        let _ = tokio::time::timeout(cfg.query_timeout(), conn.disconnect()).await;
        read
    });
    data.counters.db_queries.fetch_add(2, Ordering::Relaxed);
    read.map_err(|e| e.to_string())
}

fn describe(load: &db::CountryLoad) -> String {
    let missing = if load.missing.is_empty() {
        String::new()
    } else {
        format!(", missing tables: {}", load.missing.join(", "))
    };
    format!("{} rows ({} skipped){missing}", load.rows, load.skipped)
}

/// One load, on the load thread. With a `snapshot_dir`, through the node's file: mapped if
/// another worker built it, else built here once for the whole node ([`crate::nodefile`]).
fn load(cfg: &Config, data: &Data, state: &CountryState) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        result: Ok(Loaded::Published),
        old: None,
    };
    let mut read_here = None;
    let (ranges, how) = match &cfg.snapshot_dir {
        None => match read(cfg, data) {
            Ok((builder, load)) => (builder.build(), describe(&load)),
            Err(e) => {
                out.result = Err(e);
                return out;
            }
        },
        Some(dir) => {
            let header = Header {
                generation: state.generation,
                key: nodefile::key(state.marker.as_deref().unwrap_or_default()),
            };
            let mut notes = Vec::new();
            // Waiting for another worker's build holds this thread only, never a request.
            let got = nodefile::obtain(
                dir,
                header,
                cfg.load_timeout(),
                || {
                    let (builder, load) = read(cfg, data)?;
                    read_here = Some(describe(&load));
                    Ok(builder.build())
                },
                &mut notes,
            );
            for n in notes {
                data.say(Level::Warn, n);
            }
            let file = dir.join(nodefile::file_name(header));
            match got {
                Ok(Obtained::Mapped { ranges, built }) => {
                    let how = match (built, read_here.take()) {
                        (true, Some(rows)) => {
                            format!(
                                "{rows}, shared with the node's workers in {}",
                                file.display()
                            )
                        }
                        _ => format!("mapped from {} (built by another worker)", file.display()),
                    };
                    (*ranges, how)
                }
                Ok(Obtained::Unshared { ranges, why }) => {
                    let rows = read_here.take().unwrap_or_default();
                    (*ranges, format!("{rows}, this worker's own copy ({why})"))
                }
                Ok(Obtained::Busy) => {
                    out.result = Ok(Loaded::Busy);
                    return out;
                }
                Err(e) => {
                    out.result = Err(e);
                    return out;
                }
            }
        }
    };
    let (v4, v6) = ranges.sizes();
    out.old = data.publish_countries(ranges);
    bump(&data.counters.country_loads);
    crate::stats::add(
        &data.counters.country_load_ms,
        started.elapsed().as_millis() as u64,
    );
    release_freed_memory();
    data.say(
        Level::Info,
        format!(
            "country ranges loaded: {how} -> {v4} IPv4 + {v6} IPv6 segments in {} ms",
            started.elapsed().as_millis()
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_spread_by_pid() {
        let r = Duration::from_secs(1);
        assert_eq!(backoff(r, 1, 0), Duration::from_secs(2));
        assert_eq!(backoff(r, 2, 0), Duration::from_secs(4));
        assert_eq!(backoff(r, 3, 0), Duration::from_secs(8));
        assert_eq!(backoff(r, 30, 0), MAX_BACKOFF);
        assert_eq!(
            backoff(Duration::from_millis(10), 1, 0),
            Duration::from_secs(2)
        );
        let spread = backoff(r, 3, 255);
        assert!(
            spread > Duration::from_secs(8) && spread <= Duration::from_secs(10),
            "{spread:?}"
        );
        assert_eq!(backoff(r, 30, 255), MAX_BACKOFF);
    }
}
