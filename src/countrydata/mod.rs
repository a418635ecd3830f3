//! Country range files as operators download them, read into one shape: inclusive ranges with a
//! two-letter code, per address family. No MySQL here; `admin::import` stores what this returns.
//!
//! | format | file(s) | module |
//! |---|---|---|
//! | db-ip style CSV (`start,end,CC`, text or `-num`) | DB-IP lite, ip-location-db | [`dbip`] |
//! | IP2Location LITE DB1 CSV, IPv4 and IPv6 editions | `IP2LOCATION-LITE-DB1[.IPV6].CSV` | [`ip2location`] |
//! | MaxMind GeoLite2-Country CSV (blocks + locations) | `GeoLite2-Country-Blocks-IPv4.csv`, … | [`maxmind_csv`] |
//! | MaxMind DB (`.mmdb`): GeoIP2/GeoLite2, DB-IP, ip-location-db layouts | `GeoLite2-Country.mmdb`, … | [`mmdb`] |
//!
//! Every format goes through the same rules ([`code`], [`number`]): a code is exactly two
//! letters, placeholders mean "no country" and are counted, never stored; a number's family
//! comes from the file, never from its size; anything ambiguous is refused with file, line and
//! reason. The whole input is read before anything is stored, so a refused file changes
//! nothing.

pub mod code;
pub mod dbip;
pub mod detect;
pub mod ip2location;
pub mod maxmind_csv;
pub mod mmdb;
pub mod number;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use code::{CountryCell, CountryCode};
pub use detect::Format;

/// An address family, as a file or `--family` states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// 32-bit numbers, dotted quads.
    V4,
    /// 128-bit numbers, colon notation.
    V6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// How to read the inputs; `None` fields are taken from each file's content and name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Force one format for every file (`--format`).
    pub format: Option<Format>,
    /// Family of numeric addresses (`--family`), for files whose name does not say it.
    pub family: Option<Family>,
    /// A range that rows give different countries (`--skip-conflicts`): leave every row of it
    /// out (its addresses answer what a wider range says, or no country) and list it in
    /// [`CountryData::conflicts`], instead of refusing the input. Public data has a few (3 of 550,668 rows in ip-location-db's
    /// geo-whois-asn-country of 2026-06).
    pub skip_conflicts: bool,
}

/// Why input was refused. Every variant names the file; line errors name the line too.
#[derive(Debug, Error)]
pub enum DataError {
    /// A line that cannot be read without guessing.
    #[error("{file}:{line}: {reason}")]
    Line {
        /// The file as given.
        file: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong, in the operator's terms.
        reason: String,
    },
    /// A whole-file problem: unknown format, corrupt MMDB, missing companion file.
    #[error("{file}: {reason}")]
    File {
        /// The file as given.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file as given.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// IPv4 ranges: inclusive `(first, last, code)`, as `ipcountry.ipfrom/ipto` hold them.
pub type V4Row = (u32, u32, CountryCode);
/// IPv6 ranges: inclusive `(first, last, code)`, as `ipcountry6.ipfrom/ipto` hold them.
pub type V6Row = (u128, u128, CountryCode);

/// Everything read from the inputs, ready to store.
#[derive(Debug, Default)]
pub struct CountryData {
    /// IPv4 rows, including those the file wrote as IPv4-mapped IPv6.
    pub v4: Vec<V4Row>,
    /// IPv6 rows outside `::ffff:0:0/96`.
    pub v6: Vec<V6Row>,
    /// Rows not stored because their country is a placeholder, by placeholder as written
    /// (`ZZ`, `-`, `--`, `A1`, `A2`, `O1`, `(empty)`).
    pub skipped: BTreeMap<String, u64>,
    /// Rows (or parts of rows) in IPv4-mapped IPv6 space, stored as IPv4.
    pub mapped: u64,
    /// Each input with the format it was read as, in the order read.
    pub files: Vec<(String, Format)>,
    /// Rows given more than once with the same country (IP2Location's two editions both hold
    /// IPv4 space, say), stored once.
    pub duplicates: u64,
    /// What the operator should know about how a file was read (MMDB aliases not imported).
    pub notes: Vec<String>,
    /// Ranges left out because rows give them different countries ([`Options::skip_conflicts`]),
    /// each as `first - last: CC at file:line, CC at file:line`.
    pub conflicts: Vec<String>,
    /// Where each row of `v4` / `v6` came from, to name both places when the same range is
    /// given two countries; emptied by [`CountryData::finish`].
    v4_from: Vec<Origin>,
    v6_from: Vec<Origin>,
}

/// A row's file (index into `files`: the file being read is pushed when it is done) and line
/// (0 for an MMDB network, which has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    file: usize,
    line: u64,
    /// Written as IPv4-mapped IPv6 (counted in `mapped`).
    mapped: bool,
}

impl Origin {
    /// `file:line`, or the file alone for an MMDB network.
    fn place(self, files: &[String]) -> String {
        let f = files.get(self.file).map(String::as_str).unwrap_or("?");
        match self.line {
            0 => f.to_string(),
            n => format!("{f}:{n}"),
        }
    }

