//! The ETW encoding of the engine's trace: each event decodes, with a reader written from the
//! `TraceLogging` format description, into the fields the trace record holds; every record
//! fits its buffers; the provider GUID is the one ETW derives from the provider's name.
#![allow(clippy::pedantic, reason = "test scaffolding")]

use ndkdisc_abi::{Cause, EventKind, NtStatus};
use ndkdisc_core::etw::{self, EtwEvent, keyword};
use ndkdisc_core::ports::{NdkCallback, Trace};
use ndkpi::Op;

#[derive(Debug, PartialEq)]
enum Value {
    U32(u32),
    U64(u64),
    Bool(bool),
    Hex(u32),
    Status(u32),
    Text(String),
}

/// Decode an event: its name and its fields in order.
fn decode(e: &EtwEvent) -> (String, Vec<(String, Value)>) {
    let meta = e.metadata();
    let size = u16::from_le_bytes([meta[0], meta[1]]) as usize;
    assert_eq!(size, meta.len(), "the metadata's size field is its length");
    assert_eq!(meta[2], 0, "no tags");
    let mut m = 3;
    let cstr = |bytes: &[u8], at: &mut usize| -> String {
        let end = *at + bytes[*at..].iter().position(|&b| b == 0).expect("NUL");
        let s = String::from_utf8(bytes[*at..end].to_vec()).unwrap();
        *at = end + 1;
        s
    };
    let name = cstr(meta, &mut m);
    let data = e.payload();
    let mut d = 0;
    let mut fields = Vec::new();
    while m < meta.len() {
        let field = cstr(meta, &mut m);
        let intype = meta[m];
        m += 1;
        let out = if intype & 0x80 != 0 {
            m += 1;
            Some(meta[m - 1])
        } else {
            None
        };
        let u32_at = |d: usize| u32::from_le_bytes(data[d..d + 4].try_into().unwrap());
        let value = match (intype & 0x1f, out) {
            (8, None) => {
                d += 4;
                Value::U32(u32_at(d - 4))
            }
            (10, None) => {
                d += 8;
                Value::U64(u64::from_le_bytes(data[d - 8..d].try_into().unwrap()))
            }
            (13, None) => {
                d += 4;
                Value::Bool(u32_at(d - 4) != 0)
            }
            (20, None) => {
                d += 4;
                Value::Hex(u32_at(d - 4))
            }
            (20, Some(14)) => {
                d += 4;
                Value::Status(u32_at(d - 4))
            }
            (2, None) => Value::Text(cstr(data, &mut d)),
            other => panic!("unexpected type {other:?}"),
        };
        fields.push((field, value));
    }
    assert_eq!(d, data.len(), "the payload holds exactly the fields");
    (name, fields)
}

fn fields(list: &[(&str, Value)]) -> Vec<(String, Value)> {
    list.iter()
        .map(|(n, v)| {
            let v = match v {
                Value::U32(x) => Value::U32(*x),
                Value::U64(x) => Value::U64(*x),
                Value::Bool(x) => Value::Bool(*x),
                Value::Hex(x) => Value::Hex(*x),
                Value::Status(x) => Value::Status(*x),
                Value::Text(x) => Value::Text(x.clone()),
            };
            ((*n).to_owned(), v)
        })
        .collect()
}

