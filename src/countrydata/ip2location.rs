//! IP2Location LITE DB1 CSV: `"from","to","CC","Country name"`, decimal numbers, `-` for no
//! country. The IPv4 edition (`IP2LOCATION-LITE-DB1.CSV`) holds 32-bit numbers; the IPv6
//! edition (`IP2LOCATION-LITE-DB1.IPV6.CSV`) holds 128-bit numbers and keeps IPv4 space as
//! IPv4-mapped addresses (`::ffff:0:0/96`), which [`CountryData::add`] moves to IPv4.
//! The edition is taken from `--family`, else from the file name (`IPV6`), else IPv4: the
//! IPv4 edition's name states no family.

use super::{field, number, read_rows, CountryCell, CountryData, DataError, Family, Input, Range};

/// Reads every row of `input` into `data`; the first refused line stops it.
pub fn read(
    input: &Input,
    family: Option<Family>,
    data: &mut CountryData,
) -> Result<(), DataError> {
    let family = input.family(family)?.unwrap_or(Family::V4);
    read_rows(input, data, |rec| row(rec, family))
}

/// One row: `from,to,CC,name` (the name may hold commas inside its quotes).
pub fn row(rec: &csv::ByteRecord, family: Family) -> Result<(Range, CountryCell), String> {
    if rec.len() != 4 {
        return Err(format!(
            "expected 4 fields (from,to,country code,country name), found {}",
            rec.len()
        ));
    }
    let n = |i| -> Result<_, String> {
        number::decimal(field(rec, i)?, family).map_err(|e| {
            if e.contains("too large for an IPv4") {
                format!("{e}; is this the IPv6 edition? pass --family ipv6")
            } else {
                e
            }
        })
    };
    let range = Range::new(n(0)?, n(1)?)?;
    Ok((range, super::code::cell(field(rec, 2)?)?))
}

#[cfg(test)]
mod tests {
    use super::super::{read_one as load, CountryCode};
    use super::*;

    #[test]
    fn ipv4_edition_with_quotes_commas_and_placeholders() {
        let d = load(
            "IP2LOCATION-LITE-DB1.CSV",
            "\"0\",\"16777215\",\"-\",\"-\"\r\n\"16777216\",\"16777471\",\"US\",\"United States of America\"\r\n\"3758096384\",\"3758096639\",\"KR\",\"Korea, Republic of\"\r\n",
            None,
        )
        .unwrap();
        assert_eq!(
            d.v4,
            vec![
                (16777216, 16777471, CountryCode(*b"US")),
                (3758096384, 3758096639, CountryCode(*b"KR"))
            ]
        );
        assert_eq!(d.skipped.get("-"), Some(&1));
        assert_eq!(d.files[0].1, super::super::Format::Ip2Location);
    }

    #[test]
    fn ipv6_edition_puts_mapped_ipv4_into_ipv4() {
        let mapped = (0xffffu128 << 32) + 16777216;
        let body = format!(
            "\"0\",\"281470681743359\",\"-\",\"-\"\n\"{}\",\"{}\",\"AU\",\"Australia\"\n\"{}\",\"{}\",\"JP\",\"Japan\"\n",
            mapped,
            mapped + 255,
            0x2001_0200u128 << 96,
            (0x2001_0200u128 << 96) + 0xffff
        );
        let d = load("IP2LOCATION-LITE-DB1.IPV6.CSV", &body, None).unwrap();
        assert_eq!(d.v4, vec![(16777216, 16777471, CountryCode(*b"AU"))]);
        assert_eq!(d.v6.len(), 1);
        assert_eq!(d.mapped, 1);
        // The same file under another name is read as the IPv4 edition and refused, not guessed.
        let e = load("db1.csv", &body, None).unwrap_err().to_string();
        assert!(
            e.contains("db1.csv:1: ") && e.contains("--family ipv6"),
            "{e}"
        );
        assert!(load("db1.csv", &body, Some(Family::V6)).is_ok());
        // A flag that contradicts the name is refused, not obeyed.
        let e = load("IP2LOCATION-LITE-DB1.CSV.ipv4", &body, Some(Family::V6)).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("--family says IPv6, the file name says IPv4"),
            "{e}"
        );
    }

    #[test]
    fn rounded_numbers_and_short_rows_are_refused() {
        for (body, why) in [
            ("\"1.6777216E7\",\"16777471\",\"US\",\"x\"\n", "exponent"),
            (
                "\"16777216\",\"16777471\",\"USA\",\"x\"\n",
                "not two letters",
            ),
        ] {
            let e = load("IP2LOCATION-LITE-DB1.CSV", body, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("IP2LOCATION-LITE-DB1.CSV:1: ") && e.contains(why),
                "{e}"
            );
        }
        let short = csv::ByteRecord::from(vec!["16777216", "16777471", "US"]);
        assert!(row(&short, Family::V4)
            .unwrap_err()
            .contains("expected 4 fields"));
    }
}
