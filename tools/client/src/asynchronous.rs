//! The async API: futures for the operations that pend — WAIT ([`Client::wait_async`]),
//! CONNECT ([`Client::connect_async`]), a graceful DISCONNECT ([`Client::disconnect_async`]) —
//! and a stream of a handle's events ([`Client::event_stream`]). They are runtime-agnostic:
//! plain [`Future`]s and a `futures-core` [`Stream`], woken by the backend itself — on Windows
//! by the thread pool when the overlapped request's event is set, on the simulator by the
//! engine's completion of the request. No thread waits on a future's behalf.
//!
//! Timeouts are the runtime's business (its timer wrapped around the future). Dropping a
//! future before it completes cancels its request (`CancelIoEx`) and collects the completion:
//!
//! - a WAIT that completed with events anyway (the events raced the cancel) keeps them for
//!   the next WAIT on this client, sync or async: no event is lost;
//! - a CONNECT that completed anyway (connected just before the cancel, or failed) has its
//!   connection closed, so nothing is left open that nobody knows of (its events still tell
//!   the story);
//! - a graceful DISCONNECT goes on in the driver (`NdkDisconnect` cannot be called back), and
//!   its outcome reaches the connection's `Local` event.
//!
//! Collecting a cancelled request's completion happens in `drop`: the driver completes a
//! cancelled request at once, but the dropping thread does wait for it. On Windows it waits
//! for as long as the I/O takes (the request's buffers must outlive it); on the simulator up to
//! 30 s, after which a WAIT's late events are not collected.
//!
//! Kept events are returned by the next WAIT to *start*: a WAIT already pending in the driver
//! when another future is dropped does not see them until it completes. A client that runs
//! several WAITs at once (say an [`EventStream`] and a separate [`WaitFuture`]) should not drop
//! one of them mid-flight and expect the other to deliver what it held.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::collections::VecDeque;

use futures_core::Stream;
use ndkdisc_abi::{ConnectReply, Ioctl, Record};

use crate::{
    CANCEL_GRACE, Client, Completed, ConnectParams, ConnectionId, DisconnectRequest, Error,
    Established, Event, InFlight, WaitOn, connect_input, connect_outcome, encode, wait_input,
    wait_outcome, wait_output_len,
};

/// A request issued by a future: taken out once it completed.
struct Issued(Option<Box<dyn InFlight>>);

impl Issued {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Completed> {
        match self.0.as_mut() {
            Some(req) => match req.poll_done(cx) {
                Poll::Ready(done) => {
                    self.0 = None;
                    Poll::Ready(done)
                }
                Poll::Pending => Poll::Pending,
            },
            // Completed before: a future is not polled after it returned Ready.
            None => Poll::Pending,
        }
    }

    /// Cancel the request still in flight and collect its completion; `None` if it had
    /// completed and was collected before, or if it did not complete in time.
    fn cancel(&mut self) -> Option<Completed> {
        let mut req = self.0.take()?;
        req.cancel();
        req.wait(CANCEL_GRACE)
    }
}

/// What a future is up to.
enum State {
    /// Not issued yet (a future does nothing until polled).
    Start,
    /// In flight.
    Issued(Issued),
    /// Completed, or failed to issue: returned already.
    Done,
}

impl State {
    /// Issue the request with `start` at the first poll, then poll it; its completion through
    /// `finish`. `Pending` for ever once done (a future is not polled after `Ready`).
    fn drive<R>(
        &mut self,
        cx: &mut Context<'_>,
        start: impl FnOnce() -> Result<Box<dyn InFlight>, Error>,
        finish: impl FnOnce(&Completed) -> Result<R, Error>,
    ) -> Poll<Result<R, Error>> {
        if let State::Start = self {
            match start() {
                Ok(req) => *self = State::Issued(Issued(Some(req))),
                Err(e) => {
                    *self = State::Done;
                    return Poll::Ready(Err(e));
                }
            }
        }
        let State::Issued(issued) = self else {
            return Poll::Pending;
        };
        match issued.poll(cx) {
            Poll::Ready(done) => {
                *self = State::Done;
                Poll::Ready(finish(&done))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Cancel a request still in flight and collect its completion ([`Issued::cancel`]).
    fn cancel(&mut self) -> Option<Completed> {
        match self {
            State::Issued(issued) => issued.cancel(),
            _ => None,
        }
    }
}

/// WAIT, as a future ([`Client::wait_async`]).
pub struct WaitFuture<'c> {
    client: &'c Client,
    on: WaitOn,
    room: usize,
    state: State,
}

impl core::fmt::Debug for WaitFuture<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitFuture")
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

impl Future for WaitFuture<'_> {
    type Output = Result<Vec<Event>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Start = this.state {
            let stashed = this.client.take_stashed(this.on, this.room);
            if !stashed.is_empty() {
                this.state = State::Done;
                return Poll::Ready(Ok(stashed));
            }
        }
        let (client, on, room) = (this.client, this.on, this.room);
        this.state.drive(
            cx,
            || {
                wait_input(on, false)
                    .and_then(|input| client.start(Ioctl::Wait, &input, wait_output_len(room)))
            },
            |done| wait_outcome(done, room),
        )
    }
}

