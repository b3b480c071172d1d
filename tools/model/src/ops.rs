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
    /// A CQ error on a live CQ of host `host % 2` (`Fabric::cqs`, oldest first, index `cq`
    /// modulo their number): `softndk::CqError::Fatal` or `Overrun`. The CQ and every QP on
    /// it are dead.
    CqError {
        /// The host.
        host: u8,
        /// The CQ, among the host's live ones.
        cq: u8,
        /// Fatal (else an overrun).
        fatal: bool,
    },
    /// Every adapter of host `host % 2` goes away (`Fabric::remove_adapters`; the engine is
    /// told, as the KMDF shell is of a plug-and-play removal). For the rest of the run that
    /// host has no adapter: a no-op the second time.
    RemoveAdapter {
        /// The host.
        host: u8,
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
    /// The link fails (`softndk::Fault::LinkLoss`), as on hardware: nobody is told; each end
    /// notices when a send it posted is not acknowledged within the retry timeout (the send
    /// fails, the provider flushes the QP and makes the disconnect callback). During a
    /// handshake both ends' handshakes fail.
    LinkLoss,
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
                FaultKind::LinkLoss => "fault link loss",
            },
            Self::CqError { fatal: true, .. } => "cq fatal",
            Self::CqError { fatal: false, .. } => "cq overrun",
            Self::RemoveAdapter { .. } => "remove adapter",
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
/// the whole record of the run). Out of 1000: CONNECT 180 (one in ten refused), POST 180 (one
/// in three sends), peer disconnect or reset 60, link loss 15, CQ error 10 (half fatal),
/// graceful DISCONNECT 50, abortive 40, ABORT 40, FLUSH 50, CLOSE 50, QUERY 60, foreign QUERY
/// 20, non-blocking WAIT 125, cancelled WAIT 60, drain 30, handle close 29.5, adapter removal
/// 0.5 (so about one seed in five of 500 operations loses a host part way); a WAIT is
/// filtered on a connection one time in three.
pub fn generate(seed: u64, n: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| one(&mut rng)).collect()
}

fn one(rng: &mut Rng) -> Op {
    let slot = rng.byte();
    let conn = rng.byte();
    match rng.below(1000) {
        0..180 => Op::Connect {
            slot,
            port: rng.byte(),
            refused: rng.one_in(10),
        },
        180..360 => Op::Post {
            slot,
            conn,
            send: rng.one_in(3),
            count: rng.byte(),
        },
        n @ 360..435 => Op::Fault {
            host: rng.byte(),
            connector: rng.byte(),
            fault: match n {
                360..390 => FaultKind::PeerDisconnect,
                390..420 => FaultKind::PeerReset,
                _ => FaultKind::LinkLoss,
            },
        },
        435..445 => Op::CqError {
            host: rng.byte(),
            cq: rng.byte(),
            fatal: rng.one_in(2),
        },
        445..495 => Op::Disconnect {
            slot,
            conn,
            abortive: false,
        },
        495..535 => Op::Disconnect {
            slot,
            conn,
            abortive: true,
        },
        535..575 => Op::Abort { slot, conn },
        575..625 => Op::Flush { slot, conn },
        625..675 => Op::Close { slot, conn },
        675..735 => Op::Query { slot, conn },
        735..755 => Op::ForeignQuery { slot, conn },
        n @ 755..940 => Op::Wait {
            slot,
            on: rng.one_in(3).then_some(conn),
            room: rng.byte(),
            cancel: n >= 880,
        },
        940..970 => Op::Drain,
        999 if rng.one_in(2) => Op::RemoveAdapter { host: rng.byte() },
        _ => Op::CloseHandle { slot },
    }
}
