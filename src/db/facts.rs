//! What `sipguard-admin metrics` reads of the database besides `sipguard_generation`
//! ([`super::generation_rows`]): the size of each table the workers load. Counts only, never a
//! row's content (no address or user reaches a metric).

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::{bounded, DbError};

/// Rows of `table` (a list table, `ipcountry`, `ipcountry6`); `None` when the table does not
/// exist (the workers read it as empty). A table the user may not read is an error, as it
/// fails the workers' rounds.
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

/// Distinct sources with a ban in force now (by the database's clock); `None` without a
/// `sipguard_ban` the user may read (a per-table GRANT from before bans), as the workers
/// treat it.
pub async fn bans_in_force(conn: &mut Conn, limit: Duration) -> Result<Option<u64>, DbError> {
    let q = conn.query_first::<u64, _>(
        "SELECT COUNT(DISTINCT source) FROM sipguard_ban \
         WHERE until_ms > FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)",
    );
    match bounded("sipguard_ban", limit, q).await {
        Ok(n) => Ok(Some(n.unwrap_or(0))),
        Err(e) if e.is_missing_table() || e.is_denied() => Ok(None),
        Err(e) => Err(e),
    }
}
