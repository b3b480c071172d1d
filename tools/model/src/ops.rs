//! Operations as data, and their seeded generation.

/// One operation of a run. Every value is valid in every state: slots, connections, hosts and
/// connectors are small indices resolved modulo what exists when the operation runs, and an
/// operation with nothing to act on is a recorded no-op. So any list of operations is a run:
/// a seed's, a fuzzer's, or a shrunk one.
///
/// Connections are resolved per slot: `conn` indexes the connections the slot's handle owns
/// (closed ones included), oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// CONNECT from host 0 to host 1: to the port slot `port % 2` listens on, or to a port
    /// nobody listens on when `refused`.
    Connect {
        /// The handle slot.
        slot: u8,
        /// Which listening port.
        port: u8,
        /// To a port nobody listens on (the CONNECT fails).
        refused: bool,
    },
    /// POST of `1 + count % 4` receives or sends of 256 bytes.
    Post {
        /// The handle slot.
        slot: u8,
        /// The connection, among the slot's.
        conn: u8,
        /// Sends (else receives).
        send: bool,
        /// Requests, `1 + count % 4`.
        count: u8,
    },
    /// A fault injected on a live connector of host `host % 2` (`Fabric::connectors`, oldest
    /// first, index `connector` modulo their number).
    Fault {
        /// The host.
        host: u8,
        /// The connector, among the host's live ones.
        connector: u8,
        /// What happens.
        fault: FaultKind,
    },
    /// DISCONNECT: graceful (left pending) or abortive.
    Disconnect {
        /// The handle slot.
        slot: u8,
        /// The connection, among the slot's.
        conn: u8,
        /// Abortive (else graceful).
        abortive: bool,
    },
    /// ABORT.
    Abort {
        /// The handle slot.
        slot: u8,
        /// The connection, among the slot's.
        conn: u8,
    },
    /// FLUSH.
    Flush {
        /// The handle slot.
        slot: u8,
        /// The connection, among the slot's.
        conn: u8,
    },
    /// CLOSE of a connection.
    Close {
        /// The handle slot.
        slot: u8,
        /// The connection, among the slot's.
        conn: u8,
    },
    /// QUERY of an own connection.
    Query {
        /// The handle slot.
        slot: u8,
        /// The connection, among the slot's.
        conn: u8,
    },
    /// QUERY of a connection of another open handle, not closed: it must be invisible.
    ForeignQuery {
        /// The handle slot.
        slot: u8,
        /// The connection, among the other handles' connections.
        conn: u8,
    },
    /// WAIT with room for `1 + room % 4` events, on any connection or filtered on one:
    /// non-blocking, or pending and cancelled at once.
    Wait {
        /// The handle slot.
        slot: u8,
        /// Filtered on this connection (among the slot's), else any.
        on: Option<u8>,
        /// Room for `1 + room % 4` events.
        room: u8,
        /// A blocking WAIT cancelled at once (else non-blocking).
        cancel: bool,
    },
    /// Non-blocking WAITs on every handle until nothing is left.
    Drain,
    /// Close the slot's handle and open a new one in its place (which listens again).
    CloseHandle {
        /// The handle slot.
        slot: u8,
    },
}

/// A fault on a connection ([`Op::Fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum FaultKind {
    /// The peer disconnects gracefully (`softndk::Fault::PeerDisconnect`).
    PeerDisconnect,
    /// The peer resets the connection (`softndk::Fault::PeerReset`).
    PeerReset,
}

impl Op {
    /// The operation's kind, for statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Post { send: false, .. } => "post receives",
            Self::Post { send: true, .. } => "post sends",
            Self::Fault { fault, .. } => match fault {
                FaultKind::PeerDisconnect => "fault peer disconnect",
                FaultKind::PeerReset => "fault peer reset",
            },
            Self::Disconnect {
                abortive: false, ..
            } => "graceful disconnect",
            Self::Disconnect { abortive: true, .. } => "abortive disconnect",
            Self::Abort { .. } => "abort",
            Self::Flush { .. } => "flush",
            Self::Close { .. } => "close",
            Self::Query { .. } => "query",
            Self::ForeignQuery { .. } => "foreign query",
            Self::Wait { cancel: false, .. } => "wait",
            Self::Wait { cancel: true, .. } => "wait cancelled",
            Self::Drain => "drain",
            Self::CloseHandle { .. } => "close handle",
        }
    }
}

/// xorshift64: small, seeded, no dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// The operations of `seed`: `n` of them, drawn without looking at the state (so the list is
/// the whole record of the run). Out of 100: CONNECT 18 (one in ten refused), POST 18 (one in
/// three sends), peer faults 6, graceful DISCONNECT 5, abortive 4, ABORT 4, FLUSH 5, CLOSE 5,
/// QUERY 6, foreign QUERY 2, non-blocking WAIT 15, cancelled WAIT 6, drain 3, handle close 3;
/// a WAIT is filtered on a connection one time in three. (CONNECT has 3 more and WAIT 3 less
/// than the earlier state-driven choice gave them nominally, which turned an operation on a
/// slot without connections into a CONNECT: so the mix of events stays as it was.)
pub fn generate(seed: u64, n: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| one(&mut rng)).collect()
}

fn one(rng: &mut Rng) -> Op {
    let slot = rng.byte();
    let conn = rng.byte();
    match rng.below(100) {
        0..18 => Op::Connect {
            slot,
            port: rng.byte(),
            refused: rng.one_in(10),
        },
        18..36 => Op::Post {
            slot,
            conn,
            send: rng.one_in(3),
            count: rng.byte(),
        },
        36..42 => Op::Fault {
            host: rng.byte(),
            connector: rng.byte(),
            fault: if rng.one_in(2) {
                FaultKind::PeerDisconnect
            } else {
                FaultKind::PeerReset
            },
        },
        42..47 => Op::Disconnect {
            slot,
            conn,
            abortive: false,
        },
        47..51 => Op::Disconnect {
            slot,
            conn,
            abortive: true,
        },
        51..55 => Op::Abort { slot, conn },
        55..60 => Op::Flush { slot, conn },
        60..65 => Op::Close { slot, conn },
        65..71 => Op::Query { slot, conn },
        71..73 => Op::ForeignQuery { slot, conn },
        n @ 73..94 => Op::Wait {
            slot,
            on: rng.one_in(3).then_some(conn),
            room: rng.byte(),
            cancel: n >= 88,
        },
        94..97 => Op::Drain,
        _ => Op::CloseHandle { slot },
    }
}
