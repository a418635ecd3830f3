//! The background side of `sipguard.ban`: takes the bans this worker made from its outbox,
//! coalesces them by source, and writes them to `sipguard_ban` through `ban_db_url`: woken by
//! each new ban, it gathers a burst for [`GATHER`] and writes it in one INSERT, at most
//! [`ROWS_PER_SECOND`] rows per second. A database that is away keeps them queued (at most
//! [`QUEUE_MAX`] sources; past that new sources are dropped and counted) and they are written
//! when it is back, with what is left of each ban. A source the table already bans as long
//! (another worker wrote it first) is not written again. Runs as its own task beside the
//! refresh rounds, so a slow primary never delays the lists.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::ban_request::{covers, ROWS_PER_SECOND, WRITER_QUEUE as QUEUE_MAX};
use crate::config::Config;
use crate::data::Data;
use crate::db::{self, bans::NewBan};
use crate::listcheck::show;
use crate::logq::Level;
use crate::stats::{add, bump, now_ms};

/// How long a woken writer waits for more bans of the same burst before it writes.
pub const GATHER: Duration = Duration::from_millis(50);

/// What the writer keeps between rounds.
#[derive(Default)]
struct Writer {
    /// Bans to write by source: the latest end (node clock, ms) and its reason.
    queue: HashMap<IpNet, (u64, String)>,
    conn: Option<mysql_async::Conn>,
    /// The last write failed: said once, and again when it works.
    failing: bool,
    /// Rows written in the current one-second window, and when it began.
    window: Option<(std::time::Instant, usize)>,
    /// After a failed write: no attempt before this (1, 2, 4 … 30 s), however many bans come.
    retry_at: Option<std::time::Instant>,
    /// Failed writes in a row.
    failures: u32,
}

/// Runs the writer until the process ends: one pass per refresh interval. Without
/// `ban_db_url` there is nothing to run (the request path keeps its bans to itself).
pub(super) async fn run(cfg: Arc<Config>, data: Arc<Data>) {
    let Some(url) = cfg.ban_db_url.clone() else {
        return;
    };
    let node = cfg.node();
    let mut w = Writer::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.refresh()) => {}
            _ = data.ban_outbox.woken() => tokio::time::sleep(GATHER).await,
        }
        // Each pass as its own task: a panic ends that pass (its queue and connection are lost,
        // said once), never the writer.
        let task = tokio::spawn({
            let (cfg, data, node, url) = (cfg.clone(), data.clone(), node.clone(), url.clone());
            let mut mine = std::mem::take(&mut w);
            async move {
                mine.pass(&cfg, &data, &node, &url).await;
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
    async fn pass(&mut self, cfg: &Config, data: &Data, node: &str, url: &str) {
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
        // Ended, or already in the table as long (another worker wrote it first).
        let loaded = data.bans();
        if self.retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            return; // backing off: the queue keeps them
        }
        self.queue.retain(|net, (until, _)| {
            *until > now
                && !(net.prefix_len() == net.max_prefix_len()
                    && loaded
                        .as_ref()
                        .and_then(|b| b.banned_until(net.addr(), now))
                        .is_some_and(|u| covers(u, *until, now)))
        });
        if self.queue.is_empty() {
            return;
        }
        let at = std::time::Instant::now();
        let used = match self.window {
            Some((start, n)) if at.duration_since(start) < Duration::from_secs(1) => n,
            _ => {
                self.window = Some((at, 0));
                0
            }
        };
        let allowed = ROWS_PER_SECOND.saturating_sub(used);
        if allowed == 0 {
            return; // the cap: the rest go in the next window
        }
        let batch: Vec<(IpNet, NewBan)> = self
            .queue
            .iter()
            .take(allowed)
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
        match self.write(cfg, url, &rows, node).await {
            Ok(()) => {
                self.retry_at = None;
                self.failures = 0;
                for (net, _) in &batch {
                    self.queue.remove(net);
                }
                add(&data.counters.ban_rows_written, rows.len() as u64);
                if let Some((_, n)) = self.window.as_mut() {
                    *n += rows.len();
                }
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
                self.failures = self.failures.saturating_add(1);
                let wait = Duration::from_secs(1 << self.failures.min(5).saturating_sub(1))
                    .min(Duration::from_secs(30));
                self.retry_at = Some(std::time::Instant::now() + wait);
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
        url: &str,
        rows: &[NewBan],
        node: &str,
    ) -> Result<(), db::DbError> {
        let deadline = cfg.query_timeout();
        if self.conn.is_none() {
            self.conn = Some(db::connect(url, deadline).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        db::bans::insert(conn, rows, node, deadline.max(Duration::from_millis(500))).await
    }
}
