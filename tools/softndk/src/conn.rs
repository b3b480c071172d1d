//! Connectors and listeners: the connect / accept / reject / complete-connect handshake,
//! graceful and abortive disconnect, the disconnect callback, and fault injection.

use std::net::{IpAddr, SocketAddr};

use ndkpi_sys::{NDK_FN_CONNECT_EVENT_CALLBACK, NDK_FN_REQUEST_COMPLETION, NTSTATUS, NtStatus};

use crate::object::ObjId;
use crate::qp::{FlushKind, QpState};
use crate::world::{Body, Call, Ctx, DisconnectCb, Object, Out, World};
use crate::{Fault, ObjectKind, reason};

/// Where a connector is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectorState {
    /// Created; nothing called yet.
    Idle,
    /// Active side: `NdkConnect` pending (waiting for the peer to accept or reject).
    Connecting,
    /// Active side: `NdkConnect` completed; `NdkCompleteConnect` (or `NdkReject`) is next.
    Replied,
    /// Passive side: delivered by a connect event; `NdkAccept` or `NdkReject` is next.
    Incoming,
    /// Passive side: `NdkAccept` pending (waiting for the active side's complete-connect).
    Accepting,
    /// Established.
    Connected,
    /// Our `NdkDisconnect` is waiting for the peer's answer (or the timeout).
    Disconnecting,
    /// Was established and is no longer.
    Disconnected,
    /// Refused with `NdkReject`.
    Rejected,
    /// The handshake failed (refused, aborted, peer gone).
    Failed,
}

/// How an established connection ended, as the provider saw it on one end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// This end called `NdkDisconnect` first.
    LocalDisconnect,
    /// This end's connector was closed while connected.
    LocalClose,
    /// The peer disconnected gracefully.
    PeerGraceful,
    /// The peer reset the connection (or closed its connector without disconnecting).
    PeerReset,
    /// The link was lost.
    LinkLoss,
    /// This end's adapter was removed.
    AdapterRemoved,
    /// A send was not acknowledged and the provider gave up (retry exceeded): the QP went to
    /// the error state and the provider ended the connection.
    TransportError,
    /// An iWARP peer terminated the connection (a send found no receive posted there).
    Terminated,
}

impl Ending {
    fn reason(self) -> u32 {
        match self {
            Self::PeerGraceful => reason::GRACEFUL,
            Self::PeerReset | Self::LocalClose | Self::LocalDisconnect => reason::RESET,
            Self::LinkLoss => reason::LINK_DOWN,
            Self::AdapterRemoved => reason::ADAPTER_REMOVED,
            Self::TransportError => reason::RETRY_EXCEEDED,
            Self::Terminated => reason::TERMINATED,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: Ctx,
}

pub(crate) struct Conn {
    pub(crate) state: ConnectorState,
    pub(crate) qp: Option<ObjId>,
    pub(crate) peer: Option<ObjId>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) peer_data: Vec<u8>,
    pub(crate) peer_data_known: bool,
    pub(crate) ird: u32,
    pub(crate) ord: u32,
    pending: Option<Pending>,
    disc: Option<DisconnectCb>,
    pub(crate) disconnect_callbacks: u32,
    pub(crate) ending: Option<Ending>,
    local_disconnect_called: bool,
    /// The link under this connection is down: nothing reaches the peer.
    pub(crate) link_down: bool,
}

impl Conn {
    pub(crate) fn new() -> Self {
        Self {
            state: ConnectorState::Idle,
            qp: None,
            peer: None,
            local: None,
            local_addr: None,
            remote: None,
            peer_data: Vec::new(),
            peer_data_known: false,
            ird: 0,
            ord: 0,
            pending: None,
            disc: None,
            disconnect_callbacks: 0,
            ending: None,
            local_disconnect_called: false,
            link_down: false,
        }
    }
}

pub(crate) struct Listener {
    pub(crate) callback: NDK_FN_CONNECT_EVENT_CALLBACK,
    pub(crate) ctx: Ctx,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) paused: bool,
}

/// Arguments of `NdkConnect` after the ABI layer decoded them.
pub(crate) struct ConnectArgs {
    pub(crate) qp: ObjId,
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) ird: u32,
    pub(crate) ord: u32,
    pub(crate) private_data: Vec<u8>,
    pub(crate) f: NDK_FN_REQUEST_COMPLETION,
    pub(crate) ctx: Ctx,
}

/// Arguments of `NdkAccept(Ex)` after decoding.
pub(crate) struct AcceptArgs {
    pub(crate) qp: ObjId,
    pub(crate) ird: u32,
    pub(crate) ord: u32,
    pub(crate) private_data: Vec<u8>,
    pub(crate) disc: Option<DisconnectCb>,
    pub(crate) f: NDK_FN_REQUEST_COMPLETION,
    pub(crate) ctx: Ctx,
}

