//! Waiting for NDK creates and closes at `PASSIVE_LEVEL`, one caller at a time.
//!
//! An object's [`Stepper`] holds its passive-level mutex (the platform's [`WaitLock`]): a
//! [`Session`] holds it across a whole sequence of steps (a teardown, a POST's MR
//! registrations), so a second caller — CLOSE racing ABORT, a POST racing handle cleanup —
//! waits for the first sequence to finish instead of interleaving its steps with it or
//! returning before it is done. Within a session, each step is started and its completion
//! waited for: the completion (an NDK callback, at <= `DISPATCH_LEVEL`) records its result in
//! the step slot and sets the `done` signal, and may come before the start returns.

use ndkpi::{Created, NtStatus, Op};

use crate::ports::{Lock, Platform, Signal, WaitLock};

/// The result of the current step, written by its completion.
#[derive(Default)]
struct Slot {
    op: Option<Op>,
    status: NtStatus,
    created: Option<Created>,
}

/// The step slot of one object, and its session lock.
pub(crate) struct Stepper<P: Platform> {
    slot: P::Lock<Slot>,
    /// The current step finished.
    done: P::Signal,
    /// Held by the open session.
    sessions: P::WaitLock,
}

/// Exclusive use of a [`Stepper`] until dropped (which releases its wait lock).
pub(crate) struct Session<'a, P: Platform + 'a> {
    stepper: &'a Stepper<P>,
    _held: <P::WaitLock as WaitLock>::Guard<'a>,
}

impl<P: Platform> Stepper<P> {
    /// A stepper, or `None` if the platform cannot create its wait lock or its signal.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn new(platform: &P) -> Option<Self> {
        Some(Self {
            sessions: platform.wait_lock()?,
            slot: platform.lock(Slot::default()),
            done: platform.signal()?,
        })
    }

    /// Wait until no other session is open, then open one. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn session(&self) -> Session<'_, P> {
        Session {
            _held: self.sessions.acquire(),
            stepper: self,
        }
    }

    /// One step in a session of its own.
    pub(crate) fn run(&self, start: impl FnOnce()) -> (NtStatus, Option<Created>) {
        self.session().run(start)
    }

    /// The signal each step's completion sets, which the object's teardown also waits on for
    /// its users to leave (see [`crate::users`]): both wait only inside a session.
    pub(crate) fn signal(&self) -> &P::Signal {
        &self.done
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
