//! Data path conformance: sends, receives, RDMA read and write move real bytes between
//! registered buffers (MR, or LAM + privileged token), with the completion results, statuses
//! and flags NDKPI specifies.
mod common;
use common::*;

use ndkpi_sys::*;
use softndk::{Completion, SoftMdl};

/// The `QPContext` `End::new` gives the QP on host 1 (the active side `a`).
const QP_CTX_A: usize = 0x1000 + 1;
/// The `QPContext` `End::new` gives the QP on host 2 (the passive side `b`).
const QP_CTX_B: usize = 0x1000 + 2;
const PAGE: usize = 4096;

fn len32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap()
}

/// Drain a CQ with the plain `NdkGetCqResults` (`NDK_RESULT`, no `Type`).
fn poll_plain(cq: *mut NDK_CQ) -> Vec<NDK_RESULT> {
    let empty = NDK_RESULT {
        Status: NtStatus::SUCCESS,
        BytesTransferred: 0,
        QPContext: std::ptr::null_mut(),
        RequestContext: std::ptr::null_mut(),
    };
    let mut out = Vec::new();
    loop {
        let mut buf = [empty; 4];
        // SAFETY: live CQ; the array holds 4 results.
        let n = unsafe { d(cq).NdkGetCqResults.unwrap()(cq, buf.as_mut_ptr(), 4) };
        let n = usize::try_from(n).unwrap();
        assert!(n <= 4, "NdkGetCqResults returned more than nResults");
        out.extend_from_slice(&buf[..n]);
        if n < 4 {
            return out;
        }
    }
}

/// `NdkWrite` (`write`) or `NdkRead` of one SGE against `remote_address` in the peer's MR.
fn rdma(
    qp: *mut NDK_QP,
    write: bool,
    sge: &NDK_SGE,
    ctx: usize,
    remote_address: u64,
    remote_token: u32,
) -> NTSTATUS {
    let t = d(qp);
    let f = if write { t.NdkWrite } else { t.NdkRead };
    // SAFETY: live QP; one valid SGE; the remote address and token are only checked by the
    // provider against the peer's registrations.
    unsafe {
        f.unwrap()(
            qp,
            std::ptr::without_provenance_mut(ctx),
            sge,
            1,
            remote_address,
            remote_token,
            0,
        )
    }
}

/// A buffer registered for local read in `pd`, holding `msg`.
fn source(pd: *mut NDK_PD, msg: &[u8]) -> Buf {
    let mut buf = Buf::new(pd, msg.len(), NDK_MR_FLAG_ALLOW_LOCAL_READ);
    buf.data.copy_from_slice(msg);
    buf
}

/// A send buffer on `a` holding `msg`, and a receive buffer of `len` bytes on `b`.
fn buffers(pair: &Pair, msg: &[u8], len: usize, recv_flags: u32) -> (Buf, Buf) {
    (source(pair.a.pd, msg), Buf::new(pair.b.pd, len, recv_flags))
}

/// A connected pair in `mode` with a send buffer on A holding `msg` and a receive buffer of
/// `len` bytes on B registered with `recv_flags`.
fn connected(mode: Completion, msg: &[u8], len: usize, recv_flags: u32) -> (Net, Pair, Buf, Buf) {
    let net = Net::new(mode);
    let pair = Pair::connect(&net, V21, V21);
    let (sbuf, rbuf) = buffers(&pair, msg, len, recv_flags);
    (net, pair, sbuf, rbuf)
}

/// Close the buffers, tear the pair down and prove nothing is left.
fn finish(net: &Net, pair: Pair, bufs: impl IntoIterator<Item = Buf>) {
    for b in bufs {
        b.close();
    }
    pair.teardown(net);
    assert_no_leak(net, "teardown");
}

/// Every byte of `bytes` is still zero (the provider wrote nothing there).
fn untouched(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Post the receive `rsge` on B and send `msg` from `sbuf` on A (request contexts
/// `recv_ctx`, `send_ctx`): the receive fails with `STATUS_ACCESS_VIOLATION` and `rbuf` stays
/// untouched (`untouched_what` says why it must), then A's send completion is drained.
fn assert_receive_violates(
    pair: &Pair,
    (sbuf, rbuf): (&mut Buf, &Buf),
    rsge: &NDK_SGE,
    msg: &[u8],
    (recv_ctx, send_ctx): (usize, usize),
    untouched_what: &str,
) {
    receive_ok(pair.b.qp, rsge, recv_ctx);
    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), send_ctx, 0);
    let recv = poll_one(pair.b.cq, "the receive");
    assert_completion(&recv, NtStatus::ACCESS_VIOLATION, recv_ctx, "the receive");
    assert!(untouched(&rbuf.data), "{untouched_what}");
    poll(pair.a.cq);
}

