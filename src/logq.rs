//! Log lines waiting for a Lua call to print them, and a limiter for noisy ones.
//!
//! Only the Lua thread may call into Kamailio's logger (`KSR.log`), but the loader thread has
//! things to say (database down, bad rows). It queues them here; the next request drains them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Severity, named as `KSR.log` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine state changes (lists loaded).
    Info,
    /// Something the operator should fix (a bad row), service continues.
    Warn,
    /// Service degraded (database unreachable).
    Err,
}

impl Level {
    /// The word Kamailio writes for this level on its own lines (`WARNING: …`).
    pub fn as_kamailio_word(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Err => "ERROR",
        }
    }

    /// The level string `KSR.log` expects.
    pub fn as_ksr(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Err => "err",
        }
    }
}

/// Most lines kept while nobody drains; beyond this the oldest are dropped (and counted).
const CAP: usize = 256;

/// A bounded queue shared by the loader thread (producer) and the Lua thread (consumer).
#[derive(Default)]
pub struct LogQueue {
    /// The lines, and how many were dropped since the last drain.
    lines: Mutex<(VecDeque<(Level, String)>, u64)>,
    /// Lets the request path skip the lock when there is nothing to print (the usual case).
    pending: AtomicBool,
}

impl LogQueue {
    /// Queues a line; never blocks for long and never grows without bound.
    pub fn push(&self, level: Level, msg: String) {
        let mut q = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if q.0.len() >= CAP {
            q.0.pop_front();
            q.1 += 1;
        }
        q.0.push_back((level, msg));
        self.pending.store(true, Ordering::Release);
    }

    /// Takes everything queued, or nothing without locking when the queue is empty.
    pub fn drain(&self) -> Vec<(Level, String)> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let mut q = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = std::mem::take(&mut q.1);
        let mut out: Vec<(Level, String)> = Vec::with_capacity(q.0.len() + 1);
        if dropped > 0 {
            out.push((
                Level::Warn,
                format!("{dropped} older log lines dropped while no request came to print them"),
            ));
        }
        out.extend(q.0.drain(..));
        out
    }
}

/// Lets one line per kind through per interval, and says how many were held back.
pub struct RateLimit {
    interval: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RateLimit {
    /// A limiter allowing one line per kind per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: HashMap::new(),
        }
    }

    /// `Some(n)` when a line of `kind` may be logged now, `n` being how many were suppressed
    /// since the last one; `None` when it must be dropped.
    pub fn allow(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(kind) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_and_drains_once() {
        let q = LogQueue::default();
        assert!(q.drain().is_empty());
        for i in 0..(CAP + 10) {
            q.push(Level::Info, i.to_string());
        }
        let lines = q.drain();
        // The dropped lines are counted, first, then the newest CAP lines.
        assert_eq!(lines.len(), CAP + 1);
        assert_eq!(lines[0].0, Level::Warn);
        assert_eq!(
            lines[0].1,
            "10 older log lines dropped while no request came to print them"
        );
        assert_eq!(lines[1].1, "10");
        assert!(q.drain().is_empty());
        q.push(Level::Info, "again".into());
        assert_eq!(q.drain().len(), 1, "the count starts over after a drain");
    }

    #[test]
    fn rate_limit_counts_suppressed_lines() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(10));
        assert_eq!(r.allow("addr", t0), Some(0));
        assert_eq!(r.allow("addr", t0 + Duration::from_secs(1)), None);
        assert_eq!(r.allow("addr", t0 + Duration::from_secs(2)), None);
        assert_eq!(r.allow("cc", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(r.allow("addr", t0 + Duration::from_secs(10)), Some(2));
    }
}
