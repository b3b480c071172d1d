//! What the client's integration tests share: two simulated hosts, one connected pair.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ndkdisc_client::sim::{OpenAs, SimFabric, SimOptions};
use ndkdisc_client::{Client, ConnectParams, ConnectionId, EventKind, Timeout, WaitOn};

/// How long a test waits for anything.
pub const LIMIT: Timeout = Timeout::After(Duration::from_secs(10));
/// Host A's address (interface 1).
pub const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
/// Host B's address (interface 2).
pub const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

/// A connected pair: the fabric, each end's client, each end's connection id.
pub struct Pair {
    pub fabric: Arc<SimFabric>,
    pub a: Client,
    pub b: Client,
    pub ca: ConnectionId,
    pub cb: ConnectionId,
}

/// CONNECT from A to B's `port`.
pub fn params(port: u16) -> ConnectParams {
    ConnectParams {
        if_index: 1,
        remote: SocketAddr::new(B, port),
        local: None,
        receive_depth: 0,
        send_depth: 0,
    }
}

/// Two hosts on a fabric with `options`, B listening on `port`, A connected to it, both
/// establishment events read.
pub fn pair_on(options: SimOptions, port: u16) -> Pair {
    let fabric = SimFabric::new(options);
    let open = |name, if_index, ip| {
        fabric
            .add_host(name, if_index, ip)
            .unwrap()
            .open(OpenAs::default())
            .unwrap()
    };
    let a = open("a", 1, A);
    let b = open("b", 2, B);
    b.listen(2, SocketAddr::new(B, port), 0).unwrap();
    let c = a.connect(&params(port), LIMIT).unwrap();
    let accepted = b.wait(WaitOn::Any, 4, LIMIT).unwrap()[0];
    assert_eq!(accepted.kind, EventKind::Accepted);
    let connected = a.wait(WaitOn::Connection(c.id), 4, LIMIT).unwrap()[0];
    assert_eq!(connected.kind, EventKind::Connected);
    assert_eq!(ConnectionId::of(&connected), c.id);
    Pair {
        fabric,
        a,
        b,
        ca: c.id,
        cb: ConnectionId::of(&accepted),
    }
}
