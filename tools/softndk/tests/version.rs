//! NDKPI version negotiation (`WskOpenNdkAdapter`) for 1.1, 1.2 and 2.1 providers: the
//! negotiated version in every object header and in `NdkQueryAdapterInfo`, dispatch-table
//! members that are NULL below the version that introduced them, refused versions, and a
//! 1.2 / 2.1 connection using each side's own disconnect-callback form.
mod common;
use common::*;

use ndkpi_sys::*;
use softndk::{Completion, Fault, MisusePolicy, default_info, negotiate, reason};

const V10: NDK_VERSION = NDK_VERSION { Major: 1, Minor: 0 };
const V13: NDK_VERSION = NDK_VERSION { Major: 1, Minor: 3 };
const V20: NDK_VERSION = NDK_VERSION { Major: 2, Minor: 0 };
const V22: NDK_VERSION = NDK_VERSION { Major: 2, Minor: 2 };
const V30: NDK_VERSION = NDK_VERSION { Major: 3, Minor: 0 };
const V01: NDK_VERSION = NDK_VERSION { Major: 0, Minor: 1 };

/// Both hosts speak at most `max`.
fn net_of(max: NDK_VERSION) -> Net {
    Net::with(Completion::Inline, MisusePolicy::Panic, max, max)
}

/// `NdkQueryAdapterInfo` with `*pBufferSize = size` into a buffer filled with 0xA5 (or none):
/// status, `*pBufferSize` after the call, the buffer.
fn query_info(adapter: *mut NDK_ADAPTER, size: u32, null: bool) -> (NTSTATUS, u32, [u8; 0x80]) {
    let mut raw = Scribble::new();
    let p = raw.ptr::<NDK_ADAPTER_INFO>(null);
    let mut len = size;
    let f = d(adapter).NdkQueryAdapterInfo.unwrap();
    // SAFETY: live adapter, called at "PASSIVE" (not from a callback); `p` is null or 0x80
    // writable bytes, at least `size`.
    let st = unsafe { f(adapter, p, &raw mut len) };
    (st, len, raw.0)
}

fn info_of(adapter: *mut NDK_ADAPTER) -> NDK_ADAPTER_INFO {
    let full = u32::try_from(size_of::<NDK_ADAPTER_INFO>()).unwrap();
    let (st, len, raw) = query_info(adapter, full, false);
    // The struct's padding reaches the consumer as zeros, never as uninitialised memory
    // (Miri found the provider copying it as raw bytes).
    assert_eq!(&raw[0x0C..0x10], &[0; 4], "padding after DeviceId");
    assert_eq!(&raw[0x64..0x68], &[0; 4], "tail padding");
    assert_eq!(
        (st, len),
        (NtStatus::SUCCESS, full),
        "NdkQueryAdapterInfo with a full-size buffer"
    );
    // SAFETY: the provider wrote a whole NDK_ADAPTER_INFO (0x68 bytes) at the start of `raw`,
    // which is 0x80 bytes; read_unaligned because the byte array has no alignment of its own.
    unsafe { raw.as_ptr().cast::<NDK_ADAPTER_INFO>().read_unaligned() }
}

fn object_type<T>(obj: *mut T) -> NDK_OBJECT_TYPE {
    // SAFETY: live object; the header is at offset 0.
    unsafe { (*hdr(obj)).ObjectType }
}

fn create_mr(pd: *mut NDK_PD) -> *mut NDK_MR {
    let f = d(pd).NdkCreateMr.unwrap();
    // SAFETY: live PD; valid callback, context and out-pointer.
    created(|ctx, pp| unsafe { f(pd, FALSE, Some(on_create), ctx, pp) }).expect("create MR")
}

// --- negotiation ------------------------------------------------------------------------------

#[test]
fn negotiate_keeps_the_documented_rule() {
    let cases = [
        // same major, minor <= provider's: the provider's version
        (V11, V11, Some(V11)),
        (V10, V11, Some(V11)),
        (V11, V12, Some(V12)),
        (V12, V12, Some(V12)),
        (V20, V21, Some(V21)),
        (V21, V21, Some(V21)),
        // same major, higher minor: refused
        (V12, V11, None),
        (V13, V12, None),
        (V22, V21, None),
        // major 1 of a major-2 provider: 1.2 (minor <= 2)
        (V10, V21, Some(V12)),
        (V11, V21, Some(V12)),
        (V12, V21, Some(V12)),
        (V13, V21, None),
        // a higher major, or major 0: refused
        (V21, V12, None),
        (V20, V11, None),
        (V30, V21, None),
        (V30, V12, None),
        (V01, V11, None),
    ];
    for (requested, provider, expected) in cases {
        assert_eq!(
            negotiate(requested, provider),
            expected,
            "negotiate({requested:?}, provider max {provider:?})"
        );
    }
}

