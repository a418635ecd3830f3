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
    let res: Result<Vec<Row>, _> = bounded(
        "sipguard_ban",
        deadline,
        conn.exec(
            "SELECT id, source, until_ms FROM sipguard_ban WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit as u64),
        ),
    )
    .await;
    rows(res)
}

/// Every ban still in force at `now_ms`, in id order.
pub async fn in_force(
    conn: &mut Conn,
    now_ms: u64,
    deadline: Duration,
) -> Result<Option<Vec<BanRow>>, DbError> {
    let res: Result<Vec<Row>, _> = bounded(
        "sipguard_ban",
        deadline,
        conn.exec(
            "SELECT id, source, until_ms FROM sipguard_ban WHERE until_ms > ? ORDER BY id",
            (now_ms,),
        ),
    )
    .await;
    rows(res)
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
