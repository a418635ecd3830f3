//! The module's configuration: one JSON file, path from `SIPGUARD_CONFIG`.
//!
//! Parsed when the Lua file is loaded, so a broken file stops Kamailio at start with a message
//! naming the field, instead of failing on the first INVITE.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::alert::LogTarget;
use crate::engine::NoDataPolicy;

/// Where the config is read from when `SIPGUARD_CONFIG` is not set.
pub const DEFAULT_PATH: &str = "/etc/kamailio/sipguard.json";

/// Environment variable naming the config file.
pub const ENV_VAR: &str = "SIPGUARD_CONFIG";

/// Everything an operator can set. Unknown fields are refused: a typo must not silently
/// fall back to a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `mysql://user:pass@host:port/db`; a read-only user is enough (the post's `connect_ro`).
    pub db_url: String,
    /// Where bans are written (`sipguard.ban`): a user with INSERT on `sipguard_ban` only, on
    /// the primary when `db_url` reads a replica. `null` (the default): bans are not written,
    /// they stay in the worker that made them (`db_url`'s user is read-only).
    #[serde(default)]
    pub ban_db_url: Option<String>,
    /// This node's name in `sipguard_ban.node`; `null` (the default) is the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Deadline for every database call (connect, query), and the longest a request ever waits
    /// for data: only a worker's very first request may wait, and only this long.
    #[serde(default = "defaults::query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// Deadline for loading the country tables, which runs in the background.
    #[serde(default = "defaults::load_timeout_ms")]
    pub load_timeout_ms: u64,
    /// How often each worker re-reads the lists and checks the country tables for changes;
    /// also how long a worker waits before retrying a database that failed.
    #[serde(default = "defaults::refresh_secs")]
    pub refresh_secs: u64,
    /// Per-worker LRU of per-source answers, in entries; 0 (the default) turns it off. Every
    /// answer is computed in memory from two or three cache lines, about what an LRU probe
    /// and its list update cost, so the LRU does not pay for itself (scripts/bench).
    #[serde(default = "defaults::cache_size")]
    pub cache_size: usize,
    /// Age after which a cached answer is recomputed.
    #[serde(default = "defaults::cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// What to answer while a worker has never loaded the lists: `allow` or `block`.
    #[serde(default = "defaults::on_no_data")]
    pub on_no_data: NoDataPolicy,
    /// Load `ipcountry`/`ipcountry6`; `false` makes `get_countrycode` always answer `""`.
    #[serde(default = "defaults::country")]
    pub country: bool,
    /// Minimum interval between two log lines about the same kind of bad input.
    #[serde(default = "defaults::log_interval_secs")]
    pub log_interval_secs: u64,
    /// Scanner User-Agent substrings (case-insensitive) for `check_user_agent`, in addition to
    /// the rows of `black_list_ua`. They apply even while the database is unreachable.
    #[serde(default = "defaults::scanner_user_agents")]
    pub scanner_user_agents: Vec<String>,
    /// Where each worker publishes its counters (`<pid>.json`) for `sipguard-admin stats` and
    /// `warm`; `null` turns publishing off.
    #[serde(default = "defaults::stats_dir")]
    pub stats_dir: Option<PathBuf>,
    /// Where workers keep the last loaded lists and country ranges, so a Kamailio started while
    /// the database is down enforces them; `null` turns it off.
    #[serde(default = "defaults::snapshot_dir")]
    pub snapshot_dir: Option<PathBuf>,
    /// Where the background thread's lines go (database down and back, loads, bad rows):
    /// `auto` (where Kamailio logs: standard error with `-E`, else syslog), `syslog`, `stderr`,
    /// or `kamailio` (through `KSR.log` at the worker's next request, so they wait for traffic).
    #[serde(default)]
    pub log_target: LogTarget,
    /// Syslog facility for those lines (`LOG_LOCAL0`…, as Kamailio's `log_facility`); `null`
    /// (the default) uses Kamailio's own.
    #[serde(default)]
    pub log_facility: Option<String>,
    /// Tests only: a source of `"sipguard-test-panic"` (any source check) panics inside the
    /// module, and a `black_list` row whose detail is `sipguard-test-loader-panic` panics the
    /// loader's round, to prove a panic never reaches Lua, the worker or the loader's next
    /// round. Never enable in production.
    #[serde(default)]
    pub test_hooks: bool,
}

mod defaults {
    use crate::engine::NoDataPolicy;
    pub fn query_timeout_ms() -> u64 {
        500
    }
    pub fn load_timeout_ms() -> u64 {
        60_000
    }
    pub fn refresh_secs() -> u64 {
        1
    }
    pub fn cache_size() -> usize {
        0
    }
    pub fn cache_ttl_secs() -> u64 {
        60
    }
    pub fn on_no_data() -> NoDataPolicy {
        NoDataPolicy::Allow
    }
    pub fn country() -> bool {
        true
    }
    pub fn log_interval_secs() -> u64 {
        10
    }
    pub fn snapshot_dir() -> Option<std::path::PathBuf> {
        Some("/var/lib/kamailio/sipguard".into())
    }
    pub fn stats_dir() -> Option<std::path::PathBuf> {
        Some("/run/kamailio/sipguard".into())
    }
    pub fn scanner_user_agents() -> Vec<String> {
        crate::uamatch::DEFAULT_PATTERNS
            .iter()
            .map(|p| p.to_string())
            .collect()
    }
}

