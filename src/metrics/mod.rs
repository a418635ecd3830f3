//! The node's state as Prometheus metrics, for `sipguard-admin metrics`.
//!
//! Workers keep counting as they always did (per worker, no lock shared between workers, see
//! [`crate::stats`]); this side reads their stats files, adds one read of the database, and
//! encodes the sum with the `prometheus-client` crate:
//!
//! - [`collect`] gathers a [`NodeView`] (stats files, snapshot files, database counts);
//! - [`encode`] turns it into the Prometheus text format or OpenMetrics;
//! - [`serve`] answers `/metrics` over HTTP and writes node_exporter's textfile.
//!
//! No label carries an address, a user or a process id: the series are a fixed set.

pub mod collect;
pub mod encode;
pub mod serve;

use crate::db::GenerationRow;
use crate::stats::WorkerStats;

/// Everything one exposition is made of, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// Live workers' stats files (`stats_dir`), dead ones skipped.
    pub workers: Vec<WorkerStats>,
    /// When this view was read (Unix ms): stalled workers are judged against it.
    pub now_ms: u64,
    /// When each kind of data was last written to `snapshot_dir` (`lists`: `lists.snap`;
    /// `countries`: the newest node file), in Unix ms; a kind with no file is left out.
    pub snapshots: Vec<(&'static str, u64)>,
    /// What the database said; `None` when it was not asked (no URL).
    pub db: Option<Result<DbView, String>>,
}

/// The database's side: change counters and table sizes (counts only).
#[derive(Debug, Clone, Default)]
pub struct DbView {
    /// `sipguard_generation` rows.
    pub generations: Vec<GenerationRow>,
    /// Rows per list table that exists.
    pub list_entries: Vec<(&'static str, u64)>,
    /// Rows of `ipcountry` (`ipv4`) and `ipcountry6` (`ipv6`), for the tables that exist.
    pub country_ranges: Vec<(&'static str, u64)>,
    /// Sources with a ban in force; `None` without `sipguard_ban`.
    pub bans_in_force: Option<u64>,
}
