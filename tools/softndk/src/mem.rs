//! Consumer memory: the soft MDL that describes a buffer, and the copies in and out of
//! registered buffers. The only place softndk reads or writes memory it does not own.

use std::collections::BTreeSet;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};

use ndkpi_sys::MDL;

/// A buffer address that may be shared with the fabric's threads. It keeps the provenance of
/// the pointer the consumer gave, so copies through it are valid under Miri.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BytePtr(pub(crate) *mut u8);

// SAFETY: a BytePtr is only dereferenced by `copy_in`/`copy_out`, whose callers hold the
// fabric lock and have checked the range against a registration the consumer keeps valid.
unsafe impl Send for BytePtr {}

impl BytePtr {
    pub(crate) fn addr(self) -> usize {
        self.0.addr()
    }

    /// The pointer `offset` bytes further, keeping provenance.
    pub(crate) fn offset(self, offset: usize) -> Self {
        Self(self.0.wrapping_add(offset))
    }
}

/// The "MDL" a softndk adapter accepts in `NdkRegisterMr` and `NdkBuildLAM`.
///
/// Its header mirrors the x64 layout of the kernel `MDL` (wdm.h): `Next` at 0x00, `Size`
/// 0x08, `MdlFlags` 0x0A, `Process` 0x10, `MappedSystemVa` 0x18, `StartVa` 0x20, `ByteCount`
/// 0x28, `ByteOffset` 0x2C. softndk reads `MappedSystemVa` and `ByteCount` only, and accepts
/// only MDLs created by [`SoftMdl::new`] (others are reported as misuse), so a buffer is
/// described once, like `IoAllocateMdl` + `MmBuildMdlForNonPagedPool`.
///
/// The buffer must stay valid and must not be moved while the MDL is registered (an MR is
/// registered with it, or a LAM was built from it) — the same contract as a locked MDL.
#[repr(C)]
#[derive(Debug)]
pub struct SoftMdl {
    next: *mut c_void,
    size: i16,
    mdl_flags: i16,
    allocation_processor_number: u16,
    reserved: u16,
    process: *mut c_void,
    mapped_system_va: *mut u8,
    start_va: *mut c_void,
    byte_count: u32,
    byte_offset: u32,
}
const _: () = assert!(size_of::<SoftMdl>() == 0x30);
const _: () = assert!(std::mem::offset_of!(SoftMdl, mapped_system_va) == 0x18);
const _: () = assert!(std::mem::offset_of!(SoftMdl, byte_count) == 0x28);

/// `MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL`, as `MmBuildMdlForNonPagedPool` sets.
const MDL_FLAGS_NONPAGED_MAPPED: i16 = 0x0001 | 0x0004;
const PAGE_SIZE: usize = 4096;

static LIVE_MDLS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

impl SoftMdl {
    /// Describe `len` bytes at `buffer`. `buffer` must be non-null; `len` must be non-zero.
    ///
    /// # Panics
    /// If `buffer` is null or `len` is zero (an MDL always describes at least one byte).
    pub fn new(buffer: *mut u8, len: u32) -> Box<Self> {
        assert!(
            !buffer.is_null() && len > 0,
            "SoftMdl::new needs a non-empty buffer"
        );
        let page_offset = buffer.addr() % PAGE_SIZE;
        let mdl = Box::new(Self {
            next: std::ptr::null_mut(),
            size: i16::try_from(size_of::<Self>()).unwrap_or(i16::MAX),
            mdl_flags: MDL_FLAGS_NONPAGED_MAPPED,
            allocation_processor_number: 0,
            reserved: 0,
            process: std::ptr::null_mut(),
            mapped_system_va: buffer,
            start_va: buffer.wrapping_sub(page_offset).cast(),
            byte_count: len,
            byte_offset: u32::try_from(page_offset).unwrap_or(0),
        });
        // The registry is softndk's own bookkeeping (its growth lasts): charged to softndk,
        // not to the consumer that made the memory.
        let _charge = crate::alloc_check::provider_scope();
        LIVE_MDLS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(mdl.as_mdl().addr());
        mdl
    }

    /// The pointer to pass where NDKPI takes `MDL*`.
    pub fn as_mdl(&self) -> *mut MDL {
        std::ptr::from_ref(self).cast_mut().cast()
    }

    /// The buffer this MDL describes.
    pub fn buffer(&self) -> *mut u8 {
        self.mapped_system_va
    }

    /// Its length in bytes.
    pub fn byte_count(&self) -> u32 {
        self.byte_count
    }
}

impl Drop for SoftMdl {
    fn drop(&mut self) {
        LIVE_MDLS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.as_mdl().addr());
    }
}

/// The buffer an MDL pointer describes, if it is a live [`SoftMdl`].
pub(crate) fn resolve_mdl(mdl: *mut MDL) -> Option<(BytePtr, usize)> {
    let live = LIVE_MDLS.lock().unwrap_or_else(PoisonError::into_inner);
    if !live.contains(&mdl.addr()) {
        return None;
    }
    let mdl = NonNull::new(mdl.cast::<SoftMdl>())?;
    // SAFETY: the address is in LIVE_MDLS, so it is a SoftMdl that has not been dropped (the
    // set is updated in Drop, and we hold its lock, so it cannot be dropped concurrently with
    // this read of two plain fields).
    let va = unsafe { (*mdl.as_ptr()).mapped_system_va };
    // SAFETY: as above.
    let count = unsafe { (*mdl.as_ptr()).byte_count };
    Some((BytePtr(va), count as usize))
}

/// Copy `len` bytes out of consumer memory.
///
/// # Safety
/// `src..src+len` lies inside a buffer the consumer registered (MR or LAM) and keeps valid
/// while registered; the caller checked the range against that registration.
pub(crate) unsafe fn copy_in(src: BytePtr, len: usize, into: &mut Vec<u8>) {
    let start = into.len();
    into.resize(start + len, 0);
    // SAFETY: `src` is readable for `len` bytes per the caller's contract; the destination is
    // the freshly resized tail of a Vec we own; the two cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(src.0, into[start..].as_mut_ptr(), len) };
}

/// Copy bytes into consumer memory.
///
/// # Safety
/// `dst..dst+bytes.len()` lies inside a buffer the consumer registered for local write and
/// keeps valid while registered; the caller checked the range against that registration.
pub(crate) unsafe fn copy_out(dst: BytePtr, bytes: &[u8]) {
    // SAFETY: `dst` is writable for `bytes.len()` bytes per the caller's contract; `bytes`
    // is provider-owned memory and cannot overlap consumer buffers.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.0, bytes.len()) };
}
