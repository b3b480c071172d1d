//! IOCTL dispatch: each request parsed once (`ndkdisc-abi`), its output size checked before
//! any effect, then handed to the handle, its connections or its listeners, and completed or
//! left to pend.

use alloc::vec::Vec;
use kalloc::Arc;

use ndkdisc_abi::{
    AbiError, AdapterEntry, BATCH_HEADER_SIZE, Cause, ConnectReply, ConnectRequest, InfoReply,
    Ioctl, ListenReply, ListenRequest, NtStatus, ObjectEntry, ObjectKind, QueryReply, Record,
    Request, encode_adapters_reply, encode_batch_header,
};

use crate::conn::Conn;
use crate::error::Error;
use crate::events::WaitOutcome;
use crate::listener::{Listener, ListenerOwner};
use crate::owner::{Access, Owner, push_reserved};
use crate::ports::{Lock, PendedRequest, Platform, Trace};

/// Driver version reported by `GET_INFO` (major << 16 | minor).
pub const DRIVER_VERSION: u32 = 0x0000_0001;

/// Complete `request`, which has no output, with the outcome of its operation: where the
/// engine's [`Error`] becomes an NTSTATUS ([`Error::ntstatus`]).
fn complete<R: PendedRequest>(request: R, outcome: Result<(), Error>) {
    request.complete(
        outcome.map_or_else(Error::ntstatus, |()| NtStatus::SUCCESS),
        0,
    );
}

/// Complete `request` with `value` as its output.
fn reply<R: PendedRequest, T: Record>(mut request: R, value: &T) {
    match value.encode(request.output()) {
        Ok(n) => request.complete(NtStatus::SUCCESS, n),
        Err(e) => complete(request, Err(e.into())),
    }
}

