//! The JSON config: any bytes give a config or an error naming the file, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = sipguard::config::Config::parse(&text, std::path::Path::new("fuzz.json")) {
        assert!(e.to_string().contains("fuzz.json"));
    }
});
