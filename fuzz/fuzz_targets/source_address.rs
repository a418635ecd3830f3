//! Anything `$si`, a header or an AVP can carry: parsing never panics, and whatever parses is
//! a canonical address (IPv4-mapped folded) that lists and ranges can look up.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ip) = sipguard::addr::parse_source(&text) {
        assert_eq!(sipguard::addr::canonical(ip), ip);
        let _ = sipguard::addr::is_public(ip);
    }
    let _ = sipguard::netset::parse_net(&text);
    let _ = sipguard::engine::normalize_country(&text);
});