impl<P: Platform> Owner<P> {
    /// Handle one IOCTL: parse once, then complete the request or let it pend.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub fn dispatch(&self, code: u32, input: &[u8], mut request: P::Request) {
        let parsed = match Request::parse(code, input) {
            Ok(r) => r,
            Err(e) => return self.finish(code, request, Err(e.into())),
        };
        let runtime = &self.inner.runtime;
        match parsed {
            Request::GetInfo(_) => {
                // The engine-wide counters tell of every handle's traffic: only a handle opened
                // for writing sees them; a read-only one reads zero.
                let c = &runtime.counters;
                let info = InfoReply {
                    abi_version: u32::from(ndkdisc_abi::ABI_VERSION),
                    driver_version: DRIVER_VERSION,
                    max_connections: saturate(runtime.config.limits.max_connections),
                    max_listeners: saturate(runtime.config.max_listeners),
                    max_waits: saturate(runtime.config.limits.max_waits),
                    default_backlog: runtime.config.default_backlog,
                    events_per_connection: saturate(crate::events::SLOTS),
                    ndk_status: runtime.platform().wsk().status(),
                    connections_opened: c.total(|s| &s.connections),
                    events_latched: c.total(|s| &s.events),
                    disconnect_callbacks: c.total(|s| &s.disconnect_callbacks),
                    backlog_rejects: c.total(|s| &s.backlog_rejects),
                    duplicate_callbacks: c.total(|s| &s.duplicate_callbacks),
                    clock: runtime.platform().now(),
                };
                match self.access {
                    Access::ReadWrite => reply(request, &info),
                    Access::Read => reply(request, &info.without_engine_counters()),
                }
            }
            Request::ListAdapters(_) => self.list_adapters(request),
            Request::ListObjects(_) => self.list_objects(request),
            Request::Listen(req) => self.listen(req, request),
            Request::Connect(req) => self.connect(req, request),
            Request::Wait(req) => {
                let outcome = self
                    .inner
                    .queue
                    .with(|q| q.wait(request, req.connection, req.nonblocking));
                if let WaitOutcome::Complete(ready) = outcome {
                    ready.complete();
                }
            }
            Request::Query(req) => {
                if request.output().len() < QueryReply::SIZE {
                    return self.finish(code, request, Err(Error::Abi(AbiError::OutputTooSmall)));
                }
                match self.inner.conn(req.connection_id) {
                    Some(c) => reply(request, &c.query()),
                    None => self.finish(code, request, Err(Error::NotFound)),
                }
            }
            Request::Post(req) => match self.inner.conn(req.connection_id) {
                None => self.finish(code, request, Err(Error::NotFound)),
                Some(c) => self.finish(
                    code,
                    request,
                    Conn::post(&c, req.kind, req.count, req.length),
                ),
            },
            Request::Disconnect(req) => match self.inner.conn(req.connection_id) {
                None => self.finish(code, request, Err(Error::NotFound)),
                Some(c) if req.abortive => {
                    Conn::end(&c, Cause::LocalAbortive);
                    self.finish(code, request, Ok(()));
                }
                Some(c) => Conn::disconnect(&c, request),
            },
            Request::Abort(req) => match self.inner.conn(req.connection_id) {
                None => self.finish(code, request, Err(Error::NotFound)),
                Some(c) => {
                    while let Some(w) = self
                        .inner
                        .queue
                        .with(|q| q.take_wait_to_cancel(Some(c.id())))
                    {
                        w.complete();
                    }
                    Conn::end(&c, Cause::Aborted);
                    self.finish(code, request, Ok(()));
                }
            },
            Request::Flush(req) => match self.inner.conn(req.connection_id) {
                None => self.finish(code, request, Err(Error::NotFound)),
                Some(c) => self.finish(code, request, c.flush()),
            },
            Request::Close(req) => self.close(req.id, request),
        }
    }

    /// Complete `request` (IOCTL `code`) with `outcome`, tracing a failure.
    fn finish(&self, code: u32, request: P::Request, outcome: Result<(), Error>) {
        if let Err(e) = &outcome {
            self.inner.runtime.platform().trace(&Trace::IoctlFailed {
                code,
                status: e.ntstatus(),
            });
        }
        complete(request, outcome);
    }

    fn list_adapters(&self, mut request: P::Request) {
        let code = Ioctl::ListAdapters.code();
        let runtime = &self.inner.runtime;
        // The version each adapter really negotiates (its highest of 2.x, else 1.x): open it
        // once.
        let descs = runtime.platform().adapters();
        let mut entries: Vec<AdapterEntry> = Vec::new();
        if entries.try_reserve_exact(descs.len()).is_err() {
            return self.finish(code, request, Err(Error::NoResources));
        }
        for desc in descs {
            let Ok(adapter) = runtime.open_adapter(desc.if_index) else {
                continue;
            };
            let v = adapter.version();
            runtime.platform().wsk().close_adapter(adapter);
            // INVARIANT: room for every description was reserved: no allocation.
            entries.push(AdapterEntry {
                if_index: desc.if_index,
                ndk_major: v.Major,
                ndk_minor: v.Minor,
                address: desc.address,
            });
        }
        match encode_adapters_reply(&entries, request.output()) {
            Ok(n) => request.complete(NtStatus::SUCCESS, n),
            Err(e) => self.finish(code, request, Err(e.into())),
        }
    }

    /// `LIST_OBJECTS`: each connection (from its QUERY) and listener, written straight into the
    /// output as found, one table lookup at a time: no allocation, and no connection lock taken
    /// under the table's.
    fn list_objects(&self, mut request: P::Request) {
        let out = request.output();
        if out.len() < BATCH_HEADER_SIZE {
            return self.finish(
                Ioctl::ListObjects.code(),
                request,
                Err(Error::Abi(AbiError::OutputTooSmall)),
            );
        }
        let fit = (out.len() - BATCH_HEADER_SIZE) / ObjectEntry::SIZE;
        let mut total = 0usize;
        let mut put = |entry: &ObjectEntry, out: &mut [u8]| {
            if total < fit {
                let at = BATCH_HEADER_SIZE + total * ObjectEntry::SIZE;
                // `at + SIZE` is within `out` (`total < fit`); `get_mut` all the same.
                if let Some(room) = out.get_mut(at..) {
                    let _ = entry.encode(room);
                }
            }
            total += 1;
        };
        let slots = self.inner.table.with(|t| t.conns.len());
        for i in 0..slots {
            let Some(c) = self.inner.table.with(|t| t.conns.get(i).cloned().flatten()) else {
                continue;
            };
            let q = c.query();
            let entry = ObjectEntry {
                id: q.connection_id,
                kind: ObjectKind::Connection,
                state: Some(q.state),
                outstanding_receives: q.outstanding_receives,
                outstanding_sends: q.outstanding_sends,
                local: q.local,
                remote: q.remote,
            };
            put(&entry, request.output());
        }
        // By id, not by position: CLOSE moves the last listener into the slot it frees, so a
        // walk by position could miss one that exists all along. Ids grow; a handle has few
        // listeners (`max_listeners`).
        let mut after = 0u64;
        while let Some(l) = self.inner.table.with(|t| {
            t.listeners
                .iter()
                .filter(|l| l.id > after)
                .min_by_key(|l| l.id)
                .cloned()
        }) {
            after = l.id;
            let entry = ObjectEntry {
                id: l.id,
                kind: ObjectKind::Listener,
                state: None,
                outstanding_receives: 0,
                outstanding_sends: 0,
                local: Some(l.bound()),
                remote: None,
            };
            put(&entry, request.output());
        }
        let count = total.min(fit);
        let header = u32::try_from(total)
            .map_err(|_| AbiError::OutOfRange("total"))
            .and_then(|t| encode_batch_header(request.output(), count, t));
        match header {
            Ok(()) => request.complete(
                NtStatus::SUCCESS,
                BATCH_HEADER_SIZE + count * ObjectEntry::SIZE,
            ),
            Err(e) => self.finish(Ioctl::ListObjects.code(), request, Err(e.into())),
        }
    }

    fn connect(&self, req: ConnectRequest, mut request: P::Request) {
        if request.output().len() < ConnectReply::SIZE {
            return self.finish(
                Ioctl::Connect.code(),
                request,
                Err(Error::Abi(AbiError::OutputTooSmall)),
            );
        }
        let runtime = &self.inner.runtime;
        let index = match self.inner.add_connection(runtime.next_id()) {
            Ok(index) => index,
            Err(e) => return self.finish(Ioctl::Connect.code(), request, Err(e.into())),
        };
        let adapter = match self.inner.shared_adapter(req.if_index) {
            Ok(a) => a,
            Err(e) => {
                self.inner.remove_connection(index);
                return self.finish(Ioctl::Connect.code(), request, Err(e));
            }
        };
        runtime.count(|c| &c.connections);
        let conn = match Conn::new(Arc::clone(&self.inner), index, adapter, req.if_index) {
            Ok(conn) => conn,
            Err(e) => {
                self.inner.remove_connection(index);
                return self.finish(Ioctl::Connect.code(), request, Err(e));
            }
        };
        runtime.platform().trace(&Trace::ConnectionCreated {
            id: conn.id(),
            if_index: req.if_index,
            active: true,
        });
        if !self.inner.adopt(&conn) {
            // The handle is being cleaned up under this CONNECT.
            Conn::teardown(&conn);
            self.inner.remove_connection(index);
            return self.finish(Ioctl::Connect.code(), request, Err(Error::Cancelled));
        }
        let receive = nonzero(req.receive_depth, runtime.config.receive_depth);
        let send = nonzero(req.send_depth, runtime.config.send_depth);
        match Conn::create_queue_pair(&conn, receive, send) {
            Ok(()) => Conn::start_connect(&conn, request, req.local, req.remote),
            Err(e) => {
                conn.fail_connect(Some(request), e.ntstatus());
                Conn::teardown(&conn);
            }
        }
    }

    fn listen(&self, req: ListenRequest, mut request: P::Request) {
        if request.output().len() < ListenReply::SIZE {
            return self.finish(
                Ioctl::Listen.code(),
                request,
                Err(Error::Abi(AbiError::OutputTooSmall)),
            );
        }
        let runtime = &self.inner.runtime;
        let backlog = if req.backlog == 0 {
            runtime.config.default_backlog
        } else {
            req.backlog
        };
        if backlog > runtime.config.max_backlog {
            return self.finish(Ioctl::Listen.code(), request, Err(Error::Quota));
        }
        let full = self
            .inner
            .table
            .with(|t| t.listeners.len() >= runtime.config.max_listeners);
        if full {
            return self.finish(Ioctl::Listen.code(), request, Err(Error::Quota));
        }
        // After 2^44 ids the sequence numbers ran out: refused, never reused.
        let Some(id) = crate::ids::listener(runtime.next_id()) else {
            return self.finish(Ioctl::Listen.code(), request, Err(Error::NoResources));
        };
        let adapter = match runtime.open_adapter(req.if_index) {
            Ok(a) => a,
            Err(e) => return self.finish(Ioctl::Listen.code(), request, Err(e)),
        };
        // The listener owns the adapter from here: on failure it has closed it.
        let listener = match Listener::start(
            Arc::clone(&self.inner),
            id,
            adapter,
            req.if_index,
            backlog as usize,
            req.local,
        ) {
            Ok(l) => l,
            Err(e) => return self.finish(Ioctl::Listen.code(), request, Err(e)),
        };
        let bound = listener.bound();
        let adopted = self
            .inner
            .table
            .with(|t| !t.closed && push_reserved(&mut t.listeners, Arc::clone(&listener)));
        if !adopted {
            Listener::close(&listener);
            return self.finish(Ioctl::Listen.code(), request, Err(Error::Cancelled));
        }
        reply(
            request,
            &ListenReply {
                listener_id: listener.id,
                bound,
            },
        );
    }

    fn close(&self, id: u64, request: P::Request) {
        let conn = self.inner.take_conn(id);
        let listener = if conn.is_some() {
            None
        } else {
            self.inner.table.with(|t| {
                t.listeners
                    .iter()
                    .position(|l| l.id == id)
                    .map(|i| t.listeners.swap_remove(i))
            })
        };
        if let Some(c) = conn {
            Conn::end(&c, Cause::LocalAbortive);
            c.closed_event();
            self.finish(Ioctl::Close.code(), request, Ok(()));
        } else if let Some(l) = listener {
            Listener::close(&l);
            self.finish(Ioctl::Close.code(), request, Ok(()));
        } else {
            self.finish(Ioctl::Close.code(), request, Err(Error::NotFound));
        }
    }
}

fn saturate(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn nonzero(v: u32, default: u32) -> u32 {
    if v == 0 { default } else { v }
}