    /// A refusal at this place.
    fn error(self, files: &[String], reason: String) -> DataError {
        let file = files.get(self.file).cloned().unwrap_or_default();
        match self.line {
            0 => DataError::File { file, reason },
            line => DataError::Line { file, line, reason },
        }
    }
}

/// Start of `::ffff:0:0/96`, where IPv6 files (IP2Location's IPv6 edition) keep IPv4 space.
const MAPPED_FIRST: u128 = 0xffff << 32;
const MAPPED_LAST: u128 = MAPPED_FIRST | 0xffff_ffff;

impl CountryData {
    /// Adds one row; a placeholder is counted, a range touching IPv4-mapped space is split so
    /// that part lands in IPv4, where an IPv4 source (and `::ffff:a.b.c.d`, which the module
    /// folds to IPv4) finds it.
    pub fn add(&mut self, range: Range, cell: CountryCell) {
        self.add_at(range, cell, 0);
    }

    /// [`Self::add`] for a row read at `line` of the file being read.
    pub fn add_at(&mut self, range: Range, cell: CountryCell, line: u64) {
        let from = Origin {
            file: self.files.len(),
            line,
            mapped: false,
        };
        let cc = match cell {
            CountryCell::Code(cc) => cc,
            CountryCell::NoCountry(p) => {
                *self.skipped.entry(p.to_string()).or_default() += 1;
                return;
            }
        };
        let mut v4 = |s, e| {
            self.v4.push((s, e, cc));
            self.v4_from.push(from);
        };
        match range {
            Range::V4(s, e) => v4(s, e),
            Range::V6(s, e) => {
                if s <= MAPPED_LAST && e >= MAPPED_FIRST {
                    let (ms, me) = (s.max(MAPPED_FIRST), e.min(MAPPED_LAST));
                    self.v4
                        .push(((ms - MAPPED_FIRST) as u32, (me - MAPPED_FIRST) as u32, cc));
                    self.v4_from.push(Origin {
                        mapped: true,
                        ..from
                    });
                    self.mapped += 1;
                }
                let mut v6 = |s, e| {
                    self.v6.push((s, e, cc));
                    self.v6_from.push(from);
                };
                if e < MAPPED_FIRST || s > MAPPED_LAST {
                    v6(s, e);
                    return;
                }
                if s < MAPPED_FIRST {
                    v6(s, MAPPED_FIRST - 1);
                }
                if e > MAPPED_LAST {
                    v6(MAPPED_LAST + 1, e);
                }
            }
        }
    }

