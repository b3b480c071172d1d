//! Golden bytes, truncation and validation for every ndkdisc-abi record.
#![allow(clippy::pedantic, reason = "byte-level test tables")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ndkdisc_abi::*;

/// The documented header: version 1, size, reserved 0.
fn hdr(size: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// The documented address layout.
fn addr(a: Option<SocketAddr>) -> Vec<u8> {
    let mut v = vec![0u8; 24];
    match a {
        None => {}
        Some(SocketAddr::V4(a)) => {
            v[0..2].copy_from_slice(&2u16.to_le_bytes());
            v[2..4].copy_from_slice(&a.port().to_le_bytes());
            v[8..12].copy_from_slice(&a.ip().octets());
        }
        Some(SocketAddr::V6(a)) => {
            v[0..2].copy_from_slice(&23u16.to_le_bytes());
            v[2..4].copy_from_slice(&a.port().to_le_bytes());
            v[4..8].copy_from_slice(&a.scope_id().to_le_bytes());
            v[8..24].copy_from_slice(&a.ip().octets());
        }
    }
    v
}

/// A 24-byte request: header, an id `u64` @8, `flags: u32` @16, `reserved: u32` @20 (zero).
fn id_and_flags(id: u64, flags: u32) -> Vec<u8> {
    let mut b = hdr(24);
    b.extend_from_slice(&le64(id));
    b.extend_from_slice(&le32(flags));
    b.extend_from_slice(&le32(0));
    b
}

/// `bytes` with the byte at `at` set to `value`.
fn with_byte(bytes: &[u8], at: usize, value: u8) -> Vec<u8> {
    let mut changed = bytes.to_vec();
    changed[at] = value;
    changed
}

/// A decode that must fail on a flag bit the ABI does not define.
#[track_caller]
fn assert_unknown_flags<T: std::fmt::Debug>(decoded: Result<T, AbiError>) {
    assert!(matches!(decoded, Err(AbiError::UnknownFlags { .. })));
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}
fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}
fn v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)), port)
}

/// Parse the golden bytes to the value, encode the value to the golden bytes, and reject
/// every truncation and an extension by one byte.
fn golden<R: Record + PartialEq + std::fmt::Debug>(value: R, bytes: &[u8]) {
    assert_eq!(bytes.len(), R::SIZE, "golden length is the record size");
    assert_eq!(R::parse(bytes).expect("golden parses"), value);
    let mut out = vec![0xAAu8; R::SIZE + 5];
    assert_eq!(value.encode(&mut out).unwrap(), R::SIZE);
    assert_eq!(&out[..R::SIZE], bytes, "encode gives the golden bytes");
    assert!(
        out[R::SIZE..].iter().all(|&b| b == 0xAA),
        "encode writes nothing past the record"
    );
    for len in 0..R::SIZE {
        assert_eq!(
            R::parse(&bytes[..len]),
            Err(AbiError::WrongLength {
                expected: R::SIZE,
                actual: len
            }),
            "truncated to {len}"
        );
        let mut short = vec![0u8; len];
        assert_eq!(
            value.encode(&mut short),
            Err(AbiError::OutputTooSmall),
            "encode into {len}"
        );
    }
    let mut long = bytes.to_vec();
    long.push(0);
    assert!(matches!(R::parse(&long), Err(AbiError::WrongLength { .. })));
    // Header checks.
    let mut bad = bytes.to_vec();
    bad[0] = 2;
    assert_eq!(R::parse(&bad), Err(AbiError::UnsupportedVersion(2)));
    assert_eq!(
        AbiError::UnsupportedVersion(2).ntstatus(),
        NtStatus::REVISION_MISMATCH
    );
    let mut bad = bytes.to_vec();
    bad[2] = bad[2].wrapping_add(1);
    assert!(matches!(R::parse(&bad), Err(AbiError::WrongSize { .. })));
    let mut bad = bytes.to_vec();
    bad[7] = 1;
    assert_eq!(
        R::parse(&bad),
        Err(AbiError::ReservedNotZero("header.reserved"))
    );
}

