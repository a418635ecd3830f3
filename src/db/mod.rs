//! MySQL adapter: reads the tables the post defined (plus `ipcountry6`), nothing else.
//!
//! Every call is bounded by a deadline, because a worker waiting on a hung server is a worker
//! not answering SIP. Queries take no user input: the module reads whole tables and decides in
//! memory, so no request-controlled string ever reaches SQL.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, Row};
use thiserror::Error;
use tokio::time::timeout;

use crate::engine::{ListRow, ListRows};

pub mod bans;
pub mod facts;
use crate::ranges::CountryRangesBuilder;

/// Why a database call gave no answer.
#[derive(Debug, Error)]
pub enum DbError {
    /// The deadline passed; the connection must be dropped, its state is unknown.
    #[error("{what}: no answer within {ms} ms")]
    Timeout {
        /// The call that timed out.
        what: &'static str,
        /// The deadline.
        ms: u128,
    },
    /// The server or the driver refused.
    #[error("{what}: {source}")]
    Mysql {
        /// The call that failed.
        what: &'static str,
        /// Driver error.
        source: mysql_async::Error,
    },
}

impl DbError {
    /// True when the deadline passed (as opposed to an error answer).
    pub fn is_timeout(&self) -> bool {
        matches!(self, DbError::Timeout { .. })
    }

    /// True for "table does not exist" (1146): an old post-style database without our tables.
    pub fn is_missing_table(&self) -> bool {
        matches!(self, DbError::Mysql { source: mysql_async::Error::Server(e), .. } if e.code == 1146)
    }

    /// True for "command denied" on a table or column (1142, 1143): the user lacks the grant.
    pub fn is_denied(&self) -> bool {
        matches!(self, DbError::Mysql { source: mysql_async::Error::Server(e), .. } if e.code == 1142 || e.code == 1143)
    }
}

async fn bounded<T, F>(what: &'static str, limit: Duration, fut: F) -> Result<T, DbError>
where
    F: std::future::Future<Output = Result<T, mysql_async::Error>>,
{
    match timeout(limit, fut).await {
        Ok(r) => r.map_err(|source| DbError::Mysql { what, source }),
        Err(_) => Err(DbError::Timeout {
            what,
            ms: limit.as_millis(),
        }),
    }
}

/// Opens one connection. The module keeps it for the life of the process (see `process`).
pub async fn connect(url: &str, limit: Duration) -> Result<Conn, DbError> {
    let opts = Opts::from_url(url).map_err(|e| DbError::Mysql {
        what: "connect",
        source: e.into(),
    })?;
    bounded("connect", limit, Conn::new(opts)).await
}

/// A row that could not be converted (wrong column type, NULL, invalid UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Table name.
    pub table: &'static str,
    /// Row number in the result (1-based), as no id may be readable.
    pub n: usize,
}

async fn list_rows(
    conn: &mut Conn,
    table: &'static str,
    sql: &'static str,
    limit: Duration,
    bad: &mut Vec<BadRow>,
) -> Result<Vec<ListRow>, DbError> {
    let rows: Vec<Row> = bounded(table, limit, conn.query(sql)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        match mysql_async::from_row_opt::<(i64, Option<String>, Option<String>)>(row) {
            Ok((id, value, detail)) => out.push(ListRow {
                id,
                value: value.unwrap_or_default(),
                detail: detail.unwrap_or_default(),
            }),
            Err(_) => bad.push(BadRow { table, n: i + 1 }),
        }
    }
    Ok(out)
}

/// What one read of the list tables produced.
pub struct ListTables {
    /// Rows of every list table, in id order (the lowest id wins duplicates).
    pub rows: ListRows,
    /// Rows the driver could not convert.
    pub bad: Vec<BadRow>,
    /// List tables that do not exist (a post-style database without sipguard's tables): read
    /// as empty, so the post's two tables keep working on their own.
    pub missing: Vec<&'static str>,
}

