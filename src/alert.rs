//! Where the loader thread's lines go: straight to Kamailio's log destination, from the
//! background thread, so an outage on a quiet node is in the log within a second.
//!
//! app_lua's logger (`KSR.log`) may only be called on a worker's Lua thread, inside a SIP
//! message; lines handed to it wait for the next request, which on a quiet node may never
//! come. The loader therefore writes its own lines, where Kamailio writes its own: to syslog
//! (through the `openlog` Kamailio made before forking: same ident, pid and facility) or to
//! standard error when Kamailio runs with `-E` / `log_stderror=yes`. The target `"kamailio"`
//! keeps the old path (queued for `KSR.log` at the next request) for setups that need Kamailio's
//! own log format; tests use it to read the lines back.

use std::ffi::CString;
use std::io::Write;
use std::os::raw::c_int;

use serde::Deserialize;

use crate::logq::{Level, LogQueue};

/// `log_target` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// Where Kamailio logs: standard error if its `log_stderr` is set, else syslog. Outside
    /// Kamailio (a plain Lua host), standard error.
    #[default]
    Auto,
    /// `syslog(3)`, with `log_facility` or Kamailio's.
    Syslog,
    /// Standard error, one `write` per line.
    Stderr,
    /// Queued for `KSR.log` at the next request on this worker (waits for traffic).
    Kamailio,
}

/// Syslog facilities by the names Kamailio's `log_facility` takes.
const FACILITIES: [(&str, c_int); 20] = [
    ("LOG_AUTH", libc::LOG_AUTH),
    ("LOG_AUTHPRIV", libc::LOG_AUTHPRIV),
    ("LOG_CRON", libc::LOG_CRON),
    ("LOG_DAEMON", libc::LOG_DAEMON),
    ("LOG_FTP", libc::LOG_FTP),
    ("LOG_KERN", libc::LOG_KERN),
    ("LOG_LOCAL0", libc::LOG_LOCAL0),
    ("LOG_LOCAL1", libc::LOG_LOCAL1),
    ("LOG_LOCAL2", libc::LOG_LOCAL2),
    ("LOG_LOCAL3", libc::LOG_LOCAL3),
    ("LOG_LOCAL4", libc::LOG_LOCAL4),
    ("LOG_LOCAL5", libc::LOG_LOCAL5),
    ("LOG_LOCAL6", libc::LOG_LOCAL6),
    ("LOG_LOCAL7", libc::LOG_LOCAL7),
    ("LOG_LPR", libc::LOG_LPR),
    ("LOG_MAIL", libc::LOG_MAIL),
    ("LOG_NEWS", libc::LOG_NEWS),
    ("LOG_SYSLOG", libc::LOG_SYSLOG),
    ("LOG_USER", libc::LOG_USER),
    ("LOG_UUCP", libc::LOG_UUCP),
];

/// The facility named `name` (`LOG_LOCAL0`, any case), or `None` if it is not one.
pub fn facility(name: &str) -> Option<c_int> {
    FACILITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, f)| *f)
}

/// Whether this process is a Kamailio that logs to standard error: its core's `log_stderr`
/// global, found by name (Kamailio exports its symbols for modules). `None` outside Kamailio.
fn kamailio_logs_to_stderr() -> Option<bool> {
    if !in_kamailio() {
        return None;
    }
    // SAFETY: dlsym with RTLD_DEFAULT only looks a name up; in Kamailio the symbol is its core's
    // `int log_stderr`, read once (set while parsing the cfg, before the fork).
    unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, c"log_stderr".as_ptr());
        (!p.is_null()).then(|| *(p as *const c_int) != 0)
    }
}

/// Whether this process is Kamailio: its core exports `_ksr_is_main`, a name no other program
/// uses, so `log_stderr` and `process_no` are Kamailio's ints and not another program's.
fn in_kamailio() -> bool {
    // SAFETY: only looks the name up.
    unsafe { !libc::dlsym(libc::RTLD_DEFAULT, c"_ksr_is_main".as_ptr()).is_null() }
}