/// Why the config cannot be used. Every variant names the file and, where it can, the field.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("sipguard config {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape; `field` is the JSON path serde was at.
    #[error("sipguard config {path}: field `{field}`: {msg}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Dotted path of the offending field (`.` for the document itself).
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// Well-formed but unusable value.
    #[error("sipguard config {path}: field `{field}`: {msg}")]
    Invalid {
        /// File path.
        path: PathBuf,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
}

impl Config {
    /// The file named by `SIPGUARD_CONFIG`, or [`DEFAULT_PATH`].
    pub fn env_path() -> PathBuf {
        std::env::var_os(ENV_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Reads the file named by `SIPGUARD_CONFIG`, or [`DEFAULT_PATH`].
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::load(&Config::env_path())
    }

    /// Reads and validates one file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// The settings that differ between `self` (running) and `other` (as read again), by their
    /// names in the file: what an `app_lua.reload` cannot apply to a running worker.
    pub fn changed_fields(&self, other: &Config) -> Vec<&'static str> {
        // Destructured whole: a field added to Config must be added here to compile.
        let Config {
            db_url,
            ban_db_url,
            node_name,
            query_timeout_ms,
            load_timeout_ms,
            refresh_secs,
            cache_size,
            cache_ttl_secs,
            on_no_data,
            country,
            log_interval_secs,
            scanner_user_agents,
            stats_dir,
            snapshot_dir,
            log_target,
            log_facility,
            test_hooks,
        } = self;
        [
            ("db_url", *db_url == other.db_url),
            ("ban_db_url", *ban_db_url == other.ban_db_url),
            ("node_name", *node_name == other.node_name),
            (
                "query_timeout_ms",
                *query_timeout_ms == other.query_timeout_ms,
            ),
            ("load_timeout_ms", *load_timeout_ms == other.load_timeout_ms),
            ("refresh_secs", *refresh_secs == other.refresh_secs),
            ("cache_size", *cache_size == other.cache_size),
            ("cache_ttl_secs", *cache_ttl_secs == other.cache_ttl_secs),
            ("on_no_data", *on_no_data == other.on_no_data),
            ("country", *country == other.country),
            (
                "log_interval_secs",
                *log_interval_secs == other.log_interval_secs,
            ),
            (
                "scanner_user_agents",
                *scanner_user_agents == other.scanner_user_agents,
            ),
            ("stats_dir", *stats_dir == other.stats_dir),
            ("snapshot_dir", *snapshot_dir == other.snapshot_dir),
            ("log_target", *log_target == other.log_target),
            ("log_facility", *log_facility == other.log_facility),
            ("test_hooks", *test_hooks == other.test_hooks),
        ]
        .into_iter()
        .filter_map(|(name, same)| (!same).then_some(name))
        .collect()
    }

