//! IP → country from inclusive `start..=end` ranges, as db-ip style data ships them.
//!
//! About 2% of real rows are nested inside wider ones. A point lookup must answer the
//! narrowest range that contains the address (what MMDB readers answer), so the table is
//! flattened once at build time into disjoint segments, each labelled with the narrowest
//! covering range; a lookup is then one binary search.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::frozen::Frozen;

/// Keys the table can hold: `u32` for IPv4 and `u128` for IPv6 keep IPv4 at a quarter of the size.
pub trait RangeKey: Copy + Ord + std::fmt::Debug {
    /// The lowest key.
    const MIN: Self;
    /// `self + 1`, or `None` past the top of the space.
    fn succ(self) -> Option<Self>;
    /// `self - 1`, or `None` below zero.
    fn pred(self) -> Option<Self>;
    /// Width as u128 (saturating for the full IPv6 space), used to order ranges narrowest first.
    fn width(start: Self, end: Self) -> u128;
    /// The key's /16 bucket, for keys dense enough to index directly (IPv4), else `None`.
    fn bucket(self) -> Option<usize>;
}

impl RangeKey for u32 {
    const MIN: Self = 0;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn width(start: Self, end: Self) -> u128 {
        (end - start) as u128
    }
    fn bucket(self) -> Option<usize> {
        Some((self >> 16) as usize)
    }
}

impl RangeKey for u128 {
    const MIN: Self = 0;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn width(start: Self, end: Self) -> u128 {
        end - start
    }
    fn bucket(self) -> Option<usize> {
        None
    }
}

/// What a segment carries: a small index (country code, list entry) with a reserved "none".
pub trait SegmentValue: Copy + Eq + std::fmt::Debug {
    /// Marks the gaps between ranges, so segments tile the space and need no end key.
    const NONE: Self;
}

impl SegmentValue for u16 {
    const NONE: Self = u16::MAX;
}

impl SegmentValue for u32 {
    const NONE: Self = u32::MAX;
}

/// Keys per node of the search tree: 16 IPv4 starts fill one cache line.
const FANOUT: usize = 16;

/// Disjoint, sorted segments of one address family, tiling it from the first start on (gaps
/// are segments valued `NONE`, so no end key is needed: the next start ends a segment).
///
/// A lookup on a fresh source is bound by memory latency, not instructions: measured in a
/// Kamailio worker, a binary search over the 330k IPv4 / 216k IPv6 starts cost ~3.5 µs per
/// fresh source, one cache miss per probe. The starts are therefore searched as a static
/// B-tree: `starts` holds every start, `upper[0]` every 16th start, `upper[i + 1]` every 16th
/// key of `upper[i]`. A
/// lookup reads one node of 16 keys per level; the upper levels are small and stay cached, so
/// a fresh source costs about two node reads and one value.
///
/// IPv4 does better still with a direct index on the /16 (256 KB): one read finds the few
/// starts of that /16 (none for three /16s in four), the value is fetched alongside, and no
/// upper level is built.
#[derive(Debug, Clone, Default)]
pub struct Segments<K: Copy, V: Copy = u16> {
    /// Every segment's start, inline in the struct: one pointer less to chase per lookup.
    starts: Frozen<K>,
    upper: Vec<Frozen<K>>,
    values: Frozen<V>,
    /// IPv4 only: `index[b]` is the number of starts below /16 bucket `b` (65,537 entries).
    index: Frozen<u32>,
}

/// A [`Segments`]' arrays as searched: what a node file stores.
pub struct SegmentParts<'a, K: Copy, V: Copy> {
    /// Every segment's start.
    pub starts: &'a Frozen<K>,
    /// Search levels above `starts`, lowest first (empty with an index).
    pub upper: &'a [Frozen<K>],
    /// Each segment's value.
    pub values: &'a Frozen<V>,
    /// IPv4: starts below each /16 bucket (65,537 entries); empty for IPv6.
    pub index: &'a Frozen<u32>,
}

