//! `import-countries`: db-ip style CSV (`start,end,CC`) into `ipcountry` / `ipcountry6`.
//!
//! Rows go into shadow tables (`*_new`); only when every line has parsed and every row is in do
//! the live tables change, all at once, with one `RENAME TABLE`. A bad line, a dead database
//! or a killed import therefore leaves the previous data serving. A named lock
//! (`GET_LOCK`) refuses a second concurrent import instead of letting two interleave.

use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::{sql, AdminError};
use crate::engine::normalize_country;

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryRow {
    /// First address of the range.
    pub start: IpAddr,
    /// Last address (inclusive).
    pub end: IpAddr,
    /// ISO code, upper case.
    pub cc: String,
}

fn endpoint(field: &str) -> Result<IpAddr, String> {
    if !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit()) {
        // The "-num" variants: numbers up to 2^32-1 are IPv4, larger ones IPv6.
        let n: u128 = field
            .parse()
            .map_err(|_| format!("number {field:?} is out of range"))?;
        return Ok(match u32::try_from(n) {
            Ok(v4) => IpAddr::V4(v4.into()),
            Err(_) => IpAddr::V6(n.into()),
        });
    }
    field
        .parse()
        .map_err(|_| format!("{field:?} is not an IP address"))
}

/// Parses one CSV line; `Ok(None)` for blank lines and `#` comments. Fields may be quoted.
pub fn parse_line(line: &str) -> Result<Option<CountryRow>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let fields: Vec<&str> = line
        .split(',')
        .map(|f| f.trim().trim_matches('"').trim())
        .collect();
    let [start, end, cc] = fields[..] else {
        return Err(format!(
            "expected 3 fields (start,end,country), found {}",
            fields.len()
        ));
    };
    let (start, end) = (endpoint(start)?, endpoint(end)?);
    let ordered = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => s <= e,
        (IpAddr::V6(s), IpAddr::V6(e)) => s <= e,
        _ => return Err("start and end are of different address families".into()),
    };
    if !ordered {
        return Err(format!("start {start} is after end {end}"));
    }
    let cc =
        normalize_country(cc).ok_or_else(|| format!("country code {cc:?} is not 2-3 letters"))?;
    Ok(Some(CountryRow { start, end, cc }))
}

/// Progress callbacks, so the CLI can draw a bar on a terminal and print lines otherwise.
pub trait Progress {
    /// Bytes of input read so far (of `total`) and rows parsed.
    fn update(&self, bytes: u64, rows: u64);
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// IPv4 rows now in `ipcountry`.
    pub v4: u64,
    /// IPv6 rows now in `ipcountry6`.
    pub v6: u64,
    /// Tables replaced (a family absent from the input keeps its table).
    pub replaced: Vec<&'static str>,
}

const LOCK: &str = "sipguard.import";
const BATCH: usize = 1000;

/// Counts bytes read from the underlying file (compressed bytes for .gz), for progress.
struct Counting<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

fn open(
    path: &Path,
    read: std::rc::Rc<std::cell::Cell<u64>>,
) -> Result<Box<dyn BufRead>, AdminError> {
    let io = |source| AdminError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic).map_err(io)? == 2 && magic == [0x1f, 0x8b];
    std::io::Seek::rewind(&mut file).map_err(io)?;
    let counted = Counting { inner: file, read };
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(counted)))
    } else {
        Box::new(BufReader::new(counted))
    })
}

