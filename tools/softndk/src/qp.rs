//! Queue pairs: posting, send/receive matching with real byte copies, RDMA read and write,
//! flush, and the memory checks behind every scatter/gather element.

use std::collections::VecDeque;

use ndkpi_sys::{
    NDK_MR_FLAG_ALLOW_LOCAL_WRITE, NDK_MR_FLAG_ALLOW_REMOTE_READ, NDK_MR_FLAG_ALLOW_REMOTE_WRITE,
    NDK_OP_FLAG_INLINE, NDK_OP_FLAG_SEND_AND_SOLICIT_EVENT, NDK_OP_FLAG_SILENT_SUCCESS, NTSTATUS,
    NdkOperationTypeRead, NdkOperationTypeReceive, NdkOperationTypeSend, NdkOperationTypeWrite,
    NtStatus,
};

use crate::mem::{BytePtr, copy_in, copy_out};
use crate::object::ObjId;
use crate::world::{Body, CqEntry, Ctx, Object, Out, World};

/// A QP's connection state as the data path sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QpState {
    /// Not bound to a connector yet: receives may be pre-posted, initiator posts fail.
    Idle,
    /// Bound, handshake in progress.
    Connecting,
    /// Connected: data moves.
    Connected,
    /// The peer went away (disconnect, reset, link loss). Nothing was flushed: posted
    /// requests stay outstanding until the consumer flushes, disconnects or closes.
    PeerGone,
    /// Our `NdkDisconnect` is waiting for the peer's answer: no new sends, nothing flows,
    /// nothing is flushed yet (the flush follows the disconnect's completion).
    Disconnecting,
    /// Torn down locally (disconnected, connector closed, handshake failed, flushed), or in the
    /// error state (a send failed, its CQ died): receives posted now complete at once with
    /// `STATUS_CANCELLED`, initiator posts fail with `STATUS_CONNECTION_INVALID`.
    Dead,
}

/// Provider error codes softndk reports in `NDK_RESULT_EX.ProviderErrorCode` (NDKPI 2.1) on
/// error completions. Provider-specific by definition; softndk borrows the verbs work
/// completion numbers a consumer may recognise from RDMA adapters.
pub mod provider_error {
    /// A flushed request (`STATUS_CANCELLED`): `IBV_WC_WR_FLUSH_ERR`.
    pub const FLUSHED: u32 = 5;
    /// The transport gave up retrying a send nobody acknowledged: `IBV_WC_RETRY_EXC_ERR`.
    pub const RETRY_EXCEEDED: u32 = 12;
    /// A send found no receive posted at an iWARP peer, which terminated the connection:
    /// `IBV_WC_RNR_RETRY_EXC_ERR`.
    pub const RNR_TERMINATED: u32 = 13;
}

/// One scatter/gather element as posted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sge {
    pub(crate) addr: BytePtr,
    pub(crate) len: u32,
    pub(crate) token: u32,
}

#[derive(Debug)]
pub(crate) struct RecvWr {
    ctx: Ctx,
    sges: Vec<Sge>,
}

#[derive(Debug)]
pub(crate) struct SendWr {
    ctx: Ctx,
    data: Vec<u8>,
    flags: u32,
}

/// Per-QP counters and queue depths, read by tests through `Fabric::qp_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QpStats {
    /// `NdkFlush` calls made by the consumer.
    pub flush_calls: u64,
    /// Flushes the provider did itself: after `NdkDisconnect`, at QP close, after a send
    /// failed (the QP's error state), or because the host is configured to flush on peer
    /// disconnect.
    pub provider_flushes: u64,
    /// Requests completed with an error other than `STATUS_CANCELLED`.
    pub failed: u64,
    /// Receives posted.
    pub receives_posted: u64,
    /// Initiator requests posted (send, read, write).
    pub initiator_posted: u64,
    /// Requests completed with `STATUS_CANCELLED` by any flush.
    pub cancelled: u64,
    /// Receives posted and not yet completed.
    pub outstanding_receives: usize,
    /// Sends posted and not yet completed (waiting for a peer receive).
    pub outstanding_sends: usize,
    /// The data-path state.
    pub state: Option<QpState>,
}