    /// Things in a usable config the operator should still fix: today, a file that other users
    /// can read while `db_url` or `ban_db_url` holds a password.
    pub fn warnings(&self, path: &Path) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let has_password = std::iter::once(&self.db_url)
            .chain(&self.ban_db_url)
            .any(|url| {
                mysql_async::Opts::from_url(url)
                    .ok()
                    .and_then(|o| o.pass().map(|p| !p.is_empty()))
                    .unwrap_or(false)
            });
        if let Ok(meta) = std::fs::metadata(path) {
            if has_password && meta.permissions().mode() & 0o004 != 0 {
                out.push(format!(
                    "{} is readable by every user and holds a database password: chmod 640 (owner root, group kamailio) or 600",
                    path.display()
                ));
            }
        }
        out
    }

    /// Parses and validates JSON text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
            path: path.into(),
            field: e.path().to_string(),
            msg: e.inner().to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field, msg: String| ConfigError::Invalid {
            path: path.into(),
            field,
            msg,
        };
        for (field, url) in std::iter::once(("db_url", &self.db_url))
            .chain(self.ban_db_url.iter().map(|u| ("ban_db_url", u)))
        {
            let opts = mysql_async::Opts::from_url(url)
                .map_err(|e| invalid(field, format!("not a mysql:// URL: {e}")))?;
            if opts.db_name().is_none() {
                return Err(invalid(
                    field,
                    "names no database (mysql://user:pass@host:port/DB)".into(),
                ));
            }
        }
        if let Some(n) = &self.node_name {
            if n.is_empty() || n.len() > 64 || n.chars().any(|c| c.is_control()) {
                return Err(invalid(
                    "node_name",
                    "must be 1 to 64 bytes without control characters".into(),
                ));
            }
        }
        for (field, v) in [
            ("query_timeout_ms", self.query_timeout_ms),
            ("load_timeout_ms", self.load_timeout_ms),
            ("refresh_secs", self.refresh_secs),
            ("cache_ttl_secs", self.cache_ttl_secs),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0".into()));
            }
        }
        if let Some(f) = &self.log_facility {
            if crate::alert::facility(f).is_none() {
                return Err(invalid(
                    "log_facility",
                    format!("{f:?} is not a syslog facility (LOG_LOCAL0 … LOG_LOCAL7, LOG_DAEMON, LOG_USER, …)"),
                ));
            }
        }
        Ok(())
    }

    /// This node's name for `sipguard_ban.node`: `node_name`, else the host name, else `"?"`.
    pub fn node(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().chars().take(64).collect())
                .ok()
                .filter(|h: &String| !h.is_empty())
                .unwrap_or_else(|| "?".into())
        })
    }

    /// The loader's log destination, resolved in this process (see [`crate::alert`]).
    pub fn alerts(&self) -> crate::alert::Alerts {
        let facility = self
            .log_facility
            .as_deref()
            .and_then(crate::alert::facility);
        crate::alert::Alerts::new(self.log_target, facility)
    }

    /// How long a loader may go without completing a refresh round before it counts as
    /// stalled: 3 × `refresh_secs`, and never less than the pause plus every deadline a round
    /// can meet (connect, generations, the five list tables, the country marker: 8 ×
    /// `query_timeout_ms`) plus a second for building and writing.
    pub fn stall_after(&self) -> Duration {
        let round = self
            .query_timeout()
            .saturating_mul(8)
            .saturating_add(Duration::from_secs(1));
        self.refresh()
            .saturating_mul(3)
            .max(self.refresh().saturating_add(round))
    }

    /// [`Self::query_timeout_ms`] as a `Duration`.
    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }

    /// [`Self::load_timeout_ms`] as a `Duration`.
    pub fn load_timeout(&self) -> Duration {
        Duration::from_millis(self.load_timeout_ms)
    }

    /// [`Self::refresh_secs`] as a `Duration`.
    pub fn refresh(&self) -> Duration {
        Duration::from_secs(self.refresh_secs)
    }

    /// [`Self::cache_ttl_secs`] as a `Duration`.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// [`Self::log_interval_secs`] as a `Duration`.
    pub fn log_interval(&self) -> Duration {
        Duration::from_secs(self.log_interval_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.json"))
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse(r#"{"db_url": "mysql://ro:pw@127.0.0.1:3306/kamailio"}"#).unwrap();
        assert_eq!(c.query_timeout_ms, 500);
        assert_eq!(c.refresh_secs, 1);
        assert_eq!(c.cache_size, 0);
        assert_eq!(c.on_no_data, NoDataPolicy::Allow);
        assert!(c.country);
        assert!(c
            .scanner_user_agents
            .iter()
            .any(|p| p == "friendly-scanner"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{}"#, "db_url"),
            (
                r#"{"db_url": "mysql://a@h/db", "query_timeout_ms": "fast"}"#,
                "query_timeout_ms",
            ),
            (
                r#"{"db_url": "mysql://a@h/db", "cache_szie": 5}"#,
                "cache_szie",
            ),
            (
                r#"{"db_url": "mysql://a@h/db", "on_no_data": "maybe"}"#,
                "on_no_data",
            ),
            (r#"{"db_url": "postgres://a@h/db"}"#, "db_url"),
            (r#"{"db_url": "mysql://a@h"}"#, "db_url"),
            (
                r#"{"db_url": "mysql://a@h/db", "refresh_secs": 0}"#,
                "refresh_secs",
            ),
        ];
        for (text, field) in cases {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains(field), "{text} -> {msg}");
            assert!(msg.contains("test.json"), "{msg}");
        }
    }

    #[test]
    fn changed_fields_names_what_a_reload_cannot_apply() {
        let a = Config::parse(r#"{"db_url": "mysql://u:p@h/db"}"#, Path::new("a")).unwrap();
        assert!(a.changed_fields(&a.clone()).is_empty());
        let b = Config::parse(
            r#"{"db_url": "mysql://u:p@h/other", "refresh_secs": 5, "scanner_user_agents": []}"#,
            Path::new("b"),
        )
        .unwrap();
        assert_eq!(
            a.changed_fields(&b),
            ["db_url", "refresh_secs", "scanner_user_agents"]
        );
    }

    #[test]
    fn world_readable_config_with_password_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("sipguard-cfg-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"db_url": "mysql://ro:secret@127.0.0.1/k"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.warnings(&path).len(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(c.warnings(&path).is_empty());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = Config::load(Path::new("/nonexistent/sipguard.json")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    }
}