/// Setting any byte of a reserved field makes the record invalid.
fn reserved_rejected<R: Record + std::fmt::Debug>(
    bytes: &[u8],
    offsets: std::ops::Range<usize>,
    name: &str,
) {
    for at in offsets {
        let mut bad = bytes.to_vec();
        bad[at] = 0x01;
        let err = R::parse(&bad).expect_err("reserved byte set");
        assert_eq!(
            err.ntstatus(),
            NtStatus::INVALID_PARAMETER,
            "{name} byte {at}: {err:?}"
        );
    }
}

#[test]
fn header_only_requests() {
    golden(GetInfoRequest, &hdr(8));
    golden(ListAdaptersRequest, &hdr(8));
}

#[test]
fn listen_request_layout() {
    let local = v4([10, 0, 0, 2], 4791);
    let mut b = hdr(48);
    b.extend_from_slice(&le32(7));
    b.extend_from_slice(&le32(16));
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&addr(Some(local)));
    golden(
        ListenRequest {
            if_index: 7,
            backlog: 16,
            local,
        },
        &b,
    );
    reserved_rejected::<ListenRequest>(&b, 16..24, "flags/reserved");
    let mut none = b.clone();
    none[24..48].copy_from_slice(&addr(None));
    assert_eq!(
        ListenRequest::parse(&none),
        Err(AbiError::BadAddress("local address required"))
    );
}

#[test]
fn connect_request_golden_bytes_are_exactly_the_documented_ones() {
    // Written out byte by byte from the layout in the docs.
    #[rustfmt::skip]
    let bytes: [u8; 72] = [
        0x01, 0x00, 0x48, 0x00, 0x00, 0x00, 0x00, 0x00, // version 1, size 72, reserved
        0x05, 0x00, 0x00, 0x00,                         // if_index 5
        0x00, 0x00, 0x00, 0x00,                         // flags
        0x40, 0x00, 0x00, 0x00,                         // receive_depth 64
        0x00, 0x00, 0x00, 0x00,                         // send_depth default
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // local: none
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x00, 0xB7, 0x12, 0x00, 0x00, 0x00, 0x00, // remote: AF_INET, port 4791
        0x0A, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, // 10.0.0.2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let req = ConnectRequest {
        if_index: 5,
        receive_depth: 64,
        send_depth: 0,
        local: None,
        remote: v4([10, 0, 0, 2], 4791),
    };
    golden(req, &bytes);
    reserved_rejected::<ConnectRequest>(&bytes, 12..16, "flags");
}

#[test]
fn connect_request_address_rules() {
    let mut b = hdr(72);
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&addr(Some(v4([10, 0, 0, 1], 0))));
    b.extend_from_slice(&addr(Some(v6(4791))));
    assert_eq!(
        ConnectRequest::parse(&b),
        Err(AbiError::BadAddress("local and remote families differ"))
    );
    let mut b = hdr(72);
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&addr(None));
    b.extend_from_slice(&addr(Some(v6(0))));
    assert_eq!(
        ConnectRequest::parse(&b),
        Err(AbiError::BadAddress("remote port 0"))
    );
    // IPv6 round trip with a scope id.
    let remote = SocketAddr::V6(std::net::SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0, 3));
    let req = ConnectRequest {
        if_index: 1,
        receive_depth: 0,
        send_depth: 8,
        local: None,
        remote,
    };
    let mut out = [0u8; 72];
    req.encode(&mut out).unwrap();
    assert_eq!(ConnectRequest::parse(&out).unwrap(), req);
    // Malformed addresses: unknown family, IPv4 trailing bytes, family 0 with data.
    for (at, value, why) in [
        (48usize, 5u8, "unknown family"),
        (60, 1, "IPv4 with scope id or trailing bytes"),
        (52, 1, "IPv4 with scope id or trailing bytes"),
    ] {
        let mut bad = out;
        bad[48..72].copy_from_slice(&addr(Some(v4([1, 2, 3, 4], 80))));
        bad[at] = value;
        assert_eq!(
            ConnectRequest::parse(&bad),
            Err(AbiError::BadAddress(why)),
            "byte {at}"
        );
    }
    let mut bad = out;
    bad[24 + 2] = 1; // local family 0 but a port
    assert_eq!(
        ConnectRequest::parse(&bad),
        Err(AbiError::BadAddress("family 0 with non-zero fields"))
    );
}

