//! # kalloc — allocation that fails instead of aborting
//!
//! In a driver, an allocation that aborts is a bugcheck: `alloc`'s `Box::new`, `Arc::new` and
//! `Vec` growth call the allocation-error handler when the pool is exhausted, and
//! windows-drivers-rs turns that into a panic, which the kernel turns into a blue screen. Driver
//! Verifier's low-resources simulation makes such failures routine. `Vec` already has a
//! fallible path (`try_reserve`); `Box` and `Arc` have none on stable Rust (`Box::try_new` and
//! `Arc::try_new` need the unstable `allocator_api`).
//!
//! So this crate gives the driver's code (ndkpi, ndkdisc-core, the KMDF shell) the two it needs,
//! as the Rust-for-Linux `kernel` crate does for Linux:
//!
//! - [`try_box`]: a `Box<T>` or [`AllocError`]; the result is an ordinary `Box`, so it coerces to
//!   `Box<dyn Trait>` as usual.
//! - [`Arc`] and [`Weak`]: an atomically reference-counted pointer with the semantics of
//!   `alloc::sync::{Arc, Weak}` for sized values (the counts, their memory orderings, the
//!   cyclic constructor, raw pointers for FFI contexts), whose constructors
//!   ([`Arc::try_new`], [`Arc::try_new_cyclic`]) return [`AllocError`]. Nothing else in it
//!   allocates.
//!
//! Unsafe code lives here (the crate is one of the places `STYLE.md` allows it, for this reason):
//! a reference count needs raw allocation and raw pointers. The crate's tests run under Miri in
//! CI.
//!
//! `// IRQL:` every function here may be called at <= `DISPATCH_LEVEL` when the global
//! allocator may (the driver's allocates from nonpaged pool).

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::alloc::{Layout, alloc, dealloc};
use alloc::boxed::Box;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering, fence};

/// An allocation failed: the pool had no room. Nothing was allocated and nothing leaked; the
/// value that was to be stored has been dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory allocation failed")
    }
}

/// Allocate `Layout::new::<T>()` (not zero-sized), or `None`.
fn raw<T>() -> Option<NonNull<T>> {
    let layout = Layout::new::<T>();
    debug_assert!(layout.size() != 0);
    // SAFETY: `alloc` requires a layout of non-zero size; every caller's `T` has one (a `Box`
    // of a zero-sized type is made without allocating, and `Inner` holds two counters).
    let p = unsafe { alloc(layout) };
    NonNull::new(p.cast::<T>())
}

/// Box `value`, or give [`AllocError`] (dropping `value`) when the allocator has no room.
///
/// # Errors
///
/// [`AllocError`] when the allocation fails.
pub fn try_box<T>(value: T) -> Result<Box<T>, AllocError> {
    if size_of::<T>() == 0 {
        // A zero-sized value takes no allocation: `Box::new` of it cannot fail.
        return Ok(Box::new(value));
    }
    let p = raw::<T>().ok_or(AllocError)?;
    // SAFETY: `p` is a fresh allocation of `T`'s layout from the global allocator, valid for
    // writes and unaliased; after the write it holds an initialised `T`, so `Box::from_raw`
    // may own it (the layout is the one `Box<T>` deallocates with).
    unsafe {
        p.as_ptr().write(value);
    }
    // SAFETY: as above: `p` came from the global allocator with `Layout::new::<T>()` and now
    // holds a `T` that nothing else owns.
    Ok(unsafe { Box::from_raw(p.as_ptr()) })
}

/// The one allocation behind an [`Arc`] and its [`Weak`]s.
///
/// `strong` counts the `Arc`s. `weak` counts the `Weak`s, plus one held by all the `Arc`s
/// together while `strong > 0`; the allocation is freed when it reaches zero. `data` is
/// initialised while `strong > 0` (and during [`Arc::try_new_cyclic`]'s closure it is not, with
/// `strong == 0`).
#[repr(C)]
struct Inner<T> {
    strong: AtomicUsize,
    weak: AtomicUsize,
    data: T,
}

