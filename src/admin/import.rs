//! `import-countries`: country files of any supported format ([`crate::countrydata`]) into
//! `ipcountry` / `ipcountry6`.
//!
//! Every file is read and checked whole before the database is touched, so a refused file
//! changes nothing. Rows then go into shadow tables (`*_new`); only when every row is in do
//! the live tables change, all at once, with one `RENAME TABLE`. A dead database or a killed
//! import therefore leaves the previous data serving. A named lock (`GET_LOCK`) refuses a
//! second concurrent import instead of letting two interleave. `--dry-run` stops after the
//! comparison with the live tables.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::country_diff::{self, FamilyDiff};
use super::{sql, AdminError};
use crate::countrydata::{self, CountryData, DataError, Format, Options};

/// Progress callbacks, so the CLI can draw a bar on a terminal and print lines otherwise.
pub trait Progress {
    /// Rows stored so far, of `total`.
    fn update(&self, rows: u64, total: u64);
}

/// What the input holds and what it changes; printed by a dry run and by a real import.
#[derive(Debug, Default)]
pub struct Summary {
    /// Each file with the format it was read as.
    pub files: Vec<(String, Format)>,
    /// IPv4 rows read (to be stored in `ipcountry`).
    pub v4: u64,
    /// IPv6 rows read (to be stored in `ipcountry6`).
    pub v6: u64,
    /// Rows inside a wider row of the same family, (IPv4, IPv6).
    pub nested: (u64, u64),
    /// Rows moved from IPv4-mapped IPv6 space to IPv4.
    pub mapped: u64,
    /// Placeholder rows not stored, by placeholder.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Rows given more than once with the same country, stored once.
    pub duplicates: u64,
    /// How files were read, for the operator (see [`CountryData::notes`]).
    pub notes: Vec<String>,
    /// Ranges left out because rows gave them different countries (`--skip-conflicts`).
    pub conflicts: Vec<String>,
    /// Changes against the live `ipcountry` (empty when the input has no IPv4 row: that
    /// table is kept).
    pub v4_changes: FamilyDiff,
    /// Changes against the live `ipcountry6`, likewise.
    pub v6_changes: FamilyDiff,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// What was read and what it changed.
    pub summary: Summary,
    /// Tables replaced (a family absent from the input keeps its table); empty on a dry run.
    pub replaced: Vec<&'static str>,
}

/// The named lock, per database (`GET_LOCK` names are server-wide): imports into different
/// databases of one server do not exclude each other.
const LOCK: &str = "CONCAT('sipguard.import.', DATABASE())";
const BATCH: usize = 1000;

