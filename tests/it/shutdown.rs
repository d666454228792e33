//! Shutdown while clients hold streams: health goes `NOT_SERVING` at once
//! (overall and per service, on both listeners), a call in flight finishes,
//! and what remains is closed after the grace period, so the process exits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tilgang::proto::IsAuthorizedResponse;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::util::*;
use crate::wire::*;

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

/// An `IsAuthorized` call whose request message is half sent.
struct HalfSent {
    response: h2::client::ResponseFuture,
    body: h2::SendStream<Bytes>,
    rest: Vec<u8>,
}

impl HalfSent {
    /// Start the call, and return once the server has seen it: a complete
    /// call opened after it on the same connection has been answered.
    async fn start(client: &mut h2::client::SendRequest<Bytes>) -> Self {
        let (response, mut body) = start_call(client, IS_AUTHORIZED).await;
        let mut message = grpc_message(&req(FULL_SUPPLIER, OWNER, WRITE));
        let rest = message.split_off(message.len() / 2);
        body.send_data(Bytes::from(message), false).unwrap();
        assert!(within("a call after it", decide_on(client)).await.allowed);
        Self {
            response,
            body,
            rest,
        }
    }

    /// Send the rest and read the answer.
    async fn finish(mut self) -> IsAuthorizedResponse {
        self.body.send_data(Bytes::from(self.rest), true).unwrap();
        let a = within("the call in flight", answer(self.response)).await;
        assert_eq!(a.status, 0, "{}", a.message);
        prost::Message::decode(a.messages[0].clone()).unwrap()
    }
}

async fn not_serving(watch: &mut Watch, what: &str) {
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no status within 5 s"));
    assert_eq!(next, Some(NOT_SERVING), "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_reports_not_serving_finishes_calls_and_exits_within_the_grace() {
    let work = Workdir::new();
    let mut server = ServerProcess::spawn_with(&work, &[], &["--shutdown-grace", "1"]);
    let gateway = server.gateway.parse().unwrap();
    let mut client = h2_connect(gateway).await;
    let mut overall = within("a watch", Watch::start(&mut client, "")).await;
    let mut service = within(
        "a watch",
        Watch::start(&mut client, "tilgang.v1.Authorizer"),
    )
    .await;
    assert_eq!(within("a status", overall.next()).await, Some(SERVING));
    assert_eq!(within("a status", service.next()).await, Some(SERVING));
    let call = HalfSent::start(&mut client).await;

    server.signal("-TERM");
    let stopping = Instant::now();
    not_serving(&mut overall, "overall health").await;
    not_serving(&mut service, "Authorizer health").await;
    // The call started before the signal finishes.
    assert!(call.finish().await.allowed);
    // A new `Check` of the overall health says NOT_SERVING, or finds the
    // listener closed.
    if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{gateway}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        && let Ok(r) = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
    {
        assert_eq!(r.into_inner().status, NOT_SERVING);
    }

    // The watches are still held; the grace period (1 s) ends them.
    let mut child = server.child.take().unwrap();
    let exited = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    let took = stopping.elapsed();
    let status = exited.expect("exit within 10 s of SIGTERM while watches are held");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    drop((overall, service));
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_shutdown_honours_the_grace_on_both_listeners() {
    let grace = Duration::from_millis(500);
    let s = TestServer::start_in(Workdir::new(), |c| c.limits.shutdown_grace = grace).await;
    let mut gateway = h2_connect(s.sidecar.gateway_addr).await;
    let mut admin = h2_connect(s.sidecar.admin_addr.unwrap()).await;
    let mut watches = vec![
        ("gateway overall", Watch::start(&mut gateway, "").await),
        (
            "gateway Authorizer",
            Watch::start(&mut gateway, "tilgang.v1.Authorizer").await,
        ),
        ("admin overall", Watch::start(&mut admin, "").await),
        (
            "admin Delegations",
            Watch::start(&mut admin, "tilgang.v1.Delegations").await,
        ),
    ];
    for (what, w) in &mut watches {
        assert_eq!(within(what, w.next()).await, Some(SERVING), "{what}");
    }
    let call = HalfSent::start(&mut gateway).await;

    let started = Instant::now();
    let stopping = tokio::spawn(s.stop());
    for (what, w) in &mut watches {
        not_serving(w, what).await;
    }
    assert!(call.finish().await.allowed);
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown within the grace and a margin")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= grace, "the watches held it for the grace: {took:?}");
    // The watches were closed by the server.
    for (what, w) in &mut watches {
        let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        assert_eq!(end, Ok(None), "{what}");
    }
}

/// `--decision-log -` with a stdout nobody reads: once the pipe is full the
/// log's writer is stuck in a write. SIGTERM still ends the process, within
/// a bound, saying how many decision-log lines it could not write.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_while_nobody_reads_the_decision_log() {
    let work = Workdir::new();
    let mut command = ServerProcess::command(
        &work,
        &[],
        &["--decision-log", "-", "--decision-log-queue", "64"],
    );
    // A pipe whose reading end the child holds open and nobody reads.
    command.stdout(std::process::Stdio::piped());
    let mut server = ServerProcess::start(command);
    let gateway = server.gateway.clone();
    let metrics = server.metrics.clone();
    let c =
        tilgang::proto::authorizer_client::AuthorizerClient::connect(format!("http://{gateway}"))
            .await
            .unwrap();
    // Decisions until the writer is stuck: the pipe (64 KiB) and the queue
    // (64 lines) are full, and lines are dropped.
    let queue_full = "tilgang_decision_log_dropped_total{reason=\"queue_full\"}";
    eventually("the decision log's pipe and queue to fill", || {
        let mut c = c.clone();
        let metrics = &metrics;
        async move {
            for _ in 0..200 {
                c.is_authorized(req(FULL_SUPPLIER, OWNER, WRITE))
                    .await
                    .unwrap();
            }
            metric(metrics, queue_full).await.unwrap_or(0.0) > 0.0
        }
    })
    .await;

    server.signal("-TERM");
    let status = server
        .exit_within(Duration::from_secs(15))
        .await
        .expect("exit within 15 s of SIGTERM with stdout full");
    assert!(status.success(), "{status:?}");
    let log = server.rest_of_log(Duration::from_secs(5)).join("\n");
    assert!(
        log.contains("the decision log was not written out in time"),
        "{log}"
    );
}