/// This Kamailio process's rank (`process_no`), for the `rank(pid)` prefix Kamailio puts on
/// every line it writes to standard error; `None` outside Kamailio.
fn kamailio_process_no() -> Option<c_int> {
    if !in_kamailio() {
        return None;
    }
    // SAFETY: as in `kamailio_logs_to_stderr`; `process_no` is set in each child at fork,
    // before any check call builds the guard that reads it.
    unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, c"process_no".as_ptr());
        (!p.is_null()).then(|| *(p as *const c_int))
    }
}

/// Where a line is written, resolved once per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Syslog(Option<c_int>),
    Stderr,
    Queue,
}

/// The loader's log: writes each line at once to the resolved destination, or queues it.
pub struct Alerts {
    sink: Sink,
    /// `" 3(1234) "`: Kamailio's own prefix for this process's lines on standard error.
    prefix: String,
}

impl Alerts {
    /// Resolves `target` (with `facility`, already checked by the config) in this process.
    pub fn new(target: LogTarget, facility: Option<c_int>) -> Alerts {
        let sink = match target {
            LogTarget::Auto => match kamailio_logs_to_stderr() {
                Some(false) => Sink::Syslog(facility),
                Some(true) | None => Sink::Stderr,
            },
            LogTarget::Syslog => Sink::Syslog(facility),
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::Kamailio => Sink::Queue,
        };
        let pid = std::process::id();
        let prefix = match kamailio_process_no() {
            Some(rank) => format!("{rank:>2}({pid}) "),
            None => format!("({pid}) "),
        };
        Alerts { sink, prefix }
    }

    /// Lines queued for the next request (target `kamailio`), for a test to check.
    pub fn queue() -> Alerts {
        Alerts {
            sink: Sink::Queue,
            prefix: String::new(),
        }
    }

    /// Where lines go, for the tests: `syslog`, `stderr` or `kamailio`.
    #[cfg(test)]
    pub fn destination(&self) -> &'static str {
        match self.sink {
            Sink::Syslog(_) => "syslog",
            Sink::Stderr => "stderr",
            Sink::Queue => "kamailio",
        }
    }

    /// Logs `msg` now (or queues it on `queue` for the next request). Never panics and never
    /// blocks for long: a line that cannot be written is lost.
    pub fn say(&self, queue: &LogQueue, level: Level, msg: String) {
        match self.sink {
            Sink::Queue => queue.push(level, msg),
            Sink::Stderr => {
                let word = level.as_kamailio_word();
                // One write per line, so lines of concurrent writers do not interleave.
                let line = format!("{}{word}: sipguard: {msg}\n", self.prefix);
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog(facility) => {
                let priority = match level {
                    Level::Info => libc::LOG_INFO,
                    Level::Warn => libc::LOG_WARNING,
                    Level::Err => libc::LOG_ERR,
                } | facility.unwrap_or(0);
                let text =
                    CString::new(format!("sipguard: {msg}").replace('\0', " ")).unwrap_or_default();
                // SAFETY: a constant format and a NUL-terminated argument; syslog(3) is
                // thread-safe in glibc.
                unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_by_kamailio_names_and_targets_resolve() {
        assert_eq!(facility("log_local0"), Some(libc::LOG_LOCAL0));
        assert_eq!(facility("LOG_DAEMON"), Some(libc::LOG_DAEMON));
        assert_eq!(facility("LOCAL0"), None);
        // Outside Kamailio there is no `log_stderr` symbol: auto means standard error.
        assert_eq!(Alerts::new(LogTarget::Auto, None).destination(), "stderr");
        assert_eq!(Alerts::new(LogTarget::Syslog, None).destination(), "syslog");
        let q = LogQueue::default();
        Alerts::queue().say(&q, Level::Err, "x".into());
        assert_eq!(q.drain(), vec![(Level::Err, "x".to_string())]);
    }
}
