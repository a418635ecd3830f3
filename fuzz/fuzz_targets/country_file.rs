//! Country files as `sipguard-admin import-countries` reads them (any format, detected): never
//! a panic, and what is accepted is ordered, two upper-case letters, and IPv6 rows never in
//! IPv4-mapped space (those belong to IPv4).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipguard::countrydata::{read_inputs, Family, Input, Options};

fuzz_target!(|data: &[u8]| {
    for family in [None, Some(Family::V4), Some(Family::V6)] {
        let input = Input::from_bytes("fuzz.csv", data.to_vec());
        let Ok(d) = read_inputs(vec![input], &Options { format: None, family, skip_conflicts: false }) else {
            continue;
        };
        for (s, e, cc) in &d.v4 {
            assert!(s <= e);
            assert!(cc.0.iter().all(u8::is_ascii_uppercase));
        }
        for (s, e, cc) in &d.v6 {
            assert!(s <= e);
            assert!(*e < 0xffff_u128 << 32 || *s > (0xffff_u128 << 32 | 0xffff_ffff));
            assert!(cc.0.iter().all(u8::is_ascii_uppercase));
        }
    }
});
