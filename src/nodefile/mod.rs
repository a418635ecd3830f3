//! One copy of the country tables per node, not per worker: built once per data generation
//! into a file in `snapshot_dir`, mapped read-only and shared by every worker.
//!
//! Every worker used to read the country tables from MariaDB (half a million rows) and build
//! its own ~10 MB copy: 16 workers meant 16 reads at every start and import, and 16 copies
//! competing for the CPU caches. Now, for a given generation, exactly one process builds
//! `countries.<generation>.<key>.map` (whoever takes the exclusive `flock` on
//! `countries.lock`; a builder that dies releases it and another takes over), written whole
//! and synced ([`crate::atomicfile`]); the others keep serving what they have until the file
//! is there, then map it. The file is also the snapshot a worker starting with the database
//! down maps ([`newest`]). Files no worker maps any more are removed by the next builder.
//!
//! | file | job |
//! |---|---|
//! | `mapping.rs` | a file mapped shared and read-only, held with a shared lock |
//! | `format.rs` | the layout: the lookup arrays as searched, checked on map |

mod format;
mod mapping;

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use format::Header;
pub use mapping::FileMap;

use crate::ranges::CountryRanges;

const LOCK: &str = "countries.lock";
const PREFIX: &str = "countries.";
const SUFFIX: &str = ".map";

/// The file name for data read at `header`.
pub fn file_name(header: Header) -> String {
    match header.generation {
        Some(g) => format!("{PREFIX}{g}.{:08x}{SUFFIX}", header.key),
        None => format!("{PREFIX}none.{:08x}{SUFFIX}", header.key),
    }
}

/// The key of the tables' fingerprint (`db::country_marker`): the same in every worker that
/// read the same tables.
pub fn key(marker: &str) -> u32 {
    crc32fast::hash(marker.as_bytes())
}

/// The node's newest file for `sipguard_generation.countries` = `generation` in `dir`, if one has
/// been built (by name: `countries.<generation>.<key>.map`, whatever the key; not opened). A
/// hand edit that keeps the generation gives a second file of it; the newest is named.
pub fn for_generation(dir: &Path, generation: u64) -> Option<PathBuf> {
    let stem = format!("{PREFIX}{generation}.");
    data_files(dir).into_iter().rev().map(|(_, f)| f).find(|f| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&stem))
    })
}

/// Maps `path` and checks it whole.
pub fn map(path: &Path) -> Result<(CountryRanges, Header), String> {
    let m = FileMap::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    format::decode(&Arc::new(m)).map_err(|e| format!("{}: {e}", path.display()))
}

/// What [`obtain`] got.
pub enum Obtained {
    /// The tables, mapped from the node's file; `built` when this call read the database.
    Mapped {
        /// The tables.
        ranges: Box<CountryRanges>,
        /// This process built the file (else another process of the node did).
        built: bool,
    },
    /// Built here from the database, but the file could not be written (a full or read-only
    /// `snapshot_dir`: the reason): this worker serves its own copy, as before node files.
    Unshared {
        /// The tables, on this worker's heap.
        ranges: Box<CountryRanges>,
        /// Why the file could not be written.
        why: String,
    },
    /// Another process was still building this generation when the wait ran out: keep
    /// serving, look again next round.
    Busy,
}

