//! Floods an outsider can cause do not flood the log: refused admin calls
//! (tilgang's own lines) and HTTP/2 connections that reset their streams
//! (h2's), against the real binary, in both log formats. Each callsite writes
//! at most a burst of 200 lines and then 50 a second; what it did not write
//! is told by summary lines, and every line is accounted for: written plus
//! suppressed is what the flood caused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tilgang::proto::UndoRevokeRequest;
use tilgang::proto::delegations_client::DelegationsClient;
use tonic::Code;

use crate::util::*;
use crate::wire::*;

/// What one callsite may write in `elapsed`: the burst, 50 a second, and a
/// second's slack for the clock.
fn bound(elapsed: Duration) -> usize {
    200 + 50 * (elapsed.as_secs() as usize + 2)
}

/// The summary lines' counts by the callsite they name (`file:line`), in
/// either format.
fn suppressed(log: &[String]) -> BTreeMap<String, u64> {
    let mut by_callsite = BTreeMap::new();
    for line in log {
        let (n, at) = if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let f = &v["fields"];
            match (f["suppressed"].as_u64(), f["at"].as_str()) {
                (Some(n), Some(at)) => (n, at.to_string()),
                _ => continue,
            }
        } else {
            let field = |name: &str| {
                line.split(&format!(" {name}="))
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string)
            };
            match (field("suppressed"), field("at")) {
                (Some(n), Some(at)) if line.contains("log_gate") => (n.parse().unwrap(), at),
                _ => continue,
            }
        };
        *by_callsite.entry(at).or_insert(0) += n;
    }
    by_callsite
}

/// The lines containing `message`.
fn lines_with(log: &[String], message: &str) -> usize {
    log.iter().filter(|l| l.contains(message)).count()
}

/// The one summary count whose callsite is in `file`.
fn suppressed_in(summaries: &BTreeMap<String, u64>, file: &str) -> u64 {
    summaries
        .iter()
        .filter(|(at, _)| at.starts_with(file))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_admin_calls_writes_a_bounded_log() {
    let work = Workdir::new();
    // JSON lines; development mode (`actor` trusted, on loopback), where a
    // refusal is as easy as with a valid token that holds no role.
    let mut command = ServerProcess::command(&work, &[], &[]);
    command.env("TILGANG_LOG_FORMAT", "json");
    let mut server = ServerProcess::start(command);
    let client = DelegationsClient::connect(format!("http://{}", server.admin))
        .await
        .unwrap();
    // An undo token for OWNER, which OTHER_ADMIN may not use.
    let token = client
        .clone()
        .revoke(revoke_all(OWNER, FULL_SUPPLIER))
        .await
        .unwrap()
        .into_inner()
        .undo_token;

    // 8 clients, each 200 forbidden delegations and 100 undos of a token
    // for an owner they do not administer, as fast as they go.
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut c = client.clone();
            let token = token.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    let refused = if i % 3 == 2 {
                        c.undo_revoke(UndoRevokeRequest {
                            undo_token: token.clone(),
                            actor: OTHER_ADMIN.into(),
                        })
                        .await
                        .unwrap_err()
                    } else {
                        c.delegate(tilgang::proto::DelegateRequest {
                            owner: OWNER.into(),
                            supplier: NEW_SUPPLIER.into(),
                            rights: vec!["instances-read".into()],
                            actor: OTHER_ADMIN.into(),
                        })
                        .await
                        .unwrap_err()
                    };
                    assert!(
                        matches!(refused.code(), Code::PermissionDenied | Code::NotFound),
                        "{refused:?}"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (calls, undos) = (8 * 300, 8 * 100);
    // A positive signal while it runs: the gate dropped lines.
    let dropped = metric(&server.metrics, "tilgang_log_lines_suppressed_total")
        .await
        .unwrap();
    assert!(dropped > 0.0, "nothing suppressed in {elapsed:?}");

    // Stop, and read the whole log: the gate says at exit what it has not.
    server.signal("-TERM");
    assert!(server.exit_within(Duration::from_secs(15)).await.is_some());
    let log = server.rest_of_log(Duration::from_secs(5));
    let summaries = suppressed(&log);
    let refused = lines_with(&log, "admin call refused");
    let undo = lines_with(&log, "undo refused as an unknown token");
    assert!(
        refused <= bound(elapsed),
        "{refused} refusal lines in {elapsed:?}"
    );
    assert!(undo <= bound(elapsed), "{undo} undo lines in {elapsed:?}");
    // Every refusal is a line or counted in a summary.
    let refused_dropped = suppressed_in(&summaries, "src/telemetry/mod.rs");
    let undo_dropped = suppressed_in(&summaries, "src/store/ops.rs");
    assert_eq!(refused as u64 + refused_dropped, calls, "{summaries:?}");
    assert_eq!(undo as u64 + undo_dropped, undos, "{summaries:?}");
    // And the whole log is those, their summaries and a few more.
    assert!(
        log.len() <= refused + undo + summaries.len() * 4 + 50,
        "{} lines",
        log.len()
    );
}

/// A connection that opens 25 streams and resets them at once: over h2's
/// limit of remotely reset streams, so it is sent GOAWAY (ENHANCE_YOUR_CALM),
/// and h2 logs a warning. Whether the GOAWAY came.
async fn open_and_reset(addr: SocketAddr) -> bool {
    let mut raw = Raw::handshake(addr).await;
    let block = request_headers(IS_AUTHORIZED);
    let cancel = 0x8u32.to_be_bytes();
    let burst: Vec<u8> = (0..25u32)
        .flat_map(|i| {
            let mut f = frame(HEADERS, END_HEADERS, 2 * i + 1, &block);
            f.extend(frame(RST_STREAM, 0, 2 * i + 1, &cancel));
            f
        })
        .collect();
    if raw.send(&burst).await.is_err() {
        return false;
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(f) = raw.next_frame().await {
            if f.kind == GOAWAY {
                return f.payload.get(4..8) == Some(&0xb_u32.to_be_bytes()[..]);
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_reset_their_streams_write_a_bounded_log() {
    let work = Workdir::new();
    let mut server = ServerProcess::spawn(&work);
    let gateway: SocketAddr = server.gateway.parse().unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut calmed = 0;
                for _ in 0..150 {
                    calmed += usize::from(open_and_reset(gateway).await);
                }
                calmed
            })
        })
        .collect();
    let mut calmed = 0;
    for t in tasks {
        calmed += t.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(calmed >= 8 * 150 * 9 / 10, "only {calmed} were sent GOAWAY");
    // The gateway still answers.
    let mut c =
        tilgang::proto::authorizer_client::AuthorizerClient::connect(format!("http://{gateway}"))
            .await
            .unwrap();
    assert!(
        c.is_authorized(req(FULL_SUPPLIER, OWNER, WRITE))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );

    server.signal("-TERM");
    assert!(server.exit_within(Duration::from_secs(15)).await.is_some());
    let log = server.rest_of_log(Duration::from_secs(5));
    let summaries = suppressed(&log);
    let warned = lines_with(&log, "reached limit");
    assert!(warned <= bound(elapsed), "{warned} lines in {elapsed:?}");
    // Every connection sent GOAWAY was warned about: a line, or counted.
    let dropped: u64 = summaries
        .iter()
        .filter(|(at, _)| at.contains("h2"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        warned as u64 + dropped >= calmed as u64,
        "{warned} lines + {dropped} suppressed < {calmed}: {summaries:?}"
    );
    assert!(
        log.len() <= warned + summaries.len() * 4 + 50,
        "{} lines:\n{}",
        log.len(),
        log[..log.len().min(20)].join("\n")
    );
}