    /// Ends reading (called once, by [`read_inputs`]): a range given twice with the same
    /// country is kept once; given different countries it is refused, naming both places
    /// (which one is meant cannot be told), or with `skip_conflicts` left out and listed.
    fn finish(&mut self, skip_conflicts: bool) -> Result<(), DataError> {
        let files: Vec<String> = self.files.iter().map(|(f, _)| f.clone()).collect();
        let mut conflicts = Vec::new();
        let (n, mapped) = dedupe(
            &mut self.v4,
            &self.v4_from,
            &files,
            skip_conflicts.then_some(&mut conflicts),
            |s| std::net::Ipv4Addr::from(s).to_string(),
        )?;
        self.duplicates += n;
        self.mapped -= mapped;
        let (n, _) = dedupe(
            &mut self.v6,
            &self.v6_from,
            &files,
            skip_conflicts.then_some(&mut conflicts),
            |s| std::net::Ipv6Addr::from(s).to_string(),
        )?;
        self.duplicates += n;
        self.conflicts = conflicts;
        self.v4_from = Vec::new();
        self.v6_from = Vec::new();
        Ok(())
    }

    /// Rows that lie inside another row of the same family, `(IPv4, IPv6)`: where ranges nest,
    /// the narrowest answers, as MMDB readers do (about 2% of real db-ip style rows).
    pub fn nested(&self) -> (u64, u64) {
        (nested(&self.v4), nested(&self.v6))
    }

    /// The rows as a [`CountryRangesBuilder`], to look addresses up as a worker would.
    pub fn builder(&self) -> crate::ranges::CountryRangesBuilder {
        let mut b = crate::ranges::CountryRangesBuilder::default();
        for &(s, e, cc) in &self.v4 {
            b.add_v4(s, e, cc.as_str());
        }
        for &(s, e, cc) in &self.v6 {
            b.add_v6(s, e, cc.as_str());
        }
        b
    }

    /// Rows skipped as placeholders, all kinds together.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Drops rows that repeat an earlier row (same range, same country); a range given different
/// countries is refused, or, when `conflicts` is given, dropped whole and described there.
/// Returns the number of repeats dropped, and the number of dropped rows (repeats or
/// conflicts) written as IPv4-mapped, which are then not stored as mapped rows.
fn dedupe<K: Ord + Copy>(
    rows: &mut Vec<(K, K, CountryCode)>,
    from: &[Origin],
    files: &[String],
    mut conflicts: Option<&mut Vec<String>>,
    show: impl Fn(K) -> String,
) -> Result<(u64, u64), DataError> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].0, rows[i].1, i));
    let mut drop = vec![false; rows.len()];
    let (mut dropped, mut dropped_mapped) = (0, 0);
    // Groups of rows with the same range, in reading order within a group.
    for group in order.chunk_by(|&a, &b| (rows[a].0, rows[a].1) == (rows[b].0, rows[b].1)) {
        let first = group[0];
        let Some(&other) = group.iter().find(|&&i| rows[i].2 != rows[first].2) else {
            for &i in &group[1..] {
                drop[i] = true;
                dropped += 1;
                dropped_mapped += u64::from(from[i].mapped);
            }
            continue;
        };
        let (a, b) = (rows[first], rows[other]);
        let Some(list) = conflicts.as_deref_mut() else {
            let reason = format!(
                "the range {} - {} is {} here and {} at {}: which one is meant cannot be told \
                 (--skip-conflicts leaves such ranges out)",
                show(b.0),
                show(b.1),
                b.2,
                a.2,
                from[first].place(files)
            );
            return Err(from[other].error(files, reason));
        };
        let each: Vec<String> = group
            .iter()
            .map(|&i| format!("{} at {}", rows[i].2, from[i].place(files)))
            .collect();
        list.push(format!(
            "{} - {}: {}",
            show(a.0),
            show(a.1),
            each.join(", ")
        ));
        for &i in group {
            drop[i] = true;
            dropped_mapped += u64::from(from[i].mapped);
        }
    }
    if drop.contains(&true) {
        let mut i = 0;
        rows.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
    }
    Ok((dropped, dropped_mapped))
}