/// Where `k` falls in a sorted node: the number of keys `<= k`. Branch-free, so the compiler
/// can vectorise it, and a node is at most a few cache lines.
#[inline]
fn rank<K: Ord + Copy>(node: &[K], k: K) -> usize {
    node.iter().map(|&s| usize::from(s <= k)).sum()
}

/// Asks the CPU to start loading `p`'s cache line now; the answer is needed one level later.
#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl<K: RangeKey, V: SegmentValue> Segments<K, V> {
    /// Flattens possibly overlapping ranges; where they overlap, the narrowest wins
    /// (ties: the one given first). Ranges with `start > end`, or valued `NONE`, are ignored.
    pub fn build(ranges: impl IntoIterator<Item = (K, K, V)>) -> Self {
        Self::build_ranked(ranges.into_iter().map(|(s, e, v)| (s, e, v, 0)))
    }

    /// Like [`Self::build`], but where ranges overlap a lower `rank` wins before width does
    /// (an allow-list entry beats a more specific block-list entry).
    pub fn build_ranked(ranges: impl IntoIterator<Item = (K, K, V, u8)>) -> Self {
        let mut rs: Vec<(K, K, V, usize, u8)> = ranges
            .into_iter()
            .enumerate()
            .filter(|(_, (s, e, v, _))| s <= e && *v != V::NONE)
            .map(|(i, (s, e, v, rank))| (s, e, v, i, rank))
            .collect();
        rs.sort_by_key(|&(s, e, _, i, rank)| (rank, K::width(s, e), i));

        // Paint narrowest first; a wider range only fills the gaps left inside it.
        let mut painted: BTreeMap<K, (K, V)> = BTreeMap::new();
        let mut gaps = Vec::new();
        for (s, e, value, _, _) in rs {
            gaps.clear();
            let mut cursor = Some(s);
            let first = painted.range(..=s).next_back().map(|(&ps, &pe)| (ps, pe));
            let overlapping = first
                .into_iter()
                .chain(painted.range(s..=e).map(|(&ps, &pe)| (ps, pe)));
            for (ps, (pe, _)) in overlapping {
                let Some(c) = cursor else { break };
                if pe < c {
                    continue;
                }
                if ps > c {
                    gaps.push((c, ps.pred().expect("ps > c >= 0")));
                }
                cursor = if pe >= e { None } else { pe.succ() };
            }
            if let Some(c) = cursor {
                gaps.push((c, e));
            }
            for &(gs, ge) in &gaps {
                painted.insert(gs, (ge, value));
            }
        }

        let mut out = Flat {
            starts: Vec::with_capacity(painted.len() + 1),
            values: Vec::with_capacity(painted.len() + 1),
        };
        // Where the last segment pushed ends (None: at the top of the space).
        let mut next: Option<K> = Some(K::MIN);
        let push = |out: &mut Flat<K, V>, s: K, v: V| {
            // Merge touching segments of the same value: fewer entries, same answers.
            if out.values.last() != Some(&v) {
                out.starts.push(s);
                out.values.push(v);
            }
        };
        for (s, (e, value)) in painted {
            if let Some(n) = next {
                if n < s && !out.starts.is_empty() {
                    push(&mut out, n, V::NONE);
                }
            }
            push(&mut out, s, value);
            next = e.succ();
        }
        if let (Some(n), false) = (next, out.starts.is_empty()) {
            push(&mut out, n, V::NONE);
        }
        out.starts.shrink_to_fit();
        out.values.shrink_to_fit();
        let index = match out.starts.first().and_then(|s| s.bucket()) {
            Some(_) => {
                let mut index = Vec::with_capacity(65_537);
                let mut i = 0usize;
                for b in 0..=65_536usize {
                    while out
                        .starts
                        .get(i)
                        .and_then(|s| s.bucket())
                        .is_some_and(|sb| sb < b)
                    {
                        i += 1;
                    }
                    index.push(i as u32);
                }
                index
            }
            None => Vec::new(),
        };
        let mut levels = vec![out.starts];
        while index.is_empty() && levels.last().is_some_and(|l| l.len() > FANOUT) {
            let upper = levels
                .last()
                .expect("non-empty")
                .iter()
                .step_by(FANOUT)
                .copied()
                .collect();
            levels.push(upper);
        }
        let mut levels = levels.into_iter().map(Frozen::new);
        Segments {
            starts: levels.next().expect("level 0"),
            upper: levels.collect(),
            values: Frozen::new(out.values),
            index: Frozen::new(index),
        }
    }

    /// Every segment as (first key, value), in key order; a segment runs to the next one's
    /// start (the last one to the top of the space), and `V::NONE` marks a gap.
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.starts.iter().copied().zip(self.values.iter().copied())
    }

    /// The value of the segment containing `k`.
    pub fn lookup(&self, k: K) -> Option<V> {
        if let (Some(b), false) = (k.bucket(), self.index.is_empty()) {
            return self.lookup_indexed(b, k);
        }
        let top = self.upper.last().unwrap_or(&self.starts);
        // Index of the last key <= k in the current level.
        let mut pos = rank(top, k).checked_sub(1)?;
        let lower = self.upper.iter().rev().skip(1).chain(
            // Level 0, unless it was the top itself.
            (!self.upper.is_empty()).then_some(&self.starts),
        );
        for level in lower {
            let lo = pos * FANOUT;
            if std::ptr::eq(level, &self.starts) {
                prefetch(self.values.as_ptr().wrapping_add(lo));
            }
            let node = &level[lo..(lo + FANOUT).min(level.len())];
            // node[0] is the key found one level up, so it is <= k and the rank is >= 1.
            pos = lo + rank(node, k) - 1;
        }
        let v = self.values[pos];
        (v != V::NONE).then_some(v)
    }

    /// IPv4: the starts of `k`'s /16; the segment holding `k` starts there or is the one
    /// before them.
    fn lookup_indexed(&self, b: usize, k: K) -> Option<V> {
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        prefetch(self.values.as_ptr().wrapping_add(lo));
        let starts = &self.starts[lo..hi];
        let r = if starts.len() <= 2 * FANOUT {
            rank(starts, k)
        } else {
            starts.partition_point(|&s| s <= k)
        };
        let v = self.values[(lo + r).checked_sub(1)?];
        (v != V::NONE).then_some(v)
    }

    /// The arrays as searched, for a node file.
    pub fn parts(&self) -> SegmentParts<'_, K, V> {
        SegmentParts {
            starts: &self.starts,
            upper: &self.upper,
            values: &self.values,
            index: &self.index,
        }
    }

    /// Segments from arrays read back (a node file), after checking every invariant a lookup
    /// relies on, so a damaged file is refused instead of answering wrong: starts strictly
    /// increasing, one value per start, each upper level every 16th key of the one below
    /// (while it has more than 16), the /16 index counting the starts below each bucket.
    pub fn from_parts(
        starts: Frozen<K>,
        upper: Vec<Frozen<K>>,
        values: Frozen<V>,
        index: Frozen<u32>,
    ) -> Result<Self, String> {
        if values.len() != starts.len() {
            return Err(format!(
                "{} values for {} starts",
                values.len(),
                starts.len()
            ));
        }
        if let Some(i) = starts.windows(2).position(|w| w[0] >= w[1]) {
            return Err(format!("starts not increasing at {i}"));
        }
        if index.is_empty() {
            let mut below: &[K] = &starts;
            for (i, level) in upper.iter().enumerate() {
                if below.len() <= FANOUT
                    || !level
                        .iter()
                        .copied()
                        .eq(below.iter().step_by(FANOUT).copied())
                {
                    return Err(format!("search level {i} does not match the level below"));
                }
                below = level;
            }
            if below.len() > FANOUT {
                return Err("search levels missing".into());
            }
        } else {
            if !upper.is_empty() || index.len() != 65_537 {
                return Err("the /16 index has the wrong shape".into());
            }
            for (b, w) in index.windows(2).enumerate() {
                let (lo, hi) = (w[0] as usize, w[1] as usize);
                let fits = lo <= hi
                    && hi <= starts.len()
                    && starts[lo..hi].iter().all(|s| s.bucket() == Some(b));
                if !fits {
                    return Err(format!("the /16 index is wrong at bucket {b}"));
                }
            }
            if index[0] != 0 || index[65_536] as usize != starts.len() {
                return Err("the /16 index does not cover every start".into());
            }
        }
        Ok(Segments {
            starts,
            upper,
            values,
            index,
        })
    }

    /// Number of segments after flattening (gaps included).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there is no data for this family.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Segments as built, before the search levels are added.
