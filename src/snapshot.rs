//! The last loaded lists and country ranges on local disk, so a Kamailio that starts while the
//! database is down still enforces what it enforced before.
//!
//! Two files in `snapshot_dir`: `lists.snap` (small, rewritten on every list change) and
//! `countries.snap` (~10 MB, rewritten when the country tables change). Each is sealed: magic,
//! format version, payload length and a CRC-32 of the payload; replaced whole and synced
//! ([`crate::atomicfile`]), so a reader sees the old file or the new one, never half of one,
//! even after a power cut. A file that fails any check is refused with the reason, never
//! half-used.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::engine::ListRows;
use crate::ranges::CountryRangesBuilder;

/// Why a snapshot cannot be used.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// No file, or it cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a sealed snapshot of this kind and version, or fails its checksum.
    #[error("{path}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What check failed.
        why: String,
    },
}

const LISTS: (&str, &[u8; 4]) = (LISTS_FILE, b"SGL1");
const COUNTRIES: (&str, &[u8; 4]) = (COUNTRIES_FILE, b"SGC1");
/// The lists' snapshot in `snapshot_dir`.
pub const LISTS_FILE: &str = "lists.snap";
/// A worker's own copy of the country ranges in `snapshot_dir` (the node file is
/// [`crate::nodefile`]'s).
pub const COUNTRIES_FILE: &str = "countries.snap";

fn seal(magic: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out
}

fn unseal<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<&'a [u8], String> {
    if bytes.len() < 16 || &bytes[..4] != magic {
        return Err("not a sipguard snapshot of this kind or version".into());
    }
    let len = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes")) as usize;
    if bytes.len() != 16 + len {
        return Err(format!(
            "truncated or padded: {} bytes for a {len}-byte payload",
            bytes.len()
        ));
    }
    let payload = &bytes[12..12 + len];
    let crc = u32::from_le_bytes(bytes[12 + len..].try_into().expect("4 bytes"));
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), SnapshotError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|source| SnapshotError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((path, bytes))
}

/// Saves the list rows.
pub fn write_lists(dir: &Path, rows: &ListRows) -> std::io::Result<()> {
    let payload = serde_json::to_vec(rows).map_err(std::io::Error::other)?;
    crate::atomicfile::replace(dir, LISTS.0, &seal(LISTS.1, &payload))
}

/// Loads the list rows saved by [`write_lists`].
pub fn read_lists(dir: &Path) -> Result<ListRows, SnapshotError> {
    let (path, bytes) = read(dir, LISTS.0)?;
    let corrupt = |why: String| SnapshotError::Corrupt {
        path: path.clone(),
        why,
    };
    let payload = unseal(LISTS.1, &bytes).map_err(corrupt)?;
    serde_json::from_slice(payload).map_err(|e| corrupt(e.to_string()))
}

/// Saves the country rows (before flattening, so reading them back rebuilds the same table).
/// The loader no longer writes this file (the node's country file is the snapshot, see
/// [`crate::nodefile`]); [`read_countries`] still reads one left by an older version, and the
/// tests write it to check that path.
pub fn write_countries(dir: &Path, rows: &CountryRangesBuilder) -> std::io::Result<()> {
    crate::atomicfile::replace(dir, COUNTRIES.0, &seal(COUNTRIES.1, &rows.encode()))
}

/// Loads the country rows saved by [`write_countries`].
pub fn read_countries(dir: &Path) -> Result<CountryRangesBuilder, SnapshotError> {
    let (path, bytes) = read(dir, COUNTRIES.0)?;
    let corrupt = |why: String| SnapshotError::Corrupt {
        path: path.clone(),
        why,
    };
    let payload = unseal(COUNTRIES.1, &bytes).map_err(corrupt)?;
    CountryRangesBuilder::decode(payload).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ListRow;

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let dir = std::env::temp_dir().join(format!("sipguard-snap-{}", std::process::id()));
        let rows = ListRows {
            black: vec![ListRow {
                id: 1,
                value: "192.0.2.0/24".into(),
                detail: "x".into(),
            }],
            ..ListRows::default()
        };
        write_lists(&dir, &rows).unwrap();
        assert_eq!(read_lists(&dir).unwrap(), rows);

        let mut b = CountryRangesBuilder::default();
        b.add_v4(1, 10, "es");
        b.add_v6(1 << 100, (1 << 100) + 5, "DE");
        write_countries(&dir, &b).unwrap();
        let back = read_countries(&dir).unwrap().build();
        assert_eq!(back.lookup("0.0.0.5".parse().unwrap()), Some("ES"));

        let file = dir.join("lists.snap");
        let good = std::fs::read(&file).unwrap();
        for (what, bytes) in [
            ("truncated", good[..good.len() - 3].to_vec()),
            ("flipped bit", {
                let mut b = good.clone();
                b[14] ^= 1;
                b
            }),
            ("wrong magic", {
                let mut b = good.clone();
                b[0] = b'X';
                b
            }),
            ("empty", Vec::new()),
        ] {
            std::fs::write(&file, bytes).unwrap();
            assert!(
                matches!(read_lists(&dir), Err(SnapshotError::Corrupt { .. })),
                "{what}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(read_lists(&dir), Err(SnapshotError::Io { .. })));
    }
}