impl World {
    pub(crate) fn conn(&self, id: ObjId) -> Option<&Conn> {
        match self.objects.get(id) {
            Some(Object {
                body: Body::Connector(c),
                ..
            }) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn conn_mut(&mut self, id: ObjId) -> Option<&mut Conn> {
        match self.objects.get_mut(id) {
            Some(Object {
                body: Body::Connector(c),
                ..
            }) => Some(c),
            _ => None,
        }
    }

    fn listener_mut(&mut self, id: ObjId) -> Option<&mut Listener> {
        match self.objects.get_mut(id) {
            Some(Object {
                body: Body::Listener(l),
                ..
            }) => Some(l),
            _ => None,
        }
    }

    /// Complete the connector's owed request (if any) with `status`.
    fn complete_pending(&mut self, out: &mut Out, id: ObjId, status: NTSTATUS) {
        if let Some(p) = self.conn_mut(id).and_then(|c| c.pending.take()) {
            self.emit(
                out,
                id,
                Call::Request {
                    f: p.f,
                    ctx: p.ctx,
                    status,
                },
            );
        }
    }

    /// Resolve the local address of `adapter`'s host: the IP must be one of the host's (an
    /// unspecified IP picks the host's first address of that family); port 0 picks an
    /// ephemeral port.
    fn bind_local(&mut self, host: usize, want: SocketAddr) -> Result<SocketAddr, NTSTATUS> {
        let addresses = &self.hosts[host].config.addresses;
        let ip = if want.ip().is_unspecified() {
            *addresses
                .iter()
                .find(|a| a.is_ipv4() == want.is_ipv4())
                .ok_or(NtStatus::INVALID_ADDRESS)?
        } else if addresses.contains(&want.ip()) {
            want.ip()
        } else {
            return Err(NtStatus::INVALID_ADDRESS);
        };
        if want.port() == 0 {
            self.ephemeral(ip).ok_or(NtStatus::TOO_MANY_ADDRESSES)
        } else {
            let addr = SocketAddr::new(ip, want.port());
            if self.ports.contains(&addr) {
                Err(NtStatus::SHARING_VIOLATION)
            } else {
                Ok(addr)
            }
        }
    }

    // --- listener -------------------------------------------------------------------------

    pub(crate) fn listen(
        &mut self,
        out: &mut Out,
        id: ObjId,
        addr: SocketAddr,
        f: NDK_FN_REQUEST_COMPLETION,
        ctx: Ctx,
    ) -> NTSTATUS {
        if self.listener_mut(id).is_some_and(|l| l.addr.is_some()) {
            return NtStatus::INVALID_DEVICE_STATE;
        }
        if self.adapter_removed(id) {
            return NtStatus::DEVICE_REMOVED;
        }
        let host = self.objects[id].host;
        let bound = if addr.ip().is_unspecified() {
            // A wildcard listener takes the port on the unspecified address.
            if addr.port() == 0 {
                self.ephemeral(addr.ip())
                    .ok_or(NtStatus::TOO_MANY_ADDRESSES)
            } else if self.ports.contains(&addr) {
                Err(NtStatus::SHARING_VIOLATION)
            } else {
                Ok(addr)
            }
        } else {
            self.bind_local(host, addr)
        };
        let status = match bound {
            Ok(bound) => {
                self.ports.insert(bound);
                self.listeners.insert(bound, id);
                if let Some(l) = self.listener_mut(id) {
                    l.addr = Some(bound);
                }
                NtStatus::SUCCESS
            }
            Err(status) => status,
        };
        self.finish_request(out, id, f, ctx, status)
    }

    pub(crate) fn listener_address(&self, id: ObjId) -> Option<SocketAddr> {
        match self.objects.get(id) {
            Some(Object {
                body: Body::Listener(l),
                ..
            }) => l.addr,
            _ => None,
        }
    }

    pub(crate) fn pause_listener(&mut self, id: ObjId, pause: bool) {
        if let Some(l) = self.listener_mut(id) {
            l.paused = pause;
        }
    }

    fn find_listener(&self, dst: SocketAddr) -> Option<ObjId> {
        let wildcard = SocketAddr::new(
            if dst.is_ipv4() {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            },
            dst.port(),
        );
        [dst, wildcard].into_iter().find_map(|a| {
            let id = *self.listeners.get(&a)?;
            let usable = self.is_open(id)
                && !self.adapter_removed(id)
                && !matches!(self.objects.get(id), Some(Object { body: Body::Listener(l), .. }) if l.paused);
            usable.then_some(id)
        })
    }

    pub(crate) fn listener_closing(&mut self, _out: &mut Out, id: ObjId) {
        // New requests are refused from now on (`find_listener` skips closing listeners);
        // connect events already queued are suppressed and refused at delivery.
        if let Some(l) = self.listener_mut(id) {
            l.paused = true;
        }
    }

    // --- active side ----------------------------------------------------------------------

    /// Bind a QP to a connector for its whole life (a QP is never reused).
    fn bind_qp(&mut self, conn: ObjId, qp: ObjId) -> Result<(), NTSTATUS> {
        let same_adapter =
            self.objects.get(conn).map(|o| o.adapter) == self.objects.get(qp).map(|o| o.adapter);
        let q = self.qp_mut(qp).ok_or(NtStatus::INVALID_PARAMETER)?;
        if !same_adapter {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if q.connector.is_some() || q.state != QpState::Idle {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        q.connector = Some(conn);
        q.state = QpState::Connecting;
        self.add_antecedent(conn, qp);
        if let Some(c) = self.conn_mut(conn) {
            c.qp = Some(qp);
        }
        Ok(())
    }

    pub(crate) fn connect(&mut self, out: &mut Out, a: ObjId, args: ConnectArgs) -> NTSTATUS {
        if self.conn(a).map(|c| c.state) != Some(ConnectorState::Idle) {
            return NtStatus::INVALID_DEVICE_STATE;
        }
        if self.adapter_removed(a) {
            return NtStatus::DEVICE_REMOVED;
        }
        let info = self.adapter_info(self.objects[a].adapter);
        if args.private_data.len() > info.MaxCallerData as usize {
            return NtStatus::INVALID_PARAMETER;
        }
        let host = self.objects[a].host;
        let local = match self.bind_local(host, args.src) {
            Ok(local) => local,
            Err(status) => return status,
        };
        if let Err(status) = self.bind_qp(a, args.qp) {
            return status;
        }
        self.ports.insert(local);
        let (ird, ord) = (
            args.ird.min(info.MaxInboundReadLimit),
            args.ord.min(info.MaxOutboundReadLimit),
        );
        if let Some(c) = self.conn_mut(a) {
            c.local = Some(local);
            c.local_addr = Some(local);
            c.remote = Some(args.dst);
            c.ird = ird;
            c.ord = ord;
        }
        let dst_host = self
            .host_by_ip(args.dst.ip())
            .filter(|h| !self.hosts[*h].removed);
        let Some(_) = dst_host else {
            return self.fail_connect(out, a, args.f, args.ctx, NtStatus::HOST_UNREACHABLE);
        };
        let Some(listener) = self.find_listener(args.dst) else {
            self.counters.refused_connects += 1;
            return self.fail_connect(out, a, args.f, args.ctx, NtStatus::CONNECTION_REFUSED);
        };
        // The passive connector, handed to the listener's owner by the connect event.
        let (l_adapter, l_host, l_version) = {
            let l = &self.objects[listener];
            (l.adapter, l.host, l.version)
        };
        let mut passive = Conn::new();
        passive.state = ConnectorState::Incoming;
        passive.peer = Some(a);
        // The listener owns the port; the passive end reports the address that was dialled.
        passive.local_addr = Some(args.dst);
        passive.remote = Some(local);
        passive.peer_data = args.private_data;
        passive.peer_data_known = true;
        passive.ird = ord;
        passive.ord = ird;
        let (b, block) = self.create_object(
            ObjectKind::Connector,
            l_adapter,
            l_host,
            l_version,
            vec![l_adapter, listener],
            Body::Connector(Box::new(passive)),
        );
        if let Some(c) = self.conn_mut(a) {
            c.state = ConnectorState::Connecting;
            c.peer = Some(b);
            c.pending = Some(Pending {
                f: args.f,
                ctx: args.ctx,
            });
        }
        let (f, ctx) = match self.listener_mut(listener) {
            Some(l) => (l.callback, l.ctx),
            None => (None, Ctx(std::ptr::null_mut())),
        };
        self.emit(
            out,
            listener,
            Call::ConnectEvent {
                f,
                ctx,
                connector: b,
                block,
            },
        );
        self.arm(out, crate::world::Timer::Handshake(a));
        NtStatus::PENDING
    }

    fn fail_connect(
        &mut self,
        out: &mut Out,
        a: ObjId,
        f: NDK_FN_REQUEST_COMPLETION,
        ctx: Ctx,
        status: NTSTATUS,
    ) -> NTSTATUS {
        if let Some(c) = self.conn_mut(a) {
            c.state = ConnectorState::Failed;
        }
        self.mark_qp(out, a, QpState::Dead);
        self.finish_request(out, a, f, ctx, status)
    }

    /// Set the data-path state of the connector's QP. Sends that can no longer be delivered
    /// (on this QP, or on its peer's when this one stops taking them) start their retry timers.
    fn mark_qp(&mut self, out: &mut Out, conn: ObjId, state: QpState) {
        if let Some(qp) = self.conn(conn).and_then(|c| c.qp)
            && let Some(q) = self.qp_mut(qp)
        {
            q.state = state;
            if state != QpState::Connected {
                self.arm_retry(out, qp);
                self.peer_qp_lost(out, qp);
            }
        }
    }

    pub(crate) fn complete_connect(
        &mut self,
        out: &mut Out,
        a: ObjId,
        disc: Option<DisconnectCb>,
        f: NDK_FN_REQUEST_COMPLETION,
        ctx: Ctx,
    ) -> NTSTATUS {
        let Some(c) = self.conn(a) else {
            return NtStatus::INVALID_PARAMETER;
        };
        match c.state {
            ConnectorState::Replied => {}
            ConnectorState::Failed if c.peer_data_known => return NtStatus::CONNECTION_ABORTED,
            _ => return NtStatus::CONNECTION_INVALID,
        }
        let peer = c.peer;
        let peer_ready = peer.is_some_and(|b| {
            self.is_open(b) && self.conn(b).map(|p| p.state) == Some(ConnectorState::Accepting)
        });
        if !peer_ready {
            if let Some(c) = self.conn_mut(a) {
                c.state = ConnectorState::Failed;
            }
            self.mark_qp(out, a, QpState::Dead);
            return self.finish_request(out, a, f, ctx, NtStatus::CONNECTION_ABORTED);
        }
        let b = peer.unwrap_or_default();
        for (id, cb) in [(a, disc), (b, None)] {
            if let Some(c) = self.conn_mut(id) {
                c.state = ConnectorState::Connected;
                if id == a {
                    c.disc = cb;
                }
            }
            self.mark_qp(out, id, QpState::Connected);
        }
        let (qa, qb) = (
            self.conn(a).and_then(|c| c.qp),
            self.conn(b).and_then(|c| c.qp),
        );
        if let (Some(qa), Some(qb)) = (qa, qb) {
            if let Some(q) = self.qp_mut(qa) {
                q.peer = Some(qb);
            }
            if let Some(q) = self.qp_mut(qb) {
                q.peer = Some(qa);
            }
        }
        self.complete_pending(out, b, NtStatus::SUCCESS);
        self.finish_request(out, a, f, ctx, NtStatus::SUCCESS)
    }

    // --- passive side ---------------------------------------------------------------------

    pub(crate) fn accept(&mut self, out: &mut Out, b: ObjId, args: AcceptArgs) -> NTSTATUS {
        let Some(c) = self.conn(b) else {
            return NtStatus::INVALID_PARAMETER;
        };
        match c.state {
            ConnectorState::Incoming => {}
            ConnectorState::Failed => return NtStatus::CONNECTION_ABORTED,
            _ => return NtStatus::INVALID_DEVICE_STATE,
        }
        let info = self.adapter_info(self.objects[b].adapter);
        if args.private_data.len() > info.MaxCalleeData as usize {
            return NtStatus::INVALID_PARAMETER;
        }
        let a = c.peer.unwrap_or_default();
        let peer_waiting =
            self.is_open(a) && self.conn(a).map(|p| p.state) == Some(ConnectorState::Connecting);
        if !peer_waiting {
            if let Some(c) = self.conn_mut(b) {
                c.state = ConnectorState::Failed;
            }
            return NtStatus::CONNECTION_ABORTED;
        }
        if let Err(status) = self.bind_qp(b, args.qp) {
            return status;
        }
        let (ird, ord) = (
            args.ird.min(info.MaxInboundReadLimit),
            args.ord.min(info.MaxOutboundReadLimit),
        );
        if let Some(c) = self.conn_mut(b) {
            c.state = ConnectorState::Accepting;
            c.disc = args.disc;
            c.ird = c.ird.min(ird);
            c.ord = c.ord.min(ord);
            c.pending = Some(Pending {
                f: args.f,
                ctx: args.ctx,
            });
        }
        if let Some(p) = self.conn_mut(a) {
            p.state = ConnectorState::Replied;
            p.peer_data = args.private_data;
            p.peer_data_known = true;
            p.ird = p.ird.min(ord);
            p.ord = p.ord.min(ird);
        }
        self.complete_pending(out, a, NtStatus::SUCCESS);
        self.arm(out, crate::world::Timer::Handshake(b));
        NtStatus::PENDING
    }

    pub(crate) fn reject(&mut self, out: &mut Out, x: ObjId, private_data: Vec<u8>) -> NTSTATUS {
        self.counters.rejects += 1;
        let Some(c) = self.conn(x) else {
            return NtStatus::INVALID_PARAMETER;
        };
        let (state, peer) = (c.state, c.peer);
        let peer_open = peer.is_some_and(|p| self.is_open(p));
        match state {
            ConnectorState::Incoming => {
                if let Some(c) = self.conn_mut(x) {
                    c.state = ConnectorState::Rejected;
                }
                let a = peer.unwrap_or_default();
                if !peer_open || self.conn(a).map(|p| p.state) != Some(ConnectorState::Connecting) {
                    return NtStatus::CONNECTION_ABORTED;
                }
                if let Some(p) = self.conn_mut(a) {
                    p.state = ConnectorState::Failed;
                    p.peer_data = private_data;
                    p.peer_data_known = true;
                }
                self.mark_qp(out, a, QpState::Dead);
                self.counters.refused_connects += 1;
                self.complete_pending(out, a, NtStatus::CONNECTION_REFUSED);
                NtStatus::SUCCESS
            }
            ConnectorState::Replied => {
                if let Some(c) = self.conn_mut(x) {
                    c.state = ConnectorState::Rejected;
                }
                self.mark_qp(out, x, QpState::Dead);
                let b = peer.unwrap_or_default();
                if !peer_open || self.conn(b).map(|p| p.state) != Some(ConnectorState::Accepting) {
                    return NtStatus::CONNECTION_ABORTED;
                }
                self.abort_handshake(out, b);
                NtStatus::SUCCESS
            }
            _ => NtStatus::INVALID_DEVICE_STATE,
        }
    }

    /// The peer of `id` gave up during the handshake: `id`'s owed request fails with
    /// `STATUS_CONNECTION_ABORTED`, and its next handshake call fails the same way.
    fn abort_handshake(&mut self, out: &mut Out, id: ObjId) {
        if let Some(c) = self.conn_mut(id) {
            c.state = ConnectorState::Failed;
            c.peer_data_known = true;
        }
        self.mark_qp(out, id, QpState::Dead);
        self.complete_pending(out, id, NtStatus::CONNECTION_ABORTED);
    }

    /// A connect request whose event was never delivered (listener closing): refuse it and
    /// discard the passive connector the consumer never saw.
    pub(crate) fn refuse_incoming(&mut self, out: &mut Out, b: ObjId) {
        if let Some(a) = self.conn(b).and_then(|c| c.peer)
            && self.conn(a).map(|c| c.state) == Some(ConnectorState::Connecting)
        {
            if let Some(c) = self.conn_mut(a) {
                c.state = ConnectorState::Failed;
            }
            self.mark_qp(out, a, QpState::Dead);
            self.counters.refused_connects += 1;
            self.complete_pending(out, a, NtStatus::CONNECTION_REFUSED);
        }
        self.discard(out, b);
    }

    pub(crate) fn connection_data(&self, x: ObjId) -> Result<(u32, u32, &[u8]), NTSTATUS> {
        let c = self.conn(x).ok_or(NtStatus::INVALID_PARAMETER)?;
        match c.state {
            ConnectorState::Incoming | ConnectorState::Replied => Ok((c.ird, c.ord, &c.peer_data)),
            ConnectorState::Failed | ConnectorState::Rejected if c.peer_data_known => {
                Ok((c.ird, c.ord, &c.peer_data))
            }
            _ => Err(NtStatus::INVALID_DEVICE_STATE),
        }
    }

    pub(crate) fn local_address(&self, x: ObjId) -> Option<SocketAddr> {
        self.conn(x).and_then(|c| c.local_addr)
    }

    pub(crate) fn peer_address(&self, x: ObjId) -> Option<SocketAddr> {
        self.conn(x).and_then(|c| c.remote)
    }

    // --- disconnect -----------------------------------------------------------------------

    /// `NdkDisconnect` (`NDK_FN_DISCONNECT`; `NetworkDirect` disconnect scheme). On an
    /// established connection it starts the graceful disconnect: the peer is told (its
    /// disconnect callback fires) and the request pends until the peer answers — by its own
    /// `NdkDisconnect` or by closing its connector — and completes with `STATUS_SUCCESS`, or
    /// with `STATUS_IO_TIMEOUT` when nobody answers within the disconnect timeout (a dead link,
    /// a peer that never acts), or `STATUS_CONNECTION_ABORTED` when the connection aborts
    /// meanwhile. Only then is the QP flushed (implicitly, by the provider). After the peer
    /// ended the connection, `NdkDisconnect` is the answer: it completes at once and flushes.
    pub(crate) fn disconnect(
        &mut self,
        out: &mut Out,
        x: ObjId,
        f: NDK_FN_REQUEST_COMPLETION,
        ctx: Ctx,
    ) -> NTSTATUS {
        let Some(c) = self.conn(x) else {
            return NtStatus::INVALID_PARAMETER;
        };
        let (state, ending, again, peer, link_down) = (
            c.state,
            c.ending,
            c.local_disconnect_called,
            c.peer,
            c.link_down,
        );
        match state {
            ConnectorState::Connected if self.config.kindness.instant_disconnect => {
                if let Some(c) = self.conn_mut(x) {
                    c.local_disconnect_called = true;
                }
                self.end_local(out, x, Ending::LocalDisconnect);
                self.flush_conn_qp(out, x, FlushKind::Implicit);
                self.finish_request(out, x, f, ctx, NtStatus::SUCCESS)
            }
            ConnectorState::Connected => {
                if let Some(c) = self.conn_mut(x) {
                    c.local_disconnect_called = true;
                    c.state = ConnectorState::Disconnecting;
                    c.ending.get_or_insert(Ending::LocalDisconnect);
                    c.pending = Some(Pending { f, ctx });
                }
                self.mark_qp(out, x, QpState::Disconnecting);
                if !link_down && let Some(y) = peer {
                    self.end_remote(out, y, Ending::PeerGraceful);
                }
                self.arm(out, crate::world::Timer::Disconnect(x));
                NtStatus::PENDING
            }
            ConnectorState::Disconnected => {
                if let Some(c) = self.conn_mut(x) {
                    c.local_disconnect_called = true;
                }
                if !again {
                    self.flush_conn_qp(out, x, FlushKind::Implicit);
                }
                self.mark_qp(out, x, QpState::Dead);
                let status = match ending {
                    Some(Ending::PeerGraceful | Ending::LocalDisconnect) | None => {
                        NtStatus::SUCCESS
                    }
                    Some(_) => NtStatus::CONNECTION_ABORTED,
                };
                // The peer's own NdkDisconnect waits for this answer.
                if ending == Some(Ending::PeerGraceful)
                    && !link_down
                    && let Some(y) = peer
                {
                    self.answer_disconnect(out, y, NtStatus::SUCCESS);
                }
                self.finish_request(out, x, f, ctx, status)
            }
            ConnectorState::Disconnecting => NtStatus::INVALID_DEVICE_STATE,
            _ => NtStatus::CONNECTION_INVALID,
        }
    }

    /// The graceful disconnect `x` started is over with `status`: its request completes, and
    /// the provider flushes its QP.
    fn answer_disconnect(&mut self, out: &mut Out, x: ObjId, status: NTSTATUS) {
        if self.conn(x).map(|c| c.state) != Some(ConnectorState::Disconnecting) {
            return;
        }
        if let Some(c) = self.conn_mut(x) {
            c.state = ConnectorState::Disconnected;
        }
        self.complete_pending(out, x, status);
        self.flush_conn_qp(out, x, FlushKind::Implicit);
        self.mark_qp(out, x, QpState::Dead);
    }

    /// The disconnect timeout of `x` ran out.
    pub(crate) fn disconnect_timed_out(&mut self, out: &mut Out, x: ObjId) {
        if self.conn(x).map(|c| c.state) == Some(ConnectorState::Disconnecting) {
            self.counters.disconnect_timeouts += 1;
            self.answer_disconnect(out, x, NtStatus::IO_TIMEOUT);
        }
    }

    /// The handshake timeout of `x` ran out: a connect nobody accepted or rejected, or an
    /// accept whose active side never completed, fails with `STATUS_IO_TIMEOUT`; the other
    /// side's next handshake call fails with `STATUS_CONNECTION_ABORTED`.
    pub(crate) fn handshake_timed_out(&mut self, out: &mut Out, x: ObjId) {
        let Some(c) = self.conn(x) else { return };
        let (state, peer) = (c.state, c.peer);
        if !matches!(
            state,
            ConnectorState::Connecting | ConnectorState::Accepting
        ) {
            return;
        }
        self.counters.handshake_timeouts += 1;
        if let Some(y) = peer
            && self.conn(y).is_some_and(|p| {
                matches!(
                    p.state,
                    ConnectorState::Incoming | ConnectorState::Replied | ConnectorState::Accepting
                )
            })
        {
            if let Some(p) = self.conn_mut(y) {
                p.state = ConnectorState::Failed;
                p.peer_data_known = true;
            }
            self.mark_qp(out, y, QpState::Dead);
        }
        if let Some(c) = self.conn_mut(x) {
            c.state = ConnectorState::Failed;
            c.peer_data_known = true;
        }
        self.mark_qp(out, x, QpState::Dead);
        self.complete_pending(out, x, NtStatus::IO_TIMEOUT);
    }

    /// `x` ends an established connection itself (`how` is `LocalDisconnect` or `LocalClose`);
    /// the peer learns of it through its disconnect callback, unless the link is down.
    fn end_local(&mut self, out: &mut Out, x: ObjId, how: Ending) {
        let link_down = self.conn(x).is_some_and(|c| c.link_down);
        if let Some(c) = self.conn_mut(x) {
            c.state = ConnectorState::Disconnected;
            c.ending.get_or_insert(how);
        }
        self.mark_qp(out, x, QpState::Dead);
        let peer = self.conn(x).and_then(|c| c.peer);
        if let Some(y) = peer.filter(|_| !link_down) {
            let peer_how = if how == Ending::LocalDisconnect {
                Ending::PeerGraceful
            } else {
                Ending::PeerReset
            };
            self.end_remote(out, y, peer_how);
        }
    }

    /// `y`'s connection was ended by something other than `y`'s own consumer: the provider
    /// indicates it through the disconnect callback (at most once) and does not flush. A
    /// graceful disconnect `y` itself started is answered: by success when the peer's end
    /// closed, by `STATUS_CONNECTION_ABORTED` when the connection aborted.
    fn end_remote(&mut self, out: &mut Out, y: ObjId, how: Ending) {
        if !self.is_open(y) {
            return;
        }
        let Some(c) = self.conn(y) else { return };
        match c.state {
            ConnectorState::Connected => {}
            ConnectorState::Disconnecting => {
                let status = match how {
                    Ending::PeerGraceful | Ending::PeerReset => NtStatus::SUCCESS,
                    _ => NtStatus::CONNECTION_ABORTED,
                };
                return self.answer_disconnect(out, y, status);
            }
            ConnectorState::Connecting
            | ConnectorState::Replied
            | ConnectorState::Incoming
            | ConnectorState::Accepting => {
                self.abort_handshake(out, y);
                return;
            }
            _ => return,
        }
        if let Some(c) = self.conn_mut(y) {
            c.state = ConnectorState::Disconnected;
            c.ending = Some(how);
        }
        self.mark_qp(out, y, QpState::PeerGone);
        self.indicate_disconnect(out, y, how.reason());
    }

    /// The provider gave up on `x`'s connection (a send was never acknowledged). A connection
    /// still established ends here with the disconnect callback; one already ending is left as
    /// it is (its callback fired, or its own disconnect is waiting).
    pub(crate) fn transport_failed(&mut self, out: &mut Out, x: ObjId) {
        if !self.is_open(x) {
            return;
        }
        let Some(c) = self.conn(x) else { return };
        if c.state != ConnectorState::Connected {
            return;
        }
        let how = if c.link_down {
            Ending::LinkLoss
        } else {
            Ending::TransportError
        };
        if let Some(c) = self.conn_mut(x) {
            c.state = ConnectorState::Disconnected;
            c.ending = Some(how);
        }
        self.indicate_disconnect(out, x, how.reason());
    }

    /// An iWARP terminate ended `x`'s connection: a connection still established ends with the
    /// disconnect callback ([`reason::TERMINATED`]).
    pub(crate) fn terminated(&mut self, out: &mut Out, x: ObjId) {
        if !self.is_open(x) || self.conn(x).map(|c| c.state) != Some(ConnectorState::Connected) {
            return;
        }
        if let Some(c) = self.conn_mut(x) {
            c.state = ConnectorState::Disconnected;
            c.ending = Some(Ending::Terminated);
        }
        self.indicate_disconnect(out, x, reason::TERMINATED);
    }

    /// Make the disconnect callback: at most once per connection (twice only for a host
    /// configured to misbehave that way), and flush only for a host configured to.
    fn indicate_disconnect(&mut self, out: &mut Out, y: ObjId, reason: u32) {
        let misbehaviour = self.misbehaviour(y);
        let Some(c) = self.conn_mut(y) else { return };
        let limit = if misbehaviour.duplicate_disconnect_callback {
            2
        } else {
            1
        };
        if c.disconnect_callbacks >= 1 {
            return;
        }
        let cb = c.disc;
        if let Some(cb) = cb {
            c.disconnect_callbacks = limit;
            for _ in 0..limit {
                self.emit(out, y, Call::Disconnect { cb, reason });
            }
        } else {
            // No callback registered: nothing to indicate, but the once-rule still holds.
            c.disconnect_callbacks = 1;
        }
        if misbehaviour.flush_on_peer_disconnect {
            self.flush_conn_qp(out, y, FlushKind::Provider);
        }
    }

    fn flush_conn_qp(&mut self, out: &mut Out, x: ObjId, kind: FlushKind) {
        if let Some(qp) = self.conn(x).and_then(|c| c.qp) {
            self.flush_qp(out, qp, kind);
        }
    }

    /// The consumer started closing connector `x`: cancel its owed request, and tear down
    /// whatever it was part of.
    pub(crate) fn connector_closing(&mut self, out: &mut Out, x: ObjId) {
        self.complete_pending(out, x, NtStatus::CANCELLED);
        let Some(c) = self.conn(x) else { return };
        let (state, peer) = (c.state, c.peer);
        match state {
            ConnectorState::Connected => self.end_local(out, x, Ending::LocalClose),
            ConnectorState::Disconnected | ConnectorState::Disconnecting => {
                // Closing is an answer too: a peer waiting in its own NdkDisconnect is done.
                let link_down = self.conn(x).is_some_and(|c| c.link_down);
                if let Some(y) = peer.filter(|_| !link_down) {
                    self.answer_disconnect(out, y, NtStatus::SUCCESS);
                }
                if let Some(c) = self.conn_mut(x) {
                    c.state = ConnectorState::Disconnected;
                }
            }
            ConnectorState::Incoming => {
                // Closing an unaccepted request rejects it.
                self.counters.closed_unaccepted += 1;
                if let Some(a) = peer
                    .filter(|a| self.conn(*a).map(|c| c.state) == Some(ConnectorState::Connecting))
                {
                    if let Some(p) = self.conn_mut(a) {
                        p.state = ConnectorState::Failed;
                    }
                    self.mark_qp(out, a, QpState::Dead);
                    self.counters.refused_connects += 1;
                    self.complete_pending(out, a, NtStatus::CONNECTION_REFUSED);
                }
            }
            ConnectorState::Connecting | ConnectorState::Replied | ConnectorState::Accepting => {
                if let Some(p) = peer {
                    self.end_remote(out, p, Ending::PeerReset);
                }
            }
            _ => {}
        }
        if let Some(c) = self.conn_mut(x)
            && c.state != ConnectorState::Disconnected
        {
            c.state = ConnectorState::Failed;
        }
        self.mark_qp(out, x, QpState::Dead);
    }

    // --- fault injection ----------------------------------------------------------------

    /// Inject `fault` on the connection of connector `victim`. Returns false when the
    /// connector is not part of a connection the fault can act on.
    pub(crate) fn inject(&mut self, out: &mut Out, victim: ObjId, fault: Fault) -> bool {
        let Some(c) = self.conn(victim) else {
            return false;
        };
        let (state, peer) = (c.state, c.peer);
        let live = matches!(
            state,
            ConnectorState::Connected
                | ConnectorState::Disconnecting
                | ConnectorState::Connecting
                | ConnectorState::Replied
                | ConnectorState::Incoming
                | ConnectorState::Accepting
        );
        if !live || !self.is_open(victim) {
            return false;
        }
        match fault {
            Fault::PeerDisconnect | Fault::PeerReset => {
                let how = if fault == Fault::PeerDisconnect {
                    Ending::PeerGraceful
                } else {
                    Ending::PeerReset
                };
                // The peer end acts on its own, as if its consumer (or host) went away: it gets
                // no callback; its QP is flushed as after a local disconnect.
                if let Some(y) = peer.filter(|y| self.is_open(*y)) {
                    self.silence(out, y, Ending::LocalDisconnect);
                }
                self.end_remote(out, victim, how);
            }
            Fault::LinkLoss
                if matches!(
                    state,
                    ConnectorState::Connected | ConnectorState::Disconnecting
                ) =>
            {
                // Nobody is told: each end finds out when a send is not acknowledged.
                for x in [Some(victim), peer].into_iter().flatten() {
                    if let Some(c) = self.conn_mut(x) {
                        c.link_down = true;
                    }
                    if let Some(qp) = self.conn(x).and_then(|c| c.qp) {
                        self.arm_retry(out, qp);
                    }
                }
            }
            Fault::LinkLoss | Fault::LinkLossNoticedAtOnce => {
                // During a handshake the connection manager's messages are lost: both ends'
                // handshakes abort, as before.
                self.end_remote(out, victim, Ending::LinkLoss);
                if let Some(y) = peer {
                    self.end_remote(out, y, Ending::LinkLoss);
                }
            }
        }
        true
    }

    /// The end `y` goes away on its own: no callback for it, owed requests fail, QP flushed.
    fn silence(&mut self, out: &mut Out, y: ObjId, how: Ending) {
        let Some(c) = self.conn_mut(y) else { return };
        let was_connected = c.state == ConnectorState::Connected;
        c.state = if was_connected {
            ConnectorState::Disconnected
        } else {
            ConnectorState::Failed
        };
        c.ending.get_or_insert(how);
        c.disconnect_callbacks = c.disconnect_callbacks.max(1);
        self.complete_pending(out, y, NtStatus::CONNECTION_ABORTED);
        self.flush_conn_qp(out, y, FlushKind::Implicit);
        self.mark_qp(out, y, QpState::Dead);
    }

    /// The adapters of `host` are going away: opens and creates fail with
    /// `STATUS_DEVICE_REMOVED` from now on. Returns the host's interface index.
    pub(crate) fn mark_host_removed(&mut self, host: usize) -> Option<u32> {
        let h = self.hosts.get_mut(host)?;
        h.removed = true;
        let if_index = h.config.if_index;
        for obj in self.objects.values_mut() {
            if obj.host == host
                && let Body::Adapter { removed, .. } = &mut obj.body
            {
                *removed = true;
            }
        }
        Some(if_index)
    }

    /// Surprise removal of every adapter of `host`: each connection through it that its
    /// consumer did not close ends; the local end's callback carries `ADAPTER_REMOVED`, a remote
    /// peer's `RESET`.
    pub(crate) fn remove_host(&mut self, out: &mut Out, host: usize) {
        self.mark_host_removed(host);
        // Oldest first (the table's order).
        let connectors: Vec<ObjId> = self
            .objects
            .iter()
            .filter(|(_, o)| o.host == host && matches!(o.body, Body::Connector(_)))
            .map(|(id, _)| id)
            .collect();
        for x in connectors {
            let peer = self.conn(x).and_then(|c| c.peer);
            self.end_remote(out, x, Ending::AdapterRemoved);
            if let Some(y) = peer {
                let how = if self.objects.get(y).map(|o| o.host) == Some(host) {
                    Ending::AdapterRemoved
                } else {
                    Ending::PeerReset
                };
                self.end_remote(out, y, how);
            }
        }
    }
}