impl Drop for WaitFuture<'_> {
    fn drop(&mut self) {
        if let Some(done) = self.state.cancel()
            && let Ok(events) = wait_outcome(&done, self.room)
        {
            // The events raced the cancel: the next WAIT returns them.
            self.client.stash(events);
        }
    }
}

/// CONNECT, as a future ([`Client::connect_async`]).
pub struct ConnectFuture<'c> {
    client: &'c Client,
    params: ConnectParams,
    state: State,
}

impl core::fmt::Debug for ConnectFuture<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConnectFuture")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Future for ConnectFuture<'_> {
    type Output = Result<Established, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (client, params) = (this.client, this.params);
        this.state.drive(
            cx,
            || {
                connect_input(&params)
                    .and_then(|input| client.start(Ioctl::Connect, &input, ConnectReply::SIZE))
            },
            |done| connect_outcome(done, &params),
        )
    }
}

impl Drop for ConnectFuture<'_> {
    fn drop(&mut self) {
        if let Some(done) = self.state.cancel() {
            // It completed with a connection anyway — made just before the cancel, or failed
            // (then it waits for its CLOSE): nobody holds it; close it.
            let id = match connect_outcome(&done, &self.params) {
                Ok(established) => Some(established.id),
                Err(Error::ConnectFailed { connection_id, .. }) => Some(connection_id),
                Err(_) => None,
            };
            if let Some(id) = id {
                let _ = self.client.close_connection(id);
            }
        }
    }
}

/// A graceful DISCONNECT, as a future ([`Client::disconnect_async`]).
pub struct DisconnectFuture<'c> {
    client: &'c Client,
    connection: ConnectionId,
    state: State,
}

impl core::fmt::Debug for DisconnectFuture<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DisconnectFuture")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl Future for DisconnectFuture<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (client, connection) = (this.client, this.connection);
        this.state.drive(
            cx,
            || {
                let request = DisconnectRequest {
                    connection_id: connection.raw(),
                    abortive: false,
                };
                encode("disconnect", &request)
                    .and_then(|input| client.start(Ioctl::Disconnect, &input, 0))
            },
            |done| {
                if done.status.is_success() {
                    Ok(())
                } else {
                    Err(Error::from_status("disconnect", done.status))
                }
            },
        )
    }
}

impl Drop for DisconnectFuture<'_> {
    fn drop(&mut self) {
        // NdkDisconnect goes on; its outcome reaches the Local event.
        let _ = self.state.cancel();
    }
}

/// The new events of every connection of a handle, as a [`Stream`] ([`Client::event_stream`]).
/// Copies of terminal events already delivered (which only a WAIT filtered on a connection
/// gets) never appear. The stream ends after an error, which it yields once (a closed handle:
/// `STATUS_CANCELLED`).
pub struct EventStream<'c> {
    client: &'c Client,
    wait: Option<WaitFuture<'c>>,
    queued: VecDeque<Event>,
    done: bool,
}

impl core::fmt::Debug for EventStream<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventStream")
            .field("queued", &self.queued.len())
            .finish_non_exhaustive()
    }
}

impl Stream for EventStream<'_> {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(e) = this.queued.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let client = this.client;
            let wait = this
                .wait
                .get_or_insert_with(|| client.wait_async(WaitOn::Any, 64));
            match Pin::new(wait).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.wait = None;
                    match result {
                        Ok(events) => this
                            .queued
                            .extend(events.into_iter().filter(|e| !e.already_delivered)),
                        Err(e) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
            }
        }
    }
}

impl<'c> EventStream<'c> {
    /// The next event, as a future (for a caller without a `Stream` combinator library).
    pub fn next_event(&mut self) -> NextEvent<'_, 'c> {
        NextEvent(self)
    }
}

/// [`EventStream::next_event`]'s future.
#[derive(Debug)]
pub struct NextEvent<'s, 'c>(&'s mut EventStream<'c>);

impl Future for NextEvent<'_, '_> {
    type Output = Option<Result<Event, Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut *self.get_mut().0).poll_next(cx)
    }
}

impl Client {
    /// WAIT, as a future: up to `max_events` events (at least 1) of `on`, when they come.
    /// Dropped before then, its request is cancelled and any events it had taken are kept for
    /// the next WAIT (see the [module](self)).
    pub fn wait_async(&self, on: WaitOn, max_events: usize) -> WaitFuture<'_> {
        WaitFuture {
            client: self,
            on,
            room: max_events.clamp(1, 4096),
            state: State::Start,
        }
    }

    /// CONNECT, as a future. Dropped before it completes, the attempt is cancelled (a
    /// connection made just before that is closed).
    pub fn connect_async(&self, params: &ConnectParams) -> ConnectFuture<'_> {
        ConnectFuture {
            client: self,
            params: *params,
            state: State::Start,
        }
    }

    /// A graceful DISCONNECT, as a future: it completes when the peer answers (see
    /// [`crate::DisconnectMode::Graceful`]).
    pub fn disconnect_async(&self, connection: ConnectionId) -> DisconnectFuture<'_> {
        DisconnectFuture {
            client: self,
            connection,
            state: State::Start,
        }
    }

    /// Every new event of the handle, as a stream (one WAIT at a time, on any connection).
    pub fn event_stream(&self) -> EventStream<'_> {
        EventStream {
            client: self,
            wait: None,
            queued: VecDeque::new(),
            done: false,
        }
    }
}