#[test]
fn open_adapter_stamps_the_negotiated_version_on_every_object() {
    let cases = [
        (V11, V11, V11),
        (V12, V12, V12),
        (V12, V11, V12),
        (V21, V21, V21),
        (V21, V20, V21),
        (V21, V12, V12),
        (V21, V11, V12),
    ];
    for (max, requested, expected) in cases {
        let net = net_of(max);
        let what = format!("provider {max:?}, asked {requested:?}");
        let end = End::new(&net, 1, requested);
        let mr = create_mr(end.pd);
        let connector = create_connector(end.adapter);
        let incoming = Incoming::new();
        let listener = create_listener(end.adapter, &incoming);
        assert_eq!(header_version(end.adapter), expected, "{what}: adapter");
        assert_eq!(
            info_of(end.adapter).Version,
            expected,
            "{what}: NdkQueryAdapterInfo"
        );
        let objects = [
            (
                header_version(end.adapter),
                object_type(end.adapter),
                NdkObjectTypeAdapter,
            ),
            (header_version(end.pd), object_type(end.pd), NdkObjectTypePd),
            (header_version(end.cq), object_type(end.cq), NdkObjectTypeCq),
            (header_version(end.qp), object_type(end.qp), NdkObjectTypeQp),
            (header_version(mr), object_type(mr), NdkObjectTypeMr),
            (
                header_version(connector),
                object_type(connector),
                NdkObjectTypeConnector,
            ),
            (
                header_version(listener),
                object_type(listener),
                NdkObjectTypeListener,
            ),
        ];
        for (version, ty, want_ty) in objects {
            assert_eq!(ty, want_ty, "{what}: object type");
            assert_eq!(
                version, expected,
                "{what}: header version of object type {want_ty}"
            );
        }
        close(listener, d(listener).NdkCloseListener);
        close(connector, d(connector).NdkCloseConnector);
        close(mr, d(mr).NdkCloseMr);
        end.teardown(&net);
        assert_eq!(
            net.fabric.live_objects(),
            0,
            "{what}: {:?}",
            net.fabric.live_by_kind()
        );
    }
}

#[test]
fn version_1_0_of_a_2_1_provider_gives_1_2() {
    let net = net_of(V21);
    let adapter = net
        .fabric
        .open_adapter(1, V10)
        .expect("open 1.0 of a 2.1 provider");
    assert_eq!(header_version(adapter), V12);
    assert_eq!(info_of(adapter).Version, V12);
    let connector = create_connector(adapter);
    assert_eq!(header_version(connector), V12);
    assert!(
        d(connector).NdkCompleteConnectEx.is_none(),
        "a 1.2 connector has no NdkCompleteConnectEx"
    );
    close(connector, d(connector).NdkCloseConnector);
    net.fabric.close_adapter(adapter);
}

#[test]
fn unsupported_versions_fail_with_ndis_bad_version() {
    let cases = [
        (V12, V21),
        (V11, V12),
        (V12, V30),
        (V21, V30),
        (V11, V30),
        (V21, V22),
        (V11, V01),
    ];
    for (max, requested) in cases {
        let net = net_of(max);
        assert_eq!(
            net.fabric.open_adapter(1, requested).err(),
            Some(NtStatus::NDIS_BAD_VERSION),
            "provider {max:?}, asked {requested:?}"
        );
        assert_eq!(
            net.fabric.live_objects(),
            0,
            "a refused open must not create an adapter"
        );
    }
}

#[test]
fn unknown_interface_index_is_not_found() {
    let net = net_of(V21);
    assert_eq!(
        net.fabric.open_adapter(99, V21).err(),
        Some(NtStatus::NOT_FOUND)
    );
    assert_eq!(
        net.fabric.open_adapter(0, V21).err(),
        Some(NtStatus::NOT_FOUND)
    );
    assert_eq!(net.fabric.live_objects(), 0);
}

// --- dispatch tables ------------------------------------------------------------------------------

#[test]
fn cq_results_ex_and_send_and_invalidate_are_null_at_1_1_and_present_from_1_2() {
    for (max, has) in [(V11, false), (V12, true), (V21, true)] {
        let net = net_of(max);
        let end = End::new(&net, 1, max);
        let (cq, qp) = (d(end.cq), d(end.qp));
        assert_eq!(
            cq.NdkGetCqResultsEx.is_some(),
            has,
            "{max:?}: NdkGetCqResultsEx"
        );
        assert_eq!(
            qp.NdkSendAndInvalidate.is_some(),
            has,
            "{max:?}: NdkSendAndInvalidate"
        );
        // Members of 1.1 are always there.
        assert!(
            cq.NdkGetCqResults.is_some() && cq.NdkArmCq.is_some(),
            "{max:?}: CQ 1.1 members"
        );
        assert!(
            qp.NdkSend.is_some() && qp.NdkReceive.is_some() && qp.NdkFlush.is_some(),
            "{max:?}: QP 1.1 members"
        );
        end.teardown(&net);
    }
}

