//! Small WDF plumbing with no behaviour: structure sizes, object context types, static
//! `UNICODE_STRING`s. wdk-sys has no `WDF_*_INIT` helpers or `WDF_DECLARE_CONTEXT_TYPE`
//! (bindgen binds no C macros or inline functions), so their effects are written out here.

use core::mem::size_of;

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, PVOID, ULONG, UNICODE_STRING, USHORT,
    WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDFOBJECT,
    call_unsafe_wdf_function_binding,
};

/// `sizeof(T)` as the `ULONG` a WDF structure's `Size` field holds.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the assert proves the size fits in a ULONG"
)]
pub(crate) const fn wdf_size<T>() -> ULONG {
    assert!(size_of::<T>() <= ULONG::MAX as usize);
    size_of::<T>() as ULONG
}

/// [`wdf_size`] as the `USHORT` of a WDF structure whose `Size` is one (e.g.
/// `WDF_REQUEST_PARAMETERS`). Use it in a `const` block, so the check is made at compile time.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the assert proves the size fits in a USHORT"
)]
pub(crate) const fn wdf_size_ushort<T>() -> USHORT {
    let size = wdf_size::<T>();
    assert!(size <= USHORT::MAX as ULONG, "a WDF size field of 16 bits");
    size as USHORT
}

/// A `WDF_OBJECT_CONTEXT_TYPE_INFO` in a static: what `WDF_DECLARE_CONTEXT_TYPE` emits.
/// `UniqueType` points at the static itself, which is how WDF tells context types apart.
#[repr(transparent)]
pub(crate) struct ContextType(pub(crate) WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: the value is never written after its constant initialisation; its pointers lead to a
// static C string and to the static itself.
unsafe impl Sync for ContextType {}

impl ContextType {
    /// The context of `object`, typed. The pointer is valid while the object exists.
    ///
    /// # Safety
    /// `object` is a live WDF object created with this context type in its attributes.
    pub(crate) unsafe fn get<T>(&'static self, object: WDFOBJECT) -> *mut T {
        let raw: PVOID;
        // SAFETY: `object` is live (caller); the type info is a static that WDF only reads.
        // `WdfObjectGetTypedContextWorker` may be called at IRQL <= DISPATCH_LEVEL.
        unsafe {
            raw = call_unsafe_wdf_function_binding!(
                WdfObjectGetTypedContextWorker,
                object,
                &raw const self.0
            );
        }
        raw.cast::<T>()
    }

    /// Object attributes carrying this context type, with the defaults of
    /// `WDF_OBJECT_ATTRIBUTES_INIT` (execution level and scope inherited from the parent).
    pub(crate) fn attributes(&'static self) -> WDF_OBJECT_ATTRIBUTES {
        WDF_OBJECT_ATTRIBUTES {
            ContextTypeInfo: &raw const self.0,
            ..plain_attributes()
        }
    }
}

/// `WDF_OBJECT_ATTRIBUTES_INIT`: no context, everything inherited from the parent.
pub(crate) fn plain_attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: wdf_size::<WDF_OBJECT_ATTRIBUTES>(),
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

/// Declare a static [`ContextType`] for `$ty` (in `.data`, as the C macro places it).
macro_rules! context_type {
    ($name:ident, $ty:ty, $cname:literal) => {
        // SAFETY: `.data` is an ordinary writable data section; nothing else is placed under
        // this symbol's name.
        #[unsafe(link_section = ".data")]
        pub(crate) static $name: $crate::wdf::ContextType =
            $crate::wdf::ContextType(wdk_sys::WDF_OBJECT_CONTEXT_TYPE_INFO {
                Size: $crate::wdf::wdf_size::<wdk_sys::WDF_OBJECT_CONTEXT_TYPE_INFO>(),
                ContextName: $cname.as_ptr().cast(),
                ContextSize: core::mem::size_of::<$ty>(),
                UniqueType: (&raw const $name).cast(),
                EvtDriverGetUniqueContextType: None,
            });
    };
}
pub(crate) use context_type;

/// An ASCII string as UTF-16, at compile time (for `UNICODE_STRING`s of constant names).
#[allow(clippy::cast_lossless, reason = "u16::from is not const")]
pub(crate) const fn utf16<const N: usize>(s: &str) -> [u16; N] {
    let bytes = s.as_bytes();
    assert!(bytes.len() == N);
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(bytes[i].is_ascii());
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// A `UNICODE_STRING` over a static UTF-16 buffer (not NUL-terminated; WDF copies it).
pub(crate) fn unicode(text: &'static [u16]) -> UNICODE_STRING {
    // The names are short constants; an impossible overlong one becomes an empty string.
    let length = u16::try_from(text.len() * 2).unwrap_or(0);
    UNICODE_STRING {
        Length: length,
        MaximumLength: length,
        // WDF only reads through this pointer (the parameters are PCUNICODE_STRING).
        Buffer: text.as_ptr().cast_mut(),
    }
}