/// `NdkWrite` (`write`) or `NdkRead` of one SGE, which the provider must accept.
#[track_caller]
fn rdma_ok(
    qp: *mut NDK_QP,
    write: bool,
    sge: &NDK_SGE,
    ctx: usize,
    remote_address: u64,
    remote_token: u32,
) {
    assert_eq!(
        rdma(qp, write, sge, ctx, remote_address, remote_token),
        NtStatus::SUCCESS,
        "{} {ctx:#x}",
        if write { "NdkWrite" } else { "NdkRead" }
    );
}

fn send_moves_real_bytes_into_the_peers_posted_receive(mode: Completion) {
    let msg = b"bytes over the soft fabric";
    let (net, pair, mut sbuf, mut rbuf) = connected(mode, msg, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);

    // The receive SGE starts 8 bytes into the buffer: the provider must honour the address.
    receive_ok(pair.b.qp, &rbuf.sge(8, 56), 0x77);
    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), 0x55, 0);

    let r = poll_one(pair.b.cq, "one receive completion");
    assert_eq!(r.Status, NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(r.BytesTransferred, len32(msg), "{mode:?}");
    assert_eq!(r.RequestContext.addr(), 0x77, "{mode:?}");
    assert_eq!(r.QPContext.addr(), QP_CTX_B, "{mode:?}");
    assert_eq!(r.Type, NdkOperationTypeReceive, "{mode:?}");
    assert_eq!(
        r.ProviderErrorCode, 0,
        "{mode:?}: ProviderErrorCode is zero on success"
    );

    let s = poll_one(pair.a.cq, "one send completion");
    assert_eq!(s.Status, NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(s.RequestContext.addr(), 0x55, "{mode:?}");
    assert_eq!(s.QPContext.addr(), QP_CTX_A, "{mode:?}");
    assert_eq!(s.Type, NdkOperationTypeSend, "{mode:?}");

    assert_eq!(
        &rbuf.data[8..8 + msg.len()],
        msg,
        "{mode:?}: the receiver's bytes"
    );
    assert!(
        untouched(&rbuf.data[..8]),
        "{mode:?}: bytes before the SGE untouched"
    );
    assert!(
        untouched(&rbuf.data[8 + msg.len()..]),
        "{mode:?}: bytes past the message untouched"
    );
    assert!(
        poll(pair.a.cq).is_empty() && poll(pair.b.cq).is_empty(),
        "{mode:?}: exactly one completion each"
    );
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(send_moves_real_bytes_into_the_peers_posted_receive);

fn get_cq_results_reports_plain_results_for_send_and_receive(mode: Completion) {
    let msg = b"plain NDK_RESULT";
    let (net, pair, mut sbuf, mut rbuf) = connected(mode, msg, 32, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    receive_ok(pair.b.qp, &rbuf.sge(0, 32), 0x31);
    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), 0x32, 0);

    let recv = poll_plain(pair.b.cq);
    assert_eq!(recv.len(), 1, "{mode:?}");
    assert_eq!(recv[0].Status, NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(recv[0].BytesTransferred, len32(msg), "{mode:?}");
    assert_eq!(recv[0].RequestContext.addr(), 0x31, "{mode:?}");
    assert_eq!(recv[0].QPContext.addr(), QP_CTX_B, "{mode:?}");
    let sent = poll_plain(pair.a.cq);
    assert_eq!(sent.len(), 1, "{mode:?}");
    assert_eq!(sent[0].Status, NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(sent[0].RequestContext.addr(), 0x32, "{mode:?}");
    assert_eq!(sent[0].QPContext.addr(), QP_CTX_A, "{mode:?}");
    assert_eq!(&rbuf.data[..msg.len()], msg, "{mode:?}");
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(get_cq_results_reports_plain_results_for_send_and_receive);

fn send_posted_before_the_receive_waits_and_completes_when_it_is_posted(mode: Completion) {
    let msg = b"early bird";
    let (net, pair, mut sbuf, mut rbuf) = connected(mode, msg, 32, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);

    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), 0x10, 0);
    net.settle();
    assert_eq!(
        pair.a.qp_stats(&net).outstanding_sends,
        1,
        "{mode:?}: the send waits for a receive"
    );
    assert!(
        poll(pair.a.cq).is_empty(),
        "{mode:?}: no send completion before the peer posted a receive"
    );
    assert!(poll(pair.b.cq).is_empty(), "{mode:?}");

    receive_ok(pair.b.qp, &rbuf.sge(0, 32), 0x20);
    assert_eq!(pair.a.qp_stats(&net).outstanding_sends, 0, "{mode:?}");
    assert_eq!(pair.b.qp_stats(&net).outstanding_receives, 0, "{mode:?}");
    let recv = poll_one(pair.b.cq, "the receive");
    assert_eq!(
        (
            recv.Status,
            recv.BytesTransferred,
            recv.RequestContext.addr()
        ),
        (NtStatus::SUCCESS, len32(msg), 0x20),
        "{mode:?}"
    );
    let sent = poll_one(pair.a.cq, "the send");
    assert_eq!(
        (sent.Status, sent.RequestContext.addr(), sent.Type),
        (NtStatus::SUCCESS, 0x10, NdkOperationTypeSend),
        "{mode:?}"
    );
    assert_eq!(&rbuf.data[..msg.len()], msg, "{mode:?}");
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(send_posted_before_the_receive_waits_and_completes_when_it_is_posted);

/// A kernel-style buffer: 64 bytes starting 24 bytes before a page boundary (two pages),
/// described by a `SoftMdl` and mapped with `NdkBuildLAM` on `adapter`.
struct KernelBuf {
    backing: Vec<u8>,
    start: usize,
    mdl: Box<SoftMdl>,
    /// The LAM storage (8-byte aligned); `lam` points into it.
    lam_mem: Vec<u64>,
    lam: *mut NDK_LOGICAL_ADDRESS_MAPPING,
    fbo: u32,
}

impl KernelBuf {
    const LEN: usize = 64;

    /// Build the LAM the documented way: ask for the size with a null LAM, then build into a
    /// buffer of that size. Asserts the size protocol on the way.
    fn map(net: &Net, adapter: *mut NDK_ADAPTER, mode: Completion) -> Self {
        let mut backing = vec![0u8; 3 * PAGE];
        let start = (PAGE - 24 + PAGE - backing.as_ptr().addr() % PAGE) % PAGE;
        let mdl = SoftMdl::new(
            backing[start..].as_mut_ptr(),
            u32::try_from(Self::LEN).unwrap(),
        );
        let build = d(adapter).NdkBuildLAM.unwrap();

        let (mut size, mut fbo) = (0u32, 0u32);
        let probe = Slot::new();
        // SAFETY: live adapter; `mdl` is a live SoftMdl for LEN bytes; a null LAM asks for the
        // size; the size and FBO out-pointers are valid.
        let st = unsafe {
            build(
                adapter,
                mdl.as_mdl(),
                Self::LEN,
                Some(on_request),
                probe.ctx(),
                std::ptr::null_mut(),
                &raw mut size,
                &raw mut fbo,
            )
        };
        assert_eq!(
            st,
            NtStatus::BUFFER_TOO_SMALL,
            "{mode:?}: a null LAM asks for the size"
        );
        assert_eq!(
            size,
            NDK_LAM_SIZE(2).unwrap(),
            "{mode:?}: the size of a two-page LAM"
        );
        net.settle();
        assert_eq!(
            probe.calls(),
            0,
            "{mode:?}: an inline failure has no completion"
        );

        let mut lam_mem = vec![0u64; usize::try_from(size).unwrap().div_ceil(8)];
        let lam = lam_mem.as_mut_ptr().cast::<NDK_LOGICAL_ADDRESS_MAPPING>();
        let built = Slot::new();
        // SAFETY: as above; `lam` points to `size` writable, 8-byte aligned bytes that stay put
        // (the Vec is never resized) until NdkReleaseLAM.
        let st = unsafe {
            build(
                adapter,
                mdl.as_mdl(),
                Self::LEN,
                Some(on_request),
                built.ctx(),
                lam,
                &raw mut size,
                &raw mut fbo,
            )
        };
        assert_eq!(
            built.resolve(st),
            NtStatus::SUCCESS,
            "{mode:?}: NdkBuildLAM"
        );
        assert_eq!(
            usize::try_from(fbo).unwrap(),
            PAGE - 24,
            "{mode:?}: FBO is the offset into the first page"
        );
        Self {
            backing,
            start,
            mdl,
            lam_mem,
            lam,
            fbo,
        }
    }

    fn page_count(&self) -> u32 {
        // SAFETY: the provider filled the LAM header; `lam` points into `lam_mem`, alive.
        unsafe { (*self.lam).AdapterPageCount }
    }

    fn page(&self, i: usize) -> NDK_LOGICAL_ADDRESS {
        let first = std::mem::offset_of!(NDK_LOGICAL_ADDRESS_MAPPING, AdapterPageArray) / 8;
        self.lam_mem[first + i].cast_signed()
    }

    /// The SGE NDKPI describes for a LAM: `AdapterPageArray[0] + FBO` with the privileged
    /// token of `pd`.
    fn sge(&self, pd: *mut NDK_PD) -> NDK_SGE {
        let mut token = 0u32;
        // SAFETY: live PD; valid out-pointer.
        unsafe { d(pd).NdkGetPrivilegedMemoryRegionToken.unwrap()(pd, &raw mut token) };
        NDK_SGE {
            Address: NDK_SGE_ADDRESS {
                LogicalAddress: self.page(0) + i64::from(self.fbo),
            },
            Length: u32::try_from(Self::LEN).unwrap(),
            MemoryRegionToken: token,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.backing[self.start..self.start + Self::LEN]
    }

    fn release(self, adapter: *mut NDK_ADAPTER) {
        // SAFETY: live adapter; `lam` was built by it and is released once.
        unsafe { d(adapter).NdkReleaseLAM.unwrap()(adapter, self.lam) };
        drop(self.mdl);
    }
}

fn build_lam_reports_its_size_first_then_maps_the_pages_until_released(mode: Completion) {
    let net = Net::new(mode);
    let end = End::new(&net, 1, V21);
    let kbuf = KernelBuf::map(&net, end.adapter, mode);
    assert_eq!(kbuf.page_count(), 2, "{mode:?}: two pages");
    for i in 0..2 {
        assert_eq!(kbuf.page(i) % 4096, 0, "{mode:?}: page {i} is page aligned");
    }
    assert_eq!(
        net.fabric.live_by_kind().get(&None),
        Some(&1),
        "{mode:?}: the LAM is counted as live"
    );
    kbuf.release(end.adapter);
    assert_eq!(
        net.fabric.live_by_kind().get(&None),
        None,
        "{mode:?}: NdkReleaseLAM frees it"
    );
    end.teardown(&net);
    assert_eq!(net.fabric.live_objects(), 0, "{mode:?}");
}

per_mode!(build_lam_reports_its_size_first_then_maps_the_pages_until_released);

fn lam_and_privileged_token_receive_real_bytes_until_the_lam_is_released(mode: Completion) {
    let net = Net::new(mode);
    let pair = Pair::connect(&net, V21, V21);
    let msg = b"kernel-style buffer across a page boundary!";
    let mut sbuf = source(pair.a.pd, msg);
    let kbuf = KernelBuf::map(&net, pair.b.adapter, mode);
    let sge = kbuf.sge(pair.b.pd);

    receive_ok(pair.b.qp, &sge, 0x4A);
    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), 0x4B, 0);
    let recv = poll_one(pair.b.cq, "the receive");
    assert_eq!(
        (
            recv.Status,
            recv.BytesTransferred,
            recv.RequestContext.addr()
        ),
        (NtStatus::SUCCESS, len32(msg), 0x4A),
        "{mode:?}"
    );
    assert_eq!(
        &kbuf.bytes()[..msg.len()],
        msg,
        "{mode:?}: the bytes landed in the LAM's buffer, across the page boundary"
    );
    assert!(untouched(&kbuf.bytes()[msg.len()..]), "{mode:?}");
    assert_eq!(poll(pair.a.cq).len(), 1, "{mode:?}");

    kbuf.release(pair.b.adapter);
    // The logical addresses are no longer mapped: the same SGE now fails.
    receive_ok(pair.b.qp, &sge, 0x4C);
    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), 0x4D, 0);
    let recv = poll_one(pair.b.cq, "the receive");
    assert_completion(
        &recv,
        NtStatus::ACCESS_VIOLATION,
        0x4C,
        "a released LAM maps nothing",
    );
    poll(pair.a.cq);
    finish(&net, pair, [sbuf]);
}

