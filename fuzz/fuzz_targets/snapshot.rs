//! Country snapshot payloads: a corrupt file is an error, never a panic or a partial table.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = sipguard::ranges::CountryRangesBuilder::decode(data) {
        let _ = b.build();
    }
});
