//! A heap buffer whose address and capacity are multiples of 4 KiB, as O_DIRECT writes need.
//! It implements monoio's `IoBuf` so it can be handed to the kernel and back.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// O_DIRECT alignment for address, length and file offset.
pub const BLOCK: usize = 4096;

/// Rounds `n` up to a whole number of blocks.
pub fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// Owned, zero-initialised, block-aligned bytes with a logical length.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// The buffer owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// A buffer of at least `min_cap` bytes (rounded up to whole blocks, at least one).
    pub fn with_capacity(min_cap: usize) -> Self {
        let cap = round_up(min_cap.max(1));
        let layout = Layout::from_size_align(cap, BLOCK).unwrap_or_else(|_| {
            // Only reachable with a capacity near usize::MAX, which no record can have.
            std::alloc::handle_alloc_error(Layout::new::<u8>())
        });
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap, len: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised (allocation is zeroed).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Empties the buffer, keeping the allocation.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends bytes; the caller ensured the capacity (see `reserve_total`).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(self.len + data.len() <= self.cap, "AlignedBuf overflow");
        // SAFETY: bounds checked above; regions cannot overlap (we own ours).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            );
        }
        self.len += data.len();
    }

    /// Zero-fills up to the next block boundary so the length is O_DIRECT-writable.
    pub fn pad_to_block(&mut self) {
        let target = round_up(self.len);
        // SAFETY: target <= cap because cap is a whole number of blocks >= len.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, target - self.len) };
        self.len = target;
    }

    /// Truncates to `len` bytes (no-op if already shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A buffer with room for `total` bytes: `self` when it fits, else a bigger one holding
    /// the same contents.
    pub fn reserve_total(self, total: usize) -> Self {
        if total <= self.cap {
            return self;
        }
        let mut bigger = AlignedBuf::with_capacity(total.max(self.cap * 2));
        bigger.extend_from_slice(self.as_slice());
        bigger
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_capacity` with exactly this layout.
        unsafe {
            dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.cap, BLOCK),
            )
        }
    }
}

// SAFETY: the pointer stays valid and unmoved while the buffer is owned by an I/O operation
// (the heap allocation does not move when the struct does), and `len` bytes are initialised.
unsafe impl monoio::buf::IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_padding_and_growth() {
        let mut b = AlignedBuf::with_capacity(10);
        assert_eq!(b.capacity(), BLOCK);
        assert_eq!(b.as_slice().as_ptr() as usize % BLOCK, 0);
        b.extend_from_slice(b"abc");
        b.pad_to_block();
        assert_eq!(b.len(), BLOCK);
        assert_eq!(&b.as_slice()[..4], b"abc\0");
        b.truncate(3);
        let b = b.reserve_total(3 * BLOCK + 1);
        assert_eq!(b.capacity(), 4 * BLOCK);
        assert_eq!(b.as_slice(), b"abc");
        assert_eq!(b.as_slice().as_ptr() as usize % BLOCK, 0);
        assert_eq!(round_up(0), 0);
        assert_eq!(round_up(4097), 8192);
    }
}
