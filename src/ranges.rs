//! IP → country from inclusive `start..=end` ranges, as db-ip style data ships them.
//!
//! About 2% of real rows are nested inside wider ones. A point lookup must answer the
//! narrowest range that contains the address (what MMDB readers answer), so the table is
//! flattened once at build time into disjoint segments, each labelled with the narrowest
//! covering range; a lookup is then one binary search.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Keys the table can hold: `u32` for IPv4 and `u128` for IPv6 keep IPv4 at a quarter of the size.
pub trait RangeKey: Copy + Ord + std::fmt::Debug {
    /// `self + 1`, or `None` past the top of the space.
    fn succ(self) -> Option<Self>;
    /// `self - 1`, or `None` below zero.
    fn pred(self) -> Option<Self>;
    /// Width as u128 (saturating for the full IPv6 space), used to order ranges narrowest first.
    fn width(start: Self, end: Self) -> u128;
    /// The first-level bucket (top 16 bits) for keys dense enough to index, else `None`.
    fn bucket(self) -> Option<usize>;
}

impl RangeKey for u32 {
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

/// Disjoint, sorted segments of one address family.
#[derive(Debug, Clone, Default)]
pub struct Segments<K> {
    starts: Vec<K>,
    ends: Vec<K>,
    codes: Vec<u16>,
    /// For IPv4: `index[b]` is the first segment whose start is in /16 bucket `b` or later
    /// (65,537 entries, 256 KB). A lookup then binary-searches a handful of segments that sit
    /// in one or two cache lines, instead of ~19 probes across 3 MB: a botnet sweep of fresh
    /// sources is bound by memory latency, not by instructions.
    index: Vec<u32>,
}

impl<K: RangeKey> Segments<K> {
    /// Flattens possibly overlapping ranges; where they overlap, the narrowest wins
    /// (ties: the one given first). Ranges with `start > end` are ignored.
    pub fn build(ranges: impl IntoIterator<Item = (K, K, u16)>) -> Self {
        let mut rs: Vec<(K, K, u16, usize)> = ranges
            .into_iter()
            .enumerate()
            .filter(|(_, (s, e, _))| s <= e)
            .map(|(i, (s, e, c))| (s, e, c, i))
            .collect();
        rs.sort_by_key(|&(s, e, _, i)| (K::width(s, e), i));

        // Paint narrowest first; a wider range only fills the gaps left inside it.
        let mut painted: BTreeMap<K, (K, u16)> = BTreeMap::new();
        let mut gaps = Vec::new();
        for (s, e, code, _) in rs {
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
                painted.insert(gs, (ge, code));
            }
        }

        let mut out: Segments<K> = Segments {
            starts: Vec::with_capacity(painted.len()),
            ends: Vec::with_capacity(painted.len()),
            codes: Vec::with_capacity(painted.len()),
            index: Vec::new(),
        };
        for (s, (e, code)) in painted {
            // Merge touching segments of the same country: fewer entries, same answers.
            if let (Some(last_e), Some(&last_c)) = (out.ends.last_mut(), out.codes.last()) {
                if last_c == code && (*last_e).succ() == Some(s) {
                    *last_e = e;
                    continue;
                }
            }
            out.starts.push(s);
            out.ends.push(e);
            out.codes.push(code);
        }
        out.starts.shrink_to_fit();
        out.ends.shrink_to_fit();
        out.codes.shrink_to_fit();
        if out.starts.first().and_then(|s| s.bucket()).is_some() {
            let mut index = Vec::with_capacity(65_537);
            let mut i = 0usize;
            for b in 0..=65_536usize {
                while i < out.starts.len() && out.starts[i].bucket().is_some_and(|sb| sb < b) {
                    i += 1;
                }
                index.push(i as u32);
            }
            out.index = index;
        }
        out
    }

    /// The code index of the segment containing `k`.
    pub fn lookup(&self, k: K) -> Option<u16> {
        // The containing segment starts in k's bucket or is the last one before it.
        let (lo, hi) = match k.bucket() {
            Some(b) if !self.index.is_empty() => (
                (self.index[b] as usize).saturating_sub(1),
                self.index[b + 1] as usize,
            ),
            _ => (0, self.starts.len()),
        };
        let i = (lo + self.starts[lo..hi].partition_point(|&s| s <= k)).checked_sub(1)?;
        (k <= self.ends[i]).then(|| self.codes[i])
    }

    /// Number of disjoint segments after flattening.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when there is no data for this family.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
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
    v4: Segments<u32>,
    v6: Segments<u128>,
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
            (v4("1.0.0.0"), v4("1.0.0.255"), 0),
            (v4("1.0.1.0"), v4("1.0.1.255"), 0),
            (v4("1.0.2.0"), v4("1.0.2.0"), 1),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.lookup(v4("1.0.1.9")), Some(0));
        assert_eq!(s.lookup(v4("1.0.2.0")), Some(1));
    }

    /// The /16 index must give the same answers as a plain binary search, across buckets.
    #[test]
    fn bucket_index_agrees_with_plain_search() {
        let rows: Vec<(u32, u32, u16)> = (0..2000u32)
            .map(|i| {
                let s = i.wrapping_mul(2_654_435_761) & 0xffff_f000;
                (s, s + (i % 7) * 40_000, (i % 5) as u16)
            })
            .collect();
        let seg = Segments::build(rows);
        assert!(!seg.index.is_empty());
        let plain = |k: u32| {
            let i = seg.starts.partition_point(|&s| s <= k).checked_sub(1)?;
            (k <= seg.ends[i]).then(|| seg.codes[i])
        };
        let mut k = 1u32;
        for _ in 0..200_000 {
            k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            assert_eq!(seg.lookup(k), plain(k), "k={k}");
        }
        for &edge in &[0u32, 1, 0xffff, 0x1_0000, u32::MAX - 1, u32::MAX] {
            assert_eq!(seg.lookup(edge), plain(edge));
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
