//! Gathers a [`NodeView`]: the workers' stats files, the snapshot files' times, and one read of
//! the database under a deadline.

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::Conn;

use super::{DbView, NodeView};
use crate::admin::lists::ListKind;
use crate::db::{self, facts, DbError};
use crate::stats;

/// Where the node's state is read from; keeps the database connection (and the country
/// tables' row counts, which only change with their generation) between scrapes.
pub struct Collector {
    stats_dir: Option<PathBuf>,
    snapshot_dir: Option<PathBuf>,
    db_url: Option<String>,
    /// Deadline of each database call (connect, each query).
    limit: Duration,
    /// Deadline of the whole database read of one scrape.
    whole: Duration,
    conn: Option<Conn>,
    /// Country row counts and the `countries` generation they were counted at: counting
    /// ~500k rows every scrape would load the database for nothing.
    countries: Option<(u64, Vec<(&'static str, u64)>)>,
}

impl Collector {
    /// A collector reading `stats_dir` and `snapshot_dir` (either may be unset) and the
    /// database at `db_url` (`None`: no database metrics), each call bounded by `limit` and
    /// the whole database read by `whole`.
    pub fn new(
        stats_dir: Option<PathBuf>,
        snapshot_dir: Option<PathBuf>,
        db_url: Option<String>,
        limit: Duration,
        whole: Duration,
    ) -> Collector {
        Collector {
            stats_dir,
            snapshot_dir,
            db_url,
            limit,
            whole,
            conn: None,
            countries: None,
        }
    }

    /// Reads the node's state now. Errors: an unreadable stats directory (a missing one
    /// means no worker has had a request yet). A failed database read is part of the view
    /// (`sipguard_db_up 0`), not an error.
    pub async fn collect(&mut self) -> std::io::Result<NodeView> {
        let workers = match &self.stats_dir {
            Some(dir) => stats::read_live(dir)?,
            None => Vec::new(),
        };
        let snapshots = match &self.snapshot_dir {
            Some(dir) => snapshot_times(dir),
            None => Vec::new(),
        };
        let db = match self.db_url.clone() {
            Some(url) => Some(self.read_db(&url).await.map_err(|e| e.to_string())),
            None => None,
        };
        Ok(NodeView {
            workers,
            now_ms: stats::now_ms(),
            snapshots,
            db,
        })
    }

    async fn read_db(&mut self, url: &str) -> Result<DbView, DbError> {
        let whole = self.whole;
        match tokio::time::timeout(whole, self.read_db_once(url)).await {
            Ok(r) => r,
            Err(_) => {
                // Its state is unknown: a fresh connection next time.
                self.conn = None;
                Err(DbError::Timeout {
                    what: "metrics: database read",
                    ms: whole.as_millis(),
                })
            }
        }
    }

    async fn read_db_once(&mut self, url: &str) -> Result<DbView, DbError> {
        // The kept connection may have been closed since the last scrape (wait_timeout, a
        // server restart): one fresh attempt before the database counts as down.
        // Only a connection error: a deadline or the server's refusal would come again, and
        // twice the queries on a struggling database.
        if let Some(mut conn) = self.conn.take() {
            match self.read_with(&mut conn).await {
                Ok(view) => {
                    self.conn = Some(conn);
                    return Ok(view);
                }
                Err(DbError::Mysql {
                    source: mysql_async::Error::Io(_) | mysql_async::Error::Driver(_),
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut conn = db::connect(url, self.limit).await?;
        let view = self.read_with(&mut conn).await?;
        // Kept only after a read that worked: after any error its state is unknown.
        self.conn = Some(conn);
        Ok(view)
    }

    async fn read_with(&mut self, conn: &mut Conn) -> Result<DbView, DbError> {
        let limit = self.limit;
        let generations = db::generation_rows(conn, limit).await?.unwrap_or_default();
        let mut list_entries = Vec::new();
        for table in ListKind::ALL.map(ListKind::table) {
            if let Some(n) = facts::row_count(conn, table, limit).await? {
                list_entries.push((table, n));
            }
        }
        let countries_gen = generations
            .iter()
            .find(|r| r.name == "countries")
            .map(|r| r.gen);
        let cached = match (&self.countries, countries_gen) {
            (Some((g, counts)), Some(now)) if *g == now => Some(counts.clone()),
            _ => None,
        };
        let country_ranges = match cached {
            Some(c) => c,
            None => {
                let mut counts = Vec::new();
                // Hundreds of thousands of rows: the whole read's deadline, not a call's.
                for (family, table) in [("ipv4", "ipcountry"), ("ipv6", "ipcountry6")] {
                    if let Some(n) = facts::row_count(conn, table, self.whole).await? {
                        counts.push((family, n));
                    }
                }
                self.countries = countries_gen.map(|g| (g, counts.clone()));
                counts
            }
        };
        let bans_in_force = facts::bans_in_force(conn, limit).await?;
        Ok(DbView {
            generations,
            list_entries,
            country_ranges,
            bans_in_force,
        })
    }
}

/// When the lists snapshot and the newest country data (the node file, or a worker's own
/// `countries.snap`) were last written.
fn snapshot_times(dir: &std::path::Path) -> Vec<(&'static str, u64)> {
    let lists = modified_ms(&dir.join(crate::snapshot::LISTS_FILE));
    let node_file = crate::nodefile::newest_file(dir).and_then(|(t, _)| unix_ms(t));
    let own_copy = modified_ms(&dir.join(crate::snapshot::COUNTRIES_FILE));
    [("lists", lists), ("countries", node_file.max(own_copy))]
        .into_iter()
        .filter_map(|(kind, t)| Some((kind, t?)))
        .collect()
}

fn modified_ms(path: &std::path::Path) -> Option<u64> {
    unix_ms(std::fs::metadata(path).ok()?.modified().ok()?)
}

fn unix_ms(t: std::time::SystemTime) -> Option<u64> {
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}
