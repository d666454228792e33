//! The baseline for `scripts/scale.sh`, `scripts/check_load.sh` and
//! `scripts/envoy_bench.sh`: a tonic server (tonic's own
//! `transport::Server`) that serves `tilgang.v1.Authorizer` and Envoy's
//! `envoy.service.auth.v3.Authorization` and decides nothing. Every
//! `IsAuthorized` is answered `allowed: true, reasons: ["delegated-scope"],
//! revision: "<16 hex>"`, and every `Check` OK with the three `x-tilgang-*`
//! headers, the shapes tilgang answers an allow with, so a load generator (or
//! Envoy) sends and receives the same bytes from both and the ratio of their
//! throughputs is what tilgang's decision path and server cost on top of
//! plain tonic.
//!
//! Run it:
//!
//! ```sh
//! cargo bench --bench noop_server -- --listen 127.0.0.1:50071
//! # or the built binary: target/release/deps/noop_server-<hash> --listen ADDR
//! ```
//!
//! `--keepalive SECONDS` turns on HTTP/2 keep-alive pings (and `SECONDS / 3`,
//! at least 1, as their timeout), as tilgang's listeners always have them
//! (`--keepalive-interval 30 --keepalive-timeout 10` by default):
//! `scripts/scale.sh` passes `--keepalive 30`, so both servers run the same
//! transport. hyper's keep-alive costs about 3 µs of CPU a call (it reads the
//! clock and takes a lock per frame); without it the no-op server is that much
//! faster, which says nothing about tilgang's decisions.
//!
//! It prints `listening on ADDR` once the port is bound and stops on SIGTERM or
//! Ctrl-C. As part of a plain `cargo bench` (which passes `--bench` and
//! nothing else) it exits 0 at once, so the other benchmarks still run.

use std::net::SocketAddr;
use std::process::ExitCode;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
};
use envoy_types::ext_authz::v3::{CheckResponseExt, OkHttpResponseBuilder};
use tilgang::proto::authorizer_server::{Authorizer, AuthorizerServer};
use tilgang::proto::{
    BatchIsAuthorizedRequest, BatchIsAuthorizedResponse, IsAuthorizedRequest, IsAuthorizedResponse,
};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const DEFAULT_LISTEN: &str = "127.0.0.1:50071";
/// A revision as tilgang prints one: 16 lowercase hex digits.
const REVISION: &str = "0123456789abcdef";

/// The answer tilgang gives an allowed request, without deciding anything.
fn allow() -> IsAuthorizedResponse {
    IsAuthorizedResponse {
        allowed: true,
        reasons: vec!["delegated-scope".to_string()],
        errors: vec![],
        revision: REVISION.to_string(),
        store_revision: 0,
    }
}

struct Noop;

#[tonic::async_trait]
impl Authorizer for Noop {
    async fn is_authorized(
        &self,
        _request: Request<IsAuthorizedRequest>,
    ) -> Result<Response<IsAuthorizedResponse>, Status> {
        Ok(Response::new(allow()))
    }

    async fn batch_is_authorized(
        &self,
        request: Request<BatchIsAuthorizedRequest>,
    ) -> Result<Response<BatchIsAuthorizedResponse>, Status> {
        let responses = request.get_ref().requests.iter().map(|_| allow()).collect();
        Ok(Response::new(BatchIsAuthorizedResponse { responses }))
    }
}

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
        let mut ok = OkHttpResponseBuilder::new();
        ok.add_header("x-tilgang-owner", "991825827", overwrite, false)
            .add_header("x-tilgang-revision", REVISION, overwrite, false)
            .add_header("x-tilgang-supplier", "810418672", overwrite, false);
        let mut response = CheckResponse::new();
        response.set_status(Status::ok("")).set_http_response(ok);
        Ok(Response::new(response))
    }
}

/// What the command line asked for: `Some(addr)` to serve, `None` to exit at
/// once (run by `cargo bench` without `--listen`).
fn parse_args() -> Result<Option<(SocketAddr, Option<u64>)>, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    let mut keepalive = None;
    let mut as_bench = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("`--listen` needs an address")?;
                listen = Some(value);
            }
            s if s.starts_with("--listen=") => listen = Some(s["--listen=".len()..].to_string()),
            "--keepalive" => {
                let value = args.next().ok_or("`--keepalive` needs seconds")?;
                let secs: u64 = value
                    .parse()
                    .map_err(|_| format!("`--keepalive {value}` is not whole seconds"))?;
                keepalive = (secs > 0).then_some(secs);
            }
            // What cargo passes to every bench target.
            "--bench" => as_bench = true,
            "-h" | "--help" => {
                println!(
                    "noop_server [--listen ADDR] [--keepalive SECONDS]  (default {DEFAULT_LISTEN}, no keep-alive); \
                     a tonic Authorizer and ext_authz Authorization that allow everything"
                );
                return Ok(None);
            }
            // `cargo bench -- FILTER` passes filters meant for other benches.
            _ if as_bench => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if listen.is_none() && as_bench {
        return Ok(None);
    }
    let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    listen
        .parse()
        .map(|addr| Some((addr, keepalive)))
        .map_err(|e| format!("`--listen {listen}` is not an address: {e}"))
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, keepalive) = match parse_args() {
        Ok(Some(found)) => found,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: binding `--listen {addr}`: {e}");
            return ExitCode::from(2);
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    // tilgang sets TCP_NODELAY on every accepted connection; so does this.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    println!("listening on {bound}");
    let keepalive = keepalive.map(std::time::Duration::from_secs);
    // tilgang's default `--max-concurrent-streams`: with a different limit
    // Envoy would open a different number of connections to each, and the
    // comparison would measure that.
    let served = Server::builder()
        .max_concurrent_streams(Some(100))
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(keepalive.map(|k| (k / 3).max(std::time::Duration::from_secs(1))))
        .add_service(AuthorizerServer::new(Noop))
        .add_service(AuthorizationServer::new(Noop))
        .serve_with_incoming_shutdown(incoming, stop_signal())
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: serving: {e}");
            ExitCode::FAILURE
        }
    }
}
