//! The reference model of causes: what may end each connection, in order, and which terminal
//! cause that allows.
//!
//! Every connection keeps the list of *triggers* applied while its terminal event had not been
//! delivered: each names the cause it produces and whether it is *synchronous* — whether the
//! terminal event is latched before the operation returns, if nothing ended the connection
//! before. The terminal cause must be the cause of one of the triggers up to and including the
//! first synchronous one: an asynchronous trigger (a peer's notice in flight, a pending
//! graceful DISCONNECT, a send that may fail later) may overtake a later one; nothing after a
//! synchronous trigger can matter. A connection with no trigger must not end.
//!
//! | Operation or fault | This connection | Its peer (the other end, also the engine's) |
//! |---|---|---|
//! | graceful DISCONNECT | `Local`, asynchronous (it pends) | `Peer`, asynchronous |
//! | abortive DISCONNECT, CLOSE | `LocalAbortive`, synchronous | `Peer`, asynchronous |
//! | ABORT | `Aborted`, synchronous | `Peer`, asynchronous |
//! | its handle closed | (not observed any more) | `Peer`, asynchronous |
//! | POST of sends | `TransportError`, asynchronous (a send into a dead peer fails) | — |
//! | peer disconnect or reset injected on its connector | `Peer`: synchronous with `Synchronous` or `Inline` completion, else asynchronous | nothing (it goes away silently: no callback, its QP flushed) |
//! | link loss on either end | `TransportError` or `Peer`, asynchronous (only a send notices) | the same |
//! | CQ error on either host | `TransportError` or `Peer`, asynchronous (which CQ is whose is not known; a dead QP's peer learns of it by a send that goes unacknowledged: the failed send or the provider's retry-exceeded disconnect indication, whichever comes first) | the same |
//! | adapter removal of its host | `AdapterRemoved`, synchronous | `Peer`, asynchronous |
//!
//! Which connector is whose: a CONNECT creates one connector on each host (its own end, and
//! the incoming end the listener accepts); the run compares the live connectors before and
//! after each CONNECT, and links the passive connection to its active peer when its
//! `Accepted` arrives, by addresses (QUERY's local address of the active end is the remote
//! address of the passive one). A fault that hits a connector the run cannot attribute turns
//! the prediction off for the rest of the run (counted in [`crate::Outcome::unpredicted`]).

use std::collections::HashMap;

use ndkdisc_abi::{Cause, Event};
use softndk::Completion;

/// One thing that may end a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trigger {
    /// The cause it produces.
    pub(crate) cause: Cause,
    /// The terminal event is latched before the operation returns.
    pub(crate) sync: bool,
    /// The index of the operation (for the report).
    pub(crate) op: usize,
}

/// Whose connector an address is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum End {
    /// A connection the model knows.
    Conn(u64),
    /// The passive peer of this (active) connection, not seen yet.
    PeerOf(u64),
}

/// The model's knowledge of connectors and triggers.
#[derive(Default)]
pub(crate) struct Causes {
    /// Live connectors, by address, to their connection.
    pub(crate) ends: HashMap<usize, End>,
    /// A fault hit a connector nobody could attribute: no prediction for the rest of the run.
    pub(crate) off: bool,
    /// The index of the operation running.
    pub(crate) op: usize,
    /// Synchronous peer faults (the completion mode runs provider callbacks inline).
    pub(crate) inline: bool,
}

impl Causes {
    pub(crate) fn new(mode: Completion) -> Self {
        Self {
            inline: matches!(mode, Completion::Synchronous | Completion::Inline),
            ..Self::default()
        }
    }
}

/// Which causes the triggers allow: those up to and including the first synchronous one.
pub(crate) fn allowed(triggers: &[Trigger]) -> Vec<Cause> {
    let mut causes = Vec::new();
    for t in triggers {
        if !causes.contains(&t.cause) {
            causes.push(t.cause);
        }
        if t.sync {
            break;
        }
    }
    causes
}

/// Whether `e`'s cause is one the triggers allow (then: whether it was the only one); if not,
/// what is wrong.
pub(crate) fn check(triggers: &[Trigger], e: &Event) -> Result<bool, String> {
    let allowed = allowed(triggers);
    match e.cause {
        Some(cause) if allowed.contains(&cause) => Ok(allowed.len() == 1),
        _ => {
            let triggers: Vec<String> = triggers
                .iter()
                .map(|t| {
                    let sync = if t.sync {
                        "synchronous"
                    } else {
                        "asynchronous"
                    };
                    format!("{:?} ({sync}) at operation {}", t.cause, t.op)
                })
                .collect();
            Err(format!(
                "the cause is not the one the operations predict (allowed {allowed:?}, from \
                 the triggers [{}]): {e:?}",
                triggers.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Trigger, allowed};
    use ndkdisc_abi::Cause;

    fn t(cause: Cause, sync: bool) -> Trigger {
        Trigger { cause, sync, op: 0 }
    }

    #[test]
    fn the_first_synchronous_trigger_closes_the_set() {
        assert_eq!(allowed(&[]), Vec::<Cause>::new());
        assert_eq!(
            allowed(&[t(Cause::Aborted, true), t(Cause::Peer, false)]),
            vec![Cause::Aborted]
        );
        assert_eq!(
            allowed(&[
                t(Cause::Peer, false),
                t(Cause::Local, false),
                t(Cause::LocalAbortive, true),
                t(Cause::Aborted, true),
            ]),
            vec![Cause::Peer, Cause::Local, Cause::LocalAbortive]
        );
        assert_eq!(
            allowed(&[
                t(Cause::TransportError, false),
                t(Cause::TransportError, false)
            ]),
            vec![Cause::TransportError]
        );
    }
}
