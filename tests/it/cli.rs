//! The real `tilgang` binary: offline subcommands, `serve` with signals, and the
//! admin client subcommands against a running server.

use std::process::Command;

use crate::util::*;

fn tilgang() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tilgang"));
    c.current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove("TILGANG_ADMIN_ADDR");
    c
}

fn output(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn test_subcommand_runs_tables_and_sets_exit_codes() {
    let (code, out, _) =
        output(tilgang().args(["test", "--data", "tests/fixtures/data", "tests/tables"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.csv");
    std::fs::write(
        &wrong,
        "supplier,owner,scope,expect\n974760673,991825827,altinn:serviceowner/instances.write,allow\n",
    )
    .unwrap();
    let (code, out, _) = output(
        tilgang()
            .args(["test", "--data", "tests/fixtures/data"])
            .arg(&wrong),
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("wrong.csv:2: expected allow, got deny (reasons: none)"),
        "{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");

    std::fs::write(&wrong, "who,what\n").unwrap();
    let (code, _, err) = output(
        tilgang()
            .args(["test", "--data", "tests/fixtures/data"])
            .arg(&wrong),
    );
    assert_eq!(code, 2);
    assert!(err.contains("wrong.csv:1: header must be"), "{err}");
}

fn validate(work: &Workdir) -> (i32, String, String) {
    output(
        tilgang()
            .arg("validate")
            .arg("--policies")
            .arg(work.policies())
            .arg("--data")
            .arg(work.data()),
    )
}

#[test]
fn validate_reports_file_and_line() {
    let (code, out, _) = output(tilgang().args(["validate", "--data", "tests/fixtures/data"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 3 policies"), "{out}");

    let work = Workdir::new();
    let path = work.policies().join("api-access.cedar");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("delegation.rights", "delegation.rightz"),
    )
    .unwrap();
    std::fs::write(work.owner_file("974760673"), "[{\"uid\": 1}]").unwrap();
    let (code, _, err) = validate(&work);
    assert_eq!(code, 1);
    assert!(err.contains("api-access.cedar:13:"), "{err}");
    assert!(err.contains("rightz"), "{err}");

    // With the policies fixed, the data error is the one reported.
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = validate(&work);
    assert_eq!(code, 1);
    assert!(err.contains("974760673.json"), "{err}");
}

#[test]
fn check_prints_decision_and_reasons() {
    let (code, out, _) = output(tilgang().args([
        "check",
        "--supplier",
        "0192:810418672",
        "--owner",
        "991825827",
        "--scope",
        WRITE,
        "--data",
        "tests/fixtures/data",
    ]));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("allow\nreasons: delegated-scope\n"),
        "{out}"
    );
    let (code, out, _) = output(tilgang().args([
        "check",
        "--supplier",
        READ_SUPPLIER,
        "--owner",
        OWNER,
        "--scope",
        WRITE,
        "--data",
        "tests/fixtures/data",
    ]));
    assert_eq!(code, 1);
    assert!(out.starts_with("deny\n"), "{out}");
    let (code, _, err) = output(tilgang().args([
        "check",
        "--supplier",
        "123",
        "--owner",
        OWNER,
        "--scope",
        WRITE,
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("`--supplier`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_binds_port_zero_logs_the_address_and_stops_on_sigterm() {
    let work = Workdir::new();
    let mut server = ServerProcess::spawn(&work);
    let mut c = tilgang::proto::authorizer_client::AuthorizerClient::connect(format!(
        "http://{}",
        server.gateway
    ))
    .await
    .unwrap();
    let r = c
        .is_authorized(req(FULL_SUPPLIER, OWNER, WRITE))
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);

    server.signal("-TERM");
    let mut child = server.child.take().unwrap();
    let waited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(waited.success(), "clean exit on SIGTERM: {waited:?}");
}

#[test]
fn serve_refuses_to_start_on_invalid_files() {
    let work = Workdir::new();
    std::fs::write(
        work.policies().join("bad.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    let (code, _, err) = output(
        tilgang()
            .arg("serve")
            .arg("--policies")
            .arg(work.policies())
            .arg("--data")
            .arg(work.data())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]),
    );
    assert_eq!(code, 2);
    assert!(err.contains("bad.cedar") && err.contains("@id"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_client_subcommands() {
    let s = TestServer::start().await;
    let addr = s.sidecar.admin_addr.to_string();
    let run = |args: Vec<String>| {
        let addr = addr.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                output(tilgang().env("TILGANG_ADMIN_ADDR", addr).args(args))
            })
            .await
            .unwrap()
        }
    };
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (code, out, _) = run(v(&["rights"])).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("instances-full") && out.contains("(lesetilgang)"),
        "{out}"
    );

    let (code, out, err) = run(v(&[
        "delegate",
        "--owner",
        OWNER,
        "--supplier",
        NEW_SUPPLIER,
        "--right",
        "instances-read",
        "--right",
        "instances-full",
        "--actor",
        DAGL,
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("instances-full, instances-read"), "{out}");

    let (code, out, _) = run(v(&["delegations", "--owner", OWNER])).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("OWNER") && lines[0].contains("DELEGATED_BY"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");

    let (code, token, err) = run(v(&[
        "revoke",
        "--owner",
        OWNER,
        "--supplier",
        NEW_SUPPLIER,
        "--actor",
        DAGL,
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    assert_eq!(token.len(), 32);

    let (code, out, _) = run(v(&["delegations", "--supplier", NEW_SUPPLIER, "--json"])).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!([])
    );

    let (code, _, err) = run(v(&["undo", &token, "--actor", DAGL])).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(v(&["undo", &token, "--actor", DAGL])).await;
    assert_ne!(code, 0);
    assert!(err.contains("already used"), "{err}");

    let (code, _, err) = run(v(&[
        "delegate",
        "--owner",
        OWNER,
        "--supplier",
        NEW_SUPPLIER,
        "--right",
        "instances-read",
        "--actor",
        OTHER_ADMIN,
    ]))
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("PermissionDenied") && err.contains("DAGL"),
        "{err}"
    );

    // `http://` form of the address works too.
    let (code, _, _) = run(v(&[
        "rights",
        "--admin-addr",
        &format!("http://{}", s.sidecar.admin_addr),
    ]))
    .await;
    assert_eq!(code, 0);
    s.stop().await;
}

#[test]
fn delegation_files_must_use_bare_org_numbers() {
    let work = Workdir::new();
    let path = work.owner_file(OWNER);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"id\": \"810418672\"", "\"id\": \"0192:810418672\"", 1),
    )
    .unwrap();
    let (code, _, err) = validate(&work);
    assert_eq!(code, 1);
    assert!(err.contains("bare org number `810418672`"), "{err}");
}