struct Flat<K, V> {
    starts: Vec<K>,
    values: Vec<V>,
}

/// Country codes as `&'static str`, interned once per process: there are a few hundred, and
/// a static answer costs a request no allocation however often the data is reloaded.
fn intern(code: &str) -> &'static str {
    static CODES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut codes = CODES.lock().unwrap_or_else(|p| p.into_inner());
    match codes.get(code) {
        Some(c) => c,
        None => {
            let c: &'static str = Box::leak(code.to_string().into_boxed_str());
            codes.insert(c);
            c
        }
    }
}

/// Country table for both families, with codes interned (segments store a `u16`).
#[derive(Debug, Clone, Default)]
pub struct CountryRanges {
    v4: Segments<u32, u16>,
    v6: Segments<u128, u16>,
    codes: Vec<&'static str>,
}

/// Collects rows before flattening; interns country codes upper-cased.
#[derive(Debug, Default)]
pub struct CountryRangesBuilder {
    v4: Vec<(u32, u32, u16)>,
    v6: Vec<(u128, u128, u16)>,
    codes: Vec<&'static str>,
    index: std::collections::HashMap<&'static str, u16>,
}

impl CountryRangesBuilder {
    fn intern(&mut self, code: &str) -> u16 {
        let code = code.trim().to_ascii_uppercase();
        if let Some(&i) = self.index.get(code.as_str()) {
            return i;
        }
        let code = intern(&code);
        let i = self.codes.len() as u16;
        self.codes.push(code);
        self.index.insert(code, i);
        i
    }

