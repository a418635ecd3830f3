//! The background side of `sipguard.ban`: takes the bans this worker made from its outbox,
//! coalesces them by source, and writes them to `sipguard_ban` through `ban_db_url` (else
//! `db_url`), at most [`ROWS_PER_WRITE`] rows per round in one INSERT. A database that is away
//! keeps them queued (at most [`QUEUE_MAX`] sources; past that new sources are dropped and
//! counted) and they are written when it is back, with what is left of each ban. Runs as its own
//! task beside the refresh rounds, so a slow primary never delays the lists.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::Config;
use crate::data::Data;
use crate::db::{self, bans::NewBan};
use crate::listcheck::show;
use crate::logq::Level;
use crate::stats::{add, bump, now_ms};

/// Rows written per round (one statement): with a round a second, the most one worker writes.
pub const ROWS_PER_WRITE: usize = 500;
/// Sources waiting for the database, per worker.
pub const QUEUE_MAX: usize = 10_000;

/// What the writer keeps between rounds.
#[derive(Default)]
struct Writer {
    /// Bans to write by source: the latest end (node clock, ms) and its reason.
    queue: HashMap<IpNet, (u64, String)>,
    conn: Option<mysql_async::Conn>,
    /// The last write failed: said once, and again when it works.
    failing: bool,
}

/// Runs the writer until the process ends: one pass per refresh interval.
pub(super) async fn run(cfg: Arc<Config>, data: Arc<Data>) {
    let node = cfg.node();
    let mut w = Writer::default();
    loop {
        tokio::time::sleep(cfg.refresh()).await;
        // Each pass as its own task: a panic ends that pass (its queue and connection are lost,
        // said once), never the writer.
        let task = tokio::spawn({
            let (cfg, data, node) = (cfg.clone(), data.clone(), node.clone());
            let mut mine = std::mem::take(&mut w);
            async move {
                mine.pass(&cfg, &data, &node).await;
                mine
            }
        });
        match task.await {
            Ok(back) => w = back,
            Err(e) => data.say(
                Level::Err,
                format!(
                    "internal error in the ban writer ({}); its queued bans are lost",
                    e.try_into_panic()
                        .map(|p| super::panic_message(&*p))
                        .unwrap_or_else(|_| "cancelled".into())
                ),
            ),
        }
    }
}

impl Writer {
    async fn pass(&mut self, cfg: &Config, data: &Data, node: &str) {
        let now = now_ms();
        for ban in data.ban_outbox.drain() {
            let len = self.queue.len();
            match self.queue.get_mut(&ban.source) {
                Some(e) if e.0 < ban.until_ms => *e = (ban.until_ms, ban.reason),
                Some(_) => {}
                None if len >= QUEUE_MAX => bump(&data.counters.ban_rows_dropped),
                None => {
                    self.queue.insert(ban.source, (ban.until_ms, ban.reason));
                }
            }
        }
        self.queue.retain(|_, (until, _)| *until > now);
        if self.queue.is_empty() {
            return;
        }
        let batch: Vec<(IpNet, NewBan)> = self
            .queue
            .iter()
            .take(ROWS_PER_WRITE)
            .map(|(net, (until, reason))| {
                (
                    *net,
                    NewBan {
                        source: show(*net),
                        remaining_ms: until - now,
                        reason: reason.clone(),
                    },
                )
            })
            .collect();
        let rows: Vec<NewBan> = batch.iter().map(|(_, b)| b.clone()).collect();
        match self.write(cfg, &rows, node).await {
            Ok(()) => {
                for (net, _) in &batch {
                    self.queue.remove(net);
                }
                add(&data.counters.ban_rows_written, rows.len() as u64);
                if self.failing {
                    self.failing = false;
                    data.say(
                        Level::Info,
                        format!(
                            "bans written again to sipguard_ban ({} waiting)",
                            self.queue.len()
                        ),
                    );
                }
            }
            Err(e) => {
                self.conn = None;
                bump(&data.counters.ban_write_errors);
                if !self.failing {
                    self.failing = true;
                    let hint = if e.is_denied() {
                        " (the ban_db_url user needs INSERT on sipguard_ban)"
                    } else {
                        ""
                    };
                    data.say(
                        Level::Err,
                        format!(
                            "cannot write bans to sipguard_ban: {e}{hint}; this worker enforces them meanwhile and keeps up to {QUEUE_MAX} to write when it can"
                        ),
                    );
                }
            }
        }
    }

    async fn write(
        &mut self,
        cfg: &Config,
        rows: &[NewBan],
        node: &str,
    ) -> Result<(), db::DbError> {
        let deadline = cfg.query_timeout();
        if self.conn.is_none() {
            self.conn = Some(db::connect(cfg.ban_url(), deadline).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        db::bans::insert(conn, rows, node, deadline.max(Duration::from_millis(500))).await
    }
}
