//! Engine microbenchmarks: the per-request work without Kamailio around it.
//! Uses the full country data when scripts/bench (or the demo) has fetched it, else the slice.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sipguard::config::Config;
use sipguard::engine::{ListRow, ListRows, Lists};
use sipguard::guard::Guard;
use sipguard::ranges::CountryRanges;

fn country_data() -> CountryRanges {
    let root = env!("CARGO_MANIFEST_DIR");
    let full = format!("{root}/.run/data/package");
    let files: Vec<String> =
        if Path::new(&format!("{full}/geo-whois-asn-country-ipv4.csv")).exists() {
            vec![
                format!("{full}/geo-whois-asn-country-ipv4.csv"),
                format!("{full}/geo-whois-asn-country-ipv6.csv"),
            ]
        } else {
            vec![format!("{root}/tests/data/country-slice.csv")]
        };
    sipguard::countrydata::read(&files, &Default::default())
        .expect("country data")
        .builder()
        .build()
}

/// 10k list rows: 6k addresses and 4k networks of mixed lengths, as scripts/bench loads.
fn lists() -> Lists {
    let mut x = 0x9e37_79b9_u32;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let black: Vec<ListRow> = (0..10_000)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(next());
            let value = if i < 6000 {
                a.to_string()
            } else {
                format!("{a}/{}", [16, 20, 22, 24][i % 4])
            };
            ListRow {
                id: i as i64,
                value,
                detail: String::new(),
            }
        })
        .collect();
    let rows = ListRows {
        black,
        ..ListRows::default()
    };
    Lists::build(&rows, &[]).0
}

fn addrs(n: usize) -> Vec<IpAddr> {
    let mut x = 0x1234_5678_u32;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            IpAddr::V4(x.into())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ranges = country_data();
    let lists = lists();
    let ips = addrs(1 << 20); // 1M sources: more than the CPU caches hold, as in a sweep

    c.bench_function("uncached country lookup (binary search)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            black_box(ranges.lookup(ips[i]))
        })
    });
    c.bench_function("list match, 10k addresses and CIDRs", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            black_box(lists.ip_verdict(ips[i]))
        })
    });
    c.bench_function("parse $si", |b| {
        b.iter(|| black_box(sipguard::addr::parse_source(black_box("203.0.113.77"))))
    });

    let cfg = Config::parse(
        r#"{"db_url":"mysql://u@127.0.0.1:1/db","stats_dir":null}"#,
        Path::new("bench"),
    )
    .unwrap();
    let guard = Guard::detached(Arc::new(cfg));
    guard.data().publish_lists(lists.clone());
    guard.data().publish_countries(ranges.clone());
    let _ = guard.check_blacklist("2.20.179.10");
    c.bench_function("cached decision (check_blacklist, hot source)", |b| {
        b.iter(|| black_box(guard.check_blacklist(black_box("2.20.179.10"))))
    });
    let texts: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
    c.bench_function("full check, new source each time (sipguard_check)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            black_box(guard.check_all(&texts[i], "", ""))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
