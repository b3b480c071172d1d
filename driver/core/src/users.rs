//! Teardown waiting out the users of an object's NDK objects.
//!
//! A provider callback (a completion, the disconnect callback) or an IOCTL may use a
//! connection's NDK objects outside its lock, through clones taken under the lock: a
//! [`Users::with`] session. Teardown must close each object only once nobody else holds it, so
//! it marks the count as tearing down (no session enters after that) and waits until the
//! sessions that entered before have left. The clones are dropped inside the lock, before the
//! count can reach zero; the last session to leave a tearing-down count sets the signal,
//! outside the lock, and teardown, woken, finds itself the sole holder of every object.
//!
//! The count lives in the state under the object's own lock (whatever else that state holds),
//! found there through [`Counted`]. The signal is the object's step signal (its
//! [`crate::step::Stepper`]'s), shared: teardown waits on it inside the object's step session,
//! and steps wait on it only inside a session too, so it never has two waiters, and each
//! waiter re-checks its own condition when woken (a set meant for the other only costs one
//! more look).

use crate::ports::{Lock, Signal};

/// How many sessions hold object clones outside the lock, and whether teardown has begun.
#[derive(Default)]
pub(crate) struct Count {
    users: u32,
    tearing_down: bool,
}

impl Count {
    /// Teardown has begun: no session enters any more.
    pub(crate) fn tearing_down(&self) -> bool {
        self.tearing_down
    }
}

/// State under a lock that holds a [`Count`].
pub(crate) trait Counted {
    fn count(&mut self) -> &mut Count;
}

/// Sessions using an object's NDK objects, and teardown waiting them out, with `done` the
/// object's step signal (see the module docs).
pub(crate) struct Users<'a, S> {
    done: &'a S,
}

impl<'a, S: Signal> Users<'a, S> {
    pub(crate) fn new(done: &'a S) -> Self {
        Self { done }
    }

    /// Take what `take` takes from the locked state (object clones), unless teardown has begun,
    /// and run `f` with it outside the lock; what was taken is dropped inside the lock again.
    /// `None` if teardown had begun (`f` did not run). `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn with<T: Counted, V, R>(
        &self,
        lock: &impl Lock<T>,
        take: impl FnOnce(&mut T) -> V,
        f: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let taken = lock.with(|state| {
            let count = state.count();
            if count.tearing_down {
                return None;
            }
            count.users += 1;
            Some(take(state))
        })?;
        let result = f(&taken);
        // The clones are dropped inside the lock, before `users` can reach zero.
        let last = lock.with(move |state| {
            drop(taken);
            let count = state.count();
            count.users -= 1;
            count.tearing_down && count.users == 0
        });
        if last {
            self.done.set();
        }
        Some(result)
    }

    /// Begin teardown: no session enters from now on; wait until every session that entered
    /// has left. Afterwards nothing taken by a session is held outside the lock.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn wait_out<T: Counted>(&self, lock: &impl Lock<T>) {
        // Looked at again after each wake: the signal is shared with the steps.
        while lock.with(|state| {
            let count = state.count();
            count.tearing_down = true;
            count.users > 0
        }) {
            self.done.wait();
        }
    }
}
