//! The country file's layout: the lookup arrays exactly as a worker searches them, so a worker
//! maps the file and searches it in place, with no copy and no parsing.
//!
//! ```text
//! 0   magic "SGNF", version u32, total length u64, CRC-32 of bytes 64.. u32,
//!     section count u32, countries generation u64 (u64::MAX: none), key u32, zeros to 64
//! 64  section table: per section kind u32, element size u32, offset u64, element count u64
//! ..  sections, each at a 64-byte boundary (a cache line: a node never straddles two)
//! ```
//! Little-endian throughout (x86-64 and arm64 alike). A file that fails any check (magic,
//! version, length, checksum, section bounds, alignment, the arrays' own invariants) is
//! refused with the reason and never half-used.

use std::sync::Arc;

use super::mapping::FileMap;
use crate::frozen::{Frozen, Plain};
use crate::ranges::{CountryRanges, RangeKey, Segments};

const MAGIC: &[u8; 4] = b"SGNF";
const VERSION: u32 = 1;
const HEADER: usize = 64;
const ENTRY: usize = 24;
const ALIGN: usize = 64;

const CODES: u32 = 1;
/// Family base (0x400 IPv4, 0x600 IPv6) plus: starts, values, /16 index, upper level i.
const STARTS: u32 = 0;
const VALUES: u32 = 1;
const INDEX: u32 = 2;
const UPPER: u32 = 0x10;
const V4: u32 = 0x400;
const V6: u32 = 0x600;

/// What the file says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `sipguard_generation.countries` the data was read at, if any.
    pub generation: Option<u64>,
    /// Checksum of the tables' fingerprint the data was read at.
    pub key: u32,
}

struct Section<'a> {
    kind: u32,
    elem: u32,
    count: u64,
    bytes: &'a [u8],
}

fn family<'a, K: Plain + RangeKey>(base: u32, s: &'a Segments<K, u16>, out: &mut Vec<Section<'a>>) {
    let p = s.parts();
    let (starts, upper, values, index) = (p.starts, p.upper, p.values, p.index);
    let mut push = |kind: u32, elem: usize, count: usize, bytes: &'a [u8]| {
        out.push(Section {
            kind: base + kind,
            elem: elem as u32,
            count: count as u64,
            bytes,
        })
    };
    push(STARTS, size_of::<K>(), starts.len(), starts.as_bytes());
    push(VALUES, 2, values.len(), values.as_bytes());
    push(INDEX, 4, index.len(), index.as_bytes());
    for (i, level) in upper.iter().enumerate() {
        push(
            UPPER + i as u32,
            size_of::<K>(),
            level.len(),
            level.as_bytes(),
        );
    }
}

/// The file's bytes for `ranges`, read at `header`.
pub fn encode(ranges: &CountryRanges, header: Header) -> Vec<u8> {
    let (v4, v6, codes) = ranges.parts();
    let mut code_bytes = Vec::new();
    for c in codes {
        code_bytes.push(c.len() as u8);
        code_bytes.extend_from_slice(c.as_bytes());
    }
    let mut sections = vec![Section {
        kind: CODES,
        elem: 1,
        count: code_bytes.len() as u64,
        bytes: &code_bytes,
    }];
    family(V4, v4, &mut sections);
    family(V6, v6, &mut sections);
    let mut out = vec![0u8; HEADER + ENTRY * sections.len()];
    for (i, s) in sections.iter().enumerate() {
        out.resize(out.len().next_multiple_of(ALIGN), 0);
        let e = HEADER + ENTRY * i;
        out[e..e + 4].copy_from_slice(&s.kind.to_le_bytes());
        out[e + 4..e + 8].copy_from_slice(&s.elem.to_le_bytes());
        let offset = out.len() as u64;
        out[e + 8..e + 16].copy_from_slice(&offset.to_le_bytes());
        out[e + 16..e + 24].copy_from_slice(&s.count.to_le_bytes());
        out.extend_from_slice(s.bytes);
    }
    let total = out.len() as u64;
    out[0..4].copy_from_slice(MAGIC);
    out[4..8].copy_from_slice(&VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&total.to_le_bytes());
    out[20..24].copy_from_slice(&(sections.len() as u32).to_le_bytes());
    out[24..32].copy_from_slice(&header.generation.unwrap_or(u64::MAX).to_le_bytes());
    out[32..36].copy_from_slice(&header.key.to_le_bytes());
    let crc = crc32fast::hash(&out[HEADER..]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks the header and the checksum of a mapped file; returns the header.
pub fn check(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err("not a sipguard country file".into());
    }
    let version = u32_at(bytes, 4);
    if version != VERSION {
        return Err(format!(
            "format version {version}, this module reads {VERSION}"
        ));
    }
    let total = u64_at(bytes, 8);
    if total != bytes.len() as u64 {
        return Err(format!(
            "truncated or padded: {} bytes where the header says {total}",
            bytes.len()
        ));
    }
    if crc32fast::hash(&bytes[HEADER..]) != u32_at(bytes, 16) {
        return Err("checksum mismatch".into());
    }
    let generation = u64_at(bytes, 24);
    Ok(Header {
        generation: (generation != u64::MAX).then_some(generation),
        key: u32_at(bytes, 32),
    })
}

/// The section table of a mapped file, checked entry by entry as it is used.
struct Sections<'a> {
    map: &'a Arc<FileMap>,
    /// (kind, element size, offset, element count) per section.
    entries: Vec<(u32, u32, usize, usize)>,
}