/// Reads and checks `files` (see [`countrydata::read`]), compares them with the live tables,
/// and unless `dry_run` swaps them in; see the module doc for the guarantees.
///
/// Errors: [`AdminError::Input`] for refused input (`file:line: reason; nothing was
/// changed`), [`AdminError::Busy`] when another import holds the lock, database errors.
pub async fn import(
    conn: &mut Conn,
    files: &[impl AsRef<Path>],
    opts: &Options,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ImportReport, AdminError> {
    if dry_run {
        let data = read(files, opts)?;
        return Ok(ImportReport {
            summary: summarize(conn, &data).await?,
            replaced: Vec::new(),
        });
    }
    // The lock first: a second import is refused before it reads anything.
    let got: Option<(Option<i64>, Option<String>)> = conn
        .query_first(format!(
            "SELECT GET_LOCK(n, 0), n FROM (SELECT {LOCK} AS n) AS lock_name"
        ))
        .await
        .map_err(sql("GET_LOCK"))?;
    match got {
        Some((Some(1), _)) => {}
        Some((_, Some(name))) => return Err(AdminError::Busy(name)),
        _ => {
            return Err(AdminError::Input(
                "the database URL names no database (mysql://user:pass@host:port/DATABASE)".into(),
            ))
        }
    }
    let result = async {
        let data = read(files, opts)?;
        let summary = summarize(conn, &data).await?;
        let replaced = store(conn, &data, progress).await?;
        Ok(ImportReport { summary, replaced })
    }
    .await;
    if result.is_err() {
        let _ = conn
            .query_drop("DROP TABLE IF EXISTS ipcountry_new, ipcountry6_new")
            .await;
    }
    let _ = conn
        .query_drop(format!("SELECT RELEASE_LOCK({LOCK})"))
        .await;
    result
}

/// Reads and checks every file; refuses input without a single country row.
fn read(files: &[impl AsRef<Path>], opts: &Options) -> Result<CountryData, AdminError> {
    let data = countrydata::read(files, opts).map_err(|e| match e {
        DataError::Io { file, source } => AdminError::Io { path: file, source },
        e => AdminError::Input(format!("{e}; nothing was changed")),
    })?;
    if data.v4.is_empty() && data.v6.is_empty() {
        return Err(AdminError::Input(format!(
            "no country rows in the input ({} placeholder rows skipped); nothing was changed",
            data.skipped_total()
        )));
    }
    Ok(data)
}

/// The input's figures and its changes against the live tables (read whole, as workers do).
async fn summarize(conn: &mut Conn, data: &CountryData) -> Result<Summary, AdminError> {
    let (live, _) = crate::db::load_countries(conn, Duration::from_secs(120)).await?;
    let live = live.build();
    let new = data.builder().build();
    Ok(Summary {
        files: data.files.clone(),
        v4: data.v4.len() as u64,
        v6: data.v6.len() as u64,
        nested: data.nested(),
        mapped: data.mapped,
        skipped: data.skipped.clone(),
        duplicates: data.duplicates,
        notes: data.notes.clone(),
        conflicts: data.conflicts.clone(),
        v4_changes: if data.v4.is_empty() {
            FamilyDiff::default()
        } else {
            country_diff::v4(&live, &new)
        },
        v6_changes: if data.v6.is_empty() {
            FamilyDiff::default()
        } else {
            country_diff::v6(&live, &new)
        },
    })
}

/// Shadow tables, rows, count check, one RENAME; returns the tables replaced.
async fn store(
    conn: &mut Conn,
    data: &CountryData,
    progress: &dyn Progress,
) -> Result<Vec<&'static str>, AdminError> {
    for t in ["ipcountry", "ipcountry6"] {
        let found: Option<String> = conn
            .exec_first("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", (t,))
            .await
            .map_err(sql("information_schema"))?;
        if found.is_none() {
            return Err(AdminError::Input(format!(
                "table {t} does not exist: apply kamailio/sql/schema.sql first"
            )));
        }
    }
    conn.query_drop(
        "DROP TABLE IF EXISTS ipcountry_new, ipcountry6_new; \
         CREATE TABLE ipcountry_new LIKE ipcountry; CREATE TABLE ipcountry6_new LIKE ipcountry6",
    )
    .await
    .map_err(sql("create shadow tables"))?;

    // One transaction for all rows: one log flush instead of one per batch (the shadow tables
    // are invisible to the workers until the RENAME anyway).
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(sql("start transaction"))?;
    let total = (data.v4.len() + data.v6.len()) as u64;
    let mut done = 0u64;
    for chunk in data.v4.chunks(BATCH) {
        let rows = chunk.iter().map(|&(s, e, cc)| {
            let (s, e) = (Ipv4Addr::from(s), Ipv4Addr::from(e));
            [
                s.to_string().into(),
                e.to_string().into(),
                cc.as_str().into(),
                u32::from(s).into(),
                u32::from(e).into(),
            ]
        });
        insert(conn, "ipcountry_new", chunk.len(), rows).await?;
        done += chunk.len() as u64;
        progress.update(done, total);
    }
    for chunk in data.v6.chunks(BATCH) {
        let rows = chunk.iter().map(|&(s, e, cc)| {
            [
                Ipv6Addr::from(s).to_string().into(),
                Ipv6Addr::from(e).to_string().into(),
                cc.as_str().into(),
                s.to_be_bytes().to_vec().into(),
                e.to_be_bytes().to_vec().into(),
            ]
        });
        insert(conn, "ipcountry6_new", chunk.len(), rows).await?;
        done += chunk.len() as u64;
        progress.update(done, total);
    }

    conn.query_drop("COMMIT").await.map_err(sql("commit"))?;

    // Every row must be in before anything is swapped.
    let want = [
        ("ipcountry_new", data.v4.len() as u64),
        ("ipcountry6_new", data.v6.len() as u64),
    ];
    for (table, want) in want {
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .map_err(sql("count shadow rows"))?;
        if n != Some(want) {
            return Err(AdminError::Input(format!(
                "{table} holds {n:?} rows, {want} were sent; nothing was changed"
            )));
        }
    }
    let mut renames = Vec::new();
    let mut drops = Vec::new();
    let mut replaced = Vec::new();
    for (live, count) in [("ipcountry", data.v4.len()), ("ipcountry6", data.v6.len())] {
        if count > 0 {
            renames.push(format!("{live} TO {live}_old, {live}_new TO {live}"));
            drops.push(format!("{live}_old"));
            replaced.push(live);
        }
    }
    conn.query_drop(format!(
        "DROP TABLE IF EXISTS ipcountry_old, ipcountry6_old; RENAME TABLE {}",
        renames.join(", "),
    ))
    .await
    .map_err(sql("swap tables"))?;
    // The generation moves right after the swap, before the old tables are dropped (which
    // takes a while for large tables): a worker that saw the new tables under the old
    // generation would otherwise build the node's file twice.
    super::bump_generations(conn, &["countries"]).await?;
    // The new data is live by now: a failed drop leaves `*_old` tables, which the next import
    // drops first, and is no reason to report the import failed.
    let _ = conn
        .query_drop(format!(
            "DROP TABLE {}; DROP TABLE IF EXISTS ipcountry_new, ipcountry6_new",
            drops.join(", ")
        ))
        .await;
    Ok(replaced)
}

/// Inserts `n` rows of the post's five columns with one parameterized multi-row statement.
async fn insert(
    conn: &mut Conn,
    table: &str,
    n: usize,
    rows: impl Iterator<Item = [mysql_async::Value; 5]>,
) -> Result<(), AdminError> {
    let values = vec!["(?, ?, ?, ?, ?)"; n].join(", ");
    let stmt =
        format!("INSERT INTO {table} (ipstart, ipend, countrycode, ipfrom, ipto) VALUES {values}");
    let params: Vec<mysql_async::Value> = rows.flatten().collect();
    conn.exec_drop(stmt, params)
        .await
        .map_err(sql("insert country rows"))
}
