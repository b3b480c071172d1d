//! Waiting for one NDK create or close at `PASSIVE_LEVEL`: the sink's completion fills the
//! slot and sets the signal.

use ndkpi::{Created, Op};

use crate::ports::{Lock, Platform, Signal};

#[derive(Default)]
struct Slot {
    op: Option<Op>,
    status: i32,
    created: Option<Created>,
}

/// One waited-for step at a time.
pub(crate) struct Stepper<P: Platform> {
    slot: P::Lock<Slot>,
    done: P::Signal,
}

impl<P: Platform> Stepper<P> {
    pub(crate) fn new(platform: &P) -> Self {
        Self {
            slot: platform.lock(Slot::default()),
            done: platform.signal(),
        }
    }

    /// Start the step and wait for its completion (which may come before `start` returns).
    /// `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn run(&self, start: impl FnOnce()) -> (i32, Option<Created>) {
        self.slot.with(|s| *s = Slot::default());
        start();
        loop {
            if let Some(done) = self
                .slot
                .with(|s| s.op.take().map(|_| (s.status, s.created.take())))
            {
                return done;
            }
            // A set left over from an earlier step only causes one more look at the slot.
            self.done.wait();
        }
    }

    /// The step finished. `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn finish(&self, op: Op, status: i32, created: Option<Created>) {
        self.slot.with(|s| {
            s.op = Some(op);
            s.status = status;
            s.created = created;
        });
        self.done.set();
    }
}
