//! What operators see: the metrics endpoint (parsed as Prometheus text, each
//! series counted exactly), the decision log (one JSON line per decision,
//! drained on shutdown, drops counted under a flood), the metrics listener
//! under slow clients, `TILGANG_*` variables for every flag, log settings that
//! do not parse, and reflection `v1alpha`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tilgang::proto::{BatchIsAuthorizedRequest, DelegateRequest, RevokeRequest, UndoRevokeRequest};
use tilgang::telemetry::decision_log::Target;
use tilgang::telemetry::metrics::Dropped;
use tonic::Code;

use crate::util::*;

/// A parsed exposition: every sample by its series (`name{labels}` as
/// written), and each family's `TYPE`.
struct Scraped {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scraped {
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut helps = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.trim().is_empty(), "{line}");
                helps.push(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap();
                assert_eq!(
                    helps.last().map(String::as_str),
                    Some(name),
                    "HELP before TYPE"
                );
                types.insert(name.to_string(), ty.to_string());
            } else if line.starts_with('#') {
                continue;
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                assert!(
                    samples.insert(series.to_string(), value).is_none(),
                    "twice: {series}"
                );
            }
        }
        // Every sample belongs to a family with a TYPE.
        for series in samples.keys() {
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "no TYPE for {series}");
        }
        Self {
            samples,
            types,
            text: text.to_string(),
        }
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.text))
    }
}

async fn scrape(addr: &str) -> Scraped {
    let (status, headers, body) = http_get(addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200, "{body}");
    let ct = headers.iter().find(|(k, _)| k == "content-type").unwrap();
    assert_eq!(ct.1, "text/plain; version=0.0.4; charset=utf-8");
    Scraped::parse(&body)
}

