//! What a policy author meets: every problem in the files reported at once
//! (by `validate`, by `serve` at start, and by the reload log), and warnings
//! for what is valid but probably not meant (a route scope no right gives).

use std::path::Path;

use crate::cli::{output, tilgang};
use crate::util::*;

/// One empty file, one missing `;`, one duplicated `@id` and three schema
/// errors, written into `policies`.
fn break_policies(policies: &Path) {
    std::fs::write(policies.join("empty.cedar"), "").unwrap();
    std::fs::write(
        policies.join("semicolon.cedar"),
        "@id(\"no-semicolon\")\npermit (principal, action, resource)\n",
    )
    .unwrap();
    let schema_errors = r#"
@id("delegated-scope")
permit (principal, action == Tilgang::Action::"callApi", resource);

@id("schema-one")
permit (principal, action == Tilgang::Action::"callApi", resource)
when { context.nosuch == 1 };

@id("schema-two")
permit (principal is Tilgang::Nosuch, action == Tilgang::Action::"callApi", resource);

@id("schema-three")
permit (principal, action == Tilgang::Action::"callApi", resource)
when { principal.frobnicate };
"#;
    std::fs::write(policies.join("mistakes.cedar"), schema_errors).unwrap();
}

/// The problems `text` must name, each by its file.
fn assert_every_problem(text: &str) {
    for (file, says) in [
        ("empty.cedar", "empty"),
        ("semicolon.cedar", ""),
        ("mistakes.cedar", "delegated-scope"),
        ("mistakes.cedar", "nosuch"),
        ("mistakes.cedar", "Nosuch"),
        ("mistakes.cedar", "frobnicate"),
    ] {
        assert!(
            text.lines().any(|l| l.contains(file) && l.contains(says)),
            "no problem at {file} saying `{says}` in:\n{text}"
        );
    }
}

#[test]
fn validate_and_serve_report_every_problem_not_only_the_empty_file() {
    let work = Workdir::new();
    break_policies(&work.policies());
    let (code, _, err) = output(
        tilgang()
            .arg("validate")
            .arg("--policies")
            .arg(work.policies())
            .arg("--data")
            .arg(work.data()),
    );
    assert_eq!(code, 1, "{err}");
    assert_every_problem(&err);

    let (code, _, err) = output(
        tilgang()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--metrics-listen", "off"])
            .arg("--policies")
            .arg(work.policies())
            .arg("--data")
            .arg(work.data()),
    );
    assert_eq!(code, 2, "{err}");
    assert_every_problem(&err);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reload_log_reports_every_problem_not_only_the_empty_file() {
    let s = TestServer::start().await;
    let before = s.revision();
    break_policies(&s.work.policies());
    eventually("every problem reported by the reloader", || async {
        let problems = s.sidecar.reloader.problems();
        let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
        text.contains("frobnicate") && text.contains("empty.cedar") && text.contains("semicolon")
    })
    .await;
    let text: String = s
        .sidecar
        .reloader
        .problems()
        .iter()
        .map(|p| format!("{p}\n"))
        .collect();
    assert_every_problem(&text);
    assert_eq!(s.revision(), before, "the last good policies stay");
    s.stop().await;
}

/// A route whose scope no right gives is valid (an owner acting for itself
/// may use it) but denies every supplier: `validate` says so, and so does a
/// right whose scope no route needs. Exit 0: warnings do not fail.
#[test]
fn validate_warns_about_scopes_between_rights_and_routes() {
    let work = Workdir::new();
    let routes = work.policies().join("routes.json");
    let text = std::fs::read_to_string(&routes).unwrap();
    let mut table: serde_json::Value = serde_json::from_str(&text).unwrap();
    table["routes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "method": "POST",
            "path": "/storage/api/v1/events/subscriptions",
            "scope": "altinn:serviceowner/events.subscribe",
            "source": "typo test"
        }));
    // No route needs instances.write any more.
    for r in table["routes"].as_array_mut().unwrap() {
        if r["scope"] == WRITE {
            r["scope"] = READ.into();
        }
    }
    std::fs::write(&routes, table.to_string()).unwrap();
    let (code, out, err) = output(
        tilgang()
            .arg("validate")
            .arg("--policies")
            .arg(work.policies())
            .arg("--data")
            .arg(work.data()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let warned = |file: &str, says: &str| {
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains(file) && l.contains(says))
    };
    assert!(
        warned("routes.json", "altinn:serviceowner/events.subscribe"),
        "{err}"
    );
    assert!(
        warned("routes.json", "POST /storage/api/v1/events/subscriptions"),
        "{err}"
    );
    assert!(warned("rights.json", WRITE), "{err}");
    assert!(err.contains("2 warning(s)"), "{err}");

    // The shipped files have nothing to warn about.
    let (code, _, err) = output(tilgang().arg("validate").arg("--data").arg(work.data()));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}
