//! Raw bindings to the NDKPI ABI (Network Direct Kernel Provider Interface).
//!
//! This crate mirrors `ndkpi.h`, `ndkinfo.h` and `wskndk.h` item for item, keeping the C names
//! so that every item maps 1:1 to its page in the Windows driver documentation
//! (`MicrosoftDocs/windows-driver-docs-ddi`, folder `wdk-ddi-src/content/ndkpi/`). It has no
//! logic: types, function-pointer types, dispatch tables and constants. Its one dependency is
//! the `ntstatus` crate, whose newtype is its `NTSTATUS`.
//!
//! In the event path it is the bottom layer: the provider's function pointers and the
//! consumer callbacks (`NDK_FN_DISCONNECT_EVENT_CALLBACK` and friends) that `ndkpi` wraps, that
//! the driver core reaches through `ndkpi`, and that `softndk` implements on the host.
//!
//! Conventions:
//! - `ULONG` is [`u32`], never `c_ulong` (which is 64-bit on Linux).
//! - Every pointer-to-function is `Option<unsafe extern "system" fn(...)>`: the same size as a
//!   raw pointer, NULL-able, and the Win64 convention on Windows / the C convention elsewhere,
//!   so an all-Rust provider and consumer interoperate on a Linux host exactly as on Windows.
//! - Enumerations read from the other side of the ABI are plain integers with named constants:
//!   a Rust `enum` holding an unknown value would be undefined behaviour.
//! - Every `#[repr(C)]` struct carries compile-time `size_of`/`offset_of!` asserts taken from
//!   the headers (x64 layout, which ARM64 Windows shares), so `cargo check --target
//!   x86_64-pc-windows-msvc` and `--target aarch64-pc-windows-msvc` prove the layout.
//!
//! Modules: [`types`] (primitive types, versions, object headers and objects, SGE, results,
//! adapter info, LAM), [`dispatch`] (every `NDK_FN_*` type and the ten dispatch tables),
//! [`consts`] (enumerations and flags), [`sockaddr`] (Winsock
//! address layouts with Windows values), [`wsk`] (the WSK NDK extension and the NDIS-side open),
//! [`netioapi`] (the kernel unicast address table, for finding NDK-capable interfaces).
//! Everything is re-exported at the crate root.
#![no_std]
#![expect(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    reason = "bindings keep the C names of ndkpi.h so the docs map 1:1"
)]

/// Compile-time layout checks of a `#[repr(C)]` type against the Windows headers: its size,
/// its alignment when given, and the offset of each field named (`Field @ offset`).
macro_rules! layout {
    (
        $ty:ty, size $size:expr $(, align $align:expr)?
        $(; $($field:ident @ $offset:expr),+ $(,)?)?
    ) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        $(const _: () = assert!(core::mem::align_of::<$ty>() == $align);)?
        $($(const _: () = assert!(core::mem::offset_of!($ty, $field) == $offset);)+)?
    };
}

/// A function-pointer type of the ABI: `Option<unsafe extern "system" fn(..)>`, NULL-able,
/// with the parameter names of the header.
macro_rules! ndk_fn {
    ($(#[$doc:meta])* $name:ident = fn($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $(#[$doc])*
        pub type $name = Option<unsafe extern "system" fn($($arg: $ty),*) $(-> $ret)?>;
    };
}

pub mod consts;
pub mod dispatch;
pub mod netioapi;
pub mod sockaddr;
pub mod types;
pub mod wsk;

pub use consts::*;
pub use dispatch::*;
pub use netioapi::*;
pub use sockaddr::*;
pub use types::*;
pub use wsk::*;