/// The address of `field` of the `Inner<T>` at `p`. Safe: nothing is read, and the result is
/// used only while `p`'s allocation is live (`wrapping_add` keeps the provenance).
macro_rules! field {
    ($p:expr, $field:ident) => {{
        let p: *mut Inner<T> = $p;
        p.cast::<u8>()
            .wrapping_add(core::mem::offset_of!(Inner<T>, $field))
            .cast()
    }};
}

/// A count above this is treated as a leak of references and stops the system, as `alloc`'s
/// `Arc` does: it cannot happen without `isize::MAX` references alive or forgotten.
const MAX_REFCOUNT: usize = isize::MAX as usize;

#[cold]
fn refcount_overflow() -> ! {
    panic!("kalloc::Arc reference count overflow")
}

/// A thread-safe reference-counted pointer whose constructors fail instead of aborting.
///
/// Clones share one value; it is dropped when the last `Arc` goes, and the allocation freed
/// when the last [`Weak`] goes too.
pub struct Arc<T> {
    // INVARIANT: points to a live `Inner<T>` whose `data` is initialised, and this `Arc` owns
    // one of its `strong` counts.
    ptr: NonNull<Inner<T>>,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: as for `alloc::sync::Arc`: an `Arc<T>` gives shared access to `T` from any thread and
// may drop it on any thread, so it is `Send` and `Sync` exactly when `T` is both.
unsafe impl<T: Send + Sync> Send for Arc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Arc<T> {}

impl<T> Arc<T> {
    /// Store `value` in a new allocation, or give [`AllocError`] (dropping `value`).
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the allocation fails.
    pub fn try_new(value: T) -> Result<Self, AllocError> {
        Self::try_new_returning(value).map_err(|_| AllocError)
    }

    /// [`Arc::try_new`] that gives `value` back when the allocation fails, for values that
    /// must not simply be dropped (a handle that has to be closed).
    ///
    /// # Errors
    /// `value`, when the allocation fails.
    pub fn try_new_returning(value: T) -> Result<Self, T> {
        let Some(ptr) = raw::<Inner<T>>() else {
            return Err(value);
        };
        // SAFETY: `ptr` is a fresh allocation of `Inner<T>`'s layout, valid for writes.
        unsafe {
            ptr.as_ptr().write(Inner {
                strong: AtomicUsize::new(1),
                weak: AtomicUsize::new(1),
                data: value,
            });
        }
        // INVARIANT: the value is initialised and its one strong count is this `Arc`'s.
        Ok(Self::from_inner(ptr))
    }

    /// Like `alloc::sync::Arc::new_cyclic`: `make` builds the value given a [`Weak`] to the
    /// allocation it will live in (which cannot be upgraded until this returns), or
    /// [`AllocError`] before `make` is called.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the allocation fails; `make` is not called then.
    pub fn try_new_cyclic(make: impl FnOnce(&Weak<T>) -> T) -> Result<Self, AllocError> {
        Self::try_new_cyclic_with(|me| Ok(make(me)))
    }