fn nested<K: Ord + Copy>(rows: &[(K, K, CountryCode)]) -> u64 {
    use std::cmp::Reverse;
    let mut by_start: Vec<(K, Reverse<K>)> = rows.iter().map(|r| (r.0, Reverse(r.1))).collect();
    // Same start: the wider row first, so it contains the ones after it.
    by_start.sort_unstable();
    let mut widest_end: Option<K> = None;
    let mut n = 0;
    for (_, Reverse(end)) in by_start {
        match widest_end {
            Some(w) if end <= w => n += 1,
            _ => widest_end = Some(end),
        }
    }
    n
}

/// An inclusive range of one family, as read from a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// IPv4 first and last address.
    V4(u32, u32),
    /// IPv6 first and last address.
    V6(u128, u128),
}

impl Range {
    /// A range from two endpoints; refuses mixed families and a start after its end.
    pub fn new(start: std::net::IpAddr, end: std::net::IpAddr) -> Result<Range, String> {
        use std::net::IpAddr::{V4, V6};
        let r = match (start, end) {
            (V4(s), V4(e)) => Range::V4(s.into(), e.into()),
            (V6(s), V6(e)) => Range::V6(s.into(), e.into()),
            _ => return Err("start and end are of different address families".into()),
        };
        let ordered = match r {
            Range::V4(s, e) => s <= e,
            Range::V6(s, e) => s <= e,
        };
        if !ordered {
            return Err(format!("start {start} is after end {end}"));
        }
        Ok(r)
    }

    /// The range a CIDR network covers.
    pub fn of_net(net: ipnet::IpNet) -> Range {
        match net {
            ipnet::IpNet::V4(n) => Range::V4(n.network().into(), n.broadcast().into()),
            ipnet::IpNet::V6(n) => Range::V6(n.network().into(), n.broadcast().into()),
        }
    }
}