/// Total size of the inputs, for the progress bar.
pub fn total_bytes(files: &[impl AsRef<Path>]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// Imports `files` and swaps them in; see the module doc for the guarantees.
pub async fn import(
    conn: &mut Conn,
    files: &[impl AsRef<Path>],
    progress: &dyn Progress,
) -> Result<ImportReport, AdminError> {
    let got: Option<i64> = conn
        .exec_first("SELECT GET_LOCK(?, 0)", (LOCK,))
        .await
        .map_err(sql("GET_LOCK"))?;
    if got != Some(1) {
        return Err(AdminError::Busy(LOCK));
    }
    let result = import_locked(conn, files, progress).await;
    if result.is_err() {
        let _ = conn
            .query_drop("DROP TABLE IF EXISTS ipcountry_new, ipcountry6_new")
            .await;
    }
    let _ = conn.exec_drop("SELECT RELEASE_LOCK(?)", (LOCK,)).await;
    result
}

async fn import_locked(
    conn: &mut Conn,
    files: &[impl AsRef<Path>],
    progress: &dyn Progress,
) -> Result<ImportReport, AdminError> {
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

    let mut v4: Vec<CountryRow> = Vec::with_capacity(BATCH);
    let mut v6: Vec<CountryRow> = Vec::with_capacity(BATCH);
    let mut report = ImportReport::default();
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut done_bytes = 0u64;
    let mut rows = 0u64;
    for path in files {
        let path = path.as_ref();
        read.set(0);
        let reader = open(path, read.clone())?;
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|source| AdminError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let row = parse_line(&line).map_err(|why| {
                AdminError::Input(format!(
                    "{}:{}: {why}; nothing was changed",
                    path.display(),
                    i + 1
                ))
            })?;
            let Some(row) = row else { continue };
            rows += 1;
            if row.start.is_ipv4() {
                v4.push(row);
                if v4.len() == BATCH {
                    report.v4 += insert(conn, &mut v4).await?;
                }
            } else {
                v6.push(row);
                if v6.len() == BATCH {
                    report.v6 += insert(conn, &mut v6).await?;
                }
            }
            if rows.is_multiple_of(10_000) {
                progress.update(done_bytes + read.get(), rows);
            }
        }
        done_bytes += read.get();
    }
    report.v4 += insert(conn, &mut v4).await?;
    report.v6 += insert(conn, &mut v6).await?;
    progress.update(done_bytes, rows);
    if report.v4 + report.v6 == 0 {
        return Err(AdminError::Input(
            "no rows in the input; nothing was changed".into(),
        ));
    }

    // Every row must be in before anything is swapped.
    for (table, want) in [("ipcountry_new", report.v4), ("ipcountry6_new", report.v6)] {
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
    for (live, count) in [("ipcountry", report.v4), ("ipcountry6", report.v6)] {
        if count > 0 {
            renames.push(format!("{live} TO {live}_old, {live}_new TO {live}"));
            drops.push(format!("{live}_old"));
            report.replaced.push(live);
        }
    }
    conn.query_drop(format!(
        "DROP TABLE IF EXISTS ipcountry_old, ipcountry6_old; RENAME TABLE {}; DROP TABLE {}; DROP TABLE IF EXISTS ipcountry_new, ipcountry6_new",
        renames.join(", "),
        drops.join(", ")
    ))
    .await
    .map_err(sql("swap tables"))?;
    super::bump_generations(conn, &["countries"]).await?;
    Ok(report)
}

/// Inserts a batch with one parameterized multi-row statement; empties `rows`.
async fn insert(conn: &mut Conn, rows: &mut Vec<CountryRow>) -> Result<u64, AdminError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let v4 = rows[0].start.is_ipv4();
    let table = if v4 {
        "ipcountry_new"
    } else {
        "ipcountry6_new"
    };
    let values = vec!["(?, ?, ?, ?, ?)"; rows.len()].join(", ");
    let stmt =
        format!("INSERT INTO {table} (ipstart, ipend, countrycode, ipfrom, ipto) VALUES {values}");
    let mut params: Vec<mysql_async::Value> = Vec::with_capacity(rows.len() * 5);
    for r in rows.iter() {
        params.push(r.start.to_string().into());
        params.push(r.end.to_string().into());
        params.push(r.cc.clone().into());
        match (r.start, r.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => {
                params.push(u32::from(s).into());
                params.push(u32::from(e).into());
            }
            (s, e) => {
                params.push(ip_bytes(s).into());
                params.push(ip_bytes(e).into());
            }
        }
    }
    conn.exec_drop(stmt, params)
        .await
        .map_err(sql("insert country rows"))?;
    let n = rows.len() as u64;
    rows.clear();
    Ok(n)
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str) -> CountryRow {
        parse_line(s).unwrap().unwrap()
    }

    #[test]
    fn parses_text_numeric_and_quoted_lines() {
        assert_eq!(row("1.0.0.0,1.0.0.255,AU").cc, "AU");
        assert_eq!(row("\"2.20.179.0\",\"2.20.179.255\",\"es\"").cc, "ES");
        assert_eq!(row("16777216,16777471,AU").start.to_string(), "1.0.0.0");
        let v6 =
            row("42540528726795050063891204319802818560,42540528806023212578155541913346768895,JP");
        assert!(v6.start.is_ipv6());
        assert_eq!(
            row("2001:2::,2001:2::ffff:ffff:ffff:ffff:ffff,JP")
                .end
                .to_string(),
            "2001:2:0:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(parse_line("  ").unwrap(), None);
        assert_eq!(parse_line("# comment").unwrap(), None);
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, why) in [
            ("1.0.0.0,1.0.0.255", "expected 3 fields"),
            ("1.0.0.0,1.0.0.255,AU,x", "expected 3 fields"),
            ("1.0.0.x,1.0.0.255,AU", "not an IP address"),
            ("1.0.1.0,1.0.0.255,AU", "is after end"),
            ("1.0.0.0,2001::1,AU", "different address families"),
            ("1.0.0.0,1.0.0.255,A1B", "not 2-3 letters"),
            ("010.0.0.0,1.0.0.255,AU", "not an IP address"),
            (
                "999999999999999999999999999999999999999999,1,AU",
                "out of range",
            ),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
