//! Typed ids: a connection's id and a listener's id are different things, and the compiler
//! says so. Both are the driver's opaque 64-bit numbers, never reused while it is loaded.

use core::fmt;

use crate::Event;

/// A connection's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

/// A listener's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(u64);

macro_rules! raw_id {
    ($ty:ident) => {
        impl $ty {
            /// The id the driver gave as a number (from a command line, a log, a JSON record).
            pub const fn from_raw(raw: u64) -> Self {
                Self(raw)
            }

            /// The number.
            pub const fn raw(self) -> u64 {
                self.0
            }
        }

        impl From<$ty> for u64 {
            fn from(id: $ty) -> u64 {
                id.0
            }
        }

        impl core::str::FromStr for $ty {
            type Err = core::num::ParseIntError;

            /// The decimal number, as [`fmt::Display`] writes it.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map(Self)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

raw_id!(ConnectionId);
raw_id!(ListenerId);

impl ConnectionId {
    /// The connection an event is about.
    pub const fn of(event: &Event) -> Self {
        Self(event.connection_id)
    }
}
