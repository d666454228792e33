//! Nothing from outside reaches the process's log raw: a hostile request
//! path logged at `debug`, and a policy file whose name holds control
//! characters named in a reload error, in the text and the JSON format.

use std::path::Path;
use std::time::Duration;

use crate::ext_authz::{check, payload};
use crate::util::*;

/// What may not appear raw in a log: terminal escapes, line breaks inside a
/// line, NUL, line/paragraph separators, a bidi override.
const FORBIDDEN: [char; 7] = [
    '\u{1b}', '\r', '\u{0}', '\u{2028}', '\u{2029}', '\u{202e}', '\u{7}',
];

async fn wait_for(log: &Path, what: &str, says: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..400 {
        text = std::fs::read_to_string(log).unwrap_or_default();
        if says(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {what} in the log:\n{text}");
}

async fn hostile_run(format: &str) {
    let work = Workdir::new();
    let log = work.dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tilgang"))
        .arg("serve")
        .arg("--policies")
        .arg(work.policies())
        .arg("--data")
        .arg(work.data())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "off", "--web-listen", "off"])
        .env("RUST_LOG", "debug")
        .env("TILGANG_LOG_FORMAT", format)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = wait_for(&log, "serving line", |t| t.contains("gateway_addr")).await;
    let line = started
        .lines()
        .find(|l| l.contains("gateway_addr"))
        .unwrap();
    let addr: String = line
        .split("gateway_addr")
        .nth(1)
        .unwrap()
        .trim_start_matches(['=', '"', ':'])
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();

    let forged = "/storage/api/v1/x\r\n2026-01-01T00:00:00Z  INFO forged\u{1b}[2J\u{7}\u{0}\u{2028}\u{2029}\u{202e}gnp.exe";
    let mut c = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{addr}"),
    )
    .await
    .unwrap();
    c.check(check(
        "GET",
        forged,
        Some(payload(Some(FULL_SUPPLIER), OWNER, &[READ])),
    ))
    .await
    .unwrap();
    // A broken policy file whose name is hostile too.
    let name = "evil\u{1b}[31m\r\nINFO forged\u{202e}.cedar";
    std::fs::write(
        work.policies().join(name),
        "permit (principal, action, resource)",
    )
    .unwrap();
    let text = wait_for(&log, "rejected change naming the file", |t| {
        t.contains("evil") && t.contains("rejected") && t.contains("forged")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    for bad in FORBIDDEN {
        assert!(
            !text.contains(bad),
            "{format}: raw {bad:?} in the log:\n{text}"
        );
    }
    for l in text.lines() {
        assert!(
            !l.contains("INFO forged") || l.contains("evil") || l.contains("storage"),
            "{format}: a forged line: {l}"
        );
        if format == "json" {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        }
    }
    assert!(
        text.contains("\\u001b"),
        "{format}: the escape is shown escaped:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths_and_file_names_are_escaped_in_text_logs() {
    hostile_run("text").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths_and_file_names_are_escaped_in_json_logs() {
    hostile_run("json").await;
}