    /// Adds an IPv4 range (inclusive, numeric as in the post's `ipfrom`/`ipto`).
    pub fn add_v4(&mut self, start: u32, end: u32, code: &str) {
        let c = self.intern(code);
        self.v4.push((start, end, c));
    }

    /// Adds an IPv6 range (inclusive).
    pub fn add_v6(&mut self, start: u128, end: u128, code: &str) {
        let c = self.intern(code);
        self.v6.push((start, end, c));
    }

    /// The rows as bytes, for the local snapshot: codes, then IPv4 and IPv6 rows, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.v4.len() * 10 + self.v6.len() * 34);
        out.extend_from_slice(&(self.codes.len() as u32).to_le_bytes());
        for c in &self.codes {
            out.push(c.len() as u8);
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(&(self.v4.len() as u64).to_le_bytes());
        for (s, e, c) in &self.v4 {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&(self.v6.len() as u64).to_le_bytes());
        for (s, e, c) in &self.v6 {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    /// Reads [`Self::encode`]'s bytes back; any inconsistency is an error, never a partial table.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        struct Cursor<'a>(&'a [u8]);
        impl Cursor<'_> {
            fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
                let (head, rest) = self.0.split_at_checked(N).ok_or("unexpected end of data")?;
                self.0 = rest;
                Ok(head.try_into().expect("N bytes"))
            }
            fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
                let (head, rest) = self.0.split_at_checked(n).ok_or("unexpected end of data")?;
                self.0 = rest;
                Ok(head)
            }
        }
        let mut c = Cursor(bytes);
        let mut b = CountryRangesBuilder::default();
        let ncodes = u32::from_le_bytes(c.take()?) as usize;
        let mut codes = Vec::with_capacity(ncodes.min(4096));
        for _ in 0..ncodes {
            let len = c.take::<1>()?[0] as usize;
            let code = std::str::from_utf8(c.bytes(len)?)
                .map_err(|e| e.to_string())?
                .to_string();
            codes.push(code);
        }
        let code = |i: u16| {
            codes
                .get(i as usize)
                .cloned()
                .ok_or(format!("code index {i} out of range"))
        };
        let n4 = u64::from_le_bytes(c.take()?);
        for _ in 0..n4 {
            let (s, e, i) = (
                u32::from_le_bytes(c.take()?),
                u32::from_le_bytes(c.take()?),
                u16::from_le_bytes(c.take()?),
            );
            b.add_v4(s, e, &code(i)?);
        }
        let n6 = u64::from_le_bytes(c.take()?);
        for _ in 0..n6 {
            let (s, e, i) = (
                u128::from_le_bytes(c.take()?),
                u128::from_le_bytes(c.take()?),
                u16::from_le_bytes(c.take()?),
            );
            b.add_v6(s, e, &code(i)?);
        }
        if !c.0.is_empty() {
            return Err(format!("{} bytes after the last row", c.0.len()));
        }
        Ok(b)
    }

    /// Rows collected so far (IPv4 + IPv6).
    pub fn rows(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Flattens both families.
    pub fn build(self) -> CountryRanges {
        CountryRanges {
            v4: Segments::build(self.v4),
            v6: Segments::build(self.v6),
            codes: self.codes,
        }
    }
}