fn decisions(api: &str, result: &str) -> String {
    format!("tilgang_decisions_total{{api=\"{api}\",result=\"{result}\"}}")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_each_decision_exactly() {
    let s = TestServer::start().await;
    let addr = s.sidecar.metrics_addr.unwrap().to_string();
    let before = scrape(&addr).await;
    for (name, ty) in [
        ("tilgang_decisions_total", "counter"),
        ("tilgang_decision_duration_seconds", "histogram"),
        ("tilgang_reloads_total", "counter"),
        ("tilgang_admin_writes_total", "counter"),
        ("tilgang_admin_refusals_total", "counter"),
        ("tilgang_decision_log_dropped_total", "counter"),
        ("tilgang_snapshot_info", "gauge"),
        ("tilgang_snapshot_age_seconds", "gauge"),
        ("tilgang_snapshot_owners", "gauge"),
        ("tilgang_snapshot_delegations", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_start_time_seconds", "gauge"),
        ("process_max_fds", "gauge"),
        ("tilgang_build_info", "gauge"),
    ] {
        assert_eq!(
            before.types.get(name).map(String::as_str),
            Some(ty),
            "{name}"
        );
    }
    let mut c = s.gateway().await;
    for _ in 0..3 {
        assert!(
            c.is_authorized(req(FULL_SUPPLIER, OWNER, READ))
                .await
                .unwrap()
                .into_inner()
                .allowed
        );
    }
    for _ in 0..2 {
        assert!(
            !c.is_authorized(req(NEW_SUPPLIER, OWNER, READ))
                .await
                .unwrap()
                .into_inner()
                .allowed
        );
    }
    let batch = vec![
        req(FULL_SUPPLIER, OWNER, READ),
        req(FULL_SUPPLIER, OWNER, WRITE),
        req(NEW_SUPPLIER, OWNER, WRITE),
        req(READ_SUPPLIER, OWNER, READ),
    ];
    let r = c
        .batch_is_authorized(BatchIsAuthorizedRequest {
            requests: batch.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.responses.iter().filter(|x| x.allowed).count(), 3);
    let e = c.is_authorized(req("123", OWNER, READ)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut bad = batch;
    bad[2].owner = "x".into();
    let e = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests: bad })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let after = scrape(&addr).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    assert_eq!(delta(&decisions("is_authorized", "allow")), 3.0);
    assert_eq!(delta(&decisions("is_authorized", "deny")), 2.0);
    assert_eq!(delta(&decisions("is_authorized", "error")), 0.0);
    assert_eq!(delta(&decisions("is_authorized", "invalid")), 1.0);
    assert_eq!(delta(&decisions("batch", "allow")), 3.0);
    assert_eq!(delta(&decisions("batch", "deny")), 1.0);
    assert_eq!(delta(&decisions("batch", "invalid")), 1.0);
    assert_eq!(delta(&decisions("check", "allow")), 0.0);
    let h = "tilgang_decision_duration_seconds";
    assert_eq!(delta(&format!("{h}_count{{api=\"is_authorized\"}}")), 5.0);
    assert_eq!(
        delta(&format!("{h}_bucket{{api=\"is_authorized\",le=\"+Inf\"}}")),
        5.0
    );
    assert_eq!(delta(&format!("{h}_count{{api=\"batch\"}}")), 4.0);
    assert!(delta(&format!("{h}_sum{{api=\"is_authorized\"}}")) > 0.0);

    // The snapshot, read at scrape time.
    let info = format!("tilgang_snapshot_info{{revision=\"{}\"}}", s.revision());
    assert_eq!(after.get(&info), 1.0);
    assert_eq!(after.get("tilgang_snapshot_owners"), 2.0);
    let delegations: usize = ["991825827", "983887457"]
        .iter()
        .map(|o| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(s.work.owner_file(o)).unwrap())
                    .unwrap();
            v.as_array().unwrap().len()
        })
        .sum();
    assert_eq!(
        after.get("tilgang_snapshot_delegations"),
        delegations as f64
    );
    assert!(after.get("tilgang_snapshot_age_seconds") >= 0.0);
    assert!(after.get("process_open_fds") > 0.0);
    assert!(after.get("process_cpu_seconds_total") > 0.0);
    assert!(after.get("process_cpu_seconds_total") >= before.get("process_cpu_seconds_total"));
    let build = after
        .samples
        .keys()
        .find(|k| k.starts_with("tilgang_build_info{"))
        .unwrap_or_else(|| panic!("no tilgang_build_info"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.contains("rustc=\""),
        "{build}"
    );
    assert_eq!(after.get(build), 1.0);

    // OpenMetrics for a scraper that asks for it (Prometheus does).
    let (status, headers, body) = http_get(
        &addr,
        "GET",
        "/metrics",
        &["Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/openmetrics-text"))
    );
    assert!(body.contains("# TYPE tilgang_snapshot info\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_get_metrics_is_served() {
    let s = TestServer::start().await;
    let addr = s.sidecar.metrics_addr.unwrap().to_string();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/metrics/"),
        ("GET", "/metricsx"),
        ("POST", "/metrics"),
        ("HEAD", "/metrics"),
        ("DELETE", "/metrics"),
    ] {
        let (status, _, _) = http_get(&addr, method, path, &[]).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (status, _, _) = http_get(&addr, "GET", "/metrics?name[]=x", &[]).await;
    assert_eq!(status, 200);
    s.stop().await;
}

/// Silent and half-sent requests fill the metrics listener's few
/// connections; more are closed at once, decisions go on, and the squatters
/// are cut off so scrapes work again.
#[tokio::test(flavor = "multi_thread")]
async fn slow_metrics_clients_are_bounded_and_never_hold_decisions() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = Workdir::new();
    let s = TestServer::start_in(work, |c| {
        c.metrics_limits = tilgang::server::metrics_listener::MetricsLimits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            lifetime: Duration::from_secs(2),
        };
    })
    .await;
    let addr = s.sidecar.metrics_addr.unwrap();
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Accepted in the order they connected (the backlog is FIFO): the third
    // is over the limit, closed before the header timeout could close anything.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0; 64];
    let n = tokio::time::timeout(Duration::from_millis(250), third.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let r = s.decide(FULL_SUPPLIER, OWNER, READ).await;
    assert!(r.allowed);
    let addr = addr.to_string();
    eventually("a scrape works once the squatters are cut off", || {
        let addr = addr.clone();
        async move {
            let get = try_http_get(&addr, "GET", "/metrics", &[]);
            matches!(
                tokio::time::timeout(Duration::from_millis(500), get).await,
                Ok(Ok((200, _, _)))
            )
        }
    })
    .await;
    s.stop().await;
}

/// `Check` decisions count under `api="check"` (an unreadable check as
/// `invalid`); accepted and rejected reloads count per unit.
#[tokio::test(flavor = "multi_thread")]
async fn checks_and_reloads_are_counted() {
    use crate::ext_authz::{check, client, payload};
    let s = TestServer::start().await;
    let addr = s.sidecar.metrics_addr.unwrap().to_string();
    let before = scrape(&addr).await;
    let mut c = client(&s).await;
    let instance = "/storage/api/v1/instances/50001337/3f7b9c3e-5b7e-4b63-9d5a-0c8f5c0a1b2c";
    let read = payload(Some(FULL_SUPPLIER), OWNER, &[READ]);
    c.check(check("GET", instance, Some(read.clone())))
        .await
        .unwrap();
    c.check(check("DELETE", instance, Some(read.clone())))
        .await
        .unwrap();
    c.check(check("GET", "/nowhere", Some(read))).await.unwrap();
    c.check(check("GET", instance, None)).await.unwrap();

    let policy = s.work.policies().join("metrics-test.cedar");
    save_by_rename(&policy, FORBID_WRITE);
    eventually("the forbid policy to apply", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    save_by_rename(&policy, "permit(principal, action, resource) when {");
    eventually("the broken policy to be rejected", || async {
        !s.sidecar.reloader.problems().is_empty()
    })
    .await;

    let after = scrape(&addr).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    assert_eq!(delta(&decisions("check", "allow")), 1.0);
    assert_eq!(delta(&decisions("check", "deny")), 1.0);
    assert_eq!(delta(&decisions("check", "invalid")), 2.0);
    let h = "tilgang_decision_duration_seconds";
    assert_eq!(delta(&format!("{h}_count{{api=\"check\"}}")), 2.0);
    let reloads = |unit: &str, result: &str| {
        delta(&format!(
            "tilgang_reloads_total{{unit=\"{unit}\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(reloads("policies", "accepted"), 1.0);
    assert_eq!(reloads("policies", "rejected"), 1.0);
    assert_eq!(reloads("owner", "accepted"), 0.0);
    let info = format!("tilgang_snapshot_info{{revision=\"{}\"}}", s.revision());
    assert_eq!(after.get(&info), 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_writes_and_refusals_are_counted() {
    let s = TestServer::start().await;
    let addr = s.sidecar.metrics_addr.unwrap().to_string();
    let revision_before = s.revision();
    let mut a = s.admin().await;
    let delegate = |actor: &str| DelegateRequest {
        owner: OWNER.into(),
        supplier: NEW_SUPPLIER.into(),
        rights: vec!["instances-read".into()],
        actor: actor.into(),
    };
    a.delegate(delegate(DAGL)).await.unwrap();
    let e = a.delegate(delegate(OTHER_ADMIN)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = a.delegate(delegate("")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let nobody = org_numbers(10_000_000, 1).remove(0);
    let e = a
        .revoke(RevokeRequest {
            owner: OWNER.into(),
            supplier: nobody,
            rights: vec![],
            actor: DAGL.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = a
        .undo_revoke(UndoRevokeRequest {
            undo_token: "a".repeat(32),
            actor: DAGL.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let m = scrape(&addr).await;
    let writes = |kind: &str, result: &str| {
        m.get(&format!(
            "tilgang_admin_writes_total{{kind=\"{kind}\",result=\"{result}\"}}"
        ))
    };
    let refusals = |kind: &str, reason: &str| {
        m.get(&format!(
            "tilgang_admin_refusals_total{{kind=\"{kind}\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(writes("delegate", "ok"), 1.0);
    assert_eq!(writes("delegate", "refused"), 1.0);
    assert_eq!(writes("delegate", "invalid"), 1.0);
    assert_eq!(writes("revoke", "not_found"), 1.0);
    assert_eq!(writes("undo", "refused"), 1.0);
    assert_eq!(writes("revoke", "ok"), 0.0);
    assert_eq!(refusals("delegate", "forbidden"), 1.0);
    assert_eq!(refusals("undo", "unknown_token"), 1.0);
    assert_eq!(refusals("delegate", "roles_invalid"), 0.0);
    // The write published a new snapshot, just now.
    assert_ne!(s.revision(), revision_before);
    let info = format!("tilgang_snapshot_info{{revision=\"{}\"}}", s.revision());
    assert_eq!(m.get(&info), 1.0);
    assert!(m.get("tilgang_snapshot_age_seconds") < 10.0);
    s.stop().await;
}

fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every decision, batch items one by one, each line with every field; the
/// lines are written out when the sidecar stops, with no wait before.
#[tokio::test(flavor = "multi_thread")]
async fn the_decision_log_has_a_line_per_decision() {
    let work = Workdir::new();
    let log = work.dir.path().join("decisions.jsonl");
    let target = log.clone();
    let s = TestServer::start_in(work, |c| c.decision_log = Some(Target::File(target))).await;
    let revision = s.revision();
    let mut c = s.gateway().await;
    c.is_authorized(req(FULL_SUPPLIER, OWNER, READ))
        .await
        .unwrap();
    c.is_authorized(req(&format!("0192:{NEW_SUPPLIER}"), OWNER, WRITE))
        .await
        .unwrap();
    c.batch_is_authorized(BatchIsAuthorizedRequest {
        requests: vec![
            req(READ_SUPPLIER, OWNER, READ),
            req(READ_SUPPLIER, OWNER, WRITE),
        ],
    })
    .await
    .unwrap();
    // Not a decision: not logged.
    c.is_authorized(req("1", OWNER, READ)).await.unwrap_err();
    // A `Check` logs the route's template, never the raw path; an owner
    // acting for itself has no supplier.
    {
        use crate::ext_authz::{check, client, payload};
        let instance = "/storage/api/v1/instances/50001337/3f7b9c3e-5b7e-4b63-9d5a-0c8f5c0a1b2c";
        let mut e = client(&s).await;
        e.check(check(
            "GET",
            instance,
            Some(payload(Some(FULL_SUPPLIER), OWNER, &[READ])),
        ))
        .await
        .unwrap();
        e.check(check("GET", instance, Some(payload(None, OWNER, &[READ]))))
            .await
            .unwrap();
    }
    let work = s.stop().await;

    let mut lines = log_lines(&log);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let checks = lines.split_off(4);
    let template = "GET /storage/api/v1/instances/{instanceOwnerPartyId}/{instanceGuid}";
    for l in &checks {
        assert_eq!(l["api"], "check", "{l}");
        assert_eq!(l["route"], template, "{l}");
        assert_eq!(l["scope"], READ, "{l}");
        assert_eq!(l["result"], "allow", "{l}");
    }
    assert_eq!(checks[0]["supplier"], FULL_SUPPLIER);
    assert!(checks[1].get("supplier").is_none(), "{}", checks[1]);
    let fields = [
        "time",
        "api",
        "supplier",
        "owner",
        "scope",
        "result",
        "reasons",
        "errors",
        "revision",
        "latency_us",
    ];
    for l in &lines {
        let o = l.as_object().unwrap();
        for f in fields {
            assert!(o.contains_key(f), "{f} missing: {l}");
        }
        assert!(!o.contains_key("route"), "{l}");
        let time = l["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-01-05T09:00:00.000Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        assert_eq!(l["revision"], revision.as_str());
        assert_eq!(l["owner"], OWNER);
        assert!(l["latency_us"].is_u64());
        assert!(l["reasons"].is_array() && l["errors"].is_array());
    }
    let summary: Vec<(&str, &str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["api"].as_str().unwrap(),
                l["supplier"].as_str().unwrap(),
                l["scope"].as_str().unwrap(),
                l["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("is_authorized", FULL_SUPPLIER, READ, "allow"),
            // The bare form, as everywhere tilgang shows an org number.
            ("is_authorized", NEW_SUPPLIER, WRITE, "deny"),
            ("batch", READ_SUPPLIER, READ, "allow"),
            ("batch", READ_SUPPLIER, WRITE, "deny"),
        ]
    );
    assert_eq!(lines[0]["reasons"], serde_json::json!(["delegated-scope"]));
    drop(work);
}

/// A flood with a one-line queue: no decision waits or fails; every decision
/// is either a line in the file or a counted drop, exactly.
#[tokio::test(flavor = "multi_thread")]
async fn a_decision_flood_drops_log_lines_and_counts_them() {
    let work = Workdir::new();
    let log = work.dir.path().join("decisions.jsonl");
    let target = log.clone();
    let s = TestServer::start_in(work, |c| {
        c.decision_log = Some(Target::File(target));
        c.decision_log_queue = 1;
    })
    .await;
    let metrics = s.sidecar.telemetry.metrics().clone();
    const CLIENTS: usize = 8;
    const EACH: usize = 20;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = s.gateway().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                let r = BatchIsAuthorizedRequest {
                    requests: vec![req(FULL_SUPPLIER, OWNER, READ); 10],
                };
                let r = c.batch_is_authorized(r).await.unwrap().into_inner();
                assert!(r.responses.iter().all(|x| x.allowed));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let _work = s.stop().await;
    let total = (CLIENTS * EACH * 10) as u64;
    let written = log_lines(&log).len() as u64;
    let dropped = metrics.log_drops(Dropped::QueueFull);
    assert_eq!(
        written + dropped,
        total,
        "written {written}, dropped {dropped}"
    );
    assert!(dropped > 0, "a one-line queue under a flood drops");
    assert_eq!(metrics.log_lines(), written);
}

fn tilgang_serve(work: &Workdir) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tilgang"));
    c.arg("serve")
        .env("TILGANG_POLICIES", work.policies())
        .env("TILGANG_DATA", work.data())
        .env("TILGANG_LISTEN", "127.0.0.1:0")
        .env("TILGANG_WEB_LISTEN", "127.0.0.1:0")
        .env("TILGANG_ADMIN_LISTEN", "127.0.0.1:0")
        .env("TILGANG_METRICS_LISTEN", "127.0.0.1:0");
    c
}

/// The real binary configured by variables alone; a flag on the command line
/// wins over its variable.
#[tokio::test(flavor = "multi_thread")]
async fn variables_set_the_flags() {
    let work = Workdir::new();
    let log = work.dir.path().join("from-env.jsonl");
    let mut c = tilgang_serve(&work);
    c.env("TILGANG_DECISION_LOG", &log)
        .env("TILGANG_MAX_CONNECTIONS", "7")
        .env("TILGANG_SHUTDOWN_GRACE", "1")
        // Would not bind; the flag wins.
        .env("TILGANG_ADMIN_LISTEN", "not an address")
        .args(["--admin-listen", "127.0.0.1:0"]);
    let mut server = ServerProcess::start(c);
    let startup = server.startup_log.join("\n");
    assert!(startup.contains("gateway_connections=7"), "{startup}");
    assert_ne!(server.metrics, "off");
    let mut g = tilgang::proto::authorizer_client::AuthorizerClient::connect(format!(
        "http://{}",
        server.gateway
    ))
    .await
    .unwrap();
    assert!(
        g.is_authorized(req(FULL_SUPPLIER, OWNER, READ))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    let m = scrape(&server.metrics).await;
    assert_eq!(m.get(&decisions("is_authorized", "allow")), 1.0);

    server.signal("-TERM");
    let mut child = server.child.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["supplier"], FULL_SUPPLIER);
}

#[test]
fn log_settings_that_do_not_parse_refuse_to_start() {
    let work = Workdir::new();
    for (var, value, message) in [
        (
            "RUST_LOG",
            "debgu",
            "error: `RUST_LOG` `debgu` is not a valid log filter: `debgu` is not a level",
        ),
        (
            "RUST_LOG",
            "tilgang=verbose",
            "error: `RUST_LOG` `tilgang=verbose` is not a valid log filter",
        ),
        (
            "TILGANG_LOG_FORMAT",
            "xml",
            "error: `TILGANG_LOG_FORMAT` `xml` is not a log format: use `json` or `text`",
        ),
    ] {
        let mut child = tilgang_serve(&work)
            .env_remove("RUST_LOG")
            .env_remove("TILGANG_LOG_FORMAT")
            .env(var, value)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a server that started anyway is killed, and fails below.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(message), "{var}={value}: {err}");
    }
}

/// grpcurl before 1.8.8, Postman and evans ask `grpc.reflection.v1alpha`.
#[tokio::test(flavor = "multi_thread")]
async fn reflection_v1alpha_lists_each_listeners_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let s = TestServer::start().await;
    for (addr, service, absent) in [
        (
            s.sidecar.gateway_addr,
            "tilgang.v1.Authorizer",
            "tilgang.v1.Delegations",
        ),
        (
            s.sidecar.admin_addr.unwrap(),
            "tilgang.v1.Delegations",
            "tilgang.v1.Authorizer",
        ),
    ] {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut refl = ServerReflectionClient::new(channel);
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let symbol = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(service.into())),
        };
        let mut stream = refl
            .server_reflection_info(tokio_stream::iter(vec![list, symbol]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("unexpected reflection response");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&service.to_string()), "{names:?}");
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
        assert!(!names.contains(&absent.to_string()), "{names:?}");
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
            panic!("no descriptor for {service}: {resp:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    s.stop().await;
}
