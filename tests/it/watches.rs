//! `Health/Watch` streams cannot wedge a listener: a peer holds at most its
//! share of connections, only so many watches are open at once, each ends
//! (status OK) after its lifetime, and a full listener closes a connection
//! that holds nothing but watches (or nothing) to make room for a call.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tilgang::proto::ListRightsRequest;
use tilgang::proto::authorizer_client::AuthorizerClient;
use tilgang::proto::delegations_client::DelegationsClient;
use tonic::Code;

use crate::util::*;
use crate::wire::*;

const SERVING: i32 = 1;

/// A source address of its own per attacker (any 127.x is loopback).
fn attacker(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// On `addr` (limit 8, 4 per peer, 3 watches): one peer takes its share of
/// connections and a fifth is closed at once; its watches stop at three;
/// another peer fills the listener with connections whose watches are
/// refused. What they hold, to keep it open.
async fn fill(addr: SocketAddr) -> Vec<(h2::client::SendRequest<bytes::Bytes>, Option<Watch>)> {
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push((h2_connect_from(addr, attacker(2)).await.unwrap(), None));
    }
    // Over the peer's share: closed at once.
    let mut fifth = Raw::connect_from(addr, attacker(2)).await;
    assert!(
        fifth.closed_within(Duration::from_secs(5)).await,
        "a fifth connection from one peer was kept"
    );
    let mut refused = 0;
    for (client, watch) in &mut held {
        match Watch::try_start(client, "").await {
            Ok(mut w) => {
                assert_eq!(within("a status", w.next()).await, Some(SERVING));
                *watch = Some(w);
            }
            Err(status) => {
                assert_eq!(status, Code::ResourceExhausted as i32);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 1, "three watches open, the fourth refused");
    // Another peer fills the listener; its watches are all refused.
    for _ in 0..4 {
        let mut client = h2_connect_from(addr, attacker(3)).await.unwrap();
        let status = Watch::try_start(&mut client, "").await.err();
        assert_eq!(status, Some(Code::ResourceExhausted as i32));
        held.push((client, None));
    }
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_and_idle_connections_cannot_wedge_either_listener() {
    let s = TestServer::start_in(Workdir::new(), |c| {
        let l = &mut c.limits;
        (l.max_connections, l.admin_max_connections) = (8, 8);
        (l.max_connections_per_peer, l.admin_max_connections_per_peer) = (4, 4);
        (l.max_watch_streams, l.admin_max_watch_streams) = (3, 3);
    })
    .await;
    let admin_held = fill(s.sidecar.admin_addr.unwrap()).await;
    let gateway_held = fill(s.sidecar.gateway_addr).await;

    // Both listeners are full of connections nobody calls on; a unary call
    // on a new connection is served, again and again.
    for _ in 0..3 {
        let mut admin =
            DelegationsClient::connect(format!("http://{}", s.sidecar.admin_addr.unwrap()))
                .await
                .unwrap();
        within(
            "a unary admin call",
            admin.list_rights(ListRightsRequest {}),
        )
        .await
        .unwrap();
        let mut gateway = AuthorizerClient::connect(format!("http://{}", s.sidecar.gateway_addr))
            .await
            .unwrap();
        let decided = within(
            "IsAuthorized",
            gateway.is_authorized(req(FULL_SUPPLIER, OWNER, WRITE)),
        )
        .await
        .unwrap();
        assert!(decided.into_inner().allowed);
    }
    drop((admin_held, gateway_held));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_ends_cleanly_at_its_lifetime() {
    let lifetime = Duration::from_secs(1);
    let s = TestServer::start_in(Workdir::new(), |c| c.limits.watch_lifetime = lifetime).await;
    let mut client = h2_connect(s.sidecar.admin_addr.unwrap()).await;
    let started = Instant::now();
    let mut watch = Watch::start(&mut client, "").await;
    assert_eq!(within("a status", watch.next()).await, Some(SERVING));
    assert_eq!(within("the end of the watch", watch.next()).await, None);
    assert!(
        started.elapsed() >= lifetime * 9 / 10,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(watch.status().await, Some(0), "ended with status OK");
    // The client watches again, on the same connection.
    let mut again = Watch::start(&mut client, "").await;
    assert_eq!(within("a status", again.next()).await, Some(SERVING));
    drop(again);
    s.stop().await;
}
