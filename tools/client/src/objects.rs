//! Owned listeners and connections, and an event iterator.
//!
//! [`Listener`] and [`Connection`] close their driver object when dropped (the driver's answer
//! is then ignored: a drop cannot fail) or explicitly with `close`, which reports it. Both
//! borrow the [`Client`] whose handle owns the object, so they cannot outlive it. `into_id`
//! gives up ownership: the object stays open until closed by id or until the handle closes.
//!
//! [`Events`] iterates over the events of one connection (it ends after the connection's
//! `Closed` event) or of the whole handle (it ends only on an error, such as a quiet period
//! longer than its timeout).

use core::iter::FusedIterator;
use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::{
    Client, ConnectParams, ConnectionId, ConnectionInfo, DisconnectMode, Error, Event, EventKind,
    ListenerId, PendingDisconnect, PostKind, Timeout, WaitOn,
};

/// A listener, closed when dropped ([`Client::open_listener`]).
#[derive(Debug)]
pub struct Listener<'c> {
    client: &'c Client,
    id: ListenerId,
    bound: SocketAddr,
    open: bool,
}

impl Listener<'_> {
    /// Its id.
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// The address it listens on (the port the driver chose, if 0 was asked).
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }

    /// CLOSE it: it stops accepting.
    ///
    /// # Errors
    /// The driver's answer.
    pub fn close(mut self) -> Result<(), Error> {
        self.open = false;
        self.client.close_listener(self.id)
    }

    /// Keep it open past this object; its id (the handle's close closes it at the latest).
    pub fn into_id(mut self) -> ListenerId {
        self.open = false;
        self.id
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.client.close_listener(self.id);
        }
    }
}

/// A connection, closed when dropped ([`Client::open_connection`],
/// [`Client::adopt_connection`]). Closing a connection that is still up resets it (the peer
/// sees an abortive disconnect); disconnect first for a graceful end.
#[derive(Debug)]
pub struct Connection<'c> {
    client: &'c Client,
    id: ConnectionId,
    open: bool,
}

impl<'c> Connection<'c> {
    /// Its id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// QUERY it.
    ///
    /// # Errors
    /// As [`Client::query`].
    pub fn query(&self) -> Result<ConnectionInfo, Error> {
        self.client.query(self.id)
    }

    /// POST `count` receives or sends of `length` bytes each.
    ///
    /// # Errors
    /// As [`Client::post`].
    pub fn post(&self, kind: PostKind, count: u32, length: u32) -> Result<(), Error> {
        self.client.post(self.id, kind, count, length)
    }

    /// DISCONNECT, waiting for the outcome ([`Client::disconnect`]).
    ///
    /// # Errors
    /// As [`Client::disconnect`].
    pub fn disconnect(&self, mode: DisconnectMode) -> Result<(), Error> {
        self.client.disconnect(self.id, mode)
    }

    /// Start a graceful DISCONNECT ([`Client::start_disconnect`]); finish it with
    /// [`Client::finish_disconnect`].
    ///
    /// # Errors
    /// As [`Client::start_disconnect`].
    pub fn start_disconnect(&self) -> Result<PendingDisconnect, Error> {
        self.client.start_disconnect(self.id)
    }

    /// FLUSH its posted work ([`Client::flush`]).
    ///
    /// # Errors
    /// As [`Client::flush`].
    pub fn flush(&self) -> Result<(), Error> {
        self.client.flush(self.id)
    }

    /// ABORT it ([`Client::abort`]).
    ///
    /// # Errors
    /// As [`Client::abort`].
    pub fn abort(&self) -> Result<(), Error> {
        self.client.abort(self.id)
    }

    /// Its new events, each waited for at most `timeout`; the iterator ends after `Closed`.
    pub fn events(&self, timeout: Timeout) -> Events<'c> {
        self.client.events(WaitOn::Connection(self.id), timeout)
    }

    /// CLOSE it: release its NDK objects (a `Closed` event follows).
    ///
    /// # Errors
    /// The driver's answer.
    pub fn close(mut self) -> Result<(), Error> {
        self.open = false;
        self.client.close_connection(self.id)
    }

    /// Keep it open past this object; its id (the handle's close closes it at the latest).
    pub fn into_id(mut self) -> ConnectionId {
        self.open = false;
        self.id
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.client.close_connection(self.id);
        }
    }
}

/// New events, one at a time ([`Client::events`], [`Connection::events`]): `Ok` for each
/// event, then `None` after a connection's `Closed`; an error (a quiet period longer than the
/// timeout is [`Error::Timeout`]) is returned once and ends the iteration. Copies of a terminal
/// event already delivered are skipped.
#[derive(Debug)]
pub struct Events<'c> {
    client: &'c Client,
    on: WaitOn,
    timeout: Timeout,
    queued: VecDeque<Event>,
    done: bool,
}

impl Iterator for Events<'_> {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                if matches!(self.on, WaitOn::Connection(_)) && e.kind == EventKind::Closed {
                    // Nothing follows a connection's Closed.
                    self.queued.clear();
                    self.done = true;
                }
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            match self.client.wait_new(self.on, 64, self.timeout) {
                Ok(events) => self.queued.extend(events),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl FusedIterator for Events<'_> {}

impl Client {
    /// LISTEN, as an owned [`Listener`].
    ///
    /// # Errors
    /// As [`Client::listen`].
    pub fn open_listener(
        &self,
        if_index: u32,
        local: SocketAddr,
        backlog: u32,
    ) -> Result<Listener<'_>, Error> {
        let reply = self.listen(if_index, local, backlog)?;
        Ok(Listener {
            client: self,
            id: ListenerId::from_raw(reply.listener_id),
            bound: reply.bound,
            open: true,
        })
    }

    /// CONNECT, as an owned [`Connection`]. A connection that could not be made is closed
    /// before the error is returned (the error still names it).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn open_connection(
        &self,
        params: &ConnectParams,
        timeout: Timeout,
    ) -> Result<Connection<'_>, Error> {
        match self.connect(params, timeout) {
            Ok(c) => Ok(self.adopt_connection(c.id)),
            Err(e) => {
                if let Error::ConnectFailed { connection_id, .. } = &e {
                    let _ = self.close_connection(*connection_id);
                }
                Err(e)
            }
        }
    }

    /// Own connection `id` of this handle (one an `Accepted` event announced): it is closed
    /// when the returned [`Connection`] is dropped.
    pub fn adopt_connection(&self, id: ConnectionId) -> Connection<'_> {
        Connection {
            client: self,
            id,
            open: true,
        }
    }

    /// The new events of `on`, each waited for at most `timeout` ([`Events`]).
    pub fn events(&self, on: WaitOn, timeout: Timeout) -> Events<'_> {
        Events {
            client: self,
            on,
            timeout,
            queued: VecDeque::new(),
            done: false,
        }
    }
}
