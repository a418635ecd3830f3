//! MaxMind DB files (`.mmdb`), read with the `maxminddb` crate, walking every network of both
//! families. The aliases of the IPv4 tree that MaxMind's files carry (IPv4-mapped
//! `::ffff:0:0/96`, 6to4 `2002::/16`, Teredo `2001::/32`) are skipped: they are the IPv4 data
//! again, under IPv6 prefixes. IPv4-mapped sources are folded to IPv4 by the module anyway; a
//! 6to4 or Teredo source answers `""` (both are retired transition mechanisms, and importing
//! them would hold the whole IPv4 table twice more in every worker). The country comes from, in order: `country.iso_code` (GeoIP2/GeoLite2
//! Country and City, DB-IP lite), `registered_country.iso_code`, then a top-level
//! `country_code` (ip-location-db).
//!
//! An MMDB's networks never overlap (they are the leaves of its search tree) and come in
//! address order, so neighbours of the same country are merged into one range: the same
//! answer for every address, about half the rows of a network-per-row import. Placeholder
//! networks are counted one by one, as rows of the other formats are.

use serde::Deserialize;

use super::{code, CountryCell, CountryData, DataError, Input, Range};

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

/// The fields of a record that can carry a country; everything else is ignored.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

impl<'a> Record<'a> {
    fn code(&self) -> Option<&'a str> {
        fn iso<'a>(c: &Option<IsoCode<'a>>) -> Option<&'a str> {
            c.as_ref().and_then(|c| c.iso_code)
        }
        iso(&self.country)
            .or(iso(&self.registered_country))
            .or(self.country_code)
    }
}

/// `a` followed directly by `b`, as one range; `None` when they do not touch.
fn merge(a: Range, b: Range) -> Option<Range> {
    match (a, b) {
        (Range::V4(s, e), Range::V4(bs, be)) if e.checked_add(1) == Some(bs) => {
            Some(Range::V4(s, be))
        }
        (Range::V6(s, e), Range::V6(bs, be)) if e.checked_add(1) == Some(bs) => {
            Some(Range::V6(s, be))
        }
        _ => None,
    }
}

/// Reads every network of `input` into `data`. A record whose code is not two letters stops
/// the import with the network it belongs to (an MMDB has no lines).
pub fn read(input: &Input, data: &mut CountryData) -> Result<(), DataError> {
    let bad = |reason: String| DataError::File {
        file: input.name.clone(),
        reason,
    };
    let reader = maxminddb::Reader::from_source(input.bytes())
        .map_err(|e| bad(format!("not a readable MaxMind DB: {e}")))?;
    let networks = reader
        .networks(maxminddb::WithinOptions::default())
        .map_err(|e| bad(format!("cannot walk the networks: {e}")))?;
    let mut with_country = 0u64;
    let mut run: Option<(Range, CountryCell)> = None;
    for item in networks {
        let item = item.map_err(|e| bad(format!("corrupt MaxMind DB: {e}")))?;
        let net = item
            .network()
            .map_err(|e| bad(format!("corrupt MaxMind DB: {e}")))?;
        let net = ipnet::IpNet::new(net.ip(), net.prefix())
            .map_err(|e| bad(format!("corrupt MaxMind DB network: {e}")))?
            .trunc();
        let record: Option<Record<'_>> = item.decode().map_err(|e| {
            bad(format!(
                "network {net}: record is not a country record: {e}"
            ))
        })?;
        let cell = match record.as_ref().and_then(Record::code) {
            Some(c) => code::cell(c).map_err(|e| bad(format!("network {net}: {e}")))?,
            None => CountryCell::NoCountry("(empty)"),
        };
        with_country += u64::from(matches!(cell, CountryCell::Code(_)));
        let range = Range::of_net(net);
        if let CountryCell::NoCountry(_) = cell {
            data.add(range, cell);
            continue;
        }
        run = match run {
            Some((prev, c)) if c == cell => match merge(prev, range) {
                Some(merged) => Some((merged, c)),
                None => {
                    data.add(prev, c);
                    Some((range, cell))
                }
            },
            Some((prev, c)) => {
                data.add(prev, c);
                Some((range, cell))
            }
            None => Some((range, cell)),
        };
    }
    if let Some((prev, c)) = run {
        data.add(prev, c);
    }
    if reader.metadata().ip_version == 6 {
        data.notes.push(format!(
            "{}: aliases of the IPv4 networks under IPv6 prefixes (6to4 2002::/16, Teredo 2001::/32), where the file has them, are not imported: such sources answer \"\"",
            input.name
        ));
    }
    if with_country == 0 {
        return Err(bad(format!(
            "no network carries a country (database type {:?}): not a country database?",
            reader.metadata().database_type
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_touching_ranges_of_one_family_merge() {
        assert_eq!(
            merge(Range::V4(0, 9), Range::V4(10, 19)),
            Some(Range::V4(0, 19))
        );
        assert_eq!(merge(Range::V4(0, 9), Range::V4(11, 19)), None);
        assert_eq!(merge(Range::V4(0, u32::MAX), Range::V4(0, 1)), None);
        assert_eq!(merge(Range::V4(0, 9), Range::V6(10, 19)), None);
        assert_eq!(
            merge(Range::V6(0, 9), Range::V6(10, 19)),
            Some(Range::V6(0, 19))
        );
    }
}
