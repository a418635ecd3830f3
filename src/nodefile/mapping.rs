//! A data file mapped read-only and shared: every worker of a node reads the same pages.
//!
//! The file is held with a shared `flock` for as long as it is mapped, which is how the
//! builder knows an old file is unused (an exclusive lock succeeds) and may remove it. Files
//! are never written in place (each generation is a new file, renamed into place), so a mapped
//! file cannot change or shrink under a reader; an operator must not edit them either.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// A whole file, mapped `PROT_READ`, `MAP_SHARED`; unmapped (and its lock released) on drop.
pub struct FileMap {
    ptr: NonNull<u8>,
    len: usize,
    /// Keeps the shared lock: the file is in use while this is open.
    _file: File,
}

// SAFETY: the mapping is read-only for its whole life and unmapped once, on drop.
unsafe impl Send for FileMap {}
// SAFETY: shared access is read-only.
unsafe impl Sync for FileMap {}

impl FileMap {
    /// Opens, locks (shared) and maps `path`. Errors: the file's, or `WouldBlock` while a
    /// builder is removing it.
    pub fn open(path: &Path) -> io::Result<FileMap> {
        let file = File::open(path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
        }
        // SAFETY: a fresh read-only shared mapping of a file we hold open; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        Ok(FileMap {
            ptr,
            len,
            _file: file,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped at `ptr` for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped exactly once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Removes `path` unless some process holds it mapped (a shared lock on it); returns whether
/// it was removed. The exclusive lock is held while unlinking, so a worker opening the file
/// meanwhile fails to lock it and looks for the current file instead.
pub fn remove_if_unused(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    std::fs::remove_file(path).is_ok()
}