    /// [`Arc::try_new_cyclic`] whose `make` may fail too (when building the value allocates,
    /// fallibly, things that need the [`Weak`]): its error is returned and the allocation is
    /// freed once the `Weak`s `make` kept are dropped (with the error, typically).
    ///
    /// # Errors
    /// [`AllocError`] (converted) when the allocation fails, before `make` is called; `make`'s
    /// error.
    pub fn try_new_cyclic_with<E: From<AllocError>>(
        make: impl FnOnce(&Weak<T>) -> Result<T, E>,
    ) -> Result<Self, E> {
        let ptr = raw::<Inner<T>>().ok_or(AllocError)?;
        // SAFETY: `ptr` is a fresh allocation of `Inner<T>`'s layout, valid for writes, and
        // `Inner<MaybeUninit<T>>` has the same layout (`repr(C)`, and `MaybeUninit<T>` is laid
        // out as `T`). The counters are written and `data` is left uninitialised, which
        // `strong == 0` tells every `Weak` (upgrade fails; the last one frees without dropping
        // `data`).
        unsafe {
            ptr.as_ptr().cast::<Inner<MaybeUninit<T>>>().write(Inner {
                strong: AtomicUsize::new(0),
                weak: AtomicUsize::new(1),
                data: MaybeUninit::uninit(),
            });
        }
        // The weak count of 1 is this `Weak`'s. If `make` panics it is dropped and frees the
        // allocation, never touching `data`.
        let weak = Weak { ptr };
        // On an error, `weak` is dropped with it: the allocation is freed (the value was never
        // written) once the last `Weak` `make` made goes too.
        let value = make(&weak)?;
        let data: *mut T = field!(ptr.as_ptr(), data);
        // SAFETY: `data` is in the live allocation and unaliased: no `Arc` exists (strong is 0)
        // and a `Weak` never reads `data`; writing it initialises the value.
        unsafe { data.write(value) };
        // The `Weak` the closure saw becomes the weak count the strong references hold
        // together; Release publishes `data` to the upgrades that read the new count.
        core::mem::forget(weak);
        let strong: *const AtomicUsize = field!(ptr.as_ptr(), strong);
        // SAFETY: the allocation is live (its weak count is now the strong references') and
        // its counters are initialised; only the counter is borrowed.
        let strong = unsafe { &*strong };
        strong.store(1, Ordering::Release);
        // INVARIANT: `data` is initialised and the one strong count is this `Arc`'s.
        Ok(Self::from_inner(ptr))
    }

    fn from_inner(ptr: NonNull<Inner<T>>) -> Self {
        Self {
            ptr,
            _owns: PhantomData,
        }
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: by the type's invariant the allocation is live while this `Arc` is.
        unsafe { self.ptr.as_ref() }
    }

    /// A new [`Weak`] to the same allocation.
    #[must_use]
    pub fn downgrade(this: &Self) -> Weak<T> {
        // Relaxed suffices: the caller's `Arc` keeps the allocation alive; nothing is published.
        let old = this.inner().weak.fetch_add(1, Ordering::Relaxed);
        if old > MAX_REFCOUNT {
            refcount_overflow();
        }
        Weak { ptr: this.ptr }
    }

    /// The value, if `this` is the last `Arc` of it (as `alloc::sync::Arc::into_inner`: of
    /// `Arc`s dropped this way at once, exactly one gets the value).
    #[must_use]
    pub fn into_inner(this: Self) -> Option<T> {
        let this = ManuallyDrop::new(this);
        if this.inner().strong.fetch_sub(1, Ordering::Release) != 1 {
            return None;
        }
        fence(Ordering::Acquire);
        let data: *mut T = field!(this.ptr.as_ptr(), data);
        // SAFETY: the count was the last strong one, so nothing else reads or drops the value:
        // it is moved out once, here, and the allocation is never read as holding it again.
        let value = unsafe { data.read() };
        // The weak count the strong references held together goes with the last of them.
        drop(Weak { ptr: this.ptr });
        Some(value)
    }

    /// Whether `this` is the only reference to its value: no other `Arc` and no [`Weak`].
    /// While it is, nobody else can make one (only an `Arc` or a `Weak` can), so the answer
    /// stays true until `this` is cloned or downgraded.
    #[must_use]
    pub fn is_unique(this: &Self) -> bool {
        // The weak count first: at 1 (the strong references' own) no `Weak` exists, and a new
        // one needs an `Arc`. A `Weak` that upgraded before this read shows in the strong
        // count read next; one read the other way round could upgrade in between and be gone.
        this.inner().weak.load(Ordering::Acquire) == 1
            && this.inner().strong.load(Ordering::Acquire) == 1
    }

    /// Whether two `Arc`s share one allocation.
    #[must_use]
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }

    /// The number of `Arc`s of this allocation (a snapshot).
    #[must_use]
    pub fn strong_count(this: &Self) -> usize {
        this.inner().strong.load(Ordering::Relaxed)
    }