/// Reads every file (format detected per file unless forced) into one [`CountryData`].
/// MaxMind CSV Locations files are read first, whatever their position, so blocks can be
/// joined to them.
pub fn read(files: &[impl AsRef<Path>], opts: &Options) -> Result<CountryData, DataError> {
    let inputs = files
        .iter()
        .map(|f| Input::open(f.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    read_inputs(inputs, opts)
}

/// [`read`] on inputs already in memory (tests, fuzzing).
pub fn read_inputs(inputs: Vec<Input>, opts: &Options) -> Result<CountryData, DataError> {
    let mut typed = Vec::with_capacity(inputs.len());
    for input in inputs {
        let format = match opts.format {
            Some(f) => f,
            None => detect::detect(&input)?,
        };
        typed.push((input, format));
    }
    let mut data = CountryData::default();
    let mut locations = maxmind_csv::Locations::default();
    let (locs, rest): (Vec<_>, Vec<_>) = typed
        .into_iter()
        .partition(|(i, f)| *f == Format::MaxmindCsv && maxmind_csv::is_locations(i));
    for (input, format) in locs {
        locations.read(&input)?;
        data.files.push((input.name, format));
    }
    for (input, format) in rest {
        match format {
            Format::DbIp => dbip::read(&input, opts.family, &mut data)?,
            Format::Ip2Location => ip2location::read(&input, opts.family, &mut data)?,
            Format::MaxmindCsv => maxmind_csv::read_blocks(&input, &locations, &mut data)?,
            Format::Mmdb => mmdb::read(&input, &mut data)?,
        }
        data.files.push((input.name, format));
    }
    data.finish(opts.skip_conflicts)?;
    Ok(data)
}

/// One input file, decompressed if it was gzip, held in memory: detection looks at both its
/// head (CSV header) and its tail (the MMDB metadata marker), and the largest download
/// (a full CSV, ~40 MB) is small next to what the import builds from it.
pub struct Input {
    /// The path as given, for messages.
    pub name: String,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Input {
    /// Reads `path`, gunzipping `.gz` content (by magic bytes, not by name).
    pub fn open(path: &Path) -> Result<Input, DataError> {
        let name = path.display().to_string();
        let io = |source| DataError::Io {
            file: name.clone(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(io)?;
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(raw.len() * 4);
            flate2::read::MultiGzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .map_err(io)?;
            out
        } else {
            raw
        };
        Ok(Input {
            name,
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// An input from memory (tests, fuzzing).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Input {
        Input {
            name: name.to_string(),
            path: PathBuf::from(name),
            bytes,
        }
    }

    /// The content, decompressed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content without a UTF-8 byte-order mark (spreadsheets add one).
    pub fn text(&self) -> &[u8] {
        self.bytes
            .strip_prefix(b"\xef\xbb\xbf")
            .unwrap_or(&self.bytes)
    }

    /// A CSV reader over [`Self::text`]: quotes, embedded commas and CRLF handled by the `csv`
    /// crate, fields trimmed, `#` comment lines skipped, rows of any length (each format
    /// checks its own field count).
    pub fn reader(&self) -> csv::Reader<&[u8]> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(self.text())
    }

    /// The family numbers in this file have: `--family` or the file name (`…ipv4…`,
    /// `…IPV6…`), whichever says it; refused when both say it and disagree.
    pub fn family(&self, flag: Option<Family>) -> Result<Option<Family>, DataError> {
        match (flag, self.family_from_name()) {
            (Some(f), Some(n)) if f != n => Err(DataError::File {
                file: self.name.clone(),
                reason: format!("--family says {f}, the file name says {n}"),
            }),
            (f, n) => Ok(f.or(n)),
        }
    }

    /// The family the file name states (`…ipv4…`, `…IPV6…`), if exactly one.
    pub fn family_from_name(&self) -> Option<Family> {
        let n = self
            .path
            .file_name()?
            .to_string_lossy()
            .to_ascii_lowercase();
        match (n.contains("ipv4"), n.contains("ipv6")) {
            (true, false) => Some(Family::V4),
            (false, true) => Some(Family::V6),
            _ => None,
        }
    }
}

/// Numbers the records of one CSV reader by line (1-based). The `csv` crate's own line count
/// is one short after a CRLF line end (the record seems to start on the `\n` before it), so
/// lines are counted here from the byte offsets, incrementally.
pub(crate) struct Lines<'a> {
    input: &'a Input,
    text: &'a [u8],
    /// Byte offset counted up to, and the line it is on.
    at: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    /// A counter over `input`'s text (the same bytes [`Input::reader`] reads).
    pub(crate) fn new(input: &'a Input) -> Lines<'a> {
        Lines {
            input,
            text: input.text(),
            at: 0,
            line: 1,
        }
    }

    /// The record with its line; a malformed record (the `csv` crate's own error: an unclosed
    /// quote, say) is refused with its line.
    pub(crate) fn record(
        &mut self,
        r: Result<csv::ByteRecord, csv::Error>,
    ) -> Result<(u64, csv::ByteRecord), DataError> {
        match r {
            Ok(rec) => {
                let byte = rec.position().map(|p| p.byte() as usize).unwrap_or(0);
                Ok((self.line_at(byte), rec))
            }
            Err(e) => {
                let byte = e.position().map(|p| p.byte() as usize).unwrap_or(0);
                Err(DataError::Line {
                    file: self.input.name.clone(),
                    line: self.line_at(byte),
                    reason: format!("not valid CSV: {e}"),
                })
            }
        }
    }

    fn line_at(&mut self, byte: usize) -> u64 {
        let mut byte = byte.min(self.text.len());
        // Skip the line end the record was reported to start on, and the comment lines the
        // reader skipped before it.
        loop {
            match self.text.get(byte) {
                Some(b'\r' | b'\n') => byte += 1,
                Some(b'#') if byte == 0 || self.text[byte - 1] == b'\n' => {
                    match self.text[byte..].iter().position(|&b| b == b'\n') {
                        Some(n) => byte += n + 1,
                        None => break,
                    }
                }
                _ => break,
            }
        }
        if byte >= self.at {
            let newlines = self.text[self.at..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line += newlines as u64;
            self.at = byte;
        }
        self.line
    }
}

/// Reads every CSV row of `input` through `row` (a header line first is skipped); the first
/// refused line stops it with its line number.
pub(crate) fn read_rows(
    input: &Input,
    data: &mut CountryData,
    row: impl Fn(&csv::ByteRecord) -> Result<(Range, CountryCell), String>,
) -> Result<(), DataError> {
    let mut rdr = input.reader();
    let mut lines = Lines::new(input);
    for (i, r) in rdr.byte_records().enumerate() {
        let (line, rec) = lines.record(r)?;
        if i == 0 && detect::is_header(&rec) {
            continue;
        }
        let (range, cell) = row(&rec).map_err(at(input, line))?;
        data.add_at(range, cell, line);
    }
    Ok(())
}

/// A field as text; a field that is not UTF-8 is refused (codes and addresses are ASCII).
pub(crate) fn field(rec: &csv::ByteRecord, i: usize) -> Result<&str, String> {
    let raw = rec.get(i).unwrap_or_default();
    std::str::from_utf8(raw).map_err(|_| format!("field {} is not valid UTF-8", i + 1))
}

/// Wraps a per-line reason into a [`DataError::Line`].
pub(crate) fn at(input: &Input, line: u64) -> impl Fn(String) -> DataError + '_ {
    move |reason| DataError::Line {
        file: input.name.clone(),
        line,
        reason,
    }
}

/// Writes `files` (name, content) into a fresh temporary directory and reads them with
/// [`read`]; for the format modules' tests.
#[cfg(test)]
pub(crate) fn read_files(
    files: &[(&str, &[u8])],
    opts: &Options,
) -> Result<CountryData, DataError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sg-countrydata-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(n, b)| {
            let p = dir.join(n);
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect();
    let r = read(&paths, opts);
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

/// [`read_files`] for one file, format detected, `family` as `--family`.
#[cfg(test)]
pub(crate) fn read_one(
    name: &str,
    body: &str,
    family: Option<Family>,
) -> Result<CountryData, DataError> {
    read_files(
        &[(name, body.as_bytes())],
        &Options {
            skip_conflicts: false,
            format: None,
            family,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCell {
        code::cell(s).unwrap()
    }

    #[test]
    fn mapped_space_lands_in_ipv4_and_straddling_rows_are_split() {
        let mut d = CountryData::default();
        d.add(
            Range::V6(MAPPED_FIRST + 0x0100_0000, MAPPED_FIRST + 0x0100_00ff),
            cc("AU"),
        );
        d.add(Range::V6(MAPPED_FIRST - 10, MAPPED_FIRST + 5), cc("US"));
        d.add(Range::V6(0x2001 << 112, (0x2001 << 112) + 1), cc("JP"));
        assert_eq!(
            d.v4,
            vec![
                (0x0100_0000, 0x0100_00ff, CountryCode(*b"AU")),
                (0, 5, CountryCode(*b"US"))
            ]
        );
        assert_eq!(d.v6.len(), 2);
        assert_eq!(
            d.v6[0],
            (MAPPED_FIRST - 10, MAPPED_FIRST - 1, CountryCode(*b"US"))
        );
        assert_eq!(d.mapped, 2);
    }

    #[test]
    fn both_ip2location_editions_store_ipv4_once_and_conflicts_are_refused() {
        let mapped = |n: u32| (0xffffu128 << 32) + u128::from(n);
        let v4 = "\"16777216\",\"16777471\",\"AU\",\"Australia\"\n";
        let v6 = format!(
            "\"0\",\"281470681743359\",\"-\",\"-\"\n\"{}\",\"{}\",\"AU\",\"Australia\"\n",
            mapped(16777216),
            mapped(16777471)
        );
        let d = read_files(
            &[("DB1.CSV", v4.as_bytes()), ("DB1.IPV6.CSV", v6.as_bytes())],
            &Options::default(),
        )
        .unwrap();
        assert_eq!(d.v4.len(), 1);
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.mapped, 0, "the mapped copy was the one dropped");
        assert_eq!(d.nested(), (0, 0));
        let other = v6.replace("\"AU\",\"Australia\"", "\"NZ\",\"New Zealand\"");
        let e = read_files(
            &[
                ("DB1.CSV", v4.as_bytes()),
                ("DB1.IPV6.CSV", other.as_bytes()),
            ],
            &Options::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("DB1.IPV6.CSV:2: the range 1.0.0.0 - 1.0.0.255 is NZ here and AU at "),
            "{e}"
        );
        assert!(
            e.contains("DB1.CSV:1: which one is meant cannot be told"),
            "{e}"
        );
    }

    #[test]
    fn conflicts_are_refused_or_left_out_whole_on_request() {
        let csv = "1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.0.0.255,DE\n2.0.0.0,2.0.0.255,US\n\
                   3.0.0.0,3.0.0.255,FR\n2.0.0.0,2.0.0.255,DE\n";
        let e = read_one("ipv4.csv", csv, None).unwrap_err().to_string();
        assert!(
            e.contains("ipv4.csv:3: the range 2.0.0.0 - 2.0.0.255 is US here and DE at ")
                && e.contains("ipv4.csv:2: which one is meant"),
            "{e}"
        );
        assert!(e.contains("--skip-conflicts"), "{e}");
        let opts = Options {
            skip_conflicts: true,
            ..Options::default()
        };
        let d = read_files(&[("ipv4.csv", csv.as_bytes())], &opts).unwrap();
        // Every copy of the disputed range is left out, the repeat included; the rest is kept.
        let kept: Vec<(u32, u32, String)> =
            d.v4.iter()
                .map(|&(s, e, c)| (s, e, c.to_string()))
                .collect();
        assert_eq!(
            kept,
            [
                (0x0100_0000, 0x0100_00ff, "AU".into()),
                (0x0300_0000, 0x0300_00ff, "FR".into())
            ]
        );
        assert_eq!(d.duplicates, 0);
        assert_eq!(d.conflicts.len(), 1);
        assert!(
            d.conflicts[0].starts_with("2.0.0.0 - 2.0.0.255: DE at "),
            "{:?}",
            d.conflicts
        );
        assert!(
            d.conflicts[0].contains("ipv4.csv:2, US at "),
            "{:?}",
            d.conflicts
        );
        assert!(d.conflicts[0].ends_with("ipv4.csv:5"), "{:?}", d.conflicts);
        // Without conflicts the option changes nothing.
        let clean = "1.0.0.0,1.0.0.255,AU\n1.0.0.0,1.0.0.255,AU\n";
        let d = read_files(&[("ipv4.csv", clean.as_bytes())], &opts).unwrap();
        assert_eq!((d.v4.len(), d.duplicates, d.conflicts.len()), (1, 1, 0));
    }

    #[test]
    fn nested_rows_are_counted() {
        let mut d = CountryData::default();
        for (s, e) in [(0, 255), (10, 20), (10, 255), (300, 400), (350, 450)] {
            d.add(Range::V4(s, e), cc("US"));
        }
        assert_eq!(d.nested(), (2, 0));
    }

    #[test]
    fn placeholders_are_counted_not_stored() {
        let mut d = CountryData::default();
        for p in ["ZZ", "-", "--", "", "A1", "zz"] {
            d.add(Range::V4(1, 2), cc(p));
        }
        assert!(d.v4.is_empty());
        assert_eq!(d.skipped_total(), 6);
        assert_eq!(d.skipped.get("ZZ"), Some(&2));
        assert_eq!(d.skipped.get("(empty)"), Some(&1));
    }

    #[test]
    fn family_comes_from_the_name_only_when_it_says_one() {
        let f = |n: &str| Input::from_bytes(n, vec![]).family_from_name();
        assert_eq!(f("geolite2-country-ipv4-num.csv"), Some(Family::V4));
        assert_eq!(f("IP2LOCATION-LITE-DB1.IPV6.CSV"), Some(Family::V6));
        assert_eq!(f("country.csv"), None);
        assert_eq!(f("ipv4-and-ipv6.csv"), None);
    }
}
