//! Misuse detection: the rules a consumer must follow, checked as Driver Verifier would.

use core::fmt;

use crate::ObjectKind;

/// Which queue of a QP a post went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Queue {
    /// The receive queue (`NdkReceive`).
    Receive,
    /// The initiator queue (`NdkSend`, `NdkRead`, `NdkWrite`, ...).
    Initiator,
}

/// A broken NDKPI rule. Each variant names the rule in its [`Violation::rule`] text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A `PASSIVE_LEVEL`-only function (`NdkQueryAdapterInfo`, `WskOpenNdkAdapter`,
    /// `WskCloseNdkAdapter`) was called from inside a provider callback, which may run at
    /// `DISPATCH_LEVEL`.
    PassiveOnlyInCallback {
        /// The function called.
        function: &'static str,
    },
    /// An object was closed a second time.
    DoubleClose {
        /// The function called.
        function: &'static str,
        /// The object's kind.
        kind: ObjectKind,
    },
    /// An object was used after the consumer asked to close it.
    UseAfterClose {
        /// The function called.
        function: &'static str,
        /// The object's kind.
        kind: ObjectKind,
    },
    /// A pointer that is not a live softndk object (or is of a fabric already dropped).
    UnknownObject {
        /// The function called.
        function: &'static str,
    },
    /// An object of the wrong kind was passed.
    WrongObjectKind {
        /// The function called.
        function: &'static str,
        /// What the function takes.
        expected: ObjectKind,
        /// What was passed.
        found: ObjectKind,
    },
    /// Two threads posted to the same queue at once; the consumer must serialise posts per
    /// queue.
    ConcurrentPost {
        /// The function called.
        function: &'static str,
        /// The queue.
        queue: Queue,
    },
    /// Two threads called `NdkGetCqResults(Ex)`/`NdkArmCq` on one CQ at once.
    ConcurrentCqAccess {
        /// The function called.
        function: &'static str,
    },
    /// The adapter was closed while objects created from it were still open (a leak).
    AdapterClosedWithLiveObjects {
        /// Objects (and LAMs) still open.
        live: usize,
    },
    /// An NDK function was called while the consumer held one of its spin locks
    /// ([`crate::consumer_lock`]). Under [`MisusePolicy::Record`] the call still proceeds.
    CalledUnderConsumerLock {
        /// The function called.
        function: &'static str,
    },
    /// A required pointer argument was null, or an argument is otherwise unusable.
    BadArgument {
        /// The function called.
        function: &'static str,
        /// What was wrong.
        what: &'static str,
    },
}

impl Violation {
    /// The rule that was broken, in one line.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::PassiveOnlyInCallback { .. } => {
                "PASSIVE_LEVEL-only function called from a callback (IRQL may be DISPATCH_LEVEL)"
            }
            Self::DoubleClose { .. } => "object closed twice",
            Self::UseAfterClose { .. } => "object used after it was closed",
            Self::UnknownObject { .. } => "pointer is not a live NDK object of this provider",
            Self::WrongObjectKind { .. } => "object of the wrong type passed",
            Self::ConcurrentPost { .. } => {
                "concurrent posts to one queue (posts must be serialised per queue)"
            }
            Self::ConcurrentCqAccess { .. } => {
                "concurrent NdkGetCqResults/NdkArmCq on one CQ (must be serialised)"
            }
            Self::AdapterClosedWithLiveObjects { .. } => {
                "adapter closed while objects created from it are still open"
            }
            Self::BadArgument { .. } => "invalid argument",
            Self::CalledUnderConsumerLock { .. } => {
                "NDK called while the consumer holds its spin lock (a provider may hold its own \
                 lock while it calls the disconnect callback, which takes the consumer's lock: \
                 a consumer calling NDK under its lock can deadlock at DISPATCH_LEVEL)"
            }
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NDKPI rule violated: {}", self.rule())?;
        match self {
            Self::PassiveOnlyInCallback { function }
            | Self::UnknownObject { function }
            | Self::CalledUnderConsumerLock { function } => {
                write!(f, " (in {function})")
            }
            Self::DoubleClose { function, kind } | Self::UseAfterClose { function, kind } => {
                write!(f, " ({function} on {kind:?})")
            }
            Self::WrongObjectKind {
                function,
                expected,
                found,
            } => {
                write!(f, " ({function} expects {expected:?}, got {found:?})")
            }
            Self::ConcurrentPost { function, queue } => {
                write!(f, " ({function} on the {queue:?} queue)")
            }
            Self::ConcurrentCqAccess { function } => write!(f, " (in {function})"),
            Self::AdapterClosedWithLiveObjects { live } => write!(f, " ({live} still open)"),
            Self::BadArgument { function, what } => write!(f, " ({function}: {what})"),
        }
    }
}

/// What softndk does when it detects a [`Violation`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MisusePolicy {
    /// Panic with a message naming the rule. Inside an `extern "system"` provider function the
    /// panic cannot unwind, so the process aborts: the emulator's bugcheck.
    #[default]
    Panic,
    /// Record the violation (see `Fabric::violations`) and fail the call: functions returning
    /// NTSTATUS return `STATUS_INVALID_PARAMETER`, others return without effect (except
    /// [`Violation::CalledUnderConsumerLock`], after which the call proceeds).
    Record,
}