impl CountryRanges {
    /// The ISO code of the narrowest range containing `ip`, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<&'static str> {
        let idx = match ip {
            IpAddr::V4(v4) => self.v4.lookup(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.lookup(u128::from(v6)),
        }?;
        self.codes.get(idx as usize).copied()
    }

    /// IPv4 segments as (first address, country), in order; `None` is a gap. Each runs to the
    /// next one's start. For comparing two loads (`import-countries --dry-run`).
    pub fn v4_segments(&self) -> impl Iterator<Item = (u32, Option<&'static str>)> + '_ {
        self.v4.iter().map(|(s, v)| (s, self.code(v)))
    }

    /// IPv6 segments, as [`Self::v4_segments`].
    pub fn v6_segments(&self) -> impl Iterator<Item = (u128, Option<&'static str>)> + '_ {
        self.v6.iter().map(|(s, v)| (s, self.code(v)))
    }

    fn code(&self, v: u16) -> Option<&'static str> {
        (v != u16::NONE)
            .then(|| self.codes.get(v as usize).copied())
            .flatten()
    }

    /// The tables and the code list (a segment's value indexes it), for a node file.
    pub fn parts(&self) -> (&Segments<u32, u16>, &Segments<u128, u16>, &[&'static str]) {
        (&self.v4, &self.v6, &self.codes)
    }

    /// Tables read back from a node file, with their codes (interned here). Errors: a code
    /// that is empty, longer than 8 bytes or not printable ASCII (what no load produces), a
    /// segment value with no code.
    pub fn from_parts(
        v4: Segments<u32, u16>,
        v6: Segments<u128, u16>,
        codes: &[String],
    ) -> Result<Self, String> {
        let plausible =
            |c: &String| (1..=8).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_graphic());
        if let Some(c) = codes.iter().find(|c| !plausible(c)) {
            return Err(format!("{c:?} is not a country code"));
        }
        let n = codes.len();
        let valid = |v: u16| v == u16::NONE || (v as usize) < n;
        if !v4.values.iter().all(|&v| valid(v)) || !v6.values.iter().all(|&v| valid(v)) {
            return Err(format!("a segment names a country beyond the {n} listed"));
        }
        Ok(CountryRanges {
            v4,
            v6,
            codes: codes.iter().map(|c| intern(c)).collect(),
        })
    }

    /// Segments held (IPv4, IPv6), for logs and stats.
    pub fn sizes(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    fn table(rows: &[(&str, &str, &str)]) -> CountryRanges {
        let mut b = CountryRangesBuilder::default();
        for (s, e, c) in rows {
            match (s.parse::<IpAddr>().unwrap(), e.parse::<IpAddr>().unwrap()) {
                (IpAddr::V4(s), IpAddr::V4(e)) => b.add_v4(s.into(), e.into(), c),
                (IpAddr::V6(s), IpAddr::V6(e)) => b.add_v6(s.into(), e.into(), c),
                _ => panic!("mixed row"),
            }
        }
        b.build()
    }

    fn cc(t: &CountryRanges, ip: &str) -> Option<&'static str> {
        t.lookup(ip.parse().unwrap())
    }

    #[test]
    fn disjoint_ranges_and_gaps() {
        let t = table(&[
            ("1.0.0.0", "1.0.0.255", "AU"),
            ("1.0.1.0", "1.0.3.255", "cn"),
        ]);
        assert_eq!(cc(&t, "1.0.0.0"), Some("AU"));
        assert_eq!(cc(&t, "1.0.0.255"), Some("AU"));
        assert_eq!(cc(&t, "1.0.2.9"), Some("CN"));
        assert_eq!(cc(&t, "1.0.4.0"), None);
        assert_eq!(cc(&t, "0.255.255.255"), None);
    }

    #[test]
    fn nested_ranges_answer_the_narrowest() {
        // An outer US block with two nested assignments; addresses past the nested ones
        // must still be US (a naive "largest start <= x" lookup answers unknown there).
        let t = table(&[
            ("10.0.0.0", "10.255.255.255", "US"),
            ("10.1.0.0", "10.1.255.255", "DE"),
            ("10.1.2.0", "10.1.2.255", "FR"),
            ("10.9.0.0", "10.9.0.255", "ES"),
        ]);
        assert_eq!(cc(&t, "10.0.0.1"), Some("US"));
        assert_eq!(cc(&t, "10.1.0.1"), Some("DE"));
        assert_eq!(cc(&t, "10.1.2.1"), Some("FR"));
        assert_eq!(cc(&t, "10.1.3.1"), Some("DE"));
        assert_eq!(cc(&t, "10.2.0.0"), Some("US"));
        assert_eq!(cc(&t, "10.9.0.7"), Some("ES"));
        assert_eq!(cc(&t, "10.9.1.0"), Some("US"));
        assert_eq!(cc(&t, "10.255.255.255"), Some("US"));
        assert_eq!(cc(&t, "11.0.0.0"), None);
    }

    #[test]
    fn partial_overlap_goes_to_the_narrower_range() {
        let t = table(&[
            ("1.0.0.0", "1.0.0.100", "AA"),
            ("1.0.0.50", "1.0.0.200", "BB"),
        ]);
        assert_eq!(cc(&t, "1.0.0.49"), Some("AA"));
        assert_eq!(cc(&t, "1.0.0.60"), Some("AA"));
        assert_eq!(cc(&t, "1.0.0.101"), Some("BB"));
        assert_eq!(cc(&t, "1.0.0.200"), Some("BB"));
    }

    #[test]
    fn edges_of_the_address_space() {
        let t = table(&[
            ("0.0.0.0", "255.255.255.255", "ZZ"),
            ("255.255.255.255", "255.255.255.255", "TOP"),
            ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "V6"),
            ("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "DB"),
        ]);
        assert_eq!(cc(&t, "0.0.0.0"), Some("ZZ"));
        assert_eq!(cc(&t, "255.255.255.254"), Some("ZZ"));
        assert_eq!(cc(&t, "255.255.255.255"), Some("TOP"));
        assert_eq!(cc(&t, "2001:db8:1::1"), Some("DB"));
        assert_eq!(cc(&t, "2001:db9::1"), Some("V6"));
        assert_eq!(
            cc(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("V6")
        );
    }

    #[test]
    fn touching_segments_of_one_country_merge() {
        let s = Segments::build([
            (v4("1.0.0.0"), v4("1.0.0.255"), 0u16),
            (v4("1.0.1.0"), v4("1.0.1.255"), 0),
            (v4("1.0.2.0"), v4("1.0.2.0"), 1),
        ]);
        // Two segments plus the gap after the last one.
        assert_eq!(s.len(), 3);
        assert_eq!(s.lookup(v4("1.0.1.9")), Some(0));
        assert_eq!(s.lookup(v4("1.0.2.0")), Some(1));
        assert_eq!(s.lookup(v4("1.0.2.1")), None);
        assert_eq!(s.lookup(v4("0.255.255.255")), None);
    }

    /// Both searches (the IPv4 /16 index, the IPv6 tree) must answer what a scan answers,
    /// across /16 and node edges.
    #[test]
    fn searches_agree_with_a_scan() {
        let mut rows: Vec<(u32, u32, u16)> = (0..2000u32)
            .map(|i| {
                let s = i.wrapping_mul(2_654_435_761) & 0xffff_f000;
                (s, s + (i % 7) * 40_000, (i % 5) as u16)
            })
            .collect();
        // One crowded /16 (hundreds of starts) takes the binary search inside the bucket.
        rows.extend((0..500u32).map(|i| {
            (
                0x0a00_0000 + i * 97,
                0x0a00_0000 + i * 97 + 40,
                (i % 3) as u16,
            )
        }));
        let scan = |k: u32| {
            rows.iter()
                .enumerate()
                .filter(|(_, (s, e, _))| *s <= k && k <= *e)
                .min_by_key(|(i, (s, e, _))| (e - s, *i))
                .map(|(_, r)| r.2)
        };
        let v4 = Segments::build(rows.clone());
        assert!(!v4.index.is_empty());
        // The same rows as IPv6 keys take the tree path.
        let v6 = Segments::build(rows.iter().map(|&(s, e, c)| (s as u128, e as u128, c)));
        assert!(
            v6.index.is_empty() && v6.upper.len() >= 2,
            "the test must cross levels"
        );
        let mut keys: Vec<u32> = vec![0, 1, 0xffff, 0x1_0000, u32::MAX - 1, u32::MAX];
        for &s in v4.starts.iter() {
            keys.extend([s.wrapping_sub(1), s, s.wrapping_add(1)]);
        }
        let mut k = 1u32;
        for _ in 0..20_000 {
            k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            keys.push(k);
        }
        for k in keys {
            let want = scan(k);
            assert_eq!(v4.lookup(k), want, "v4 k={k}");
            assert_eq!(v6.lookup(k as u128), want, "v6 k={k}");
        }
    }

    /// Brute force over a small space: every point answers the narrowest covering range.
    #[test]
    fn flattening_matches_brute_force() {
        let mut seed = 0x2545_f491_u32;
        let mut rnd = |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed % n
        };
        for _ in 0..200 {
            let rows: Vec<(u32, u32, u16)> = (0..rnd(12))
                .map(|i| {
                    let a = rnd(200);
                    let b = a + rnd(60);
                    (a, b, i as u16)
                })
                .collect();
            let seg = Segments::build(rows.clone());
            for x in 0..270u32 {
                let want = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, (s, e, _))| *s <= x && x <= *e)
                    .min_by_key(|(i, (s, e, _))| (e - s, *i))
                    .map(|(_, r)| r.2);
                assert_eq!(seg.lookup(x), want, "x={x} rows={rows:?}");
            }
        }
    }
}
