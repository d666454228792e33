//! Every answer `Check` gives is a decision-log line with its reason and the
//! request ids a gateway's access log shows, decisions and refusals before a
//! decision alike; what came from outside (path, ids) is escaped and cut.

use std::path::Path;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use serde_json::Value;
use tilgang::telemetry::decision_log::Target;

use crate::ext_authz::{INSTANCE, check, client, payload};
use crate::util::*;

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn http(req: &mut CheckRequest) -> &mut HttpRequest {
    req.attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap()
}

/// `req` with Envoy's `x-request-id` (and a `traceparent`).
fn with_ids(mut req: CheckRequest, id: &str) -> CheckRequest {
    let headers = &mut http(&mut req).headers;
    headers.insert("x-request-id".into(), id.into());
    headers.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn every_check_answer_is_a_line_with_its_reason_and_request_id() {
    let work = Workdir::new();
    let log = work.dir.path().join("decisions.jsonl");
    let target = log.clone();
    let s = TestServer::start_in(work, |c| c.decision_log = Some(Target::File(target))).await;
    let mut c = client(&s).await;
    let read_only = || Some(payload(Some(READ_SUPPLIER), OWNER, &[READ, WRITE]));
    let hostile =
        "/storage/api/v1/\u{1b}[31mforged\r\n{\"result\":\"allow\"}\u{0}\u{2028}\u{202e}x";
    let mut unreadable = payload(Some(READ_SUPPLIER), OWNER, &[READ]);
    unreadable["consumer"] = Value::String("not an organisation".into());
    let cases: Vec<(&str, CheckRequest, u16, &str)> = vec![
        (
            "id-allow",
            check("GET", INSTANCE, read_only()),
            200,
            "allow",
        ),
        (
            "id-deny",
            check("DELETE", INSTANCE, read_only()),
            403,
            "deny",
        ),
        // No `jwt_authn` metadata and no --jwks: a 401 without a decision.
        ("id-401", check("GET", INSTANCE, None), 401, "invalid"),
        (
            "id-unmapped",
            check("GET", "/not/mapped", read_only()),
            403,
            "invalid",
        ),
        (
            "id-claims",
            check("GET", INSTANCE, Some(unreadable)),
            403,
            "invalid",
        ),
        (
            "id-hostile",
            check("GET", hostile, read_only()),
            403,
            "invalid",
        ),
    ];
    let mut expected = Vec::new();
    for (id, req, status, result) in cases {
        c.check(with_ids(req, id)).await.unwrap();
        expected.push((id, status, result));
    }
    // A request id as hostile as the path, and none at all.
    let mut req = check("GET", INSTANCE, read_only());
    http(&mut req)
        .headers
        .insert("x-request-id".into(), "a\nb\u{2029}".into());
    c.check(req).await.unwrap();
    c.check(check("GET", INSTANCE, read_only())).await.unwrap();
    let work = s.stop().await;

    let raw = std::fs::read_to_string(&log).unwrap();
    for bad in ['\u{1b}', '\r', '\u{0}', '\u{2028}', '\u{2029}', '\u{202e}'] {
        assert!(!raw.contains(bad), "a raw {bad:?} reached the log: {raw}");
    }
    let lines = log_lines(&log);
    assert_eq!(lines.len(), expected.len() + 2, "{lines:#?}");
    for (l, (id, status, result)) in lines.iter().zip(&expected) {
        assert_eq!(l["api"], "check", "{l}");
        assert_eq!(l["request_id"], *id, "{l}");
        assert_eq!(
            l["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "{l}"
        );
        assert_eq!(l["status"], *status, "{l}");
        assert_eq!(l["result"], *result, "{l}");
        let method = if *id == "id-deny" { "DELETE" } else { "GET" };
        assert_eq!(l["method"], method, "{l}");
        assert!(l["path"].is_string(), "{l}");
        if *status == 200 {
            assert!(l.get("reason").is_none(), "{l}");
        } else {
            assert!(!l["reason"].as_str().unwrap().is_empty(), "{l}");
        }
    }
    let by_id = |id: &str| lines.iter().find(|l| l["request_id"] == id).unwrap();
    assert!(
        by_id("id-401")["reason"]
            .as_str()
            .unwrap()
            .contains("jwt_payload")
    );
    assert_eq!(by_id("id-401").get("owner"), None);
    let unmapped = by_id("id-unmapped");
    assert!(
        unmapped["reason"].as_str().unwrap().contains("no route"),
        "{unmapped}"
    );
    assert_eq!(unmapped["owner"], OWNER, "what was read is shown");
    assert_eq!(unmapped["supplier"], READ_SUPPLIER);
    assert!(
        by_id("id-claims")["reason"]
            .as_str()
            .unwrap()
            .contains("claims")
    );
    let path = by_id("id-hostile")["path"].as_str().unwrap();
    assert!(
        path.contains("\\u{1b}") && path.contains("\\r\\n"),
        "{path}"
    );
    assert!(
        path.contains("\\u{2028}") && path.contains("\\u{202e}"),
        "{path}"
    );
    assert_eq!(
        by_id("id-deny")["route"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("DELETE")
    );
    assert_eq!(lines[expected.len()]["request_id"], "a\\nb\\u{2029}");
    assert!(lines[expected.len() + 1].get("request_id").is_none());
    drop(work);
}

/// A long path is cut in the log, at a character boundary, with `…`.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_path_is_cut_in_the_log() {
    let work = Workdir::new();
    let log = work.dir.path().join("decisions.jsonl");
    let target = log.clone();
    let s = TestServer::start_in(work, |c| c.decision_log = Some(Target::File(target))).await;
    let mut c = client(&s).await;
    let long = format!("/{}", "æ".repeat(10_000));
    c.check(check("GET", &long, Some(payload(None, OWNER, &[READ]))))
        .await
        .unwrap();
    let work = s.stop().await;
    let lines = log_lines(&log);
    let path = lines[0]["path"].as_str().unwrap();
    assert_eq!(path.chars().count(), 257, "{path}");
    assert!(path.ends_with('…'));
    drop(work);
}