    /// The number of [`Weak`]s of this allocation (a snapshot).
    #[must_use]
    pub fn weak_count(this: &Self) -> usize {
        // The strong references hold one weak count between them.
        this.inner().weak.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// The address of the value, for comparisons and FFI contexts; the `Arc` keeps its count.
    #[must_use]
    pub fn as_ptr(this: &Self) -> *const T {
        field!(this.ptr.as_ptr(), data)
    }

    /// Give up this `Arc` without dropping its count; [`Arc::from_raw`] takes it back.
    #[must_use]
    pub fn into_raw(this: Self) -> *const T {
        let this = ManuallyDrop::new(this);
        Self::as_ptr(&this)
    }

    /// Take back an `Arc` given up by [`Arc::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Arc::into_raw`] (or [`Arc::as_ptr`] of an `Arc` whose count the caller
    /// owns, see [`Arc::increment_strong_count`]) for this `T`, and the count it stands for is
    /// surrendered to the returned `Arc`.
    pub unsafe fn from_raw(ptr: *const T) -> Self {
        // Per the caller, `ptr` is the `data` field of a live `Inner<T>`: stepping back by the
        // field's offset gives the allocation's start (not null, as it is live).
        let inner = ptr
            .cast::<u8>()
            .wrapping_sub(core::mem::offset_of!(Inner<T>, data))
            .cast::<Inner<T>>()
            .cast_mut();
        // SAFETY: per the caller, `inner` is a live allocation, so not null.
        let ptr = unsafe { NonNull::new_unchecked(inner) };
        // INVARIANT: per the caller, the allocation is live with its value and the surrendered
        // count becomes this `Arc`'s.
        Self::from_inner(ptr)
    }

    /// Add one strong count on behalf of a raw pointer (an FFI context holding a reference).
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Arc::into_raw`] or [`Arc::as_ptr`] for this `T`, and the allocation
    /// has at least one strong count for the duration of the call.
    pub unsafe fn increment_strong_count(ptr: *const T) {
        // SAFETY: per the caller `ptr` is such a pointer; the `ManuallyDrop` never gives the
        // borrowed count back, so the only effect is the clone's increment.
        let this = ManuallyDrop::new(unsafe { Self::from_raw(ptr) });
        let _extra = ManuallyDrop::new(Self::clone(&this));
    }

    /// Drop one strong count held on behalf of a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Arc::into_raw`] or [`Arc::as_ptr`] for this `T`, and the caller owns
    /// one strong count, surrendered here; if it is the last, the value is dropped.
    pub unsafe fn decrement_strong_count(ptr: *const T) {
        // SAFETY: per the caller: the surrendered count becomes this `Arc`, dropped at once.
        drop(unsafe { Self::from_raw(ptr) });
    }
}

impl<T> Clone for Arc<T> {
    fn clone(&self) -> Self {
        // Relaxed suffices, as in `alloc`'s `Arc`: a new reference is made from an existing
        // one, which already synchronises with whoever handed it over.
        let old = self.inner().strong.fetch_add(1, Ordering::Relaxed);
        if old > MAX_REFCOUNT {
            refcount_overflow();
        }
        // INVARIANT: the count just taken is the clone's.
        Self::from_inner(self.ptr)
    }
}

impl<T> Deref for Arc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().data
    }
}

impl<T> AsRef<T> for Arc<T> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T: fmt::Debug> fmt::Debug for Arc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Drop for Arc<T> {
    fn drop(&mut self) {
        // Release: this thread's uses of the value happen before the drop by whoever takes the
        // count to zero; that one's Acquire fence sees them.
        if self.inner().strong.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let data: *mut T = field!(self.ptr.as_ptr(), data);
        // SAFETY: the count was the last strong one: no `Arc` remains, a `Weak` cannot upgrade
        // (strong is 0) and never reads `data`, so the value is dropped exactly once, here.
        unsafe { core::ptr::drop_in_place(data) };
        // The weak count the strong references held together goes with the last of them.
        drop(Weak { ptr: self.ptr });
    }
}

/// A `Weak`'s view of its allocation: the two counters.
struct Counts<'a> {
    strong: &'a AtomicUsize,
    weak: &'a AtomicUsize,
}

