//! `import-countries` against the real MariaDB started by scripts/test: every format gives the
//! same answers, refused input (with file, line and reason) changes nothing, `--dry-run`
//! changes nothing and counts what would, and real GeoLite2 files fetched from the npm
//! registry agree between their CSV and MMDB forms and with the MMDB reader itself.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::Conn;
use sipguard::admin::{import, AdminError};
use sipguard::countrydata::{self, Options};
use sipguard::ranges::CountryRanges;

struct Quiet;
impl import::Progress for Quiet {
    fn update(&self, _: u64, _: u64) {}
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg-country-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// A fresh database `name` with the schema applied, and a connection to it.
async fn schema_db(admin: &str, name: &str) -> Conn {
    let url = common::fresh_db(admin, name).await;
    let mut conn = common::connect(&url).await;
    common::apply_schema(&mut conn).await;
    conn
}

async fn live(conn: &mut Conn) -> CountryRanges {
    let (b, _) = sipguard::db::load_countries(conn, Duration::from_secs(120))
        .await
        .unwrap();
    b.build()
}

/// Row counts and checksums of the live tables: equal before and after means unchanged.
async fn fingerprint(conn: &mut Conn) -> Vec<(String, Option<u64>)> {
    conn.query("CHECKSUM TABLE ipcountry, ipcountry6")
        .await
        .unwrap()
}

async fn run(
    conn: &mut Conn,
    files: &[PathBuf],
    opts: Options,
    dry_run: bool,
) -> Result<import::ImportReport, AdminError> {
    import::import(conn, files, &opts, dry_run, &Quiet).await
}

/// What every fixture says, whatever its format: nested FR/ES (narrowest wins), KR from a
/// name with a comma, a placeholder row, and IPv6.
const EXPECTED: [(&str, Option<&str>); 9] = [
    ("1.0.0.1", Some("AU")),
    ("1.11.5.5", Some("KR")),
    ("2.20.179.10", Some("ES")),
    ("2.20.1.1", Some("FR")),
    ("9.9.9.9", None),
    ("8.8.8.8", None),
    ("2001:200::1", Some("JP")),
    ("2001:200:ffff::1", Some("JP")),
    ("2001:db8::1", None),
];

const CLEAN_CSV: &str = "1.0.0.0,1.0.0.255,AU\n1.11.0.0,1.11.255.255,KR\n2.20.0.0,2.20.255.255,FR\n2.20.179.0,2.20.179.255,ES\n9.9.9.0,9.9.9.255,ZZ\n2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n";

/// The fixtures, one set of files per format.
fn fixtures(dir: &Path) -> Vec<(&'static str, Vec<PathBuf>)> {
    let mapped = |v4: u32| (0xffffu128 << 32) + u128::from(v4);
    let jp = (
        0x2001_0200u128 << 96,
        (0x2001_0200u128 << 96) | ((1u128 << 96) - 1),
    );
    let mut out = vec![
        (
            "db-ip text, spreadsheet-saved",
            vec![write(
                dir,
                "dbip-country-lite.csv",
                "\u{feff}\"1.0.0.0\",\"1.0.0.255\",\"au\"\r\n1.11.0.0 , 1.11.255.255 , KR\r\n\"2.20.0.0\",\"2.20.255.255\",\"FR\"\r\n2.20.179.0,2.20.179.255,ES\r\n9.9.9.0,9.9.9.255,ZZ\r\n2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\r\n",
            )],
        ),
        (
            "db-ip numeric, one file per family",
            vec![
                write(
                    dir,
                    "country-ipv4-num.csv",
                    "16777216,16777471,AU\n17498112,17563647,KR\n34865152,34930687,FR\n34910976,34911231,ES\n151587072,151587327,-\n",
                ),
                write(
                    dir,
                    "country-ipv6-num.csv",
                    format!("{},{},JP\n", jp.0, jp.1),
                ),
            ],
        ),
        (
            "IP2Location LITE DB1, IPv4 + IPv6 editions",
            vec![
                write(
                    dir,
                    "IP2LOCATION-LITE-DB1.CSV",
                    "\"0\",\"16777215\",\"-\",\"-\"\r\n\"16777216\",\"16777471\",\"AU\",\"Australia\"\r\n\"17498112\",\"17563647\",\"KR\",\"Korea, Republic of\"\r\n\"34865152\",\"34930687\",\"FR\",\"France\"\r\n\"34910976\",\"34911231\",\"ES\",\"Spain\"\r\n",
                ),
                write(
                    dir,
                    "IP2LOCATION-LITE-DB1.IPV6.CSV",
                    // As the real IPv6 edition does, it holds IPv4 space again as mapped rows.
                    format!(
                        "\"0\",\"281470681743359\",\"-\",\"-\"\r\n\"{}\",\"{}\",\"AU\",\"Australia\"\r\n\"{}\",\"{}\",\"KR\",\"Korea, Republic of\"\r\n\"{}\",\"{}\",\"JP\",\"Japan\"\r\n",
                        mapped(16777216), mapped(16777471), mapped(17498112), mapped(17563647), jp.0, jp.1
                    ),
                ),
            ],
        ),
        (
            "IP2Location LITE DB1 IPv6 edition alone (IPv4 as mapped rows)",
            vec![write(
                dir,
                "IP2LOCATION-LITE-DB1.IPV6.CSV.only",
                format!(
                    "\"{}\",\"{}\",\"AU\",\"Australia\"\n\"{}\",\"{}\",\"KR\",\"Korea, Republic of\"\n\"{}\",\"{}\",\"FR\",\"France\"\n\"{}\",\"{}\",\"ES\",\"Spain\"\n\"{}\",\"{}\",\"-\",\"-\"\n\"{}\",\"{}\",\"JP\",\"Japan\"\n",
                    mapped(16777216), mapped(16777471), mapped(17498112), mapped(17563647),
                    mapped(34865152), mapped(34930687), mapped(34910976), mapped(34911231),
                    mapped(151587072), mapped(151587327), jp.0, jp.1
                ),
            )],
        ),
        (
            "MaxMind GeoLite2 Country CSV",
            vec![
                write(
                    dir,
                    "GeoLite2-Country-Blocks-IPv4.csv",
                    "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,is_anycast\n1.0.0.0/24,2077456,2077456,,0,0,\n1.11.0.0/16,,1835841,,0,0,\n2.20.0.0/16,3017382,3017382,,0,0,\n2.20.179.0/24,2510769,2510769,,0,0,\n9.9.9.0/24,,,,1,0,\n",
                ),
                write(
                    dir,
                    "GeoLite2-Country-Blocks-IPv6.csv",
                    "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,is_anycast\n2001:200::/32,1861060,1861060,,0,0,\n",
                ),
                write(
                    dir,
                    "GeoLite2-Country-Locations-en.csv",
                    "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union\n2077456,en,OC,Oceania,AU,Australia,0\n1835841,en,AS,Asia,KR,\"Korea, Republic of\",0\n3017382,en,EU,Europe,FR,France,1\n2510769,en,EU,Europe,ES,Spain,1\n1861060,en,AS,Asia,JP,Japan,0\n",
                ),
            ],
        ),
    ];
    // A GeoIP2-layout MMDB (country.iso_code), written by Python's mmdb-writer as the N
    // benchmark's is; gzip-compressed, as some mirrors ship it.
    let csv = write(dir, "clean.csv", CLEAN_CSV);
    let mmdb = dir.join("GeoIP2-Country-fixture.mmdb");
    let made = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make_mmdb.py"))
        .arg(&mmdb)
        .arg(&csv)
        .output();
    match made {
        Ok(o) if o.status.success() => {
            let gz = dir.join("GeoIP2-Country-fixture.mmdb.gz");
            let status = std::process::Command::new("gzip")
                .arg("-kf")
                .arg(&mmdb)
                .status()
                .unwrap();
            assert!(status.success());
            out.push(("MMDB, GeoIP2 layout", vec![mmdb]));
            out.push(("MMDB, GeoIP2 layout, gzip", vec![gz]));
        }
        other if std::env::var("SIPGUARD_REQUIRE_DB").as_deref() == Ok("1") => {
            panic!("scripts/make_mmdb.py failed (mmdb-writer missing? scripts/test installs it): {other:?}")
        }
        _ => eprintln!("skipping the MMDB fixture: python3 mmdb-writer not installed"),
    }
    out
}

#[test]
fn every_format_gives_the_same_answers() {
    let Some(admin) = common::admin_url() else {
        return;
    };
    let dir = tmpdir("formats");
    common::rt().block_on(async {
        let mut conn = schema_db(&admin, "sg_country_formats").await;
        let fx = fixtures(&dir);
        for (name, files) in &fx {
            let report = run(&mut conn, files, Options::default(), false)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let s = &report.summary;
            // An MMDB holds CIDR networks, not the ranges it was written from: FR around ES
            // comes back as several networks, none nested.
            if !name.starts_with("MMDB") {
                assert_eq!((s.v4, s.v6), (4, 1), "{name}: rows per family");
                assert_eq!(s.nested, (1, 0), "{name}: ES inside FR");
            }
            assert_eq!(report.replaced, vec!["ipcountry", "ipcountry6"], "{name}");
            let twice = if name.starts_with("IP2Location LITE DB1, IPv4 + IPv6") {
                2
            } else {
                0
            };
            assert_eq!(
                s.duplicates, twice,
                "{name}: rows in both editions are stored once"
            );
            let ranges = live(&mut conn).await;
            for (ip, want) in EXPECTED {
                let ip: IpAddr = ip.parse().unwrap();
                assert_eq!(ranges.lookup(ip), want, "{name}: {ip}");
            }
            let text: Vec<(String, String, String)> = conn
                .query(
                    "SELECT ipstart, ipend, countrycode FROM ipcountry ORDER BY ipfrom, ipto DESC",
                )
                .await
                .unwrap();
            assert_eq!(
                text[0],
                ("1.0.0.0".into(), "1.0.0.255".into(), "AU".into()),
                "{name}: the post's text columns"
            );
        }
        // Placeholders are counted by kind.
        let report = run(&mut conn, &fx[0].1, Options::default(), true)
            .await
            .unwrap();
        assert_eq!(report.summary.skipped.get("ZZ"), Some(&1));
        let report = run(&mut conn, &fx[3].1, Options::default(), true)
            .await
            .unwrap();
        assert_eq!(
            report.summary.mapped,
            5 - 1,
            "four mapped rows with a country"
        );
        assert_eq!(report.summary.skipped.get("-"), Some(&1));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refused_input_and_dry_runs_change_nothing() {
    let Some(admin) = common::admin_url() else {
        return;
    };
    let dir = tmpdir("refusals");
    common::rt().block_on(async {
        let mut conn = schema_db(&admin, "sg_country_refusals").await;
        let good = write(&dir, "good.csv", CLEAN_CSV);
        run(&mut conn, &[good], Options::default(), false)
            .await
            .unwrap();
        let before = fingerprint(&mut conn).await;
        let ok = "1.0.0.0,1.0.0.255,AU\n";
        let cases: Vec<(&str, String, &str)> = vec![
            ("three-letter.csv", format!("{ok}1.11.0.0,1.11.255.255,USA\n"), "three-letter.csv:2: country code \"USA\" is not two letters"),
            ("octal.csv", format!("{ok}010.0.0.0,10.0.0.255,AU\n"), "octal.csv:2: \"010.0.0.0\" has a leading zero"),
            ("rounded-ipv4.csv", "16777216,16777471,AU\n1.6777216E7,16777471,AU\n".into(), "rounded-ipv4.csv:2: \"1.6777216E7\" has an exponent"),
            ("decimal-ipv4.csv", "16777216,16777471,AU\n16777216.0,16777471,AU\n".into(), "decimal-ipv4.csv:2: \"16777216.0\" has a decimal point"),
            ("padded-ipv4.csv", "16777216,16777471,AU\n016777216,16777471,AU\n".into(), "padded-ipv4.csv:2: \"016777216\" has a leading zero"),
            ("reversed.csv", format!("{ok}8.8.9.0,8.8.8.255,US\n"), "reversed.csv:2: start 8.8.9.0 is after end 8.8.8.255"),
            ("nofamily.csv", "16777216,16777471,AU\n".into(), "nofamily.csv:1: 16777216 is a number, and neither --family nor the file name"),
            ("db1.csv", format!("\"0\",\"16777215\",\"-\",\"-\"\n\"{}\",\"{}\",\"AU\",\"Australia\"\n", (0xffffu128 << 32) + 16777216, (0xffffu128 << 32) + 16777471), "db1.csv:2: 281470698520576 is too large for an IPv4 address (family IPv4 from the file name, format or --family); is this the IPv6 edition? pass --family ipv6"),
            ("placeholders.csv", "9.9.9.0,9.9.9.255,ZZ\n1.0.0.0,1.0.0.255,-\n".into(), "no country rows in the input (2 placeholder rows skipped)"),
            ("GeoLite2-Country-Blocks-IPv4.csv", "network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,2077456,\n".into(), "GeoLite2-Country-Blocks-IPv4.csv: MaxMind blocks need their Locations file"),
        ];
        for (name, body, want) in &cases {
            let f = write(&dir, name, body);
            let e = run(&mut conn, &[f], Options::default(), false)
                .await
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{name}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(want), "{name}: {msg}");
            assert!(msg.ends_with("nothing was changed"), "{name}: {msg}");
            assert_eq!(fingerprint(&mut conn).await, before, "{name}: live tables changed");
        }
        // A refused file among good ones refuses them all.
        let good2 = write(&dir, "good2.csv", "5.5.5.0,5.5.5.255,DE\n");
        let bad = dir.join("three-letter.csv");
        assert!(run(&mut conn, &[good2.clone(), bad], Options::default(), false).await.is_err());
        assert_eq!(fingerprint(&mut conn).await, before);

        // A dry run reports what would change and changes nothing.
        let next = write(
            &dir,
            "next.csv",
            "1.0.0.0,1.0.0.255,NZ\n1.11.0.0,1.11.255.255,KR\n2.20.0.0,2.20.255.255,FR\n2.20.179.0,2.20.179.255,ES\n5.5.5.0,5.5.5.255,DE\n",
        );
        let r = run(&mut conn, std::slice::from_ref(&next), Options::default(), true)
            .await
            .unwrap();
        assert!(r.replaced.is_empty());
        assert_eq!(fingerprint(&mut conn).await, before, "dry run changed the tables");
        let v4 = &r.summary.v4_changes;
        assert_eq!(v4.lost.get("AU"), Some(&256));
        assert_eq!(v4.gained.get("NZ"), Some(&256));
        assert_eq!(v4.gained.get("DE"), Some(&256));
        assert_eq!(v4.changed, 512);
        assert_eq!(r.summary.v6, 0);
        // The real import of the same file changes exactly that, and keeps ipcountry6.
        let r = run(&mut conn, &[next], Options::default(), false).await.unwrap();
        assert_eq!(r.replaced, vec!["ipcountry"]);
        let ranges = live(&mut conn).await;
        assert_eq!(ranges.lookup("1.0.0.1".parse().unwrap()), Some("NZ"));
        assert_eq!(ranges.lookup("2001:200::1".parse().unwrap()), Some("JP"));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The country a MaxMind DB reader answers for `ip`, read the way the import reads records.
fn reader_answer(reader: &maxminddb::Reader<Vec<u8>>, ip: IpAddr) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iso {
        iso_code: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Rec {
        country: Option<Iso>,
        registered_country: Option<Iso>,
        country_code: Option<String>,
    }
    let r: Rec = reader.lookup(ip).ok()?.decode().ok()??;
    let code = r
        .country
        .and_then(|c| c.iso_code)
        .or(r.registered_country.and_then(|c| c.iso_code))
        .or(r.country_code)?;
    match countrydata::code::cell(&code) {
        Ok(countrydata::CountryCell::Code(c)) => Some(c.to_string()),
        _ => None,
    }
}

/// 10,000 addresses: 2,500 uniform IPv4, 2,500 IPv4 and 5,000 IPv6 inside rows of `data`.
fn sample(data: &countrydata::CountryData) -> Vec<IpAddr> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(10_000);
    for _ in 0..2_500 {
        out.push(IpAddr::from((next() as u32).to_be_bytes()));
    }
    for _ in 0..2_500 {
        let (s, e, _) = data.v4[next() as usize % data.v4.len()];
        let span = u64::from(e - s) + 1;
        out.push(IpAddr::from((s + (next() % span) as u32).to_be_bytes()));
    }
    for _ in 0..5_000 {
        let (s, e, _) = data.v6[next() as usize % data.v6.len()];
        let r = (u128::from(next()) << 64) | u128::from(next());
        let off = match (e - s).checked_add(1) {
            Some(span) => r % span,
            None => r,
        };
        out.push(IpAddr::from((s + off).to_be_bytes()));
    }
    out
}

fn env_files(var: &str) -> Option<Vec<PathBuf>> {
    let v = std::env::var(var).ok()?;
    Some(v.split(':').map(PathBuf::from).collect())
}

#[test]
fn real_geolite2_files_agree_across_formats_and_with_the_reader() {
    let Some(admin) = common::admin_url() else {
        return;
    };
    let (Some(csv), Some(mmdb)) = (
        env_files("SIPGUARD_TEST_GEO_CSV"),
        env_files("SIPGUARD_TEST_GEO_MMDB"),
    ) else {
        eprintln!("skipping: SIPGUARD_TEST_GEO_CSV / SIPGUARD_TEST_GEO_MMDB not set (scripts/test fetches them)");
        return;
    };
    let maxmind = env_files("SIPGUARD_TEST_GEO_MAXMIND_MMDB");
    common::rt().block_on(async {
        let mut conn = schema_db(&admin, "sg_country_real").await;
        let parsed = countrydata::read(&csv, &Options::default()).unwrap();
        let addrs = sample(&parsed);

        let mut loaded = Vec::new();
        let mut epochs = Vec::new();
        let mut sources = vec![
            ("ip-location-db CSV", csv.clone()),
            ("ip-location-db MMDB", mmdb.clone()),
        ];
        if let Some(m) = &maxmind {
            sources.push(("MaxMind GeoLite2-Country.mmdb", m.clone()));
        }
        for (name, files) in &sources {
            let t = Instant::now();
            let r = run(&mut conn, files, Options::default(), false)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            eprintln!(
                "{name}: {} IPv4 + {} IPv6 ranges, {} nested, skipped {:?}, imported in {:.1} s",
                r.summary.v4,
                r.summary.v6,
                r.summary.nested.0 + r.summary.nested.1,
                r.summary.skipped,
                t.elapsed().as_secs_f64()
            );
            let ranges = live(&mut conn).await;
            let answers: Vec<Option<&'static str>> =
                addrs.iter().map(|&ip| ranges.lookup(ip)).collect();
            // An imported MMDB answers exactly what the MMDB reader answers.
            if files[0].to_string_lossy().contains(".mmdb") {
                let reader = maxminddb::Reader::from_source(
                    countrydata::Input::open(&files[0])
                        .unwrap()
                        .bytes()
                        .to_vec(),
                )
                .unwrap();
                epochs.push(reader.metadata().build_epoch);
                let differ = addrs
                    .iter()
                    .zip(&answers)
                    .filter(|(ip, a)| reader_answer(&reader, **ip).as_deref() != **a)
                    .count();
                assert_eq!(
                    differ, 0,
                    "{name}: imported data differs from the MMDB reader on {differ} of 10,000"
                );
            }
            loaded.push((name, answers));
        }
        let differ = |a: &[Option<&str>], b: &[Option<&str>]| {
            a.iter().zip(b).filter(|(x, y)| x != y).count()
        };
        let csv_vs_mmdb = differ(&loaded[0].1, &loaded[1].1);
        eprintln!("ip-location-db CSV vs MMDB: {csv_vs_mmdb} of 10,000 addresses differ");
        assert_eq!(
            csv_vs_mmdb, 0,
            "the same GeoLite2 release as CSV and as MMDB must agree"
        );
        if let Some((name, answers)) = loaded.get(2) {
            let d = differ(&loaded[1].1, answers);
            let none = loaded[1]
                .1
                .iter()
                .zip(answers)
                .filter(|(x, y)| x != y && (x.is_none() || y.is_none()))
                .count();
            let days = epochs[0].abs_diff(epochs[1]) / 86_400;
            eprintln!(
                "{name} vs ip-location-db: {d} of 10,000 differ ({none} known to one only); the two were built {days} days apart"
            );
            // Another release of the same data: networks move between countries from one
            // month to the next (IPv6 most), so they are not expected to agree; a misread
            // layout (no code, or the wrong field) would disagree on most addresses.
            assert!(d < 2_000, "{name}: {d} of 10,000 differ");
        }
    });
}

#[test]
fn the_import_lock_is_per_database() {
    let Some(admin) = common::admin_url() else {
        return;
    };
    let dir = tmpdir("lock");
    common::rt().block_on(async {
        let mut ca = schema_db(&admin, "sg_lock_a").await;
        let mut cb = schema_db(&admin, "sg_lock_b").await;
        // GET_LOCK names are server-wide: any connection can hold database a's lock.
        let mut holder = common::connect(&admin).await;
        let got: Option<i64> = holder
            .query_first("SELECT GET_LOCK('sipguard.import.sg_lock_a', 0)")
            .await
            .unwrap();
        assert_eq!(got, Some(1));
        let f = write(&dir, "c.csv", CLEAN_CSV);
        let e = run(&mut ca, std::slice::from_ref(&f), Options::default(), false)
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 4, "{e}");
        assert!(e.to_string().contains("sipguard.import.sg_lock_a"), "{e}");
        run(&mut cb, &[f], Options::default(), false)
            .await
            .expect("another database of the same server imports meanwhile");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