#[test]
fn connector_ex_members_are_null_below_2_1_and_present_at_2_1() {
    // (host max, requested): the table follows the negotiated version, not the host's max.
    for (max, requested, has) in [
        (V11, V11, false),
        (V12, V12, false),
        (V21, V12, false),
        (V21, V21, true),
    ] {
        let net = net_of(max);
        let pair = Pair::connect(&net, requested, requested);
        // Both the connector made by NdkCreateConnector and the one from the connect event.
        for (side, conn) in [("active", pair.a.conn), ("passive", pair.b.conn)] {
            let t = d(conn);
            let what = format!("provider {max:?}, asked {requested:?}, {side}");
            assert_eq!(
                t.NdkCompleteConnectEx.is_some(),
                has,
                "{what}: NdkCompleteConnectEx"
            );
            assert_eq!(t.NdkAcceptEx.is_some(), has, "{what}: NdkAcceptEx");
            assert!(
                t.NdkCompleteConnect.is_some() && t.NdkAccept.is_some(),
                "{what}: plain forms always present"
            );
        }
        pair.teardown(&net);
    }
}

// --- NdkQueryAdapterInfo ---------------------------------------------------------------------------

#[test]
fn query_adapter_info_reports_the_version_and_keeps_the_size_protocol() {
    for max in [V11, V12, V21] {
        let net = net_of(max);
        let adapter = net.open(1, max);
        let info = info_of(adapter);
        assert_eq!(info.Version, max, "NdkQueryAdapterInfo version");
        assert_eq!(
            NDK_ADAPTER_INFO {
                Version: max,
                ..default_info()
            },
            info,
            "{max:?}: the host's limits"
        );

        for (size, null) in [
            (0, true),
            (0, false),
            (0x20, false),
            (NDK_ADAPTER_INFO_V1_SIZE - 1, false),
        ] {
            let (st, len, raw) = query_info(adapter, size, null);
            assert_eq!(
                st,
                NtStatus::BUFFER_TOO_SMALL,
                "{max:?}: *pBufferSize = {size:#x}, null: {null}"
            );
            assert_eq!(len, 0x68, "{max:?}: the full size in *pBufferSize");
            assert!(
                raw.iter().all(|b| *b == 0xA5),
                "{max:?}: buffer written although too small"
            );
        }
        // An 8.1-era consumer's buffer (without RdmaTechnology) is accepted.
        let (st, len, _) = query_info(adapter, NDK_ADAPTER_INFO_V1_SIZE, false);
        assert_eq!(
            (st, len),
            (NtStatus::SUCCESS, NDK_ADAPTER_INFO_V1_SIZE),
            "{max:?}: V1-size buffer"
        );
        net.fabric.close_adapter(adapter);
    }
}

// --- mixed versions -----------------------------------------------------------------------------

fn mixed_1_2_and_2_1_ends_connect_and_each_gets_its_own_disconnect_callback_form(mode: Completion) {
    for (va, vb) in [(V12, V21), (V21, V12)] {
        let net = Net::with(mode, MisusePolicy::Panic, va, vb);
        let pair = Pair::connect(&net, va, vb);
        assert_eq!((pair.a.version(), pair.b.version()), (va, vb));
        assert_eq!(header_version(pair.a.conn), va);
        assert_eq!(header_version(pair.b.conn), vb);
        // The link fails and both ends are told at once (the kinder fault: this test is
        // about the callback form, not when hardware notices), each in its own form.
        assert!(net.fabric.inject(pair.a.conn, Fault::LinkLossNoticedAtOnce));
        pair.a.events.wait_count(1);
        pair.b.events.wait_count(1);
        net.settle();
        let form = |v: NDK_VERSION| {
            if v >= V21 {
                Some(reason::LINK_DOWN)
            } else {
                None
            }
        };
        assert_eq!(
            pair.a.events.all(),
            vec![form(va)],
            "{mode:?}: active {va:?} end"
        );
        assert_eq!(
            pair.b.events.all(),
            vec![form(vb)],
            "{mode:?}: passive {vb:?} end"
        );
        pair.teardown(&net);
    }
    // A graceful disconnect from the 1.2 end reaches the 2.1 end as Ex(GRACEFUL).
    // About the callback form each end registered, not NdkDisconnect's wait for the
    // peer's answer (tests/hardware.rs): the initiator's disconnect finishes at once.
    let net = Net::with_config(
        softndk::FabricConfig {
            completion: mode,
            kindness: softndk::Kindness {
                instant_disconnect: true,
                ..softndk::Kindness::default()
            },
            timing: patient(),
            ..softndk::FabricConfig::default()
        },
        V12,
        V21,
    );
    let pair = Pair::connect(&net, V12, V21);
    assert_eq!(disconnect(pair.a.conn), NtStatus::SUCCESS);
    pair.b.events.wait_count(1);
    net.settle();
    assert_only_told(
        &pair.b.events,
        &[Some(reason::GRACEFUL)],
        &pair.a.events,
        &format!("{mode:?}: no callback for the local disconnect"),
    );
    pair.teardown(&net);
}

per_mode!(mixed_1_2_and_2_1_ends_connect_and_each_gets_its_own_disconnect_callback_form);
