//! The list side of a round: read the five list tables, build, publish, save the snapshot.

use std::sync::atomic::Ordering;

use super::{Retired, Round};
use crate::config::Config;
use crate::data::{Data, Phase};
use crate::db;
use crate::engine::Lists;
use crate::listcheck;
use crate::logq::Level;
use crate::snapshot;
use crate::stats::bump;

/// Test hook (`test_hooks` only): a `black_list` row with this detail panics the round.
const PANIC_HOOK: &str = "sipguard-test-loader-panic";
/// Test hook (`test_hooks` only): a `black_list` row with this detail blocks the loader thread
/// for `3 × stall_after`, as a hung disk or a deadlock would.
const STALL_HOOK: &str = "sipguard-test-loader-stall";

/// Reads the lists and, when they differ from the last load, builds and publishes them (the
/// previous ones go to `retired`) and saves the snapshot.
pub(super) async fn load(
    cfg: &Config,
    data: &Data,
    round: &mut Round,
    retired: &mut Retired,
    conn: &mut mysql_async::Conn,
) -> Result<(), db::DbError> {
    let started = std::time::Instant::now();
    let tables = db::load_lists(conn, cfg.query_timeout()).await?;
    data.counters.db_queries.fetch_add(5, Ordering::Relaxed);
    if cfg.test_hooks {
        test_hooks(cfg, data, &tables.rows.black);
    }
    if !tables.missing.is_empty() && !round.reported_missing {
        round.reported_missing = true;
        data.say(
            Level::Warn,
            format!(
                "tables not found, read as empty: {} (apply kamailio/sql/schema.sql)",
                tables.missing.join(", ")
            ),
        );
    }
    // Rows the driver could not convert (no id to name: a value that is not text, e.g. bytes
    // that are not UTF-8 in a binary column made by hand) are skipped, and said once.
    for b in &tables.bad {
        if round.logged_unreadable.insert((b.table, b.n)) {
            data.say(
                Level::Warn,
                format!(
                    "{}: row {} (in id order) cannot be read as (id, text, text); skipped",
                    b.table, b.n
                ),
            );
        }
    }
    if round.last_lists.as_ref() == Some(&tables.rows) {
        return Ok(());
    }
    data.set_phase(Phase::Building);
    let (lists, rejected) = Lists::build(&tables.rows, &cfg.scanner_user_agents);
    for r in rejected {
        if round.logged_bad.insert((r.table, r.id)) {
            data.say(
                Level::Warn,
                format!(
                    "{} id={}: {:?} is not valid, row skipped",
                    r.table, r.id, r.value
                ),
            );
        }
    }
    // Rows the admin tool would have refused (too wide, IPv4-mapped form): enforced, since the
    // database is the truth, but named once so a typo does not go unseen.
    for (table, rows) in [
        ("black_list", &tables.rows.black),
        ("white_list", &tables.rows.white),
    ] {
        for (id, line) in listcheck::review(table, rows) {
            if round.logged_bad.insert((table, id)) {
                data.say(Level::Warn, line);
            }
        }
    }
    data.say(Level::Info, format!("lists loaded: {}", lists.summary()));
    retired.lists(data.publish_lists(lists));
    bump(&data.counters.list_loads);
    crate::stats::add(
        &data.counters.list_load_ms,
        started.elapsed().as_millis() as u64,
    );
    if let Some(dir) = &cfg.snapshot_dir {
        data.set_phase(Phase::Snapshot);
        let saved = snapshot::write_lists(dir, &tables.rows);
        report_snapshot(data, &mut round.snapshot_write_failed, dir, "lists", saved);
    }
    data.set_phase(Phase::Database);
    round.last_lists = Some(tables.rows);
    Ok(())
}

fn test_hooks(cfg: &Config, data: &Data, black: &[crate::engine::ListRow]) {
    if black.iter().any(|r| r.detail == PANIC_HOOK) {
        panic!("test hook: deliberate loader panic");
    }
    if black.iter().any(|r| r.detail == STALL_HOOK) {
        data.set_phase(Phase::Snapshot);
        std::thread::sleep(cfg.stall_after().saturating_mul(3));
        data.set_phase(Phase::Database);
    }
}

/// Logs a snapshot write failure when writing starts failing, not every time.
fn report_snapshot(
    data: &Data,
    failed: &mut bool,
    dir: &std::path::Path,
    what: &str,
    result: std::io::Result<()>,
) {
    match result {
        Err(e) if !*failed => {
            *failed = true;
            data.say(
                Level::Warn,
                format!("cannot save the {what} snapshot in {}: {e}", dir.display()),
            );
        }
        Err(_) => {}
        Ok(()) => *failed = false,
    }
}
