//! The memory of a table's slots. Big arrays are mapped straight from the kernel: they
//! arrive zeroed (an empty slot is all zeros, so there is nothing to fill) and go back to
//! it the moment a growth step drops them, so what the index holds is what the process's
//! resident memory shows. Through the allocator, a table a loader thread dropped at start
//! stayed resident in that thread's abandoned heap.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::slot::Slot;

/// Arrays from this size on are mapped; smaller ones come from the allocator.
const MAP_FROM: usize = 64 * 1024;

pub struct SlotArray {
    ptr: NonNull<Slot>,
    len: usize,
    mapped: bool,
}

// SAFETY: the array owns its memory outright, like a `Box<[Slot]>` (and `Slot` is plain data).
unsafe impl Send for SlotArray {}
// SAFETY: as above; shared access is only through `&[Slot]`.
unsafe impl Sync for SlotArray {}

impl Default for SlotArray {
    fn default() -> Self {
        Self::empty(0)
    }
}

impl std::fmt::Debug for SlotArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotArray({} slots)", self.len)
    }
}

impl SlotArray {
    /// `len` empty slots.
    pub fn empty(len: usize) -> SlotArray {
        let bytes = len * std::mem::size_of::<Slot>();
        if bytes >= MAP_FROM {
            // SAFETY: an anonymous private mapping of `bytes`, checked below; zero-filled
            // memory is `len` valid (empty) slots, and 4 KiB alignment serves `Slot`'s.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                if let Some(ptr) = NonNull::new(p.cast::<Slot>()) {
                    return SlotArray {
                        ptr,
                        len,
                        mapped: true,
                    };
                }
            }
        }
        // Small arrays, or no mapping to be had: the allocator (which aborts when out).
        let boxed: Box<[Slot]> = vec![Slot::EMPTY; len].into_boxed_slice();
        let len = boxed.len();
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<Slot>()).unwrap_or(NonNull::dangling());
        SlotArray {
            ptr,
            len,
            mapped: false,
        }
    }
}

impl Deref for SlotArray {
    type Target = [Slot];
    fn deref(&self) -> &[Slot] {
        // SAFETY: `ptr` points at `len` initialized slots owned by this array.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for SlotArray {
    fn deref_mut(&mut self) -> &mut [Slot] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SlotArray {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: the mapping made in `empty`, of this size, unmapped once.
            unsafe {
                libc::munmap(
                    self.ptr.as_ptr().cast(),
                    self.len * std::mem::size_of::<Slot>(),
                );
            }
        } else {
            // SAFETY: the box taken apart in `empty` (a dangling pointer only for len 0,
            // which `Box<[Slot]>` of length 0 also uses).
            unsafe {
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.ptr.as_ptr(),
                    self.len,
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_mapped_arrays_start_empty_and_hold_what_is_written() {
        for len in [0, 3, MAP_FROM / std::mem::size_of::<Slot>() + 1] {
            let mut a = SlotArray::empty(len);
            assert_eq!(a.len(), len);
            assert!(a.iter().all(Slot::is_empty));
            if len > 0 {
                a[len - 1].flags = 7;
                assert_eq!(a[len - 1].flags, 7);
            }
        }
    }
}
