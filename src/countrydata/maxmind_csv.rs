//! MaxMind GeoLite2/GeoIP2 Country CSV: `GeoLite2-Country-Blocks-IPv4.csv` and
//! `…-Blocks-IPv6.csv` (`network,geoname_id,registered_country_geoname_id,…`) joined on
//! `geoname_id` to `GeoLite2-Country-Locations-<lang>.csv` (`geoname_id,…,country_iso_code,…`).
//! The country where the network is used wins; the registered country is the fallback (as
//! `country` then `registered_country` in the MMDB). All of them go in one command.

use std::collections::HashMap;

use super::{at, code, field, CountryCell, CountryData, DataError, Input, Lines, Range};

/// `geoname_id` → country, from the Locations file(s).
#[derive(Debug, Default)]
pub struct Locations {
    by_id: HashMap<u32, CountryCell>,
}

/// Column positions, found by name in the header line (MaxMind has added columns over time).
fn columns<const N: usize>(
    input: &Input,
    header: &csv::ByteRecord,
    names: [&str; N],
) -> Result<[usize; N], DataError> {
    let mut out = [0; N];
    for (o, name) in out.iter_mut().zip(names) {
        *o = header
            .iter()
            .position(|f| f == name.as_bytes())
            .ok_or_else(|| DataError::Line {
                file: input.name.clone(),
                line: 1,
                reason: format!("MaxMind CSV header has no `{name}` column"),
            })?;
    }
    Ok(out)
}

/// True when `input` is a Locations file (its header names `country_iso_code`).
pub fn is_locations(input: &Input) -> bool {
    let mut rdr = input.reader();
    let first = rdr.byte_records().next();
    matches!(first, Some(Ok(h)) if h.iter().any(|f| f == b"country_iso_code"))
}

/// A `geoname_id` cell: decimal digits, no leading zero; empty is `None`.
fn geoname_id(s: &str) -> Result<Option<u32>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("geoname_id {s:?} is not a plain decimal number"));
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("geoname_id {s} is out of range"))
}

/// Calls `f` with each data row of `input`, its line and the positions of the `names` columns
/// found in the header line.
fn each_row<const N: usize>(
    input: &Input,
    names: [&str; N],
    mut f: impl FnMut(u64, &csv::ByteRecord, [usize; N]) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut rdr = input.reader();
    let mut lines = Lines::new(input);
    let mut recs = rdr.byte_records();
    let Some(h) = recs.next() else {
        return Ok(());
    };
    let (_, header) = lines.record(h)?;
    let cols = columns(input, &header, names)?;
    for r in recs {
        let (line, rec) = lines.record(r)?;
        f(line, &rec, cols)?;
    }
    Ok(())
}

impl Locations {
    /// Reads one Locations file (any language; several must agree).
    pub fn read(&mut self, input: &Input) -> Result<(), DataError> {
        each_row(
            input,
            ["geoname_id", "country_iso_code"],
            |line, rec, [id_col, cc_col]| {
                let parsed = (|| {
                    let id = geoname_id(field(rec, id_col)?)?
                        .ok_or_else(|| "empty geoname_id".to_string())?;
                    Ok::<_, String>((id, code::cell(field(rec, cc_col)?)?))
                })();
                let (id, cell) = parsed.map_err(at(input, line))?;
                match self.by_id.insert(id, cell) {
                    Some(old) if old != cell => Err(at(input, line)(format!(
                        "geoname_id {id} is {old:?} in an earlier Locations file and {cell:?} here"
                    ))),
                    _ => Ok(()),
                }
            },
        )
    }

    fn get(&self, id: Option<u32>) -> Result<Option<CountryCell>, String> {
        match id {
            None => Ok(None),
            Some(id) => self
                .by_id
                .get(&id)
                .copied()
                .map(Some)
                .ok_or_else(|| format!("geoname_id {id} is not in the Locations file(s) given")),
        }
    }
}