impl Sections<'_> {
    /// Offset, element count and element size of section `kind`, inside the file.
    fn get(&self, kind: u32) -> Result<(usize, usize, u32), String> {
        let (_, elem, offset, count) = self
            .entries
            .iter()
            .find(|e| e.0 == kind)
            .copied()
            .ok_or(format!("section {kind:#x} missing"))?;
        let end = count
            .checked_mul(elem as usize)
            .and_then(|l| l.checked_add(offset))
            .ok_or(format!("section {kind:#x}: size overflows"))?;
        if end > self.map.bytes().len() || offset < HEADER {
            return Err(format!("section {kind:#x} lies outside the file"));
        }
        Ok((offset, count, elem))
    }

    /// Section `kind` as an array of `T`, read in place.
    fn array<T: Plain>(&self, kind: u32) -> Result<Frozen<T>, String> {
        let (offset, count, elem) = self.get(kind)?;
        if elem as usize != size_of::<T>() {
            return Err(format!(
                "section {kind:#x}: {elem}-byte elements, {} expected",
                size_of::<T>()
            ));
        }
        Frozen::shared(self.map.clone(), offset, count)
    }

    /// One family's tables (sections `base + …`), checked.
    fn segments<K: Plain + RangeKey>(&self, base: u32) -> Result<Segments<K, u16>, String> {
        let upper = (0..)
            .take_while(|i| self.entries.iter().any(|e| e.0 == base + UPPER + i))
            .map(|i| self.array(base + UPPER + i))
            .collect::<Result<_, _>>()?;
        Segments::from_parts(
            self.array(base + STARTS)?,
            upper,
            self.array(base + VALUES)?,
            self.array(base + INDEX)?,
        )
    }

    /// The country codes, in value order.
    fn codes(&self) -> Result<Vec<String>, String> {
        let (off, len, _) = self.get(CODES)?;
        let mut c = &self.map.bytes()[off..off + len];
        let mut codes = Vec::new();
        while let Some((&l, rest)) = c.split_first() {
            let (code, rest) = rest
                .split_at_checked(l as usize)
                .ok_or("country codes section truncated")?;
            codes.push(
                std::str::from_utf8(code)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            );
            c = rest;
        }
        Ok(codes)
    }
}

/// The tables of a mapped file, searched in place. Errors name what check failed.
pub fn decode(map: &Arc<FileMap>) -> Result<(CountryRanges, Header), String> {
    let bytes = map.bytes();
    let header = check(bytes)?;
    let n = u32_at(bytes, 20) as usize;
    if HEADER + n * ENTRY > bytes.len() {
        return Err(format!("{n} sections do not fit in the file"));
    }
    let entries = (0..n)
        .map(|i| {
            let e = HEADER + ENTRY * i;
            (
                u32_at(bytes, e),
                u32_at(bytes, e + 4),
                u64_at(bytes, e + 8) as usize,
                u64_at(bytes, e + 16) as usize,
            )
        })
        .collect();
    let s = Sections { map, entries };
    let v4 = s.segments(V4).map_err(|e| format!("IPv4 tables: {e}"))?;
    let v6 = s.segments(V6).map_err(|e| format!("IPv6 tables: {e}"))?;
    let ranges = CountryRanges::from_parts(v4, v6, &s.codes()?)?;
    Ok((ranges, header))
}