/// A non-owning reference to an [`Arc`]'s allocation: keeps the memory, not the value.
pub struct Weak<T> {
    // INVARIANT: either `dangling()` (made by `Weak::new`, owns nothing), or points to a live
    // `Inner<T>` of which this `Weak` owns one `weak` count.
    ptr: NonNull<Inner<T>>,
}

// SAFETY: as for `alloc::sync::Weak`: it can become an `Arc<T>` on any thread.
unsafe impl<T: Send + Sync> Send for Weak<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Weak<T> {}

impl<T> Weak<T> {
    /// The sentinel of `Weak::new`: never the address of an `Inner<T>` (which is aligned and
    /// at least two words long, so it cannot start at the last byte of the address space).
    fn dangling() -> NonNull<Inner<T>> {
        NonNull::new(core::ptr::without_provenance_mut(usize::MAX)).unwrap_or(NonNull::dangling())
    }

    /// A `Weak` to nothing: [`Weak::upgrade`] always gives `None`. Allocates nothing.
    #[must_use]
    pub fn new() -> Self {
        Self {
            ptr: Self::dangling(),
        }
    }

    /// The counters, unless this is the sentinel. Borrowed field by field: `data` may be
    /// uninitialised (during `try_new_cyclic`) or dropped, so no `&Inner<T>` is made.
    fn inner(&self) -> Option<Counts<'_>> {
        if self.ptr == Self::dangling() {
            return None;
        }
        let (strong, weak): (*const AtomicUsize, *const AtomicUsize) = (
            field!(self.ptr.as_ptr(), strong),
            field!(self.ptr.as_ptr(), weak),
        );
        // SAFETY: by the type's invariant, a non-sentinel `ptr` points to an allocation this
        // `Weak`'s count keeps alive, whose counters are always initialised (written before
        // any `Weak` exists) and only accessed atomically.
        let strong = unsafe { &*strong };
        // SAFETY: as above.
        let weak = unsafe { &*weak };
        Some(Counts { strong, weak })
    }

    /// An [`Arc`] to the value if it is still alive.
    #[must_use]
    pub fn upgrade(&self) -> Option<Arc<T>> {
        let inner = self.inner()?;
        let mut n = inner.strong.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return None;
            }
            if n > MAX_REFCOUNT {
                refcount_overflow();
            }
            // Acquire pairs with the Release of `try_new_cyclic`'s store of the first count, so
            // the value it wrote is visible; a strong count of 0 is never revived.
            match inner
                .strong
                .compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                // INVARIANT: the count taken is the new `Arc`'s; `data` is initialised while
                // strong > 0.
                Ok(_) => return Some(Arc::from_inner(self.ptr)),
                Err(now) => n = now,
            }
        }
    }

    /// Whether two `Weak`s point to one allocation (two from [`Weak::new`] are equal).
    #[must_use]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }

    /// The number of [`Arc`]s of the allocation (0 for [`Weak::new`]).
    #[must_use]
    pub fn strong_count(&self) -> usize {
        self.inner()
            .map_or(0, |inner| inner.strong.load(Ordering::Relaxed))
    }
}

impl<T> Default for Weak<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Weak<T> {
    fn clone(&self) -> Self {
        if let Some(inner) = self.inner() {
            let old = inner.weak.fetch_add(1, Ordering::Relaxed);
            if old > MAX_REFCOUNT {
                refcount_overflow();
            }
        }
        // INVARIANT: the sentinel owns nothing; otherwise the count just taken is the clone's.
        Self { ptr: self.ptr }
    }
}

impl<T> fmt::Debug for Weak<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(Weak)")
    }
}

impl<T> Drop for Weak<T> {
    fn drop(&mut self) {
        let Some(inner) = self.inner() else {
            return;
        };
        if inner.weak.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the last weak count is gone, and with it the strong references' (held while
        // any `Arc` lived), so nothing can reach the allocation: free it with the layout it was
        // allocated with. The value was dropped by the last `Arc`, or never written.
        unsafe { dealloc(self.ptr.as_ptr().cast(), Layout::new::<Inner<T>>()) };
    }
}

#[cfg(test)]
mod tests;