/// Reads every list table; each query under `limit`.
pub async fn load_lists(conn: &mut Conn, limit: Duration) -> Result<ListTables, DbError> {
    let mut bad = Vec::new();
    let mut missing = Vec::new();
    let mut rows = ListRows::default();
    let tables: [(&'static str, &'static str, &mut Vec<ListRow>); 5] = [
        (
            "black_list",
            "SELECT id, ip, detail FROM black_list ORDER BY id",
            &mut rows.black,
        ),
        (
            "white_list",
            "SELECT id, ip, detail FROM white_list ORDER BY id",
            &mut rows.white,
        ),
        (
            "black_list_country",
            "SELECT id, country, detail FROM black_list_country ORDER BY id",
            &mut rows.countries,
        ),
        (
            "black_list_user",
            "SELECT id, username, detail FROM black_list_user ORDER BY id",
            &mut rows.users,
        ),
        (
            "black_list_ua",
            "SELECT id, pattern, detail FROM black_list_ua ORDER BY id",
            &mut rows.user_agents,
        ),
    ];
    for (table, sql, out) in tables {
        match list_rows(conn, table, sql, limit, &mut bad).await {
            Ok(r) => *out = r,
            Err(e) if e.is_missing_table() => missing.push(table),
            Err(e) => return Err(e),
        }
    }
    Ok(ListTables { rows, bad, missing })
}

/// One table's (name, created, updated, updated within the last 2 s) from information_schema.
type MarkerRow = (String, Option<String>, Option<String>, Option<i64>);

/// A cheap fingerprint of the country tables: when it is unchanged, they need no reload.
/// CREATE_TIME changes when a table is swapped in by RENAME, UPDATE_TIME on edits. UPDATE_TIME
/// has a one-second resolution, so for a table edited less than 2 s ago the fingerprint is not
/// `settled`: an edit in the same second would not change it.
/// (TABLE_ROWS is left out on purpose: InnoDB re-estimates it in the background, which would
/// look like a change.)
pub async fn country_marker(conn: &mut Conn, limit: Duration) -> Result<CountryMarker, DbError> {
    let rows: Vec<MarkerRow> = bounded(
        "country marker",
        limit,
        conn.query(
            "SELECT TABLE_NAME, CAST(CREATE_TIME AS CHAR), CAST(UPDATE_TIME AS CHAR), \
                    TIMESTAMPDIFF(SECOND, UPDATE_TIME, NOW()) < 2 \
             FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('ipcountry', 'ipcountry6') \
             ORDER BY TABLE_NAME",
        ),
    )
    .await?;
    Ok(CountryMarker {
        settled: !rows.iter().any(|r| r.3 == Some(1)),
        // Without the "edited within 2 s" column: the text must not change as time passes.
        text: format!(
            "{:?}",
            rows.iter().map(|r| (&r.0, &r.1, &r.2)).collect::<Vec<_>>()
        ),
    })
}

/// The country tables' fingerprint ([`country_marker`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryMarker {
    /// Creation and update times of both tables: equal in every worker that reads the same
    /// tables (it names the node's country file).
    pub text: String,
    /// No table was edited within the last 2 s (an edit in the same second would not show).
    pub settled: bool,
}

/// The change counters of `sipguard_generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generations {
    /// Bumped by triggers on every list table.
    pub lists: u64,
    /// Bumped by country imports and `reload`.
    pub countries: u64,
    /// The `lists` row is missing (a TRUNCATE, a partial restore) or holds no counter (NULL,
    /// negative): `lists` reads 0 and cannot
    /// tell a change, so the lists are re-read every round until a trigger or `reload` puts
    /// the row back.
    pub lists_missing: bool,
    /// The `countries` row is missing; imports are still seen through the tables' own marker.
    pub countries_missing: bool,
    /// Bumped on every ban added (`sipguard_ban` insert trigger); `None` before bans existed.
    pub bans: Option<u64>,
    /// Bumped when a ban is lifted or edited (delete and update triggers).
    pub ban_lifts: Option<u64>,
}

/// One row of `sipguard_generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRow {
    /// `lists`, `countries`, `bans` or `ban_lifts`.
    pub name: String,
    /// The counter.
    pub gen: u64,
    /// When it last moved (the row's `changed` column), in Unix ms; 0 when unreadable.
    pub changed_ms: u64,
}

/// Reads the rows of `sipguard_generation` with when each last moved (for `sipguard-admin
/// metrics`); `None` on a database without the table. A row whose counter is NULL or negative
/// (a hand-made migration) is left out: it counts as missing.
pub async fn generation_rows(
    conn: &mut Conn,
    limit: Duration,
) -> Result<Option<Vec<GenerationRow>>, DbError> {
    read_generations(
        conn,
        limit,
        "SELECT name, gen, FLOOR(UNIX_TIMESTAMP(changed) * 1000) FROM sipguard_generation",
    )
    .await
}

