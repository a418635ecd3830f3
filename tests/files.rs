//! Snapshot files on a full disk: a real 64 KiB tmpfs (needs root to mount; scripts/test runs
//! as root and sets SIPGUARD_REQUIRE_MOUNT=1 so the test cannot be skipped there).

use std::path::{Path, PathBuf};
use std::process::Command;

use sipguard::engine::{ListRow, ListRows};
use sipguard::ranges::CountryRangesBuilder;
use sipguard::snapshot;

/// Unmounts and removes the directory when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tiny_tmpfs() -> Option<Mounted> {
    let dir = std::env::temp_dir().join(format!("sg-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            std::env::var_os("SIPGUARD_REQUIRE_MOUNT").is_none(),
            "cannot mount a tmpfs at {}",
            dir.display()
        );
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return None;
    }
    Some(Mounted(dir))
}

fn entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_full_disk_keeps_the_old_snapshots_and_leaves_no_temporary_file() {
    let Some(m) = tiny_tmpfs() else {
        return;
    };
    let dir = &m.0;
    let rows = ListRows {
        black: vec![ListRow {
            id: 1,
            value: "198.51.100.0/24".into(),
            detail: "listed".into(),
        }],
        ..ListRows::default()
    };
    snapshot::write_lists(dir, &rows).unwrap();
    let mut small = CountryRangesBuilder::default();
    small.add_v4(1, 10, "ES");
    snapshot::write_countries(dir, &small).unwrap();
    // ~20,000 ranges do not fit in what is left of 64 KiB.
    let mut big = CountryRangesBuilder::default();
    for i in 0..20_000u32 {
        big.add_v4(i * 256, i * 256 + 255, if i % 2 == 0 { "DE" } else { "FR" });
    }
    let err = snapshot::write_countries(dir, &big).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(entries(dir), vec!["countries.snap", "lists.snap"]);
    let back = snapshot::read_countries(dir).unwrap().build();
    assert_eq!(back.lookup("0.0.0.5".parse().unwrap()), Some("ES"));
    assert_eq!(snapshot::read_lists(dir).unwrap(), rows);
}