/// The node's tables for `header`: maps the file if it is there; else, if no other process is
/// building it, builds it with `load` (the database read), writes it, removes files no
/// process maps any more, and maps it. While another process builds it, waits up to `wait`
/// for its file (polling every 20 ms: the waiting workers map it as soon as it is renamed
/// into place, not a refresh round later), then answers [`Obtained::Busy`]; so call it from a
/// background thread. `notes` gets what the operator should know (a corrupt file replaced,
/// old files that could not be removed).
pub fn obtain(
    dir: &Path,
    header: Header,
    wait: Duration,
    load: impl FnOnce() -> Result<CountryRanges, String>,
    notes: &mut Vec<String>,
) -> Result<Obtained, String> {
    let path = dir.join(file_name(header));
    let mapped = |ranges, built| Obtained::Mapped {
        ranges: Box::new(ranges),
        built,
    };
    if path.exists() {
        match map(&path) {
            Ok((r, _)) => return Ok(mapped(r, false)),
            Err(e) => notes.push(format!("{e}; building it again")),
        }
    }
    // Without a lock file (a read-only directory) every worker builds its own copy.
    let lock = crate::atomicfile::create_private_dir(dir).and_then(|()| {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
    });
    if let Ok(lock) = &lock {
        // SAFETY: flock on a descriptor we own; released when `lock` closes (or the process
        // dies, so a builder that dies midway hands over to the next one).
        let started = Instant::now();
        while unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            if let Ok((r, _)) = map(&path) {
                return Ok(mapped(r, false));
            }
            if started.elapsed() >= wait {
                return Ok(Obtained::Busy);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Built by another process between our look and our lock?
        if let Ok((r, _)) = map(&path) {
            return Ok(mapped(r, false));
        }
    }
    let ranges = load()?;
    let written =
        crate::atomicfile::replace(dir, &file_name(header), &format::encode(&ranges, header))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
            .and_then(|()| map(&path));
    let out = match written {
        Ok((r, _)) => {
            remove_unused(dir, &path);
            mapped(r, true)
        }
        Err(why) => Obtained::Unshared {
            ranges: Box::new(ranges),
            why,
        },
    };
    drop(lock);
    Ok(out)
}

/// The node's newest country file in `dir` and when it was written (for `sipguard-admin
/// metrics`); `None` when none has been built.
pub fn newest_file(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    data_files(dir).pop()
}

fn data_files(dir: &Path) -> Vec<(std::time::SystemTime, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(PREFIX) && n.ends_with(SUFFIX)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    files
}

/// Removes the data files other than `keep` that no process maps; one still mapped by a
/// worker that has not switched yet is left for the next build.
fn remove_unused(dir: &Path, keep: &Path) {
    for (_, f) in data_files(dir) {
        if f != keep {
            mapping::remove_if_unused(&f);
        }
    }
}

/// The newest data file in `dir` that maps and checks, for a start with the database down;
/// the reasons the newer ones were refused go to `refused`.
pub fn newest(dir: &Path, refused: &mut Vec<String>) -> Option<(CountryRanges, Header)> {
    for (_, f) in data_files(dir).into_iter().rev() {
        match map(&f) {
            Ok(r) => return Some(r),
            Err(e) => refused.push(e),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::CountryRangesBuilder;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sg-nodefile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Enough ranges for every array: the /16 index, several IPv6 search levels, nesting.
    fn sample() -> CountryRanges {
        let mut b = CountryRangesBuilder::default();
        let codes = ["DE", "FR", "ES", "US", "BR"];
        for i in 0..40_000u32 {
            let s = i.wrapping_mul(97_003) & 0xffff_ff00;
            b.add_v4(s, s + 255 + (i % 7) * 256, codes[i as usize % 5]);
        }
        b.add_v4(0x0a00_0000, 0x0aff_ffff, "ZZ");
        for i in 0..20_000u128 {
            let s = (0x2001u128 << 112) + (i << 80) * 3;
            b.add_v6(s, s + (1 << 79), codes[i as usize % 5]);
        }
        b.build()
    }

    fn probes() -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = (0..20_000u32)
            .map(|i| IpAddr::from(i.wrapping_mul(2_654_435_761).to_be_bytes()))
            .collect();
        v.extend(
            (0..20_000u128)
                .map(|i| IpAddr::from(((0x2001u128 << 112) + (i << 79) + i).to_be_bytes())),
        );
        v
    }

    const H: Header = Header {
        generation: Some(7),
        key: 0xabcd,
    };

    #[test]
    fn a_mapped_file_answers_as_the_tables_it_was_written_from() {
        let d = dir("roundtrip");
        let ranges = sample();
        crate::atomicfile::replace(&d, &file_name(H), &format::encode(&ranges, H)).unwrap();
        let (mapped, header) = map(&d.join(file_name(H))).unwrap();
        assert_eq!(header, H);
        assert_eq!(mapped.sizes(), ranges.sizes());
        for ip in probes() {
            assert_eq!(mapped.lookup(ip), ranges.lookup(ip), "{ip}");
        }
        assert_eq!(mapped.lookup("10.1.2.3".parse().unwrap()), Some("ZZ"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let d = dir("damaged");
        let good = format::encode(&sample(), H);
        let path = d.join("countries.test.map");
        let refit_crc = |mut b: Vec<u8>| {
            let crc = crc32fast::hash(&b[64..]);
            b[16..20].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // A start moved (checksum made to match): the arrays' own checks catch it.
        let mut moved = good.clone();
        let v4_starts =
            u64::from_le_bytes(moved[64 + 24 + 8..64 + 24 + 16].try_into().unwrap()) as usize;
        moved[v4_starts + 4..v4_starts + 8].copy_from_slice(&0u32.to_le_bytes());
        for (what, bytes, why) in [
            (
                "truncated",
                good[..good.len() - 100].to_vec(),
                "truncated or padded",
            ),
            (
                "flipped bit",
                {
                    let mut b = good.clone();
                    let n = b.len() / 2;
                    b[n] ^= 0x10;
                    b
                },
                "checksum mismatch",
            ),
            (
                "version",
                {
                    let mut b = good.clone();
                    b[4] = 9;
                    b
                },
                "format version 9",
            ),
            (
                "magic",
                {
                    let mut b = good.clone();
                    b[0] = b'X';
                    b
                },
                "not a sipguard country file",
            ),
            (
                "moved start",
                refit_crc(moved),
                "IPv4 tables: starts not increasing",
            ),
            ("empty", Vec::new(), "empty file"),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let err = map(&path)
                .err()
                .unwrap_or_else(|| panic!("{what}: accepted"));
            assert!(err.contains(why), "{what}: {err}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_waiting_worker_maps_the_file_as_soon_as_the_builder_renames_it() {
        let d = dir("wait");
        let loads = AtomicUsize::new(0);
        let build = || {
            loads.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400));
            Ok(sample())
        };
        let (waited, built_here) = std::thread::scope(|s| {
            let builder = s.spawn(|| obtain(&d, H, Duration::ZERO, build, &mut Vec::new()));
            std::thread::sleep(Duration::from_millis(100)); // the builder holds the lock now
            let t = Instant::now();
            let got = obtain(&d, H, Duration::from_secs(10), build, &mut Vec::new()).unwrap();
            let waited = t.elapsed();
            let built_here = matches!(got, Obtained::Mapped { built: true, .. });
            assert!(
                matches!(got, Obtained::Mapped { .. }),
                "the waiter maps the file"
            );
            assert!(matches!(
                builder.join().unwrap().unwrap(),
                Obtained::Mapped { built: true, .. }
            ));
            (waited, built_here)
        });
        assert!(!built_here, "the waiter did not read the database");
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one database read");
        // It mapped within a few polls of the rename (~300 ms after it began to wait), not
        // after its 10 s bound.
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        // With no time to wait, the same situation answers Busy at once.
        let h2 = Header {
            generation: Some(99),
            ..H
        };
        std::thread::scope(|s| {
            let b = s.spawn(|| obtain(&d, h2, Duration::ZERO, build, &mut Vec::new()));
            std::thread::sleep(Duration::from_millis(100));
            let t = Instant::now();
            assert!(matches!(
                obtain(&d, h2, Duration::ZERO, build, &mut Vec::new()).unwrap(),
                Obtained::Busy
            ));
            assert!(t.elapsed() < Duration::from_millis(300));
            b.join().unwrap().unwrap();
        });
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn racing_builders_read_the_database_once_and_old_files_go_when_unmapped() {
        let d = dir("race");
        let loads = AtomicUsize::new(0);
        let slow_load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(sample())
        };
        let results: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        // Each worker retries every 50 ms until it has the tables.
                        loop {
                            match obtain(&d, H, Duration::ZERO, slow_load, &mut Vec::new()).unwrap()
                            {
                                Obtained::Mapped { ranges, .. } => {
                                    return ranges.sizes() == sample().sizes()
                                }
                                Obtained::Unshared { why, .. } => panic!("{why}"),
                                Obtained::Busy => {
                                    std::thread::sleep(std::time::Duration::from_millis(50))
                                }
                            }
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results, vec![true; 4]);
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "one database read per node"
        );
        // A worker still maps generation 7 when generation 8 is built: 7 stays until unmapped.
        let (held, _) = map(&d.join(file_name(H))).unwrap();
        let h8 = Header {
            generation: Some(8),
            key: 1,
        };
        assert!(matches!(
            obtain(&d, h8, Duration::ZERO, || Ok(sample()), &mut Vec::new()).unwrap(),
            Obtained::Mapped { .. }
        ));
        assert!(d.join(file_name(H)).exists(), "removed while mapped");
        drop(held);
        let h9 = Header {
            generation: Some(9),
            key: 2,
        };
        assert!(matches!(
            obtain(&d, h9, Duration::ZERO, || Ok(sample()), &mut Vec::new()).unwrap(),
            Obtained::Mapped { .. }
        ));
        assert!(!d.join(file_name(H)).exists() && !d.join(file_name(h8)).exists());
        // What a worker starting with the database down maps: the newest good file.
        let (_, newest_header) = newest(&d, &mut Vec::new()).unwrap();
        assert_eq!(newest_header, h9);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