#[test]
fn wait_request_layout_and_flags() {
    let b = id_and_flags(42, WAIT_NONBLOCKING);
    golden(
        WaitRequest {
            connection: Some(42),
            nonblocking: true,
        },
        &b,
    );
    reserved_rejected::<WaitRequest>(&b, 20..24, "reserved");
    let mut any = hdr(24);
    any.extend_from_slice(&[0; 16]);
    golden(
        WaitRequest {
            connection: None,
            nonblocking: false,
        },
        &any,
    );
    let bad = with_byte(&b, 16, 0x3);
    assert_eq!(
        WaitRequest::parse(&bad),
        Err(AbiError::UnknownFlags {
            field: "flags",
            bits: 2
        })
    );
}

#[test]
fn id_requests_layout_and_zero_id() {
    let mut b = hdr(16);
    b.extend_from_slice(&le64(0x0102_0304_0506_0708));
    golden(
        QueryRequest {
            connection_id: 0x0102_0304_0506_0708,
        },
        &b,
    );
    golden(
        AbortRequest {
            connection_id: 0x0102_0304_0506_0708,
        },
        &b,
    );
    golden(
        FlushRequest {
            connection_id: 0x0102_0304_0506_0708,
        },
        &b,
    );
    golden(
        CloseRequest {
            id: 0x0102_0304_0506_0708,
        },
        &b,
    );
    let mut zero = hdr(16);
    zero.extend_from_slice(&le64(0));
    assert_eq!(
        QueryRequest::parse(&zero),
        Err(AbiError::OutOfRange("connection_id"))
    );
    assert_eq!(CloseRequest::parse(&zero), Err(AbiError::OutOfRange("id")));
}

#[test]
fn post_request_layout_and_ranges() {
    let mut b = hdr(32);
    b.extend_from_slice(&le64(9));
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&le32(4));
    b.extend_from_slice(&le32(4096));
    b.extend_from_slice(&le32(0));
    golden(
        PostRequest {
            connection_id: 9,
            kind: PostKind::Send,
            count: 4,
            length: 4096,
        },
        &b,
    );
    reserved_rejected::<PostRequest>(&b, 18..20, "reserved");
    reserved_rejected::<PostRequest>(&b, 28..32, "reserved2");
    let bad = with_byte(&b, 16, 3);
    assert_eq!(
        PostRequest::parse(&bad),
        Err(AbiError::BadEnum {
            field: "kind",
            value: 3
        })
    );
    for (count, length, field) in [
        (0u32, 1u32, "count"),
        (MAX_POST_COUNT + 1, 1, "count"),
        (1, 0, "length"),
        (1, MAX_POST_LENGTH + 1, "length"),
    ] {
        let mut bad = b.clone();
        bad[20..24].copy_from_slice(&le32(count));
        bad[24..28].copy_from_slice(&le32(length));
        assert_eq!(PostRequest::parse(&bad), Err(AbiError::OutOfRange(field)));
    }
}

#[test]
fn disconnect_request_layout_and_flags() {
    let b = id_and_flags(3, DISCONNECT_ABORTIVE);
    golden(
        DisconnectRequest {
            connection_id: 3,
            abortive: true,
        },
        &b,
    );
    reserved_rejected::<DisconnectRequest>(&b, 20..24, "reserved");
    let bad = with_byte(&b, 16, 0x80);
    assert_unknown_flags(DisconnectRequest::parse(&bad));
}

