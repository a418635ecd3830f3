//! db-ip style CSV: `start,end,CC`, one range per line, IPv4 and IPv6 rows mixed. Addresses
//! are text (`1.0.0.0`, `2001:200::`) or, in the `-num` variants, decimal numbers whose family
//! comes from `--family` or the file name (`…-ipv4-num.csv`). DB-IP lite and ip-location-db
//! publish it; `ZZ` is DB-IP's "unassigned/reserved".

use std::net::IpAddr;

use super::{field, number, read_rows, CountryCell, CountryData, DataError, Family, Input, Range};

/// Reads every row of `input` into `data`; the first refused line stops it.
pub fn read(
    input: &Input,
    family: Option<Family>,
    data: &mut CountryData,
) -> Result<(), DataError> {
    let family = input.family(family)?;
    read_rows(input, data, |rec| row(rec, family))
}

/// One row: `start,end,CC`.
pub fn row(rec: &csv::ByteRecord, family: Option<Family>) -> Result<(Range, CountryCell), String> {
    if rec.len() != 3 {
        return Err(format!(
            "expected 3 fields (start,end,country), found {}",
            rec.len()
        ));
    }
    let start = endpoint(field(rec, 0)?, family)?;
    let end = endpoint(field(rec, 1)?, family)?;
    let range = Range::new(start, end)?;
    Ok((range, super::code::cell(field(rec, 2)?)?))
}

fn endpoint(s: &str, family: Option<Family>) -> Result<IpAddr, String> {
    if number::looks_textual(s) {
        return number::text(s);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && family.is_none() {
        return Err(format!(
            "{s} is a number, and neither --family nor the file name (…ipv4… / …ipv6…) says which address family it is"
        ));
    }
    number::decimal(s, family.unwrap_or(Family::V4))
}

#[cfg(test)]
mod tests {
    use super::super::{read_one as load, CountryCode};
    use super::*;

    #[test]
    fn spreadsheet_decoration_is_accepted() {
        let d = load(
            "dbip.csv",
            "\u{feff}\"1.0.0.0\",\"1.0.0.255\",\"au\"\r\n  2001:200::, 2001:200::ffff ,JP\r\n# note\r\n\r\n9.9.9.0,9.9.9.255,ZZ\r\n",
            None,
        )
        .unwrap();
        assert_eq!(d.v4, vec![(0x0100_0000, 0x0100_00ff, CountryCode(*b"AU"))]);
        assert_eq!(d.v6.len(), 1);
        assert_eq!(d.skipped.get("ZZ"), Some(&1));
    }

    #[test]
    fn line_numbers_count_comments_blank_lines_and_crlf() {
        let e = load(
            "c.csv",
            "# db-ip lite\r\n# generated\r\n1.0.0.0,1.0.0.255,AU\r\n\r\n# more\r\n1.0.1.0,1.0.1.255,USA\r\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.csv:6: "), "{e}");
    }

    #[test]
    fn numeric_rows_take_the_family_from_the_name_or_the_flag() {
        let d = load("x-ipv6-num.csv", "16777216,16777471,AU\n", None).unwrap();
        assert_eq!(d.v6, vec![(0x0100_0000, 0x0100_00ff, CountryCode(*b"AU"))]);
        let d = load("x-ipv4-num.csv", "16777216,16777471,AU\n", None).unwrap();
        assert_eq!(d.v4.len(), 1);
        let e = load("plain.csv", "16777216,16777471,AU\n", None).unwrap_err();
        assert!(e.to_string().ends_with("plain.csv:1: 16777216 is a number, and neither --family nor the file name (…ipv4… / …ipv6…) says which address family it is"), "{e}");
        let d = load("plain.csv", "16777216,16777471,AU\n", Some(Family::V4)).unwrap();
        assert_eq!(d.v4.len(), 1);
    }

    #[test]
    fn refusals_name_file_line_and_reason() {
        for (bad, why) in [
            ("1.0.0.0,1.0.0.255,USA", "\"USA\" is not two letters"),
            ("1.0.0.0,1.0.0.255", "expected 3 fields"),
            ("1.0.1.0,1.0.0.255,AU", "is after end"),
            ("1.0.0.0,2001::1,AU", "different address families"),
            ("010.0.0.0,10.0.0.255,AU", "leading zero"),
            ("1.6777216E7,16777471,AU", "exponent"),
            ("16777216.0,16777471,AU", "decimal point"),
            ("016777216,16777471,AU", "leading zero"),
            ("\"1.0.0.0,1.0.0.255,AU", "expected 3 fields"),
        ] {
            // A good first line, so the format is detected and the bad one is line 2.
            let body = format!("1.0.0.0,1.0.0.255,AU\r\n{bad}\r\n");
            let line = 2;
            let e = load("t-ipv4.csv", &body, None).unwrap_err().to_string();
            assert!(
                e.contains(&format!("t-ipv4.csv:{line}: ")) && e.contains(why),
                "{body:?}: {e}"
            );
        }
    }
}
