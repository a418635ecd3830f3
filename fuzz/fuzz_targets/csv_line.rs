//! Country CSV lines as `sipguard-admin import-countries` reads them: never a panic, and an
//! accepted row is ordered and of one family.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(Some(row)) = sipguard::admin::import::parse_line(line) {
            assert_eq!(row.start.is_ipv4(), row.end.is_ipv4());
            match (row.start, row.end) {
                (std::net::IpAddr::V4(s), std::net::IpAddr::V4(e)) => assert!(s <= e),
                (std::net::IpAddr::V6(s), std::net::IpAddr::V6(e)) => assert!(s <= e),
                _ => unreachable!(),
            }
        }
    }
});