#[test]
fn replies_round_trip_with_golden_layout() {
    let info = InfoReply {
        abi_version: 1,
        driver_version: 0x0001_0002,
        max_connections: 1024,
        max_listeners: 16,
        max_waits: 64,
        default_backlog: 32,
        events_per_connection: 4,
        ndk_status: NtStatus::NOT_SUPPORTED,
        connections_opened: 5,
        events_latched: 6,
        disconnect_callbacks: 7,
        backlog_rejects: 8,
        duplicate_callbacks: 9,
        clock: 0x0123_4567_89AB_CDEF,
    };
    let mut b = hdr(88);
    // ndk_status @36: STATUS_NOT_SUPPORTED.
    for v in [1, 0x0001_0002, 1024, 16, 64, 32, 4, 0xC000_00BB] {
        b.extend_from_slice(&le32(v));
    }
    for v in [5, 6, 7, 8, 9, 0x0123_4567_89AB_CDEF] {
        b.extend_from_slice(&le64(v));
    }
    golden(info, &b);

    let bound = v6(50000);
    let mut b = hdr(40);
    b.extend_from_slice(&le64(11));
    b.extend_from_slice(&addr(Some(bound)));
    golden(
        ListenReply {
            listener_id: 11,
            bound,
        },
        &b,
    );

    let mut b = hdr(72);
    b.extend_from_slice(&le64(12));
    b.extend_from_slice(&(0xC000_0236_u32 as i32).to_le_bytes());
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&addr(Some(v4([10, 0, 0, 1], 49152))));
    b.extend_from_slice(&addr(Some(v4([10, 0, 0, 2], 4791))));
    golden(
        ConnectReply {
            connection_id: 12,
            status: NtStatus::CONNECTION_REFUSED,
            local: Some(v4([10, 0, 0, 1], 49152)),
            remote: Some(v4([10, 0, 0, 2], 4791)),
        },
        &b,
    );

    let q = QueryReply {
        connection_id: 13,
        state: ConnState::Disconnected,
        callback_fired: true,
        provider_reason: Some(1),
        local_disconnect: false,
        aborted: false,
        flushed: false,
        provider_flushed: false,
        cq_failed: false,
        outstanding_receives: 4,
        outstanding_sends: 0,
        ndk_version: (2, 1),
        terminal_status: NtStatus::SUCCESS,
        local: Some(v4([10, 0, 0, 2], 4791)),
        remote: Some(v4([10, 0, 0, 1], 49152)),
        receives_succeeded: 5,
        receives_cancelled: 6,
        sends_succeeded: 7,
        sends_cancelled: 8,
        receives_failed: 9,
        sends_failed: 10,
        last_error_status: NtStatus::IO_TIMEOUT,
        last_provider_error: 12,
        received_bytes: 0x0102_0304_0506_0708,
        send_bytes_posted: 4096,
    };
    let mut b = hdr(136);
    b.extend_from_slice(&le64(13));
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes());
    for v in [1u32, 4, 0] {
        b.extend_from_slice(&le32(v));
    }
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&addr(q.local));
    b.extend_from_slice(&addr(q.remote));
    for v in [5u32, 6, 7, 8, 9, 10, 0xC000_00B5, 12] {
        b.extend_from_slice(&le32(v));
    }
    b.extend_from_slice(&le64(0x0102_0304_0506_0708));
    b.extend_from_slice(&le64(4096));
    golden(q, &b);
    assert_eq!(
        q.flags(),
        QUERY_CALLBACK_FIRED | QUERY_REASON_VALID,
        "flags @18"
    );
    // A state this version does not define (a newer driver's) still decodes, as Unknown.
    let mut newer = b.clone();
    newer[16] = 9;
    assert_eq!(
        QueryReply::parse(&newer).map(|q| q.state),
        Ok(ConnState::Unknown(9))
    );
}

