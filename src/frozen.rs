//! Read-only arrays for the lookup tables, backed by transparent huge pages when large.
//!
//! Every request reaches the tables with cold caches (the worker sleeps between packets and
//! the CPU runs other work), so each access pays a TLB miss on top of a cache miss; under a
//! hypervisor that is a two-dimensional page walk. On 2 MB pages the walk is shorter and one
//! TLB entry covers what 512 did: measured on the bench VM, a random access after cache and TLB
//! eviction fell from ~210 ns to ~155 ns. The kernel honours `MADV_HUGEPAGE` in its default
//! `madvise` mode; where it does not, the memory is simply ordinary pages.

use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::nodefile::FileMap;

/// Element types that may be viewed as bytes and back: plain integers, valid for every bit
/// pattern, without padding (what the node file stores).
///
/// # Safety
/// Implement only for types with no padding and no invalid bit patterns.
pub unsafe trait Plain: Copy + 'static {}
// SAFETY: plain integers.
unsafe impl Plain for u16 {}
// SAFETY: plain integers.
unsafe impl Plain for u32 {}
// SAFETY: plain integers.
unsafe impl Plain for u128 {}

/// Arrays at least this large get their own huge-page-aligned mapping.
const HUGE_MIN_BYTES: usize = 1 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// An immutable slice, in a 2 MB-aligned anonymous mapping when large, else on the heap, or a
/// view into a node file mapped by every worker ([`Frozen::shared`]).
pub struct Frozen<T: Copy> {
    store: Store<T>,
}

enum Store<T> {
    Heap(Box<[T]>),
    Mapped {
        /// Start of the data, 2 MB-aligned inside the mapping.
        data: NonNull<T>,
        len: usize,
        /// The whole mapping, for `munmap`.
        map: NonNull<libc::c_void>,
        map_len: usize,
    },
    Shared {
        data: NonNull<T>,
        len: usize,
        /// Keeps the file mapped while any array points into it.
        _file: Arc<FileMap>,
    },
}

// SAFETY: the mapping is owned, never written after construction, and freed once on drop.
unsafe impl<T: Copy + Send> Send for Frozen<T> {}
// SAFETY: shared access is read-only.
unsafe impl<T: Copy + Sync> Sync for Frozen<T> {}

impl<T: Copy> Frozen<T> {
    /// Freezes `v`; large arrays are copied into huge-page-backed memory.
    pub fn new(v: Vec<T>) -> Self {
        let bytes = std::mem::size_of_val(v.as_slice());
        if bytes < HUGE_MIN_BYTES || std::mem::align_of::<T>() > HUGE_PAGE {
            return Frozen {
                store: Store::Heap(v.into_boxed_slice()),
            };
        }
        let data_len = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let map_len = data_len + HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping; checked for failure below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let Some(map) = NonNull::new(map).filter(|m| m.as_ptr() != libc::MAP_FAILED) else {
            return Frozen {
                store: Store::Heap(v.into_boxed_slice()),
            };
        };
        let offset = (HUGE_PAGE - map.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: offset < HUGE_PAGE and data_len + offset <= map_len: inside the mapping.
        unsafe {
            let data = map.as_ptr().cast::<u8>().add(offset);
            // A hint: failure (THP disabled) leaves ordinary pages.
            libc::madvise(data.cast(), data_len, libc::MADV_HUGEPAGE);
            std::ptr::copy_nonoverlapping(v.as_ptr().cast::<u8>(), data, bytes);
            Frozen {
                store: Store::Mapped {
                    data: NonNull::new_unchecked(data.cast()),
                    len: v.len(),
                    map,
                    map_len,
                },
            }
        }
    }
}

impl<T: Plain> Frozen<T> {
    /// `len` elements at byte `offset` of a mapped node file, read in place. Errors: the range
    /// is outside the file or not aligned for `T`.
    pub fn shared(file: Arc<FileMap>, offset: usize, len: usize) -> Result<Self, String> {
        let bytes = file.bytes();
        len.checked_mul(size_of::<T>())
            .and_then(|n| n.checked_add(offset))
            .filter(|&end| end <= bytes.len())
            .ok_or(format!("{len} elements at {offset} lie outside the file"))?;
        // SAFETY: in bounds (checked above); alignment checked next.
        let p = unsafe { bytes.as_ptr().add(offset) };
        if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(format!("elements at {offset} are not aligned"));
        }
        let data = NonNull::new(p.cast_mut().cast::<T>()).ok_or("null mapping")?;
        Ok(Frozen {
            store: Store::Shared {
                data,
                len,
                _file: file,
            },
        })
    }

    /// The elements as bytes (native order, little-endian here), for writing a node file.
    pub fn as_bytes(&self) -> &[u8] {
        let s: &[T] = self;
        // SAFETY: `T: Plain` has no padding; the bytes live as long as `self`.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
    }
}

impl<T: Copy> Deref for Frozen<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.store {
            Store::Heap(b) => b,
            // SAFETY: `len` initialised elements at `data`, alive as long as `self`.
            Store::Mapped { data, len, .. } | Store::Shared { data, len, .. } => unsafe {
                std::slice::from_raw_parts(data.as_ptr(), *len)
            },
        }
    }
}

impl<T: Copy> Drop for Frozen<T> {
    fn drop(&mut self) {
        if let Store::Mapped { map, map_len, .. } = self.store {
            // SAFETY: the mapping made in `new`, unmapped exactly once.
            unsafe {
                libc::munmap(map.as_ptr(), map_len);
            }
        }
    }
}

impl<T: Copy> Clone for Frozen<T> {
    fn clone(&self) -> Self {
        Frozen::new(self.to_vec())
    }
}

impl<T: Copy> Default for Frozen<T> {
    fn default() -> Self {
        Frozen::new(Vec::new())
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for Frozen<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frozen[{} items]", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_arrays_read_back() {
        for n in [0usize, 1, 1000, 600_000] {
            let v: Vec<u32> = (0..n as u32)
                .map(|i| i.wrapping_mul(2_654_435_761))
                .collect();
            let f = Frozen::new(v.clone());
            assert_eq!(&*f, v.as_slice());
            assert_eq!(&*f.clone(), v.as_slice());
        }
        let big = Frozen::new(vec![7u128; 100_000]);
        assert!(matches!(big.store, Store::Mapped { .. }));
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(big.iter().all(|&x| x == 7));
    }
}
