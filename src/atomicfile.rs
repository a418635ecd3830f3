//! Files replaced whole and durably: the snapshots and the stats files.
//!
//! A reader (a worker starting while the database is down, `sipguard-admin stats`) must find
//! the old file or the new one, never half of one, and never an empty one after a power cut:
//! the new content goes to a temporary file created exclusively (`O_EXCL`, `O_NOFOLLOW`: a
//! name planted in the directory, or a symbolic link, is never written through), is synced,
//! renamed over the old name, and the directory is synced so the rename itself survives a
//! crash. On any error the temporary file is removed (a full disk leaves nothing behind) and
//! the old file stays as it was.
//!
//! The directories must still be private to Kamailio's user (the README says which): whoever
//! can write in them can replace what a worker enforces at its next start.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Most temporary names tried before giving up (names taken by other writers or planted).
const TRIES: u32 = 64;

/// Replaces `dir/name` with `bytes`, atomically and durably; creates `dir` (mode 0750) if
/// needed. Errors: any I/O error (ENOSPC, EACCES, …), after which the old file is unchanged and
/// no temporary file is left.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    replace_with(dir, name, |f| f.write_all(bytes))
}

/// [`replace`] without the syncs, for a file rewritten every second whose loss in a crash
/// costs nothing (the stats files, on a tmpfs by default): a slow disk must not slow the
/// loader's rounds.
pub fn replace_volatile(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_then_rename(dir, name, |f| f.write_all(bytes), false)
}

/// Creates `dir` and its parents if missing, mode 0750 (private to Kamailio's user and group).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o750).create(dir)
}

/// [`replace`] with the content written by `write` (which may fail, as a full disk does).
pub fn replace_with(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    write_then_rename(dir, name, write, true)
}

fn write_then_rename(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
    durable: bool,
) -> io::Result<()> {
    create_private_dir(dir)?;
    let (tmp, mut file) = create_temp(dir, name)?;
    let result = (|| {
        write(&mut file)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, dir.join(name))?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Gone already if the rename happened and only the directory sync failed.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A new file `dir/.NAME.PID.N.tmp`, created exclusively without following links.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    for n in 0..TRIES {
        let path = dir.join(format!(".{name}.{pid}.{n}.tmp"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{}: {TRIES} temporary names for {name} are taken",
            dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sg-atomic-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn links_are_never_written_through() {
        let d = dir("links");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        // A link at the target name is replaced, not followed.
        symlink(&victim, d.join("lists.snap")).unwrap();
        // A link planted at the first temporary name is skipped, not followed or removed.
        let planted = d.join(format!(".lists.snap.{}.0.tmp", std::process::id()));
        symlink(&victim, &planted).unwrap();
        replace(&d, "lists.snap", b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let target = d.join("lists.snap");
        assert!(!target.symlink_metadata().unwrap().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(planted.symlink_metadata().unwrap().is_symlink());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let d = dir("fail");
        replace(&d, "stats.json", b"old").unwrap();
        let err = replace_with(&d, "stats.json", |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(d.join("stats.json")).unwrap(), b"old");
        assert_eq!(names(&d), vec!["stats.json".to_string()]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
