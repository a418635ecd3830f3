//! Reads of `sipguard_ban` for the workers: the bans added since the last read (by id), and
//! the whole set in force after a ban was lifted. Bounded by the query deadline, like every
//! read; the values sent are the module's own numbers, never request input.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use super::{bounded, DbError};

/// A `sipguard_ban` row as the workers use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRow {
    /// `id` (AUTO_INCREMENT): the incremental reads go by it.
    pub id: u64,
    /// `source`: an address or a network, as written (parsed by the caller).
    pub source: String,
    /// `until_ms`: when the ban ends, Unix ms.
    pub until_ms: u64,
}

/// Rows with `id > after`, in id order, at most `limit` (the caller reads the rest next round).
/// `None` when the table does not exist (a schema from before bans) or the user may not read
/// it (a per-table GRANT from before bans).
pub async fn added_since(
    conn: &mut Conn,
    after: u64,
    limit: usize,
    deadline: Duration,
) -> Result<Option<Vec<BanRow>>, DbError> {
    select(
        conn,
        "SELECT id, source, until_ms FROM sipguard_ban WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit as u64),
        deadline,
    )
    .await
}

/// Every ban still in force at `now_ms`, in id order.
pub async fn in_force(
    conn: &mut Conn,
    now_ms: u64,
    deadline: Duration,
) -> Result<Option<Vec<BanRow>>, DbError> {
    select(
        conn,
        "SELECT id, source, until_ms FROM sipguard_ban WHERE until_ms > ? ORDER BY id",
        (now_ms,),
        deadline,
    )
    .await
}

/// Runs one of the reads above under its deadline.
async fn select(
    conn: &mut Conn,
    sql: &'static str,
    params: impl Into<mysql_async::Params> + Send,
    deadline: Duration,
) -> Result<Option<Vec<BanRow>>, DbError> {
    rows(bounded("sipguard_ban", deadline, conn.exec(sql, params)).await)
}

/// Converts with checks: a row a hand edit made unreadable (NULL, negative) is skipped.
fn rows(res: Result<Vec<Row>, DbError>) -> Result<Option<Vec<BanRow>>, DbError> {
    match res {
        Ok(rows) => Ok(Some(
            rows.into_iter()
                .filter_map(|r| mysql_async::from_row_opt::<(u64, String, u64)>(r).ok())
                .map(|(id, source, until_ms)| BanRow {
                    id,
                    source,
                    until_ms,
                })
                .collect(),
        )),
        Err(e) if e.is_missing_table() || e.is_denied() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A ban to store: `until_ms` is computed by the database as its clock plus `remaining_ms`,
/// so every node compares against one clock's idea of the end (nodes keep time by NTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBan {
    /// Canonical address or network (`192.0.2.7`, `198.51.100.0/24`).
    pub source: String,
    /// How long it still runs, ms.
    pub remaining_ms: u64,
    /// Why (at most 255 bytes).
    pub reason: String,
}

/// Inserts `bans` in one statement (`INSERT … VALUES (…), (…)`), each row stamped with `node`.
/// The caller bounds how many go in one call.
pub async fn insert(
    conn: &mut Conn,
    bans: &[NewBan],
    node: &str,
    deadline: Duration,
) -> Result<(), DbError> {
    if bans.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("INSERT INTO sipguard_ban (source, until_ms, reason, node) VALUES ");
    let mut params: Vec<mysql_async::Value> = Vec::with_capacity(bans.len() * 4);
    for (i, b) in bans.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) + ?, ?, ?)");
        params.push(b.source.clone().into());
        params.push(b.remaining_ms.into());
        params.push(b.reason.clone().into());
        params.push(node.into());
    }
    bounded("sipguard_ban", deadline, conn.exec_drop(sql, params)).await
}
