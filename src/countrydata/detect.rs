//! Which format a file is, from its content: the MMDB metadata marker, a MaxMind CSV header,
//! or the shape of the first data row. `--format` overrides it.

use std::fmt;
use std::str::FromStr;

use super::{DataError, Input};

/// The country data formats `import-countries` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `start,end,CC`: addresses as text or decimal numbers (DB-IP lite, ip-location-db).
    DbIp,
    /// `"from","to","CC","Country name"`, decimal numbers (IP2Location LITE DB1, both editions).
    Ip2Location,
    /// MaxMind GeoLite2/GeoIP2 Country CSV: Blocks-IPv4/IPv6 plus a Locations file.
    MaxmindCsv,
    /// MaxMind DB binary (`.mmdb`), any of the country layouts.
    Mmdb,
}

impl Format {
    /// The name `--format` takes and the import prints.
    pub fn name(self) -> &'static str {
        match self {
            Format::DbIp => "dbip",
            Format::Ip2Location => "ip2location",
            Format::MaxmindCsv => "maxmind-csv",
            Format::Mmdb => "mmdb",
        }
    }

    /// Every format, for help texts.
    pub const ALL: [Format; 4] = [
        Format::DbIp,
        Format::Ip2Location,
        Format::MaxmindCsv,
        Format::Mmdb,
    ];
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown format {s:?} (dbip, ip2location, maxmind-csv, mmdb)"))
    }
}

/// Every MMDB ends with its metadata, introduced by this marker (MaxMind DB spec).
const MMDB_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The spec bounds the metadata section at 128 KiB.
const MMDB_TAIL: usize = 128 * 1024;

/// True when a CSV record is a header line: no field holds a digit, and the first is not an
/// address (`::`, `abcd::` have no digit).
pub(crate) fn is_header(rec: &csv::ByteRecord) -> bool {
    let first = std::str::from_utf8(rec.get(0).unwrap_or_default()).unwrap_or("");
    first.parse::<std::net::IpAddr>().is_err()
        && rec.iter().all(|f| !f.iter().any(u8::is_ascii_digit))
}

/// Detects the format of `input` (see the module doc).
pub fn detect(input: &Input) -> Result<Format, DataError> {
    let bytes = input.bytes();
    let tail = &bytes[bytes.len().saturating_sub(MMDB_TAIL)..];
    if tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER) {
        return Ok(Format::Mmdb);
    }
    let refuse = |reason: String| DataError::File {
        file: input.name.clone(),
        reason,
    };
    if bytes.iter().take(4096).any(|&b| b == 0) {
        return Err(refuse(
            "binary content that is not a MaxMind DB (no metadata marker); is it a ZIP? unzip it first".into(),
        ));
    }
    let mut rdr = input.reader();
    let mut recs = rdr.byte_records().take(2);
    let Some(Ok(first)) = recs.next() else {
        return Err(refuse("empty, or not CSV".into()));
    };
    let has = |rec: &csv::ByteRecord, name: &[u8]| rec.iter().any(|f| f == name);
    if has(&first, b"network") || has(&first, b"geoname_id") {
        return Ok(Format::MaxmindCsv);
    }
    let row = if is_header(&first) {
        match recs.next() {
            Some(Ok(r)) => r,
            _ => return Err(refuse("a header line and no data".into())),
        }
    } else {
        first
    };
    match row.len() {
        3 => Ok(Format::DbIp),
        4 => Ok(Format::Ip2Location),
        n => Err(refuse(format!(
            "cannot tell the format from its first row ({n} fields): expected db-ip `start,end,CC`, IP2Location `\"from\",\"to\",\"CC\",\"name\"`, a MaxMind CSV header, or an .mmdb; pass --format to say which"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, body: &[u8]) -> Result<Format, DataError> {
        detect(&Input::from_bytes(name, body.to_vec()))
    }

    #[test]
    fn formats_are_told_apart_by_content() {
        let cases: [(&[u8], Format); 6] = [
            (b"1.0.0.0,1.0.0.255,AU\n", Format::DbIp),
            (b"\xef\xbb\xbf16777216,16777471,AU\r\n", Format::DbIp),
            (
                b"ip_start,ip_end,country\n1.0.0.0,1.0.0.255,AU\n",
                Format::DbIp,
            ),
            (b"\"0\",\"16777215\",\"-\",\"-\"\n", Format::Ip2Location),
            (
                b"network,geoname_id,registered_country_geoname_id\n",
                Format::MaxmindCsv,
            ),
            (
                b"geoname_id,locale_code,continent_code,continent_name,country_iso_code\n",
                Format::MaxmindCsv,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                d("a", body).unwrap(),
                want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let mut mmdb = vec![0u8; 100];
        mmdb.extend_from_slice(MMDB_MARKER);
        mmdb.extend_from_slice(b"\xe0");
        assert_eq!(d("a", &mmdb).unwrap(), Format::Mmdb);
    }

    #[test]
    fn headers_are_words_not_addresses() {
        assert!(!is_header(&csv::ByteRecord::from(vec![
            "abcd::", "abcd::ff", "CN"
        ])));
        assert!(!is_header(&csv::ByteRecord::from(vec!["::", "::ff", "ZZ"])));
        assert!(is_header(&csv::ByteRecord::from(vec![
            "ip_from",
            "ip_to",
            "country_code",
            "country_name"
        ])));
    }

    #[test]
    fn unknown_content_is_refused_with_the_reason() {
        let e = d("x.zip", b"PK\x03\x04\x00\x00").unwrap_err().to_string();
        assert!(e.starts_with("x.zip: binary content"), "{e}");
        let e = d("x.csv", b"a,b,c,d,e\n1,2,3,4,5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot tell the format") && e.contains("--format"),
            "{e}"
        );
        assert!(d("e.csv", b"").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        assert!("csv".parse::<Format>().is_err());
    }
}
