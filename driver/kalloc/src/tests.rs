#![allow(clippy::pedantic, reason = "test scaffolding")]

use super::*;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize as Counter;
use std::vec::Vec;

/// Counts its drops in a shared counter.
struct Tracked<'a>(&'a Counter, u64);

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn try_box_holds_the_value_and_drops_it_once() {
    let drops = Counter::new(0);
    let b = try_box(Tracked(&drops, 7)).unwrap();
    assert_eq!(b.1, 7);
    drop(b);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // A zero-sized value and a boxed trait object.
    let z = try_box(()).unwrap();
    assert_eq!(*z, ());
    let d: Box<dyn fmt::Debug> = try_box(5_u32).unwrap();
    assert_eq!(std::format!("{d:?}"), "5");
}

#[test]
fn the_value_is_dropped_by_the_last_arc_and_weaks_then_fail() {
    let drops = Counter::new(0);
    let a = Arc::try_new_returning(Tracked(&drops, 1)).ok().unwrap();
    let b = a.clone();
    let w = Arc::downgrade(&a);
    assert_eq!(Arc::strong_count(&a), 2);
    assert_eq!(Arc::weak_count(&a), 1);
    assert!(Arc::ptr_eq(&a, &b));
    drop(a);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert_eq!(w.upgrade().map(|x| x.1), Some(1));
    drop(b);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "dropped once, by the last Arc"
    );
    assert!(w.upgrade().is_none());
    assert_eq!(w.strong_count(), 0);
    let w2 = w.clone();
    assert!(w2.ptr_eq(&w));
    drop(w);
    drop(w2);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn weak_new_points_nowhere() {
    let w: Weak<u64> = Weak::new();
    assert!(w.upgrade().is_none());
    assert_eq!(w.strong_count(), 0);
    let c = w.clone();
    assert!(c.ptr_eq(&w));
    assert!(Weak::<u64>::default().upgrade().is_none());
}

struct Node {
    me: Weak<Node>,
    value: u32,
}

#[test]
fn cyclic_sees_a_weak_that_upgrades_only_afterwards() {
    let a = Arc::try_new_cyclic(|me: &Weak<Node>| {
        assert!(
            me.upgrade().is_none(),
            "not upgradable inside the constructor"
        );
        Node {
            me: me.clone(),
            value: 9,
        }
    })
    .unwrap();
    let again = a.me.upgrade().unwrap();
    assert!(Arc::ptr_eq(&a, &again));
    assert_eq!(again.value, 9);
    assert_eq!(Arc::strong_count(&a), 2);
    drop(again);
    drop(a);
}

#[test]
fn a_panicking_cyclic_constructor_frees_without_dropping_a_value() {
    let kept = Mutex::new(None);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = Arc::<String>::try_new_cyclic(|me| {
            *kept.lock().unwrap() = Some(me.clone());
            panic!("constructor fails");
        });
    }));
    assert!(r.is_err());
    // The clone made inside still points to the (not yet freed) allocation, without a value.
    let w = kept.lock().unwrap().take().unwrap();
    assert!(w.upgrade().is_none());
    drop(w); // frees it (Miri reports a leak or a double free otherwise)
}

use std::string::String;

#[test]
fn raw_pointers_carry_counts() {
    let a = Arc::try_new(String::from("ctx")).unwrap();
    let p = Arc::into_raw(a.clone());
    assert_eq!(p, Arc::as_ptr(&a));
    assert_eq!(Arc::strong_count(&a), 2);
    // SAFETY: `p` came from `into_raw` of an `Arc<String>` and `a` keeps the allocation alive.
    unsafe { Arc::increment_strong_count(p) };
    assert_eq!(Arc::strong_count(&a), 3);
    // SAFETY: one count taken above is surrendered.
    unsafe { Arc::decrement_strong_count(p) };
    // SAFETY: `p` stands for the count `into_raw` gave up; it is taken back once.
    let back = unsafe { Arc::from_raw(p) };
    assert_eq!(*back, "ctx");
    assert_eq!(Arc::strong_count(&a), 2);
    drop(back);
    assert_eq!(Arc::strong_count(&a), 1);
}

#[test]
fn clones_and_drops_on_many_threads_drop_the_value_once() {
    static DROPS: Counter = Counter::new(0);
    struct Once;
    impl Drop for Once {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let threads = if cfg!(miri) { 3 } else { 8 };
    let rounds = if cfg!(miri) { 20 } else { 2_000 };
    for _ in 0..if cfg!(miri) { 2 } else { 50 } {
        DROPS.store(0, Ordering::SeqCst);
        let a = Arc::try_new(Once).unwrap();
        let w = Arc::downgrade(&a);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let a = a.clone();
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        let b = a.clone();
                        if let Some(c) = w.upgrade() {
                            drop(c);
                        }
                        let w2 = Arc::downgrade(&b);
                        drop(b);
                        drop(w2);
                    }
                })
            })
            .collect();
        drop(a);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(DROPS.load(Ordering::SeqCst), 1);
        assert!(w.upgrade().is_none());
    }
}

#[test]
fn upgrades_racing_the_last_drop_never_revive_the_value() {
    let rounds = if cfg!(miri) { 5 } else { 2_000 };
    for _ in 0..rounds {
        let drops = std::sync::Arc::new(Counter::new(0));
        struct D(std::sync::Arc<Counter>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let a = Arc::try_new(D(drops.clone())).unwrap();
        let w = Arc::downgrade(&a);
        let t = std::thread::spawn(move || {
            // Whatever it gets is alive for as long as it holds it.
            if let Some(x) = w.upgrade() {
                assert_eq!(x.0.load(Ordering::SeqCst), 0);
            }
        });
        drop(a);
        t.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn a_failing_cyclic_constructor_frees_the_allocation() {
    #[derive(Debug, PartialEq)]
    enum E {
        Alloc,
        Made,
    }
    impl From<AllocError> for E {
        fn from(_: AllocError) -> Self {
            E::Alloc
        }
    }
    let drops = Counter::new(0);
    let r = Arc::<Tracked<'_>>::try_new_cyclic_with(|me| {
        // Something built with the weak and dropped with the error.
        let kept = me.clone();
        let _partial = Tracked(&drops, 0);
        drop(kept);
        Err(E::Made)
    });
    assert_eq!(r.err(), Some(E::Made));
    // Only the partial value was dropped: the Arc's value was never written.
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // (Miri reports the allocation as leaked if it was not freed.)
}

#[test]
fn into_inner_gives_the_value_to_the_last_arc_only() {
    let drops = Counter::new(0);
    let a = Arc::try_new(Tracked(&drops, 4)).unwrap();
    let b = a.clone();
    let w = Arc::downgrade(&a);
    assert!(Arc::into_inner(a).is_none());
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    let v = Arc::into_inner(b).unwrap();
    assert_eq!(v.1, 4);
    assert!(w.upgrade().is_none());
    drop(v);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "moved out, dropped once");
    drop(w);
}

#[test]
fn is_unique_sees_other_arcs_and_weaks() {
    let a = Arc::try_new(5_u8).unwrap();
    assert!(Arc::is_unique(&a));
    let b = a.clone();
    assert!(!Arc::is_unique(&a));
    drop(b);
    let w = Arc::downgrade(&a);
    assert!(!Arc::is_unique(&a), "a Weak could upgrade");
    drop(w);
    assert!(Arc::is_unique(&a));
}
