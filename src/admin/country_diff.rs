//! What a country import changes, compared with what the workers serve now: addresses gained
//! and lost per country, per family. Works on flattened segments (narrowest range already
//! applied), so nested ranges count once, as a lookup would answer.

use std::collections::BTreeMap;

use crate::ranges::CountryRanges;

/// Changes of one family. Counts are addresses (IPv6: addresses too; see [`per_64`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FamilyDiff {
    /// Addresses that would answer this country and do not today.
    pub gained: BTreeMap<&'static str, u128>,
    /// Addresses that answer this country today and would not.
    pub lost: BTreeMap<&'static str, u128>,
    /// Addresses whose answer changes at all (to another country, or to/from none).
    pub changed: u128,
}

impl FamilyDiff {
    /// The `n` countries with the most addresses gained plus lost, most affected first:
    /// `(code, gained, lost)`.
    pub fn top(&self, n: usize) -> Vec<(&'static str, u128, u128)> {
        let mut all: Vec<_> = self
            .gained
            .keys()
            .chain(self.lost.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|&c| {
                let g = self.gained.get(c).copied().unwrap_or(0);
                let l = self.lost.get(c).copied().unwrap_or(0);
                (c, g, l)
            })
            .collect();
        all.sort_by(|a, b| {
            (b.1.saturating_add(b.2))
                .cmp(&a.1.saturating_add(a.2))
                .then(a.0.cmp(b.0))
        });
        all.truncate(n);
        all
    }
}

/// IPv6 counts in /64s (the unit operators and RIRs reason in), rounded down.
pub fn per_64(addresses: u128) -> u128 {
    addresses >> 64
}

/// Compares two segment lists of one family whose space ends at `top` (inclusive).
fn compare(
    old: impl Iterator<Item = (u128, Option<&'static str>)>,
    new: impl Iterator<Item = (u128, Option<&'static str>)>,
    top: u128,
) -> FamilyDiff {
    let mut out = FamilyDiff::default();
    let (mut old, mut new) = (old.peekable(), new.peekable());
    let (mut o, mut n): (Option<&'static str>, Option<&'static str>) = (None, None);
    let mut at: u128 = 0;
    loop {
        // Apply every segment starting at `at`.
        while let Some(&(s, v)) = old.peek() {
            if s > at {
                break;
            }
            o = v;
            old.next();
        }
        while let Some(&(s, v)) = new.peek() {
            if s > at {
                break;
            }
            n = v;
            new.next();
        }
        let next = match (old.peek(), new.peek()) {
            (Some(&(a, _)), Some(&(b, _))) => Some(a.min(b)),
            (Some(&(a, _)), None) | (None, Some(&(a, _))) => Some(a),
            (None, None) => None,
        };
        let len = match next {
            Some(q) => q - at,
            None => (top - at).saturating_add(1),
        };
        if o != n {
            out.changed = out.changed.saturating_add(len);
            if let Some(c) = o {
                let e = out.lost.entry(c).or_default();
                *e = e.saturating_add(len);
            }
            if let Some(c) = n {
                let e = out.gained.entry(c).or_default();
                *e = e.saturating_add(len);
            }
        }
        match next {
            Some(q) => at = q,
            None => return out,
        }
    }
}

/// IPv4 changes from `old` to `new`.
pub fn v4(old: &CountryRanges, new: &CountryRanges) -> FamilyDiff {
    compare(
        old.v4_segments().map(|(s, c)| (u128::from(s), c)),
        new.v4_segments().map(|(s, c)| (u128::from(s), c)),
        u128::from(u32::MAX),
    )
}

/// IPv6 changes from `old` to `new`.
pub fn v6(old: &CountryRanges, new: &CountryRanges) -> FamilyDiff {
    compare(old.v6_segments(), new.v6_segments(), u128::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::CountryRangesBuilder;

    fn ranges(rows: &[(u32, u32, &str)]) -> CountryRanges {
        let mut b = CountryRangesBuilder::default();
        for &(s, e, c) in rows {
            b.add_v4(s, e, c);
        }
        b.build()
    }

    #[test]
    fn counts_addresses_gained_and_lost_per_country() {
        let old = ranges(&[(0, 255, "US"), (100, 109, "CA"), (1000, 1099, "DE")]);
        let new = ranges(&[
            (0, 255, "US"),
            (1000, 1049, "DE"),
            (1050, 1099, "FR"),
            (5000, 5009, "ES"),
        ]);
        let d = v4(&old, &new);
        assert_eq!(d.lost.get("CA"), Some(&10));
        assert_eq!(d.gained.get("US"), Some(&10));
        assert_eq!(d.lost.get("DE"), Some(&50));
        assert_eq!(d.gained.get("FR"), Some(&50));
        assert_eq!(d.gained.get("ES"), Some(&10));
        assert_eq!(d.changed, 70);
        assert_eq!(d.top(2), vec![("DE", 0, 50), ("FR", 50, 0)]);
        assert_eq!(v4(&old, &old), FamilyDiff::default());
    }

    #[test]
    fn whole_space_and_empty_tables() {
        let all = ranges(&[(0, u32::MAX, "ZA")]);
        let d = v4(&CountryRanges::default(), &all);
        assert_eq!(d.gained.get("ZA"), Some(&(1u128 << 32)));
        let mut b = CountryRangesBuilder::default();
        b.add_v6(0, u128::MAX, "ZA");
        let d = v6(&CountryRanges::default(), &b.build());
        assert_eq!(d.gained.get("ZA"), Some(&u128::MAX));
        assert_eq!(per_64(1u128 << 64), 1);
    }
}