/// Who asked for a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlushKind {
    /// `NdkFlush`.
    Consumer,
    /// After `NdkDisconnect`, or at QP close.
    Implicit,
    /// The provider's own: a host configured to flush on peer disconnect, or a QP in the
    /// error state.
    Provider,
}

pub(crate) struct Qp {
    pub(crate) pd: ObjId,
    pub(crate) rcq: ObjId,
    pub(crate) icq: ObjId,
    pub(crate) context: Ctx,
    pub(crate) rq_depth: u32,
    pub(crate) iq_depth: u32,
    pub(crate) max_rsge: u32,
    pub(crate) max_isge: u32,
    pub(crate) inline_size: u32,
    pub(crate) connector: Option<ObjId>,
    pub(crate) peer: Option<ObjId>,
    pub(crate) state: QpState,
    receives: VecDeque<RecvWr>,
    sends: VecDeque<SendWr>,
    /// Requests an `NdkFlush` cancelled, completed later by the provider (receives, sends).
    flushing: Vec<(Ctx, bool)>,
    /// A retry timer runs for the oldest send.
    retry_armed: bool,
    pub(crate) stats: QpStats,
}

impl Qp {
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors NdkCreateQp's parameters"
    )]
    pub(crate) fn new(
        pd: ObjId,
        rcq: ObjId,
        icq: ObjId,
        context: Ctx,
        rq_depth: u32,
        iq_depth: u32,
        max_rsge: u32,
        max_isge: u32,
        inline_size: u32,
    ) -> Self {
        Self {
            pd,
            rcq,
            icq,
            context,
            rq_depth,
            iq_depth,
            max_rsge,
            max_isge,
            inline_size,
            connector: None,
            peer: None,
            state: QpState::Idle,
            receives: VecDeque::new(),
            sends: VecDeque::new(),
            flushing: Vec::new(),
            retry_armed: false,
            stats: QpStats::default(),
        }
    }

    /// Take every request still to complete, in order: those an `NdkFlush` is completing first,
    /// then the receives, then the sends (`true` for a receive).
    fn take_posted(&mut self) -> Vec<(Ctx, bool)> {
        let mut all = std::mem::take(&mut self.flushing);
        all.extend(self.receives.drain(..).map(|r| (r.ctx, true)));
        all.extend(self.sends.drain(..).map(|s| (s.ctx, false)));
        all
    }

    pub(crate) fn snapshot(&self) -> QpStats {
        QpStats {
            outstanding_receives: self.receives.len()
                + self.flushing.iter().filter(|(_, recv)| *recv).count(),
            outstanding_sends: self.sends.len()
                + self.flushing.iter().filter(|(_, recv)| !*recv).count(),
            state: Some(self.state),
            ..self.stats
        }
    }
}

/// What a scatter/gather element needs from its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    LocalRead,
    LocalWrite,
}

impl World {
    pub(crate) fn qp(&self, id: ObjId) -> Option<&Qp> {
        match self.objects.get(id) {
            Some(Object {
                body: Body::Qp(q), ..
            }) => Some(q),
            _ => None,
        }
    }

    pub(crate) fn qp_mut(&mut self, id: ObjId) -> Option<&mut Qp> {
        match self.objects.get_mut(id) {
            Some(Object {
                body: Body::Qp(q), ..
            }) => Some(q),
            _ => None,
        }
    }

