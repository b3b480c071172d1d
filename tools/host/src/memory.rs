//! Registered memory on the host: a heap buffer described by a softndk soft MDL, what the
//! KMDF shell's nonpaged buffer and MDL are on Windows.

use std::ptr::NonNull;

/// Memory backed by a softndk soft MDL.
pub struct SoftMemory {
    root: NonNull<u8>,
    len: usize,
    mdl: Box<softndk::SoftMdl>,
}

impl SoftMemory {
    /// `len` zeroed bytes (`len` > 0 and fits in `u32`), or `None`.
    pub fn new(len: usize) -> Option<Self> {
        let len32 = u32::try_from(len).ok().filter(|l| *l > 0)?;
        let boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let root = NonNull::new(Box::into_raw(boxed).cast::<u8>())?;
        let mdl = softndk::SoftMdl::new(root.as_ptr(), len32);
        Some(Self { root, len, mdl })
    }
}

impl Drop for SoftMemory {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.root.as_ptr(), self.len);
        // SAFETY: allocated by `Box::into_raw` in `new` with this length; freed once, after
        // the MDL (dropped with `self`) can no longer be registered anew.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: the buffer is owned by this value and only reached through the raw root pointer
// (by the provider); moving the value does not move the heap memory.
unsafe impl Send for SoftMemory {}
// SAFETY: as above; `&SoftMemory` gives no access to the bytes.
unsafe impl Sync for SoftMemory {}

// SAFETY: the soft MDL describes exactly the `len` bytes at `root`, which this value owns,
// never moves and frees only on drop.
unsafe impl ndkpi::RegisteredMemory for SoftMemory {
    fn mdl(&self) -> *mut ndkpi::sys::MDL {
        self.mdl.as_mdl()
    }
    fn base(&self) -> *mut u8 {
        self.root.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
}
