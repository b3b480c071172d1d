//! Control codes. `CTL_CODE(DeviceType, Function, Method, Access)` as `winioctl.h` defines it:
//! `(DeviceType << 16) | (Access << 14) | (Function << 2) | Method`.

/// `CTL_CODE` as a `const fn`.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// ndkdisc's device type: in the vendor range (`>= 0x8000`).
pub const FILE_DEVICE_NDKDISC: u32 = 0x8A4D;
/// `METHOD_BUFFERED`: the I/O manager copies input and output through a system buffer.
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_READ_ACCESS`: the handle must have been opened for reading.
pub const FILE_READ_ACCESS: u32 = 0x0001;
/// `FILE_WRITE_ACCESS`: the handle must have been opened for writing.
pub const FILE_WRITE_ACCESS: u32 = 0x0002;

macro_rules! ioctls {
    ($($(#[$doc:meta])* $name:ident = $func:literal, $access:ident, $pends:literal;)*) => {
        /// The ndkdisc operations.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Ioctl {
            $($(#[$doc])* $name,)*
        }

        impl Ioctl {
            /// Every operation, in function-code order.
            pub const ALL: &'static [Ioctl] = &[$(Ioctl::$name,)*];

            /// The function code (`>= 0x800`, the vendor range).
            pub const fn function(self) -> u32 {
                match self { $(Ioctl::$name => $func,)* }
            }

            /// The access the handle needs: `FILE_READ_ACCESS` for queries,
            /// `FILE_WRITE_ACCESS` for anything that changes state.
            pub const fn access(self) -> u32 {
                match self { $(Ioctl::$name => $access,)* }
            }

            /// Whether the request may pend (complete later with `STATUS_PENDING` first).
            pub const fn may_pend(self) -> bool {
                match self { $(Ioctl::$name => $pends,)* }
            }

            /// The full control code.
            pub const fn code(self) -> u32 {
                ctl_code(FILE_DEVICE_NDKDISC, self.function(), METHOD_BUFFERED, self.access())
            }

            /// The operation a control code names, if it is one of ndkdisc's.
            pub fn from_code(code: u32) -> Option<Self> {
                Self::ALL.iter().copied().find(|i| i.code() == code)
            }
        }
    };
}

ioctls! {
    /// Driver and ABI versions, per-handle limits, counters (zero to a read-only handle).
    GetInfo = 0x800, FILE_READ_ACCESS, false;
    /// The NDK-capable adapters (interface index, NDKPI version, addresses).
    ListAdapters = 0x801, FILE_READ_ACCESS, false;
    /// Listen on an address; incoming connections are accepted and reported as events.
    Listen = 0x802, FILE_WRITE_ACCESS, false;
    /// Connect; pends until connected or failed.
    Connect = 0x803, FILE_WRITE_ACCESS, true;
    /// Wait for events on one connection or on any of the handle's; returns a batch.
    Wait = 0x804, FILE_READ_ACCESS, true;
    /// A connection's state, outstanding work and disconnect facts.
    Query = 0x805, FILE_READ_ACCESS, false;
    /// Post receives or sends.
    Post = 0x806, FILE_WRITE_ACCESS, false;
    /// Graceful (`NdkDisconnect`) or abortive disconnect.
    Disconnect = 0x807, FILE_WRITE_ACCESS, false;
    /// Abort: cancel the connection's waits, mark it aborted, emit its terminal event.
    Abort = 0x808, FILE_WRITE_ACCESS, false;
    /// `NdkFlush` the connection's QP (only ever on request).
    Flush = 0x809, FILE_WRITE_ACCESS, false;
    /// Release a connection's or listener's NDK objects.
    Close = 0x80A, FILE_WRITE_ACCESS, false;
    /// The handle's connections and listeners, with state and outstanding work.
    ListObjects = 0x80B, FILE_READ_ACCESS, false;
}