    /// Resolve an element to provider-checked memory: a privileged-token element must lie
    /// inside a LAM of the QP's adapter; any other inside a registered MR of the QP's PD with
    /// the access it needs.
    fn resolve(&self, qp: ObjId, sge: Sge, access: Access) -> Result<BytePtr, NTSTATUS> {
        let (pd, adapter) = {
            let obj = self.objects.get(qp).ok_or(NtStatus::INVALID_PARAMETER)?;
            let Body::Qp(q) = &obj.body else {
                return Err(NtStatus::INVALID_PARAMETER);
            };
            (q.pd, obj.adapter)
        };
        let len = sge.len as usize;
        let owner = *self
            .tokens
            .get(&sge.token)
            .ok_or(NtStatus::ACCESS_VIOLATION)?;
        let (base, region_len) = match self.objects.get(owner).map(|o| &o.body) {
            Some(Body::Pd { .. }) if owner == pd => {
                let Some(Object {
                    body: Body::Adapter { lams, .. },
                    ..
                }) = self.objects.get(adapter)
                else {
                    return Err(NtStatus::ACCESS_VIOLATION);
                };
                let lam = lams
                    .values()
                    .find(|l| contains(l.base, l.len, sge.addr, len))
                    .ok_or(NtStatus::ACCESS_VIOLATION)?;
                (lam.base, lam.len)
            }
            Some(Body::Mr(mr)) if mr.pd == pd => {
                let region = mr.region.ok_or(NtStatus::ACCESS_VIOLATION)?;
                let write_ok = region.flags & NDK_MR_FLAG_ALLOW_LOCAL_WRITE != 0;
                if access == Access::LocalWrite && !write_ok {
                    return Err(NtStatus::ACCESS_VIOLATION);
                }
                (region.base, region.len)
            }
            _ => return Err(NtStatus::ACCESS_VIOLATION),
        };
        if !contains(base, region_len, sge.addr, len) {
            return Err(NtStatus::ACCESS_VIOLATION);
        }
        Ok(base.offset(sge.addr.addr() - base.addr()))
    }

    /// Gather the bytes of a send or write.
    fn gather(&self, qp: ObjId, sges: &[Sge], inline: bool) -> Result<Vec<u8>, NTSTATUS> {
        let mut data = Vec::new();
        for sge in sges {
            let src = if inline {
                sge.addr
            } else {
                self.resolve(qp, *sge, Access::LocalRead)?
            };
            // SAFETY: either the range was checked against a registration the consumer keeps
            // valid (`resolve`), or it is inline data, which NDK requires to be resident and
            // readable until the post call returns — and we copy before returning.
            unsafe { copy_in(src, sge.len as usize, &mut data) };
        }
        Ok(data)
    }

