// The checks of the `ioctl_decode` fuzz target, shared by the target (fuzz/fuzz_targets) and
// the stable replay of its corpus (driver/abi/tests/fuzz_corpus.rs), both by `include!`.
//
// Input: 4 bytes that pick the control code, then the record bytes. If the first byte is below
// 0xF0 it indexes `Ioctl::ALL` (so most inputs reach a real decoder); otherwise the 4 bytes are
// the raw control code (unknown codes must be refused, never panic). The same bytes are also
// decoded as every reply record the client decodes.
//
// Invariants (each violation panics, which the fuzzer reports as a crash):
// - nothing panics, whatever the bytes;
// - a request that parses re-encodes to exactly the bytes it came from (decode is canonical:
//   the driver acts on what the bytes say, nothing less);
// - a reply that decodes re-encodes to bytes that decode to the same value (a value survives
//   the wire);
// - a control code that is not ndkdisc's is refused as such.

/// Run every check on one input.
///
/// # Panics
/// When an invariant above does not hold (the fuzzer's crash).
pub fn check_ioctl_decode(data: &[u8]) {
    use ndkdisc_abi::{
        AbiError, ConnectReply, Event, InfoReply, Ioctl, ListenReply, ObjectEntry, QueryReply,
        Request, decode_adapters_header, decode_objects_header, decode_wait_reply,
    };

    let Some((selector, record)) = data.split_first_chunk::<4>() else {
        return;
    };
    let code = if selector[0] < 0xF0 {
        Ioctl::ALL[usize::from(selector[0]) % Ioctl::ALL.len()].code()
    } else {
        u32::from_le_bytes(*selector)
    };

    match Request::parse(code, record) {
        Ok(request) => {
            let mut out = [0u8; 256];
            let n = encode_request(&request, &mut out);
            assert_eq!(
                &out[..n],
                record,
                "{request:?} does not re-encode to its bytes"
            );
        }
        Err(AbiError::UnknownIoctl(c)) => {
            assert_eq!(c, code);
            assert!(Ioctl::from_code(code).is_none(), "a known code refused");
        }
        Err(_) => {}
    }

    round_trip::<InfoReply>(record);
    round_trip::<ListenReply>(record);
    round_trip::<ConnectReply>(record);
    round_trip::<QueryReply>(record);

    if let Ok(event) = Event::decode(record) {
        let mut out = [0u8; Event::SIZE];
        event.encode(&mut out).expect("a decoded event re-encodes");
        assert_eq!(Event::decode(&out), Ok(event), "event round trip");
    }
    let mut events = [None; 8];
    if let Ok(n) = decode_wait_reply(record, &mut events) {
        assert!(n <= events.len());
        assert!(events[..n].iter().all(Option::is_some));
    }
    let _ = decode_adapters_header(record);
    let _ = decode_objects_header(record);
    if let Ok(entry) = ObjectEntry::decode(record) {
        let mut out = [0u8; ObjectEntry::SIZE];
        entry.encode(&mut out).expect("a decoded entry re-encodes");
        assert_eq!(ObjectEntry::decode(&out), Ok(entry), "object entry round trip");
    }
}

/// A reply record that decodes re-encodes to bytes that decode to the same value.
fn round_trip<T: ndkdisc_abi::Record + PartialEq + core::fmt::Debug>(bytes: &[u8]) {
    if let Ok(value) = T::parse(bytes) {
        let mut out = [0u8; 256];
        let n = value.encode(&mut out).expect("a decoded reply re-encodes");
        assert_eq!(T::parse(&out[..n]).as_ref(), Ok(&value), "reply round trip");
    }
}

/// Encode a parsed request back into `out`; the bytes written.
fn encode_request(request: &ndkdisc_abi::Request, out: &mut [u8]) -> usize {
    use ndkdisc_abi::{Record, Request};
    let written = match request {
        Request::GetInfo(r) => r.encode(out),
        Request::ListAdapters(r) => r.encode(out),
        Request::Listen(r) => r.encode(out),
        Request::Connect(r) => r.encode(out),
        Request::Wait(r) => r.encode(out),
        Request::Query(r) => r.encode(out),
        Request::Post(r) => r.encode(out),
        Request::Disconnect(r) => r.encode(out),
        Request::Abort(r) => r.encode(out),
        Request::Flush(r) => r.encode(out),
        Request::Close(r) => r.encode(out),
        Request::ListObjects(r) => r.encode(out),
    };
    written.expect("a parsed request re-encodes")
}