#[test]
fn event_golden_bytes_and_batches() {
    let e = Event {
        seq: 1,
        connection_id: 2,
        timestamp: 3,
        kind: EventKind::Disconnected,
        cause: Some(Cause::Peer),
        status: NtStatus::SUCCESS,
        provider_reason: Some(1),
        outstanding_receives: 4,
        outstanding_sends: 0,
        callback_fired: true,
        provider_flushes: false,
        already_delivered: false,
    };
    assert_eq!(e.flags(), EVENT_CALLBACK_FIRED | EVENT_REASON_VALID);
    #[rustfmt::skip]
    let bytes: [u8; 48] = [
        1, 0, 0, 0, 0, 0, 0, 0,   // seq
        2, 0, 0, 0, 0, 0, 0, 0,   // connection_id
        3, 0, 0, 0, 0, 0, 0, 0,   // timestamp
        4, 0, 1, 0,               // kind Disconnected, cause Peer
        0, 0, 0, 0,               // status
        1, 0, 0, 0,               // provider_reason
        4, 0, 0, 0, 0, 0, 0, 0,   // outstanding receives, sends
        3, 0, 0, 0,               // flags
    ];
    let mut out = [0u8; 48];
    assert_eq!(e.encode(&mut out), Ok(48));
    assert_eq!(out, bytes);
    assert_eq!(Event::decode(&bytes), Ok(e));
    for len in 0..48 {
        assert_eq!(
            Event::decode(&bytes[..len]),
            Err(AbiError::Truncated),
            "truncated to {len}"
        );
        assert_eq!(e.encode(&mut out[..len]), Err(AbiError::OutputTooSmall));
    }
    // A kind or cause this version does not define (a newer driver's) decodes to Unknown
    // with its number, so the rest of the record and of the batch is still read.
    let mut newer = bytes;
    newer[24] = 7;
    assert_eq!(
        Event::decode(&newer).map(|e| e.kind),
        Ok(EventKind::Unknown(7))
    );
    let mut newer = bytes;
    newer[26] = 9;
    assert_eq!(
        Event::decode(&newer).map(|e| e.cause),
        Ok(Some(Cause::Unknown(9)))
    );
    let mut none = bytes;
    none[26] = 0;
    assert_eq!(
        Event::decode(&none).map(|e| e.cause),
        Ok(None),
        "0: no cause"
    );
    let mut bad = bytes;
    bad[44] = 0x10;
    assert_unknown_flags(Event::decode(&bad));

    // A batch: header (size 16), count, then the events in order.
    let events = [
        e,
        Event {
            seq: 2,
            kind: EventKind::Closed,
            cause: None,
            provider_reason: None,
            callback_fired: false,
            ..e
        },
    ];
    assert_eq!(batch_capacity(16 + 48, 48), Some(1));
    assert_eq!(batch_capacity(16 + 47, 48), None);
    assert_eq!(batch_capacity(16 + 48 * 3 + 10, 48), Some(3));
    let mut buf = vec![0xEEu8; 16 + 2 * 48];
    assert_eq!(encode_wait_reply(&events, &mut buf), Ok(16 + 96));
    assert_eq!(
        &buf[..16],
        &[1, 0, 16, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    );
    let mut back = [None; 4];
    assert_eq!(decode_wait_reply(&buf, &mut back), Ok(2));
    assert_eq!(back[..2], [Some(events[0]), Some(events[1])]);
    assert_eq!(
        encode_wait_reply(&events, &mut buf[..16 + 95]),
        Err(AbiError::OutputTooSmall)
    );
}

#[test]
fn an_already_delivered_terminal_copy_has_its_flag_on_the_wire() {
    let e = Event {
        seq: 9,
        connection_id: 5,
        timestamp: 0,
        kind: EventKind::Disconnected,
        cause: Some(Cause::Peer),
        status: NtStatus::SUCCESS,
        provider_reason: None,
        outstanding_receives: 0,
        outstanding_sends: 0,
        callback_fired: true,
        provider_flushes: false,
        already_delivered: true,
    };
    assert_eq!(EVENT_ALREADY_DELIVERED, 0x4, "ABI value");
    let mut out = [0u8; 48];
    assert_eq!(e.encode(&mut out), Ok(48));
    assert_eq!(
        &out[44..48],
        &[5, 0, 0, 0],
        "flags @44: CALLBACK_FIRED | ALREADY_DELIVERED"
    );
    assert_eq!(Event::decode(&out), Ok(e), "the flag is accepted on decode");
    // 0x8 is EVENT_PROVIDER_FLUSHES; the next bit up is still undefined.
    out[44] = 0x8;
    assert!(Event::decode(&out).is_ok());
    assert_eq!(EVENT_PROVIDER_FLUSHES, 0x8, "ABI value");
    out[44] = 0x10;
    assert_unknown_flags(Event::decode(&out));
}

#[test]
fn adapters_reply_reports_how_many_exist_when_the_buffer_is_short() {
    let entries = [
        AdapterEntry {
            if_index: 1,
            ndk_major: 2,
            ndk_minor: 1,
            address: v4([10, 0, 0, 1], 0),
        },
        AdapterEntry {
            if_index: 1,
            ndk_major: 2,
            ndk_minor: 1,
            address: v6(0),
        },
        AdapterEntry {
            if_index: 2,
            ndk_major: 1,
            ndk_minor: 2,
            address: v4([10, 0, 0, 2], 0),
        },
    ];
    let mut buf = vec![0u8; 16 + 2 * 32 + 31];
    assert_eq!(encode_adapters_reply(&entries, &mut buf), Ok(16 + 64));
    assert_eq!(decode_adapters_header(&buf), Ok((2, 3)));
    assert_eq!(AdapterEntry::decode(&buf[16..]), Ok(entries[0]));
    assert_eq!(AdapterEntry::decode(&buf[48..]), Ok(entries[1]));
    let mut e = [0u8; 32];
    entries[2].encode(&mut e).unwrap();
    let mut expected = Vec::new();
    expected.extend_from_slice(&le32(2));
    expected.extend_from_slice(&1u16.to_le_bytes());
    expected.extend_from_slice(&2u16.to_le_bytes());
    expected.extend_from_slice(&addr(Some(v4([10, 0, 0, 2], 0))));
    assert_eq!(e.to_vec(), expected);
    assert_eq!(
        encode_adapters_reply(&entries, &mut buf[..15]),
        Err(AbiError::OutputTooSmall)
    );
}

#[test]
fn object_entries_have_their_documented_layout() {
    let local = v4([10, 0, 0, 2], 4791);
    let remote = v4([10, 0, 0, 1], 49152);
    let conn = ObjectEntry {
        id: 0x0000_0001_0000_0003,
        kind: ObjectKind::Connection,
        state: Some(ConnState::Disconnected),
        outstanding_receives: 4,
        outstanding_sends: 1,
        local: Some(local),
        remote: Some(remote),
    };
    let mut expected = le64(0x0000_0001_0000_0003).to_vec();
    expected.extend_from_slice(&1u16.to_le_bytes());
    expected.extend_from_slice(&ConnState::Disconnected.to_wire().to_le_bytes());
    expected.extend_from_slice(&le32(4));
    expected.extend_from_slice(&le32(1));
    expected.extend_from_slice(&le32(0));
    expected.extend_from_slice(&addr(Some(local)));
    expected.extend_from_slice(&addr(Some(remote)));
    assert_eq!(expected.len(), ObjectEntry::SIZE);
    let mut buf = [0u8; ObjectEntry::SIZE];
    assert_eq!(conn.encode(&mut buf), Ok(ObjectEntry::SIZE));
    assert_eq!(buf.to_vec(), expected);
    assert_eq!(ObjectEntry::decode(&buf), Ok(conn));
    let listener = ObjectEntry {
        id: 0xF_FFFF,
        kind: ObjectKind::Listener,
        state: None,
        outstanding_receives: 0,
        outstanding_sends: 0,
        local: Some(local),
        remote: None,
    };
    listener.encode(&mut buf).unwrap();
    assert_eq!(&buf[8..12], &[2, 0, 0, 0], "kind 2, state 0");
    assert_eq!(ObjectEntry::decode(&buf), Ok(listener));
    buf[20] = 1;
    assert_eq!(
        ObjectEntry::decode(&buf),
        Err(AbiError::ReservedNotZero("reserved"))
    );
    assert_eq!(ObjectEntry::decode(&buf[..71]), Err(AbiError::Truncated));
    assert_eq!(
        ObjectEntry::encode(&listener, &mut buf[..71]),
        Err(AbiError::OutputTooSmall)
    );
}

#[test]
fn control_codes_follow_ctl_code_in_the_vendor_ranges() {
    assert_eq!(Ioctl::GetInfo.code(), 0x8A4D_6000);
    assert_eq!(Ioctl::Connect.code(), 0x8A4D_A00C);
    let mut seen = std::collections::HashSet::new();
    for &i in Ioctl::ALL {
        let code = i.code();
        assert!(seen.insert(code), "{i:?} code is unique");
        assert!(code >> 16 >= 0x8000, "vendor device type");
        assert!((code >> 2) & 0xFFF >= 0x800, "vendor function code");
        assert_eq!(code & 3, 0, "METHOD_BUFFERED");
        let access = (code >> 14) & 3;
        let query = matches!(
            i,
            Ioctl::GetInfo | Ioctl::ListAdapters | Ioctl::Wait | Ioctl::Query | Ioctl::ListObjects
        );
        assert_eq!(
            access,
            if query { 1 } else { 2 },
            "{i:?}: read access for queries, write for changes"
        );
        assert_eq!(Ioctl::from_code(code), Some(i));
    }
    assert_eq!(Ioctl::ALL.len(), 12);
    assert_eq!(Ioctl::ListObjects.code(), 0x8A4D_602C);
    assert!(Ioctl::Connect.may_pend() && Ioctl::Wait.may_pend());
    assert!(Ioctl::ALL.iter().filter(|i| i.may_pend()).count() == 2);
    let foreign = ioctl::ctl_code(0x22, 0x800, 0, 0);
    assert_eq!(
        Request::parse(foreign, &hdr(8)),
        Err(AbiError::UnknownIoctl(foreign))
    );
    assert_eq!(
        AbiError::UnknownIoctl(foreign).ntstatus(),
        NtStatus::INVALID_DEVICE_REQUEST
    );
}

#[test]
fn request_parse_dispatches_on_the_code_and_checks_the_record() {
    let mut wait = hdr(24);
    wait.extend_from_slice(&[0; 16]);
    let parsed = Request::parse(Ioctl::Wait.code(), &wait).unwrap();
    assert_eq!(
        parsed,
        Request::Wait(WaitRequest {
            connection: None,
            nonblocking: false
        })
    );
    assert_eq!(parsed.ioctl(), Ioctl::Wait);
    // The WAIT record under the QUERY code is the wrong length.
    assert_eq!(
        Request::parse(Ioctl::Query.code(), &wait),
        Err(AbiError::WrongLength {
            expected: 16,
            actual: 24
        })
    );
    for &i in Ioctl::ALL {
        assert!(
            Request::parse(i.code(), &[]).is_err(),
            "{i:?} rejects empty input"
        );
    }
}

#[test]
fn every_error_maps_to_its_documented_status() {
    use AbiError::*;
    let table = [
        (Truncated, NtStatus::INVALID_PARAMETER),
        (
            WrongLength {
                expected: 8,
                actual: 7,
            },
            NtStatus::INVALID_PARAMETER,
        ),
        (
            WrongSize {
                expected: 8,
                actual: 9,
            },
            NtStatus::INVALID_PARAMETER,
        ),
        (UnsupportedVersion(9), NtStatus::REVISION_MISMATCH),
        (ReservedNotZero("x"), NtStatus::INVALID_PARAMETER),
        (
            UnknownFlags {
                field: "f",
                bits: 1,
            },
            NtStatus::INVALID_PARAMETER,
        ),
        (
            BadEnum {
                field: "k",
                value: 9,
            },
            NtStatus::INVALID_PARAMETER,
        ),
        (BadAddress("a"), NtStatus::INVALID_PARAMETER),
        (OutOfRange("c"), NtStatus::INVALID_PARAMETER),
        (OutputTooSmall, NtStatus::BUFFER_TOO_SMALL),
        (UnknownIoctl(1), NtStatus::INVALID_DEVICE_REQUEST),
    ];
    for (e, s) in table {
        assert_eq!(e.ntstatus(), s, "{e:?}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn no_request_is_longer_than_max_request_size_and_a_longer_input_is_refused_like_any_wrong_length()
{
    // The driver copies at most MAX_REQUEST_SIZE + 1 bytes of an input: every input it may
    // accept fits, and one byte more stands for any longer input. Each record's size is taken
    // from the parser itself (what it expected), so a new operation with a longer record fails
    // here.
    let mut longest = 0;
    for ioctl in Ioctl::ALL {
        let stand_in = Request::parse(ioctl.code(), &[0u8; MAX_REQUEST_SIZE + 1]).unwrap_err();
        let AbiError::WrongLength { expected, .. } = stand_in else {
            panic!("{ioctl:?}: {stand_in:?}");
        };
        assert!(expected <= MAX_REQUEST_SIZE, "{ioctl:?}: {expected}");
        longest = longest.max(expected);
        for len in [MAX_REQUEST_SIZE + 2, 4096, 1 << 20] {
            let long = Request::parse(ioctl.code(), &vec![0xA5u8; len]).unwrap_err();
            assert_eq!(
                long.ntstatus(),
                stand_in.ntstatus(),
                "{ioctl:?}, {len} bytes"
            );
        }
        assert_eq!(stand_in.ntstatus(), NtStatus::INVALID_PARAMETER);
    }
    assert_eq!(
        longest, MAX_REQUEST_SIZE,
        "the longest record sets the bound"
    );
}
