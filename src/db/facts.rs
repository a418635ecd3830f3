//! What `sipguard-admin metrics` reads of the database: the change counters and the size of
//! each table the workers load. Counts only, never a row's content (no address or user
//! reaches a metric).

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::{bounded, DbError};

/// One row of `sipguard_generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRow {
    /// `lists`, `countries`, `bans` or `ban_lifts`.
    pub name: String,
    /// The counter.
    pub gen: u64,
    /// When it last moved (the row's `changed` column), in Unix ms.
    pub changed_ms: u64,
}

/// The list tables, by the name they have in the database and in metrics.
pub const LIST_TABLES: [&str; 5] = [
    "white_list",
    "black_list",
    "black_list_country",
    "black_list_user",
    "black_list_ua",
];

/// Reads `sipguard_generation` with each row's last change; empty without the table.
pub async fn generations(conn: &mut Conn, limit: Duration) -> Result<Vec<GenerationRow>, DbError> {
    // name, gen, changed: a NULL counter (a hand-made migration) leaves its row out.
    type Raw = (String, Option<u64>, Option<u64>);
    let res: Result<Vec<Raw>, _> = bounded(
        "sipguard_generation",
        limit,
        conn.query(
            "SELECT name, gen, FLOOR(UNIX_TIMESTAMP(changed) * 1000) FROM sipguard_generation",
        ),
    )
    .await;
    match res {
        Ok(rows) => Ok(rows
            .into_iter()
            .filter_map(|(name, gen, changed)| {
                Some(GenerationRow {
                    name,
                    gen: gen?,
                    changed_ms: changed.unwrap_or(0),
                })
            })
            .collect()),
        Err(e) if e.is_missing_table() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Rows of `table` (one of [`LIST_TABLES`], `ipcountry`, `ipcountry6`); `None` when the table
/// does not exist.
pub async fn row_count(
    conn: &mut Conn,
    table: &'static str,
    limit: Duration,
) -> Result<Option<u64>, DbError> {
    // `table` is one of our constants, never input.
    let sql = format!("SELECT COUNT(*) FROM `{table}`");
    match bounded(table, limit, conn.query_first::<u64, _>(sql)).await {
        Ok(n) => Ok(Some(n.unwrap_or(0))),
        Err(e) if e.is_missing_table() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Distinct sources with a ban in force now (by the database's clock); `None` without the
/// `sipguard_ban` table.
pub async fn bans_in_force(conn: &mut Conn, limit: Duration) -> Result<Option<u64>, DbError> {
    let q = conn.query_first::<u64, _>(
        "SELECT COUNT(DISTINCT source) FROM sipguard_ban \
         WHERE until_ms > FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)",
    );
    match bounded("sipguard_ban", limit, q).await {
        Ok(n) => Ok(Some(n.unwrap_or(0))),
        Err(e) if e.is_missing_table() => Ok(None),
        Err(e) => Err(e),
    }
}
