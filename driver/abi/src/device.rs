//! How user mode finds the device: the device interface GUID the driver registers and the DOS
//! name of its symbolic link. Shared by the KMDF shell (which creates both) and the client
//! (which opens either).

/// A GUID in its Windows field layout (`Data1`..`Data4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guid {
    /// `Data1`.
    pub data1: u32,
    /// `Data2`.
    pub data2: u16,
    /// `Data3`.
    pub data3: u16,
    /// `Data4`.
    pub data4: [u8; 8],
}

/// `GUID_DEVINTERFACE_NDKDISC`: `{f4e53428-3a4c-4898-b21c-ccda821bfb92}`.
pub const DEVICE_INTERFACE_GUID: Guid = Guid {
    data1: 0xf4e5_3428,
    data2: 0x3a4c,
    data3: 0x4898,
    data4: [0xb2, 0x1c, 0xcc, 0xda, 0x82, 0x1b, 0xfb, 0x92],
};

/// The device interface GUID as text, braces included (for INF files and logs).
pub const DEVICE_INTERFACE_GUID_TEXT: &str = "{f4e53428-3a4c-4898-b21c-ccda821bfb92}";

/// The kernel name of the symbolic link the driver creates (`\DosDevices\NdkDisc`).
pub const SYMBOLIC_LINK_KERNEL_NAME: &str = "\\DosDevices\\NdkDisc";

/// The path user mode opens (`\\.\NdkDisc`).
pub const DOS_DEVICE_PATH: &str = "\\\\.\\NdkDisc";

/// The driver's ETW provider (`TraceLogging`, no manifest): its trace of connections, NDK
/// callbacks, terminal events and refused IOCTLs.
pub const ETW_PROVIDER_NAME: &str = "NdkDisc";

/// The ETW provider's GUID, `{c44c20f9-d09e-5f77-b7b6-789dee93b8da}`: the one ETW derives from
/// [`ETW_PROVIDER_NAME`] (`EventSource`'s name hash), so tools may name the provider either way.
pub const ETW_PROVIDER_GUID: Guid = Guid {
    data1: 0xc44c_20f9,
    data2: 0xd09e,
    data3: 0x5f77,
    data4: [0xb7, 0xb6, 0x78, 0x9d, 0xee, 0x93, 0xb8, 0xda],
};

/// The ETW provider GUID as text, braces included.
pub const ETW_PROVIDER_GUID_TEXT: &str = "{c44c20f9-d09e-5f77-b7b6-789dee93b8da}";

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(mut v: u64, digits: usize, out: &mut [u8]) {
        for i in (0..digits).rev() {
            out[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
        }
    }

    fn text(g: Guid) -> [u8; 38] {
        let mut s = [0u8; 38];
        s[0] = b'{';
        hex(u64::from(g.data1), 8, &mut s[1..9]);
        s[9] = b'-';
        hex(u64::from(g.data2), 4, &mut s[10..14]);
        s[14] = b'-';
        hex(u64::from(g.data3), 4, &mut s[15..19]);
        s[19] = b'-';
        hex(
            u64::from(u16::from_be_bytes([g.data4[0], g.data4[1]])),
            4,
            &mut s[20..24],
        );
        s[24] = b'-';
        let mut tail = 0u64;
        for b in &g.data4[2..] {
            tail = (tail << 8) | u64::from(*b);
        }
        hex(tail, 12, &mut s[25..37]);
        s[37] = b'}';
        s
    }

    #[test]
    fn text_matches_fields() {
        for (g, t) in [
            (DEVICE_INTERFACE_GUID, DEVICE_INTERFACE_GUID_TEXT),
            (ETW_PROVIDER_GUID, ETW_PROVIDER_GUID_TEXT),
        ] {
            assert_eq!(core::str::from_utf8(&text(g)).unwrap(), t);
        }
    }

    #[test]
    fn names() {
        assert!(SYMBOLIC_LINK_KERNEL_NAME.ends_with("NdkDisc"));
        assert_eq!(DOS_DEVICE_PATH, r"\\.\NdkDisc");
    }
}
