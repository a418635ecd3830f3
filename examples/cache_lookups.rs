//! Country lookups for cache simulation: the same tables as the worker's own heap copy (how
//! every worker held them before the node file) or mapped from the node's file (how they are
//! held now). `scripts/bench` runs it under `valgrind --tool=cachegrind` at two lookup counts;
//! the difference divided by the extra lookups is the misses per lookup, free of start-up
//! (this VM exposes no hardware cache counters to perf).
//!
//!   cache_lookups heap|mapped NODE_FILE LOOKUPS
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use sipguard::ranges::{CountryRanges, CountryRangesBuilder};

/// A heap-built copy of `r`, from its segments (start, country) back to inclusive ranges.
fn heap_copy(r: &CountryRanges) -> CountryRanges {
    let mut b = CountryRangesBuilder::default();
    let v4: Vec<_> = r.v4_segments().collect();
    for (i, (start, code)) in v4.iter().enumerate() {
        let end = v4.get(i + 1).map_or(u32::MAX, |n| n.0 - 1);
        if let Some(c) = code {
            b.add_v4(*start, end, c);
        }
    }
    let v6: Vec<_> = r.v6_segments().collect();
    for (i, (start, code)) in v6.iter().enumerate() {
        let end = v6.get(i + 1).map_or(u128::MAX, |n| n.0 - 1);
        if let Some(c) = code {
            b.add_v6(*start, end, c);
        }
    }
    b.build()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, file, n] = &args[..] else {
        eprintln!("usage: cache_lookups heap|mapped NODE_FILE LOOKUPS");
        std::process::exit(2);
    };
    let (mapped, _) = sipguard::nodefile::map(Path::new(file)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let ranges = match mode.as_str() {
        "mapped" => mapped,
        "heap" => heap_copy(&mapped),
        _ => {
            eprintln!("mode is heap or mapped");
            std::process::exit(2)
        }
    };
    let n: u64 = n.parse().expect("LOOKUPS is a count");
    // Sources spread over the address space (xorshift), 1 in 4 IPv6 (in 2000::/3, where the
    // data is), as a scanner sweep sends.
    let (mut x, mut found) = (0x9E37_79B9_7F4A_7C15u64, 0u64);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ip = if i % 4 == 3 {
            IpAddr::V6(Ipv6Addr::from(1u128 << 125 | u128::from(x) << 61))
        } else {
            IpAddr::V4(Ipv4Addr::from((x >> 32) as u32))
        };
        found += u64::from(ranges.lookup(ip).is_some());
    }
    println!("{mode}: {found} of {n} sources have a country");
}