per_mode!(lam_and_privileged_token_receive_real_bytes_until_the_lam_is_released);

fn receive_smaller_than_the_message_completes_with_data_overrun(mode: Completion) {
    let msg = b"sixteen bytes!!!";
    let (net, pair, mut sbuf, mut rbuf) = connected(mode, msg, 32, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    receive_ok(pair.b.qp, &rbuf.sge(0, 4), 0x61);
    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), 0x62, 0);
    let recv = poll_one(pair.b.cq, "the receive");
    assert_eq!(recv.Status, NtStatus::DATA_OVERRUN, "{mode:?}");
    assert_eq!(recv.RequestContext.addr(), 0x61, "{mode:?}");
    assert_ne!(
        recv.Type, NdkOperationTypeReceive,
        "{mode:?}: NDK_RESULT_EX.Type is undefined on an error completion (no kinder than hardware)"
    );
    assert!(
        untouched(&rbuf.data[4..]),
        "{mode:?}: nothing written past the receive SGE"
    );
    assert_eq!(
        poll(pair.a.cq).len(),
        1,
        "{mode:?}: the send still completes once"
    );
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(receive_smaller_than_the_message_completes_with_data_overrun);

fn send_on_a_qp_that_is_not_connected_fails_inline_with_connection_invalid_and_no_cq_entry(
    mode: Completion,
) {
    let net = Net::new(mode);
    let end = End::new(&net, 1, V21);
    let mut buf = Buf::new(end.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    assert_eq!(
        post_send(end.qp, &buf.sge(0, 16), 0x71, 0),
        NtStatus::CONNECTION_INVALID,
        "{mode:?}"
    );
    net.settle();
    assert!(
        poll(end.cq).is_empty(),
        "{mode:?}: an inline failure produces no completion"
    );
    assert_eq!(end.qp_stats(&net).outstanding_sends, 0, "{mode:?}");
    buf.close();
    end.teardown(&net);
    assert_eq!(net.fabric.live_objects(), 0, "{mode:?}");
}

per_mode!(send_on_a_qp_that_is_not_connected_fails_inline_with_connection_invalid_and_no_cq_entry);

fn sge_with_an_unknown_token_completes_with_access_violation(mode: Completion) {
    const BOGUS: u32 = 0xDEAD_BEEF;
    let msg = b"token?";
    let (net, pair, mut sbuf, mut rbuf) = connected(mode, msg, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    assert!(![sbuf.token, sbuf.remote_token, rbuf.token, rbuf.remote_token].contains(&BOGUS));

    // Sender side: the send is accepted and completes in error; nothing reaches the peer.
    receive_ok(pair.b.qp, &rbuf.sge(0, 16), 0x81);
    let mut bad = sbuf.sge(0, len32(msg));
    bad.MemoryRegionToken = BOGUS;
    send_ok(pair.a.qp, &bad, 0x82, 0);
    let sent = poll_one(pair.a.cq, "the send");
    assert_completion(&sent, NtStatus::ACCESS_VIOLATION, 0x82, "the send");
    assert_ne!(
        sent.Type, NdkOperationTypeSend,
        "{mode:?}: Type is undefined on errors"
    );
    assert!(
        poll(pair.b.cq).is_empty(),
        "{mode:?}: the failed send delivered nothing"
    );
    assert_eq!(pair.b.qp_stats(&net).outstanding_receives, 1, "{mode:?}");

    // The failed send put A's QP in the error state (as an adapter does): a new pair.
    flush(pair.b.qp);
    net.settle();
    assert_eq!(poll(pair.b.cq).len(), 1, "{mode:?}: the flushed receive");
    poll(pair.a.cq);
    finish(&net, pair, [sbuf, rbuf]);
    let pair = Pair::connect(&net, V21, V21);
    let (mut sbuf, mut rbuf) = buffers(&pair, msg, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);

    // Receiver side: a receive naming an unknown token fails when a message arrives.
    let mut bad = rbuf.sge(0, 16);
    bad.MemoryRegionToken = BOGUS;
    assert_receive_violates(
        &pair,
        (&mut sbuf, &rbuf),
        &bad,
        msg,
        (0x83, 0x84),
        "nothing written",
    );
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(sge_with_an_unknown_token_completes_with_access_violation);

fn sge_outside_its_registered_region_completes_with_access_violation(mode: Completion) {
    let msg = b"0123456789abcdef";
    let (net, pair, mut sbuf, mut rbuf) = connected(mode, msg, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    // A valid token, but the SGE runs 8 bytes past the end of the 16-byte registration.
    let past_the_end = rbuf.sge(8, 16);
    assert_receive_violates(
        &pair,
        (&mut sbuf, &rbuf),
        &past_the_end,
        msg,
        (0x91, 0x92),
        "nothing written",
    );
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(sge_outside_its_registered_region_completes_with_access_violation);

fn buffer_registered_without_local_write_cannot_receive(mode: Completion) {
    let msg = b"read-only target";
    let (net, pair, mut sbuf, mut rbuf) = connected(
        mode,
        msg,
        32,
        NDK_MR_FLAG_ALLOW_LOCAL_READ | NDK_MR_FLAG_ALLOW_REMOTE_READ,
    );
    let read_only = rbuf.sge(0, 32);
    assert_receive_violates(
        &pair,
        (&mut sbuf, &rbuf),
        &read_only,
        msg,
        (0xA1, 0xA2),
        "the provider wrote into memory it may not write",
    );
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(buffer_registered_without_local_write_cannot_receive);

fn silent_success_suppresses_only_the_senders_successful_completion(mode: Completion) {
    let msg = b"shh";
    let (net, pair, mut sbuf, mut rbuf) = connected(mode, msg, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);

    receive_ok(pair.b.qp, &rbuf.sge(0, 16), 0xB1);
    send_ok(
        pair.a.qp,
        &sbuf.sge(0, len32(msg)),
        0xB2,
        NDK_OP_FLAG_SILENT_SUCCESS,
    );
    let recv = poll_one(pair.b.cq, "the receiver still completes");
    assert_eq!(
        (recv.Status, recv.BytesTransferred),
        (NtStatus::SUCCESS, len32(msg)),
        "{mode:?}"
    );
    assert_eq!(&rbuf.data[..msg.len()], msg, "{mode:?}");
    assert!(
        poll(pair.a.cq).is_empty(),
        "{mode:?}: a silent successful send has no completion"
    );

    // Control: the same send without the flag does complete.
    receive_ok(pair.b.qp, &rbuf.sge(0, 16), 0xB3);
    send_ok(pair.a.qp, &sbuf.sge(0, len32(msg)), 0xB4, 0);
    let sent = poll_one(pair.a.cq, "the send");
    assert_eq!(sent.RequestContext.addr(), 0xB4, "{mode:?}");
    assert_eq!(poll(pair.b.cq).len(), 1, "{mode:?}");

    // A silent send that fails is still reported.
    let mut bad = sbuf.sge(0, len32(msg));
    bad.MemoryRegionToken = 0xDEAD_BEEF;
    send_ok(pair.a.qp, &bad, 0xB5, NDK_OP_FLAG_SILENT_SUCCESS);
    let sent = poll(pair.a.cq);
    assert_eq!(
        sent.len(),
        1,
        "{mode:?}: errors complete even with SILENT_SUCCESS"
    );
    assert_eq!(
        (sent[0].Status, sent[0].RequestContext.addr()),
        (NtStatus::ACCESS_VIOLATION, 0xB5),
        "{mode:?}"
    );
    finish(&net, pair, [sbuf, rbuf]);
}

per_mode!(silent_success_suppresses_only_the_senders_successful_completion);

fn rdma_write_copies_into_a_remote_writable_mr_and_read_reads_it_back(mode: Completion) {
    let net = Net::new(mode);
    let pair = Pair::connect(&net, V21, V21);
    let msg = b"one-sided RDMA";
    let mut src = source(pair.a.pd, msg);
    let mut sink = Buf::new(pair.a.pd, 32, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let target = Buf::new(
        pair.b.pd,
        64,
        NDK_MR_FLAG_ALLOW_REMOTE_WRITE | NDK_MR_FLAG_ALLOW_REMOTE_READ,
    );
    let remote = u64::try_from(target.data.as_ptr().addr()).unwrap() + 16;

    rdma_ok(
        pair.a.qp,
        true,
        &src.sge(0, len32(msg)),
        0xC1,
        remote,
        target.remote_token,
    );
    let done = poll_one(pair.a.cq, "the request");
    assert_eq!(
        (
            done.Status,
            done.RequestContext.addr(),
            done.Type,
            done.QPContext.addr()
        ),
        (NtStatus::SUCCESS, 0xC1, NdkOperationTypeWrite, QP_CTX_A),
        "{mode:?}"
    );
    assert_eq!(
        &target.data[16..16 + msg.len()],
        msg,
        "{mode:?}: the write landed at the remote address"
    );
    assert!(
        untouched(&target.data[..16]),
        "{mode:?}: bytes before the remote address untouched"
    );
    assert!(
        poll(pair.b.cq).is_empty(),
        "{mode:?}: a write does not complete on the target"
    );

    rdma_ok(
        pair.a.qp,
        false,
        &sink.sge(0, len32(msg)),
        0xC2,
        remote,
        target.remote_token,
    );
    let done = poll_one(pair.a.cq, "the request");
    assert_eq!(
        (done.Status, done.RequestContext.addr(), done.Type),
        (NtStatus::SUCCESS, 0xC2, NdkOperationTypeRead),
        "{mode:?}"
    );
    assert_eq!(
        &sink.data[..msg.len()],
        msg,
        "{mode:?}: the read brought the bytes back"
    );
    assert!(
        poll(pair.b.cq).is_empty(),
        "{mode:?}: a read does not complete on the target"
    );
    src.close();
    sink.close();
    finish(&net, pair, [target]);
}

per_mode!(rdma_write_copies_into_a_remote_writable_mr_and_read_reads_it_back);

fn rdma_to_an_mr_without_the_remote_access_fails_with_access_violation(mode: Completion) {
    let net = Net::new(mode);
    let pair = Pair::connect(&net, V21, V21);
    let msg = b"not allowed";
    let mut src = source(pair.a.pd, msg);
    let sink = Buf::new(pair.a.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    // Local write and remote read, but no remote write.
    let no_write = Buf::new(
        pair.b.pd,
        16,
        NDK_MR_FLAG_ALLOW_LOCAL_WRITE | NDK_MR_FLAG_ALLOW_REMOTE_READ,
    );
    // Local write only: neither remote read nor remote write.
    let no_read = Buf::new(pair.b.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let addr = |b: &Buf| u64::try_from(b.data.as_ptr().addr()).unwrap();

    rdma_ok(
        pair.a.qp,
        true,
        &src.sge(0, len32(msg)),
        0xD1,
        addr(&no_write),
        no_write.remote_token,
    );
    let done = poll_one(pair.a.cq, "the request");
    assert_completion(&done, NtStatus::ACCESS_VIOLATION, 0xD1, "the request");
    assert_ne!(
        done.Type, NdkOperationTypeWrite,
        "{mode:?}: Type is undefined on errors"
    );
    assert!(
        untouched(&no_write.data),
        "{mode:?}: the write must not land"
    );
    src.close();
    sink.close();
    finish(&net, pair, [no_write, no_read]);

    // The failed write put A's QP in the error state (as an adapter does): a new pair.
    let pair = Pair::connect(&net, V21, V21);
    let mut sink = Buf::new(pair.a.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let src = source(pair.a.pd, msg);
    let no_read = Buf::new(pair.b.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);

    rdma_ok(
        pair.a.qp,
        false,
        &sink.sge(0, 16),
        0xD2,
        addr(&no_read),
        no_read.remote_token,
    );
    let done = poll_one(pair.a.cq, "the request");
    assert_completion(&done, NtStatus::ACCESS_VIOLATION, 0xD2, "the request");
    assert_ne!(
        done.Type, NdkOperationTypeRead,
        "{mode:?}: Type is undefined on errors"
    );
    src.close();
    sink.close();
    finish(&net, pair, [no_read]);
}

per_mode!(rdma_to_an_mr_without_the_remote_access_fails_with_access_violation);