#[test]
fn each_trace_record_decodes_into_its_fields() {
    use Value::*;
    let id = 0x0000_1234_5010_0007;
    type Case<'a> = (Trace, &'a str, u8, u64, Vec<(&'a str, Value)>);
    let cases: Vec<Case<'_>> = vec![
        (
            Trace::ConnectionCreated {
                id,
                if_index: 7,
                active: true,
            },
            "ConnectionCreated",
            etw::LEVEL_INFORMATION,
            keyword::LIFECYCLE,
            vec![
                ("id", U64(id)),
                ("if_index", U32(7)),
                ("active", Bool(true)),
            ],
        ),
        (
            Trace::NdkCallback {
                id,
                callback: NdkCallback::Disconnect,
                status: NtStatus::SUCCESS,
                reason: Some(0x8000_0042),
            },
            "NdkCallback",
            etw::LEVEL_INFORMATION,
            keyword::NDK_CALLBACK,
            vec![
                ("id", U64(id)),
                ("callback", Text("Disconnect".into())),
                ("operation", Text(String::new())),
                ("status", Status(0)),
                ("has_reason", Bool(true)),
                ("reason", U32(0x8000_0042)),
            ],
        ),
        (
            Trace::NdkCallback {
                id,
                callback: NdkCallback::Completion(Op::CompleteConnect),
                status: NtStatus::CONNECTION_REFUSED,
                reason: None,
            },
            "NdkCallback",
            etw::LEVEL_INFORMATION,
            keyword::NDK_CALLBACK,
            vec![
                ("id", U64(id)),
                ("callback", Text("Completion".into())),
                ("operation", Text("CompleteConnect".into())),
                ("status", Status(NtStatus::CONNECTION_REFUSED.code())),
                ("has_reason", Bool(false)),
                ("reason", U32(0)),
            ],
        ),
        (
            Trace::Terminal {
                id,
                kind: EventKind::Disconnected,
                cause: Some(Cause::TransportError),
                status: NtStatus::INTERNAL_ERROR,
            },
            "TerminalEvent",
            etw::LEVEL_INFORMATION,
            keyword::TERMINAL,
            vec![
                ("id", U64(id)),
                ("kind", Text("Disconnected".into())),
                ("cause", Text("TransportError".into())),
                ("status", Status(NtStatus::INTERNAL_ERROR.code())),
            ],
        ),
        (
            Trace::ConnectionClosed { id },
            "ConnectionClosed",
            etw::LEVEL_INFORMATION,
            keyword::LIFECYCLE,
            vec![("id", U64(id))],
        ),
        (
            Trace::IoctlFailed {
                code: 0x8A4D_E00C,
                status: NtStatus::NOT_FOUND,
            },
            "IoctlFailed",
            etw::LEVEL_WARNING,
            keyword::IOCTL,
            vec![
                ("code", Hex(0x8A4D_E00C)),
                ("status", Status(NtStatus::NOT_FOUND.code())),
            ],
        ),
    ];
    for (trace, name, level, kw, expected) in cases {
        let e = etw::event(&trace);
        assert!(e.is_complete(), "{trace:?}");
        assert_eq!((e.level, e.keyword), (level, kw), "{trace:?}");
        assert_eq!(
            decode(&e),
            (name.to_owned(), fields(&expected)),
            "{trace:?}"
        );
    }
}

#[test]
fn the_longest_records_fit_their_buffers() {
    // Every operation name and unknown wire values (their Debug form is the longest).
    for op in Op::ALL {
        for callback in [NdkCallback::Completion(op), NdkCallback::Closed(op)] {
            let e = etw::event(&Trace::NdkCallback {
                id: u64::MAX,
                callback,
                status: NtStatus(i32::MIN),
                reason: Some(u32::MAX),
            });
            assert!(e.is_complete(), "{callback:?}");
            decode(&e);
        }
    }
    let e = etw::event(&Trace::Terminal {
        id: u64::MAX,
        kind: EventKind::Unknown(u16::MAX),
        cause: Some(Cause::Unknown(u16::MAX)),
        status: NtStatus(i32::MIN),
    });
    assert!(e.is_complete());
    decode(&e);
}

#[test]
fn the_provider_metadata_names_the_provider_and_its_guid_derives_from_the_name() {
    let m = etw::PROVIDER_METADATA;
    assert_eq!(u16::from_le_bytes([m[0], m[1]]) as usize, m.len());
    assert_eq!(&m[2..m.len() - 1], etw::PROVIDER_NAME.as_bytes());
    assert_eq!(m[m.len() - 1], 0);
    // EventSource's name hash: SHA-1(namespace ++ UTF-16BE(upper-cased name)), 16 bytes,
    // version nibble 5.
    let mut input = vec![
        0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8, 0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30,
        0xFB,
    ];
    for unit in etw::PROVIDER_NAME.to_uppercase().encode_utf16() {
        input.extend_from_slice(&unit.to_be_bytes());
    }
    let mut h = sha1(&input);
    h[7] = (h[7] & 0x0F) | 0x50;
    let g = etw::PROVIDER_GUID;
    assert_eq!(g.data1, u32::from_le_bytes(h[0..4].try_into().unwrap()));
    assert_eq!(g.data2, u16::from_le_bytes(h[4..6].try_into().unwrap()));
    assert_eq!(g.data3, u16::from_le_bytes(h[6..8].try_into().unwrap()));
    assert_eq!(g.data4, h[8..16]);
}

/// SHA-1 (FIPS 180-4), for the test only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[test]
fn the_test_sha1_is_sha1() {
    // FIPS 180 test vector "abc".
    let h = sha1(b"abc");
    assert_eq!(
        h,
        [
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
            0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
        ]
    );
}