/// Reads a Blocks file (IPv4 or IPv6) into `data`, joined to `locations`.
pub fn read_blocks(
    input: &Input,
    locations: &Locations,
    data: &mut CountryData,
) -> Result<(), DataError> {
    if locations.by_id.is_empty() {
        return Err(DataError::File {
            file: input.name.clone(),
            reason: "MaxMind blocks need their Locations file (GeoLite2-Country-Locations-en.csv) in the same command".into(),
        });
    }
    let names = ["network", "geoname_id", "registered_country_geoname_id"];
    each_row(input, names, |line, rec, [net_col, id_col, reg_col]| {
        let parsed = (|| {
            let raw = field(rec, net_col)?;
            let net: ipnet::IpNet = raw
                .parse()
                .map_err(|_| format!("{raw:?} is not a CIDR network"))?;
            if net.trunc() != net {
                return Err(format!(
                    "{raw} has host bits set (did you mean {}?)",
                    net.trunc()
                ));
            }
            let country = locations.get(geoname_id(field(rec, id_col)?)?)?;
            let registered = locations.get(geoname_id(field(rec, reg_col)?)?)?;
            let cell = match (country, registered) {
                (Some(c @ CountryCell::Code(_)), _) => c,
                (_, Some(r @ CountryCell::Code(_))) => r,
                (Some(p), _) | (None, Some(p)) => p,
                (None, None) => CountryCell::NoCountry("(empty)"),
            };
            Ok((Range::of_net(net), cell))
        })();
        let (range, cell) = parsed.map_err(at(input, line))?;
        data.add_at(range, cell, line);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::{read_files, CountryCode, Options};
    use super::*;

    const LOCATIONS: &str = "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union\r\n\
        2510769,en,EU,Europe,ES,Spain,1\r\n\
        1835841,en,AS,Asia,KR,\"Korea, Republic of\",0\r\n\
        6255148,en,EU,Europe,,,0\r\n";

    fn load(files: &[(&str, &str)]) -> Result<CountryData, DataError> {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_bytes())).collect();
        read_files(&files, &Options::default())
    }

    #[test]
    fn blocks_join_locations_with_registered_country_as_fallback() {
        let blocks4 = "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,is_anycast\r\n\
            2.20.179.0/24,2510769,2510769,,0,0,\r\n\
            1.11.0.0/16,,1835841,,0,0,\r\n\
            5.5.5.0/24,6255148,2510769,,0,0,\r\n\
            6.6.6.0/24,,,,1,0,\r\n";
        let blocks6 = "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider\n\
            2001:200::/32,1835841,1835841,,0,0\n\
            ::ffff:7.7.7.0/120,2510769,,,0,0\n";
        // Blocks before Locations on the command line: the join still works.
        let d = load(&[
            ("GeoLite2-Country-Blocks-IPv4.csv", blocks4),
            ("GeoLite2-Country-Blocks-IPv6.csv", blocks6),
            ("GeoLite2-Country-Locations-en.csv", LOCATIONS),
        ])
        .unwrap();
        let es = CountryCode(*b"ES");
        assert_eq!(
            d.v4,
            vec![
                (0x0214_b300, 0x0214_b3ff, es),
                (0x010b_0000, 0x010b_ffff, CountryCode(*b"KR")),
                (0x0505_0500, 0x0505_05ff, es),
                (0x0707_0700, 0x0707_07ff, es),
            ]
        );
        assert_eq!(d.v6.len(), 1);
        assert_eq!(d.skipped.get("(empty)"), Some(&1));
        assert_eq!(d.mapped, 1);
    }

    #[test]
    fn blocks_that_disagree_are_refused_naming_both_files() {
        let head = "network,geoname_id,registered_country_geoname_id\n";
        let a = format!("{head}1.0.0.0/24,2510769,\n");
        let b = format!("{head}5.5.5.0/24,2510769,\n1.0.0.0/24,1835841,\n");
        // Locations last on the command line: still read first, and the file indexes hold.
        let e = load(&[("a.csv", &a), ("b.csv", &b), ("l.csv", LOCATIONS)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.csv:3: the range 1.0.0.0 - 1.0.0.255 is KR here and ES at ")
                && e.contains("a.csv:2:"),
            "{e}"
        );
    }

    #[test]
    fn missing_locations_and_unknown_ids_are_refused() {
        let blocks = "network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,999,\n";
        let e = load(&[("b.csv", blocks)]).unwrap_err().to_string();
        assert!(
            e.contains("b.csv: MaxMind blocks need their Locations file"),
            "{e}"
        );
        let e = load(&[("b.csv", blocks), ("l.csv", LOCATIONS)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.csv:2: geoname_id 999 is not in the Locations"),
            "{e}"
        );
        let host = "network,geoname_id,registered_country_geoname_id\n1.0.0.7/24,2510769,\n";
        let e = load(&[("h.csv", host), ("l.csv", LOCATIONS)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("h.csv:2: 1.0.0.7/24 has host bits set"), "{e}");
    }
}