/// `sql` selects name, gen and optionally a third column, the change time in Unix ms.
async fn read_generations(
    conn: &mut Conn,
    limit: Duration,
    sql: &'static str,
) -> Result<Option<Vec<GenerationRow>>, DbError> {
    let res: Result<Vec<Row>, _> = bounded("sipguard_generation", limit, conn.query(sql)).await;
    let rows = match res {
        Ok(rows) => rows,
        Err(e) if e.is_missing_table() => return Ok(None),
        Err(e) => return Err(e),
    };
    // Checked conversion: the driver's plain conversion answers a NULL or negative counter
    // with a panic. The change time is only shown, so any value that is not one reads 0.
    Ok(Some(
        rows.into_iter()
            .filter_map(|r| {
                Some(GenerationRow {
                    name: r.get_opt::<String, _>(0)?.ok()?,
                    gen: r.get_opt::<u64, _>(1)?.ok()?,
                    changed_ms: r.get_opt::<u64, _>(2).and_then(Result::ok).unwrap_or(0),
                })
            })
            .collect(),
    ))
}

/// Reads `sipguard_generation`; `None` on a database without it (then every round re-reads).
pub async fn generations(conn: &mut Conn, limit: Duration) -> Result<Option<Generations>, DbError> {
    // Name and counter only: the rounds do not depend on any other column.
    let Some(rows) =
        read_generations(conn, limit, "SELECT name, gen FROM sipguard_generation").await?
    else {
        return Ok(None);
    };
    let get = |n: &str| rows.iter().find(|r| r.name == n).map(|r| r.gen);
    Ok(Some(Generations {
        lists: get("lists").unwrap_or(0),
        countries: get("countries").unwrap_or(0),
        lists_missing: get("lists").is_none(),
        countries_missing: get("countries").is_none(),
        bans: get("bans"),
        ban_lifts: get("ban_lifts"),
    }))
}

/// What loading the country tables produced besides the ranges, for the log.
#[derive(Debug, Default)]
pub struct CountryLoad {
    /// Rows used.
    pub rows: usize,
    /// Rows skipped: unconvertible, out of range, or `ipfrom > ipto`.
    pub skipped: usize,
    /// Tables that do not exist (an old database without `ipcountry6`).
    pub missing: Vec<&'static str>,
}

/// Reads `ipcountry` (numeric `ipfrom`/`ipto`, as the post fills them) and `ipcountry6`
/// (binary `ipfrom`/`ipto`, as `INET6_ATON` fills them), streaming rows into the builder.
pub async fn load_countries(
    conn: &mut Conn,
    limit: Duration,
) -> Result<(CountryRangesBuilder, CountryLoad), DbError> {
    let mut b = CountryRangesBuilder::default();
    let mut stats = CountryLoad::default();
    let v4 = async {
        let mut res = conn
            .query_iter("SELECT ipfrom, ipto, countrycode FROM ipcountry")
            .await?;
        res.for_each(
            |row| match mysql_async::from_row_opt::<(i64, i64, String)>(row) {
                Ok((s, e, cc))
                    if (0..=u32::MAX as i64).contains(&s) && (s..=u32::MAX as i64).contains(&e) =>
                {
                    b.add_v4(s as u32, e as u32, &cc);
                    stats.rows += 1;
                }
                _ => stats.skipped += 1,
            },
        )
        .await
    };
    match bounded("ipcountry", limit, v4).await {
        Ok(()) => {}
        Err(e) if e.is_missing_table() => stats.missing.push("ipcountry"),
        Err(e) => return Err(e),
    }
    let v6 = async {
        let mut res = conn
            .query_iter("SELECT ipfrom, ipto, countrycode FROM ipcountry6")
            .await?;
        res.for_each(
            |row| match mysql_async::from_row_opt::<(Vec<u8>, Vec<u8>, String)>(row) {
                Ok((s, e, cc)) => match (to_u128(&s), to_u128(&e)) {
                    (Some(s), Some(e)) if s <= e => {
                        b.add_v6(s, e, &cc);
                        stats.rows += 1;
                    }
                    _ => stats.skipped += 1,
                },
                Err(_) => stats.skipped += 1,
            },
        )
        .await
    };
    match bounded("ipcountry6", limit, v6).await {
        Ok(()) => {}
        Err(e) if e.is_missing_table() => stats.missing.push("ipcountry6"),
        Err(e) => return Err(e),
    }
    Ok((b, stats))
}

fn to_u128(b: &[u8]) -> Option<u128> {
    <[u8; 16]>::try_from(b).ok().map(u128::from_be_bytes)
}