    /// Scatter bytes into a receive's (or read's) elements; the elements are checked first,
    /// so nothing is written unless everything fits.
    fn scatter(&self, qp: ObjId, sges: &[Sge], data: &[u8]) -> Result<(), NTSTATUS> {
        let capacity: usize = sges.iter().map(|s| s.len as usize).sum();
        if data.len() > capacity {
            return Err(NtStatus::DATA_OVERRUN);
        }
        let targets = sges
            .iter()
            .map(|s| {
                self.resolve(qp, *s, Access::LocalWrite)
                    .map(|p| (p, s.len as usize))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rest = data;
        for (dst, len) in targets {
            let n = len.min(rest.len());
            // SAFETY: `dst..dst+len` was checked against a registration allowing local write
            // that the consumer keeps valid; `n <= len`.
            unsafe { copy_out(dst, &rest[..n]) };
            rest = &rest[n..];
        }
        Ok(())
    }

    pub(crate) fn post_receive(
        &mut self,
        out: &mut Out,
        qp_id: ObjId,
        ctx: Ctx,
        sges: Vec<Sge>,
    ) -> NTSTATUS {
        let Some(q) = self.qp_mut(qp_id) else {
            return NtStatus::INVALID_PARAMETER;
        };
        if sges.len() > q.max_rsge as usize {
            return NtStatus::INVALID_PARAMETER;
        }
        if q.receives.len() >= q.rq_depth as usize {
            return NtStatus::INSUFFICIENT_RESOURCES;
        }
        q.stats.receives_posted += 1;
        if q.state == QpState::Dead && !q.flushing.is_empty() {
            // Behind the requests an `NdkFlush` is still completing: in queue order.
            q.flushing.push((ctx, true));
            return NtStatus::SUCCESS;
        }
        if q.state == QpState::Dead {
            // A torn-down QP completes new work at once as flushed.
            q.stats.cancelled += 1;
            let (rcq, snapshot) = (q.rcq, QpRef::of(q));
            self.complete_ref(
                out,
                rcq,
                snapshot,
                ctx,
                NtStatus::CANCELLED,
                NdkOperationTypeReceive,
            );
            return NtStatus::SUCCESS;
        }
        q.receives.push_back(RecvWr { ctx, sges });
        if let Some(peer) = q.peer {
            self.pump(out, peer);
        }
        NtStatus::SUCCESS
    }

    pub(crate) fn post_send(
        &mut self,
        out: &mut Out,
        qp_id: ObjId,
        ctx: Ctx,
        sges: &[Sge],
        flags: u32,
    ) -> NTSTATUS {
        let max_transfer = self
            .objects
            .get(qp_id)
            .map_or(0, |o| self.adapter_info(o.adapter).MaxTransferLength);
        let Some(q) = self.qp(qp_id) else {
            return NtStatus::INVALID_PARAMETER;
        };
        if q.state != QpState::Connected {
            return NtStatus::CONNECTION_INVALID;
        }
        let inline = flags & NDK_OP_FLAG_INLINE != 0;
        let total: u64 = sges.iter().map(|s| u64::from(s.len)).sum();
        if (!inline && sges.len() > q.max_isge as usize)
            || (inline && total > u64::from(q.inline_size))
            || total > u64::from(max_transfer)
        {
            return NtStatus::INVALID_PARAMETER;
        }
        if q.sends.len() >= q.iq_depth as usize {
            return NtStatus::INSUFFICIENT_RESOURCES;
        }
        let icq = q.icq;
        let gathered = self.gather(qp_id, sges, inline);
        let Some(q) = self.qp_mut(qp_id) else {
            return NtStatus::INVALID_PARAMETER;
        };
        q.stats.initiator_posted += 1;
        match gathered {
            Ok(data) => {
                q.sends.push_back(SendWr { ctx, data, flags });
                self.pump(out, qp_id);
                self.arm_retry(out, qp_id);
            }
            Err(status) => {
                let snapshot = QpRef::of(q);
                self.complete_ref(out, icq, snapshot, ctx, status, NdkOperationTypeSend);
                self.qp_error(out, qp_id);
            }
        }
        NtStatus::SUCCESS
    }

    /// A request failed on the QP (a protection or length error): like an RDMA adapter, the QP
    /// enters the error state and the provider flushes every other request on it.
    fn qp_error(&mut self, out: &mut Out, qp_id: ObjId) {
        let Some(q) = self.qp_mut(qp_id) else { return };
        q.stats.failed += 1;
        if q.state == QpState::Dead {
            return;
        }
        q.state = QpState::Dead;
        self.flush_qp(out, qp_id, FlushKind::Provider);
        self.peer_qp_lost(out, qp_id);
    }

    /// Move queued sends of `sender` into its peer's posted receives while both exist.
    fn pump(&mut self, out: &mut Out, sender: ObjId) {
        loop {
            let Some(s) = self.qp(sender) else { return };
            let Some(receiver) = s.peer else { return };
            let Some(r) = self.qp(receiver) else { return };
            let flowing = s.state == QpState::Connected
                && r.state == QpState::Connected
                && !self.link_down(sender);
            if flowing && !s.sends.is_empty() && r.receives.is_empty() && self.iwarp(receiver) {
                // iWARP has no receiver-not-ready retry: the message finds no receive posted,
                // the receiver terminates the connection.
                return self.terminate(out, sender, receiver);
            }
            if !flowing || s.sends.is_empty() || r.receives.is_empty() {
                return;
            }
            let (Some(send), Some(recv)) = (
                self.qp_mut(sender).and_then(|q| q.sends.pop_front()),
                self.qp_mut(receiver).and_then(|q| q.receives.pop_front()),
            ) else {
                return;
            };
            let result = self.scatter(receiver, &recv.sges, &send.data);
            let (r_status, bytes) = match result {
                Ok(()) => (
                    NtStatus::SUCCESS,
                    u32::try_from(send.data.len()).unwrap_or(u32::MAX),
                ),
                Err(status) => (status, 0),
            };
            let solicited = send.flags & NDK_OP_FLAG_SEND_AND_SOLICIT_EVENT != 0;
            let Some((cq, qp)) = self.queue_cq(receiver, true) else {
                return;
            };
            let entry = CqEntry {
                bytes,
                solicited,
                ..qp.entry(recv.ctx, r_status, NdkOperationTypeReceive)
            };
            self.push_cq(out, cq, entry);
            if r_status != NtStatus::SUCCESS {
                self.qp_error(out, receiver);
            }
            let silent = send.flags & NDK_OP_FLAG_SILENT_SUCCESS != 0;
            if silent {
                continue;
            }
            let Some((cq, qp)) = self.queue_cq(sender, false) else {
                return;
            };
            let entry = qp.entry(send.ctx, NtStatus::SUCCESS, NdkOperationTypeSend);
            self.push_cq(out, cq, entry);
        }
    }

    /// `NdkRead` / `NdkWrite`: one-sided, completed at once against the peer's memory
    /// region named by `token` (which must allow the remote access).
    #[expect(clippy::too_many_arguments, reason = "mirrors NdkRead/NdkWrite")]
    pub(crate) fn post_rdma(
        &mut self,
        out: &mut Out,
        qp_id: ObjId,
        ctx: Ctx,
        sges: &[Sge],
        remote_address: u64,
        token: u32,
        flags: u32,
        write: bool,
    ) -> NTSTATUS {
        let Some(q) = self.qp(qp_id) else {
            return NtStatus::INVALID_PARAMETER;
        };
        if q.state != QpState::Connected {
            return NtStatus::CONNECTION_INVALID;
        }
        if sges.len() > q.max_isge as usize && flags & NDK_OP_FLAG_INLINE == 0 {
            return NtStatus::INVALID_PARAMETER;
        }
        let (icq, peer, snapshot) = (q.icq, q.peer, QpRef::of(q));
        let len: usize = sges.iter().map(|s| s.len as usize).sum();
        let remote = peer
            .ok_or(NtStatus::CONNECTION_INVALID)
            .and_then(|p| self.remote_region(p, token, remote_address, len, write));
        let result = remote.and_then(|remote| {
            if write {
                let data = self.gather(qp_id, sges, flags & NDK_OP_FLAG_INLINE != 0)?;
                // SAFETY: `remote_region` checked the range against the peer's registered MR,
                // which allows remote write and which its consumer keeps valid.
                unsafe { copy_out(remote, &data) };
            } else {
                let mut data = Vec::with_capacity(len);
                // SAFETY: `remote_region` checked the range against the peer's registered MR,
                // which allows remote read and which its consumer keeps valid.
                unsafe { copy_in(remote, len, &mut data) };
                self.scatter(qp_id, sges, &data)?;
            }
            Ok(())
        });
        if let Some(q) = self.qp_mut(qp_id) {
            q.stats.initiator_posted += 1;
        }
        let status = result.err().unwrap_or(NtStatus::SUCCESS);
        let op = if write {
            NdkOperationTypeWrite
        } else {
            NdkOperationTypeRead
        };
        if status != NtStatus::SUCCESS || flags & NDK_OP_FLAG_SILENT_SUCCESS == 0 {
            self.complete_ref(out, icq, snapshot, ctx, status, op);
        }
        if status != NtStatus::SUCCESS {
            self.qp_error(out, qp_id);
        }
        NtStatus::SUCCESS
    }

    fn remote_region(
        &self,
        peer_qp: ObjId,
        token: u32,
        address: u64,
        len: usize,
        write: bool,
    ) -> Result<BytePtr, NTSTATUS> {
        let peer_pd = self
            .qp(peer_qp)
            .map(|q| q.pd)
            .ok_or(NtStatus::ACCESS_VIOLATION)?;
        let owner = *self.tokens.get(&token).ok_or(NtStatus::ACCESS_VIOLATION)?;
        let Some(Object {
            body: Body::Mr(mr), ..
        }) = self.objects.get(owner)
        else {
            return Err(NtStatus::ACCESS_VIOLATION);
        };
        let region = mr
            .region
            .filter(|_| mr.pd == peer_pd && mr.remote_token == token)
            .ok_or(NtStatus::ACCESS_VIOLATION)?;
        let needed = if write {
            NDK_MR_FLAG_ALLOW_REMOTE_WRITE
        } else {
            NDK_MR_FLAG_ALLOW_REMOTE_READ
        };
        if region.flags & needed != needed {
            return Err(NtStatus::ACCESS_VIOLATION);
        }
        let start = usize::try_from(address).map_err(|_| NtStatus::REMOTE_RESOURCES)?;
        let addr = BytePtr(
            region
                .base
                .0
                .wrapping_add(start.wrapping_sub(region.base.addr())),
        );
        if !contains(region.base, region.len, addr, len) {
            return Err(NtStatus::REMOTE_RESOURCES);
        }
        Ok(addr)
    }

    /// Complete every outstanding request of the QP with `STATUS_CANCELLED`, now.
    pub(crate) fn flush_qp(&mut self, out: &mut Out, qp_id: ObjId, kind: FlushKind) {
        let Some(q) = self.qp_mut(qp_id) else { return };
        match kind {
            FlushKind::Consumer => q.stats.flush_calls += 1,
            FlushKind::Implicit | FlushKind::Provider => q.stats.provider_flushes += 1,
        }
        if kind == FlushKind::Consumer {
            self.counters.flush_calls += 1;
        }
        if kind == FlushKind::Provider {
            self.counters.provider_flushes += 1;
        }
        let Some(q) = self.qp_mut(qp_id) else { return };
        let cancelled = q.take_posted();
        self.cancel_requests(out, qp_id, cancelled);
    }

    /// `NdkFlush`: it only initiates (`NDK_FN_FLUSH`; NDKPI completion handling
    /// requirements: the consumer learns the flush is done by draining the CQ). The QP enters
    /// the error state at once (later posts complete as flushed or fail), and the cancelled
    /// requests complete later, on a provider thread.
    pub(crate) fn start_flush(&mut self, out: &mut Out, qp_id: ObjId) {
        if self.config.kindness.synchronous_flush {
            return self.flush_qp(out, qp_id, FlushKind::Consumer);
        }
        self.counters.flush_calls += 1;
        let Some(q) = self.qp_mut(qp_id) else { return };
        q.stats.flush_calls += 1;
        let first = q.flushing.is_empty();
        q.flushing = q.take_posted();
        q.state = QpState::Dead;
        if first {
            self.defer_action(out, qp_id, crate::world::Action::Flush);
        }
        self.peer_qp_lost(out, qp_id);
    }

    /// The provider completes what an `NdkFlush` cancelled.
    pub(crate) fn finish_flush(&mut self, out: &mut Out, qp_id: ObjId) {
        let Some(q) = self.qp_mut(qp_id) else { return };
        let cancelled = std::mem::take(&mut q.flushing);
        self.cancel_requests(out, qp_id, cancelled);
    }

    /// Complete requests with `STATUS_CANCELLED` (receives into the receive CQ, sends into
    /// the initiator CQ), in order.
    fn cancel_requests(&mut self, out: &mut Out, qp_id: ObjId, requests: Vec<(Ctx, bool)>) {
        let Some(q) = self.qp_mut(qp_id) else { return };
        q.stats.cancelled += requests.len() as u64;
        let (rcq, icq, snapshot) = (q.rcq, q.icq, QpRef::of(q));
        for (ctx, receive) in requests {
            let (cq, op) = if receive {
                (rcq, NdkOperationTypeReceive)
            } else {
                (icq, NdkOperationTypeSend)
            };
            self.complete_ref(out, cq, snapshot, ctx, NtStatus::CANCELLED, op);
        }
    }

    /// The QP's connection no longer carries data on the link (its link is down).
    fn link_down(&self, qp_id: ObjId) -> bool {
        self.qp(qp_id)
            .and_then(|q| q.connector)
            .and_then(|c| self.conn(c))
            .is_some_and(|c| c.link_down)
    }

    /// Could the QP's oldest send reach a receiver now (or wait for a receive to be posted,
    /// which an RDMA adapter retries for ever: infinite RNR retry)?
    fn peer_reachable(&self, qp_id: ObjId) -> bool {
        let Some(q) = self.qp(qp_id) else {
            return false;
        };
        q.state == QpState::Connected
            && !self.link_down(qp_id)
            && q.peer
                .and_then(|p| self.qp(p))
                .is_some_and(|p| p.state == QpState::Connected)
    }

    /// Start the retry timer of the QP's oldest send if nobody can take it: after
    /// [`crate::Timing::retry_timeout`] the send fails and the QP enters the error state
    /// ([`World::retry_expired`]).
    pub(crate) fn arm_retry(&mut self, out: &mut Out, qp_id: ObjId) {
        if self.config.kindness.sends_to_dead_peer_wait || self.peer_reachable(qp_id) {
            return;
        }
        let Some(q) = self.qp_mut(qp_id) else { return };
        let live = matches!(
            q.state,
            QpState::Connected | QpState::PeerGone | QpState::Disconnecting
        );
        if q.retry_armed || q.sends.is_empty() || !live {
            return;
        }
        q.retry_armed = true;
        self.arm(out, crate::world::Timer::Retry(qp_id));
    }

    /// The QP's peer can no longer take sends: its sends start their retry timers.
    pub(crate) fn peer_qp_lost(&mut self, out: &mut Out, qp_id: ObjId) {
        if let Some(peer) = self.qp(qp_id).and_then(|q| q.peer) {
            self.arm_retry(out, peer);
        }
    }

    /// A send's retry timer ran out. If it still cannot be delivered, it fails with
    /// `STATUS_IO_TIMEOUT` (provider code [`provider_error::RETRY_EXCEEDED`]), the QP enters
    /// the error state and the provider flushes every other request on it, receives included
    /// (NDKPI leaves the status of requests killed by a broken connection to the provider).
    /// A connection nobody had ended yet is now ended by the provider:
    /// the disconnect callback fires (`NetworkDirect` disconnect scheme: the provider detected
    /// that the connection was aborted).
    pub(crate) fn retry_expired(&mut self, out: &mut Out, qp_id: ObjId) {
        let reachable = self.peer_reachable(qp_id);
        let Some(q) = self.qp_mut(qp_id) else { return };
        q.retry_armed = false;
        if reachable || q.state == QpState::Dead || q.sends.is_empty() {
            return;
        }
        let Some(first) = q.sends.pop_front() else {
            return;
        };
        q.state = QpState::Dead;
        q.stats.failed += 1;
        let (icq, snapshot, connector) = (q.icq, QpRef::of(q), q.connector);
        self.counters.retry_failures += 1;
        let entry = snapshot.failed(
            first.ctx,
            NtStatus::IO_TIMEOUT,
            provider_error::RETRY_EXCEEDED,
        );
        self.push_cq(out, icq, entry);
        self.flush_qp(out, qp_id, FlushKind::Provider);
        self.peer_qp_lost(out, qp_id);
        if let Some(x) = connector {
            self.transport_failed(out, x);
        }
    }

    /// Is the QP's adapter an iWARP one (`NDK_ADAPTER_INFO.RdmaTechnology`)?
    fn iwarp(&self, qp_id: ObjId) -> bool {
        self.objects
            .get(qp_id)
            .is_some_and(|o| self.adapter_info(o.adapter).RdmaTechnology == ndkpi_sys::NdkiWarp)
    }

    /// An iWARP receiver got a message with no receive posted: it terminates the connection
    /// (iWARP DDP/RDMAP terminate). The sender's send fails with `STATUS_CONNECTION_ABORTED`
    /// (provider code [`provider_error::RNR_TERMINATED`]); both QPs enter the error state and
    /// the provider flushes them; both ends get the disconnect callback
    /// ([`crate::reason::TERMINATED`]), since neither consumer ended the connection.
    fn terminate(&mut self, out: &mut Out, sender: ObjId, receiver: ObjId) {
        let Some(q) = self.qp_mut(sender) else { return };
        let Some(first) = q.sends.pop_front() else {
            return;
        };
        q.stats.failed += 1;
        let (icq, snapshot) = (q.icq, QpRef::of(q));
        let entry = snapshot.failed(
            first.ctx,
            NtStatus::CONNECTION_ABORTED,
            provider_error::RNR_TERMINATED,
        );
        self.push_cq(out, icq, entry);
        for qp in [sender, receiver] {
            if let Some(q) = self.qp_mut(qp) {
                q.state = QpState::Dead;
            }
            self.flush_qp(out, qp, FlushKind::Provider);
            if let Some(x) = self.qp(qp).and_then(|q| q.connector) {
                self.terminated(out, x);
            }
        }
    }

    /// The QP died with its CQ: it completes nothing more (its requests are lost with the
    /// CQ), and its peer's sends can no longer be delivered.
    pub(crate) fn qp_died(&mut self, out: &mut Out, qp_id: ObjId) {
        let Some(q) = self.qp_mut(qp_id) else { return };
        q.state = QpState::Dead;
        q.receives.clear();
        q.sends.clear();
        q.flushing.clear();
        self.peer_qp_lost(out, qp_id);
    }

    /// The consumer started closing the QP: cancel what is outstanding; it is dead.
    pub(crate) fn qp_closing(&mut self, out: &mut Out, qp_id: ObjId) {
        self.flush_qp(out, qp_id, FlushKind::Implicit);
        if let Some(q) = self.qp_mut(qp_id) {
            q.state = QpState::Dead;
        }
        self.peer_qp_lost(out, qp_id);
    }

    /// The CQ of `qp_id`'s receive queue (`receive`) or initiator queue, and the QP's
    /// snapshot for a completion; `None` once the QP is gone.
    fn queue_cq(&self, qp_id: ObjId, receive: bool) -> Option<(ObjId, QpRef)> {
        let q = self.qp(qp_id)?;
        Some((if receive { q.rcq } else { q.icq }, QpRef::of(q)))
    }

    /// Complete request `ctx` of the QP `qp` into `cq` ([`QpRef::entry`]).
    fn complete_ref(
        &mut self,
        out: &mut Out,
        cq: ObjId,
        qp: QpRef,
        ctx: Ctx,
        status: NTSTATUS,
        op: u32,
    ) {
        self.push_cq(out, cq, qp.entry(ctx, status, op));
    }
}

/// What a completion needs of its QP, copied out so the QP borrow can end.
#[derive(Clone, Copy)]
struct QpRef {
    context: Ctx,
}

impl QpRef {
    fn of(q: &Qp) -> Self {
        Self { context: q.context }
    }

    /// The completion of request `ctx`: no bytes moved, no solicited event. A flushed
    /// (cancelled) request carries the provider's flush code; other codes come with
    /// [`QpRef::failed`].
    fn entry(self, ctx: Ctx, status: NTSTATUS, op: u32) -> CqEntry {
        let provider_code = if status == NtStatus::CANCELLED {
            provider_error::FLUSHED
        } else {
            0
        };
        CqEntry {
            status,
            bytes: 0,
            qp_context: self.context,
            request_context: ctx,
            op,
            solicited: false,
            provider_code,
        }
    }

    /// A send that failed with `status` and the provider's diagnostic `provider_code`.
    fn failed(self, ctx: Ctx, status: NTSTATUS, provider_code: u32) -> CqEntry {
        CqEntry {
            solicited: true,
            provider_code,
            ..self.entry(ctx, status, NdkOperationTypeSend)
        }
    }
}

/// Is `[addr, addr+len)` inside `[base, base+region_len)`?
fn contains(base: BytePtr, region_len: usize, addr: BytePtr, len: usize) -> bool {
    let (b, a) = (base.addr(), addr.addr());
    a >= b
        && a.checked_add(len)
            .is_some_and(|end| end <= b.saturating_add(region_len))
}
