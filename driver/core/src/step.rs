//! Waiting for NDK creates and closes at `PASSIVE_LEVEL`, one caller at a time.
//!
//! An object's [`Stepper`] is also its passive-level mutex: a [`Session`] is held across a
//! whole sequence of steps (a teardown, a POST's MR registrations), so a second caller — CLOSE
//! racing ABORT, a POST racing handle cleanup — waits for the first sequence to finish instead
//! of interleaving its steps with it or returning before it is done.

use ndkpi::{Created, NtStatus, Op};

use crate::ports::{Lock, Platform, Signal};

#[derive(Default)]
struct Slot {
    op: Option<Op>,
    status: NtStatus,
    created: Option<Created>,
    /// A session is open.
    busy: bool,
}

/// The step slot of one object.
pub(crate) struct Stepper<P: Platform> {
    slot: P::Lock<Slot>,
    /// The current step finished.
    done: P::Signal,
    /// A session ended.
    free: P::Signal,
}

/// Exclusive use of a [`Stepper`] until dropped.
pub(crate) struct Session<'a, P: Platform> {
    stepper: &'a Stepper<P>,
}

impl<P: Platform> Stepper<P> {
    pub(crate) fn new(platform: &P) -> Self {
        Self {
            slot: platform.lock(Slot::default()),
            done: platform.signal(),
            free: platform.signal(),
        }
    }

    /// Wait until no other session is open, then open one. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn session(&self) -> Session<'_, P> {
        // A set of `free` left over from a session nobody waited for only causes one more look.
        while self.slot.with(|s| core::mem::replace(&mut s.busy, true)) {
            self.free.wait();
        }
        Session { stepper: self }
    }

    /// One step in a session of its own.
    pub(crate) fn run(&self, start: impl FnOnce()) -> (NtStatus, Option<Created>) {
        self.session().run(start)
    }

    /// The step finished. `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn finish(&self, op: Op, status: NtStatus, created: Option<Created>) {
        self.slot.with(|s| {
            s.op = Some(op);
            s.status = status;
            s.created = created;
        });
        self.done.set();
    }
}

impl<P: Platform> Session<'_, P> {
    /// Start the step and wait for its completion (which may come before `start` returns).
    /// `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn run(&self, start: impl FnOnce()) -> (NtStatus, Option<Created>) {
        let stepper = self.stepper;
        stepper.slot.with(|s| {
            s.op = None;
            s.created = None;
        });
        start();
        loop {
            if let Some(done) = stepper
                .slot
                .with(|s| s.op.take().map(|_| (s.status, s.created.take())))
            {
                return done;
            }
            // A set left over from an earlier step only causes one more look at the slot.
            stepper.done.wait();
        }
    }
}

impl<P: Platform> Drop for Session<'_, P> {
    fn drop(&mut self) {
        self.stepper.slot.with(|s| s.busy = false);
        // Wakes one waiter (the signal is auto-reset); it takes the next session, and its own
        // session's end wakes the next.
        self.stepper.free.set();
    }
}
