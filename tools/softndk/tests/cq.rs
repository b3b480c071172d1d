//! CQ conformance: arm / notify rules (one notification per arm, immediate fire for a
//! completion that already arrived, solicited-only arming, overrun), `NdkGetCqResults`
//! limits, and interrupt moderation being unsupported.
mod common;
use common::*;

use std::ptr::null_mut;

use ndkpi_sys::*;
use softndk::Completion;

const MSG: &[u8] = b"ping";

/// A connected pair with buffers: `a` sends from `src`, `b` receives into `dst`.
struct Rig {
    net: Net,
    pair: Pair,
    src: Buf,
    dst: Buf,
}

impl Rig {
    fn new(mode: Completion) -> Self {
        let net = Net::new(mode);
        let pair = Pair::connect(&net, V21, V21);
        Self::with(net, pair)
    }

    /// [`Rig::new`] with B's CQ armed for `kind` (`NDK_CQ_NOTIFY_*`).
    fn armed(mode: Completion, kind: u32) -> Self {
        let rig = Self::new(mode);
        arm(rig.pair.b.cq, kind);
        rig
    }

    fn with(net: Net, pair: Pair) -> Self {
        let mut src = Buf::new(pair.a.pd, MSG.len(), NDK_MR_FLAG_ALLOW_LOCAL_READ);
        src.data.copy_from_slice(MSG);
        let dst = Buf::new(pair.b.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
        Self {
            net,
            pair,
            src,
            dst,
        }
    }

    /// One message a -> b: a receive completion on b's CQ and a send completion on a's.
    fn transfer(&mut self, ctx: usize, flags: u32) {
        receive_ok(self.pair.b.qp, &self.dst.sge(0, 64), ctx);
        send_ok(self.pair.a.qp, &self.src.sge(0, 4), ctx, flags);
    }

    /// One message a -> b into a receive naming an unknown token: an error completion on b.
    fn failed_receive(&mut self, ctx: usize) {
        let mut bad = self.dst.sge(0, 64);
        bad.MemoryRegionToken = 0xDEAD_BEEF;
        receive_ok(self.pair.b.qp, &bad, ctx);
        send_ok(self.pair.a.qp, &self.src.sge(0, 4), ctx, 0);
    }

    /// b's CQ notifications, once every owed callback ran.
    fn notes(&self) -> Vec<NTSTATUS> {
        self.net.settle();
        self.pair.b.notes.all()
    }

    /// B's CQ has had exactly one notification, a successful one.
    #[track_caller]
    fn assert_notified_once(&self, what: &str) {
        assert_eq!(self.notes(), [NtStatus::SUCCESS], "{what}");
    }

    /// Drain A's send completions, close the buffers and finish the pair.
    fn finish(self) {
        poll(self.pair.a.cq);
        let Self {
            net,
            pair,
            src,
            dst,
        } = self;
        src.close();
        dst.close();
        pair.finish(&net, "teardown");
    }
}

fn completions_never_notify_a_cq_that_was_not_armed(mode: Completion) {
    let mut rig = Rig::new(mode);
    rig.transfer(1, 0);
    rig.transfer(2, NDK_OP_FLAG_SEND_AND_SOLICIT_EVENT);
    rig.failed_receive(3);
    assert_eq!(
        rig.net.fabric.cq_len(rig.pair.b.cq),
        Some(3),
        "{mode:?}: three completions queued"
    );
    assert!(rig.notes().is_empty(), "{mode:?}: b's CQ was never armed");
    assert!(
        rig.pair.a.notes.all().is_empty(),
        "{mode:?}: a's CQ was never armed"
    );
    assert_eq!(poll(rig.pair.b.cq).len(), 3);
    rig.finish();
}

per_mode!(completions_never_notify_a_cq_that_was_not_armed);

fn arm_any_fires_once_on_the_next_completion_and_not_again_until_rearmed(mode: Completion) {
    let mut rig = Rig::armed(mode, NDK_CQ_NOTIFY_ANY);
    let cq = rig.pair.b.cq;
    assert!(
        rig.notes().is_empty(),
        "{mode:?}: arming an empty CQ does not fire"
    );

    rig.transfer(1, 0);
    rig.assert_notified_once(&format!("{mode:?}: the next completion fires the arm"));
    rig.transfer(2, 0);
    rig.transfer(3, NDK_OP_FLAG_SEND_AND_SOLICIT_EVENT);
    rig.assert_notified_once(&format!("{mode:?}: one notification per arm"));

    // Drained, then re-armed: nothing waiting, so it fires on the next completion only.
    assert_eq!(poll(cq).len(), 3);
    arm(cq, NDK_CQ_NOTIFY_ANY);
    rig.assert_notified_once(&format!("{mode:?}: nothing queued, no immediate fire"));
    rig.transfer(4, 0);
    assert_eq!(
        rig.notes(),
        [NtStatus::SUCCESS, NtStatus::SUCCESS],
        "{mode:?}: the re-arm fired"
    );
    rig.transfer(5, 0);
    assert_eq!(rig.notes().len(), 2, "{mode:?}");
    poll(cq);
    rig.finish();
}

per_mode!(arm_any_fires_once_on_the_next_completion_and_not_again_until_rearmed);

fn arming_after_an_unnotified_completion_fires_at_once(mode: Completion) {
    let mut rig = Rig::new(mode);
    let cq = rig.pair.b.cq;
    rig.transfer(1, 0);
    assert!(rig.notes().is_empty(), "{mode:?}");
    arm(cq, NDK_CQ_NOTIFY_ANY);
    rig.assert_notified_once(&format!(
        "{mode:?}: a completion arrived since the last notification"
    ));

    // Again after a notification: a completion that arrived after it counts.
    rig.transfer(2, 0);
    assert_eq!(rig.notes().len(), 1, "{mode:?}: not armed");
    arm(cq, NDK_CQ_NOTIFY_ANY);
    assert_eq!(
        rig.notes(),
        [NtStatus::SUCCESS, NtStatus::SUCCESS],
        "{mode:?}"
    );
    assert_eq!(poll(cq).len(), 2);
    rig.finish();
}

per_mode!(arming_after_an_unnotified_completion_fires_at_once);

fn arm_solicited_fires_only_for_a_solicited_send_or_an_error(mode: Completion) {
    let mut rig = Rig::armed(mode, NDK_CQ_NOTIFY_SOLICITED);
    let cq = rig.pair.b.cq;
    rig.transfer(1, 0);
    assert!(
        rig.notes().is_empty(),
        "{mode:?}: a plain send does not satisfy a solicited arm"
    );
    rig.transfer(2, NDK_OP_FLAG_SEND_AND_SOLICIT_EVENT);
    rig.assert_notified_once(&format!("{mode:?}: the solicited send fires"));

    assert_eq!(poll(cq).len(), 2);
    arm(cq, NDK_CQ_NOTIFY_SOLICITED);
    rig.transfer(3, 0);
    assert_eq!(
        rig.notes().len(),
        1,
        "{mode:?}: plain send again: no notification"
    );
    rig.failed_receive(4);
    assert_eq!(
        rig.notes(),
        [NtStatus::SUCCESS, NtStatus::SUCCESS],
        "{mode:?}: an error completion fires a solicited arm"
    );
    let results = poll(cq);
    assert_eq!(results.len(), 2);
    assert_eq!(results[1].Status, NtStatus::ACCESS_VIOLATION);
    rig.finish();
}

per_mode!(arm_solicited_fires_only_for_a_solicited_send_or_an_error);

/// A pair whose passive side's QP uses a CQ of `depth` entries.
fn pair_with_small_cq_on_b(net: &Net, depth: u32) -> Pair {
    let a = End::new(net, 1, V21);
    let adapter = net.open(2, V21);
    let pd = create_pd(adapter);
    let notes = Notes::new();
    let cq = create_cq(adapter, depth, &notes);
    let qp = create_qp(pd, cq, 0x1002);
    let b = End::of(adapter, pd, (cq, notes), qp);
    let dst = std::net::SocketAddr::new(net.v4[1], 4791);
    Pair::establish(a, b, dst, (b"", b""))
}

fn overrunning_a_cq_notifies_an_armed_cq_with_buffer_overflow(mode: Completion) {
    for kind in [NDK_CQ_NOTIFY_ERRORS, NDK_CQ_NOTIFY_SOLICITED] {
        let net = Net::new(mode);
        let pair = pair_with_small_cq_on_b(&net, 2);
        let mut rig = Rig::with(net, pair);
        arm(rig.pair.b.cq, kind);
        rig.transfer(1, 0);
        rig.transfer(2, 0);
        assert!(
            rig.notes().is_empty(),
            "{mode:?}/{kind}: two successes fit and do not fire this arm"
        );
        assert_eq!(rig.net.fabric.cq_len(rig.pair.b.cq), Some(2));
        rig.transfer(3, 0);
        assert_eq!(
            rig.notes(),
            [NtStatus::BUFFER_OVERFLOW],
            "{mode:?}/{kind}: the third completion overruns"
        );
        assert_eq!(
            rig.net.fabric.cq_len(rig.pair.b.cq),
            Some(2),
            "{mode:?}/{kind}: a CQ never holds more than its depth"
        );
        poll(rig.pair.b.cq);
        rig.finish();
    }
}

per_mode!(overrunning_a_cq_notifies_an_armed_cq_with_buffer_overflow);

fn get_cq_results_returns_at_most_n_results_and_zero_when_empty(mode: Completion) {
    const SENTINEL: NTSTATUS = NtStatus(0x1234_5678);
    let blank = NDK_RESULT {
        Status: SENTINEL,
        BytesTransferred: 0xAAAA,
        QPContext: null_mut(),
        RequestContext: null_mut(),
    };
    let mut rig = Rig::new(mode);
    let cq = rig.pair.b.cq;
    let get = d(cq).NdkGetCqResults.unwrap();
    let mut buf = [blank; 4];
    // SAFETY: live CQ; the array holds 4 results.
    let n = unsafe { get(cq, buf.as_mut_ptr(), 4) };
    assert_eq!(n, 0, "{mode:?}: an empty CQ returns 0");
    assert!(
        buf.iter().all(|r| r.Status == SENTINEL),
        "{mode:?}: nothing written for an empty CQ"
    );

    for ctx in 1..=3 {
        rig.transfer(ctx, 0);
    }
    // SAFETY: as above; at most 2 of the 4 entries may be written.
    let n = unsafe { get(cq, buf.as_mut_ptr(), 2) };
    assert_eq!(n, 2, "{mode:?}: nResults caps the count");
    assert_eq!(
        [buf[0].RequestContext.addr(), buf[1].RequestContext.addr()],
        [1, 2],
        "{mode:?}: in completion order"
    );
    assert!(
        buf[2..]
            .iter()
            .all(|r| r.Status == SENTINEL && r.BytesTransferred == 0xAAAA),
        "{mode:?}: nothing written past nResults"
    );

    let mut buf = [blank; 4];
    // SAFETY: as above.
    let n = unsafe { get(cq, buf.as_mut_ptr(), 4) };
    assert_eq!(n, 1, "{mode:?}: the one left");
    assert_eq!(buf[0].RequestContext.addr(), 3, "{mode:?}");
    assert!(buf[1..].iter().all(|r| r.Status == SENTINEL), "{mode:?}");
    // SAFETY: as above.
    let n = unsafe { get(cq, buf.as_mut_ptr(), 4) };
    assert_eq!(n, 0, "{mode:?}: drained");

    // The Ex form: also capped, also 0 when empty, and 0 results asked -> 0 returned.
    rig.transfer(4, 0);
    rig.transfer(5, 0);
    let get_ex = d(cq).NdkGetCqResultsEx.unwrap();
    let mut one = blank_result_ex();
    // SAFETY: live CQ; the array holds 1 result; nothing is written when 0 are asked.
    let n = unsafe { get_ex(cq, one.as_mut_ptr(), 0) };
    assert_eq!(n, 0, "{mode:?}: nResults = 0");
    // SAFETY: live CQ; the array holds 1 result.
    let n = unsafe { get_ex(cq, one.as_mut_ptr(), 1) };
    assert_eq!((n, one[0].RequestContext.addr()), (1, 4), "{mode:?}");
    // SAFETY: as above.
    let n = unsafe { get_ex(cq, one.as_mut_ptr(), 1) };
    assert_eq!((n, one[0].RequestContext.addr()), (1, 5), "{mode:?}");
    // SAFETY: as above.
    let n = unsafe { get_ex(cq, one.as_mut_ptr(), 1) };
    assert_eq!(n, 0, "{mode:?}: drained");
    rig.finish();
}

per_mode!(get_cq_results_returns_at_most_n_results_and_zero_when_empty);

fn blank_result_ex() -> [NDK_RESULT_EX; 1] {
    [NDK_RESULT_EX {
        Status: NtStatus::SUCCESS,
        BytesTransferred: 0,
        QPContext: null_mut(),
        RequestContext: null_mut(),
        Type: 0,
        ProviderErrorCode: 0,
        TypeSpecificCompletionOutput: 0,
    }]
}

fn cq_interrupt_moderation_is_not_supported_and_never_pends(mode: Completion) {
    let net = Net::new(mode);
    let end = End::new(&net, 1, V21);
    let mut info = NDK_ADAPTER_INFO::default();
    let mut size = u32::try_from(size_of::<NDK_ADAPTER_INFO>()).unwrap();
    // SAFETY: live adapter; valid info buffer and size.
    let st = unsafe {
        d(end.adapter).NdkQueryAdapterInfo.unwrap()(end.adapter, &raw mut info, &raw mut size)
    };
    assert_eq!(st, NtStatus::SUCCESS);
    assert_eq!(
        info.AdapterFlags & NDK_ADAPTER_FLAG_CQ_INTERRUPT_MODERATION_SUPPORTED,
        0,
        "{mode:?}: the adapter does not claim moderation"
    );

    let control = d(end.cq).NdkControlCqInterruptModeration.unwrap();
    for (interval, count) in [(0, 0), (10, 4), (u32::MAX, u32::MAX)] {
        // SAFETY: live CQ.
        let st = unsafe { control(end.cq, interval, count) };
        assert_ne!(
            st,
            NtStatus::PENDING,
            "{mode:?}: ControlCqInterruptModeration never pends"
        );
        assert_eq!(
            st,
            NtStatus::NOT_SUPPORTED,
            "{mode:?}: moderation flag clear"
        );
    }
    net.settle();
    assert!(end.notes.all().is_empty(), "{mode:?}");
    end.teardown(&net);
    assert_eq!(net.fabric.live_objects(), 0);
}

per_mode!(cq_interrupt_moderation_is_not_supported_and_never_pends);
