//! The real `tilgang` binary: offline subcommands, `serve` with signals, and the
//! admin client subcommands against a running server. Offline subcommands run
//! against the fixture policies (`tests/fixtures/policies`) unless a test is about
//! the shipped `policies/`.

use std::process::{Command, Stdio};

use crate::util::*;

pub fn tilgang() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tilgang"));
    c.current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove("TILGANG_ADMIN_ADDR")
        .env_remove("TILGANG_TOKEN")
        .env_remove("TILGANG_TOKEN_FILE")
        .env_remove("TILGANG_CA_FILE")
        // Off the default web port, so tests that serve can run at once.
        .env("TILGANG_WEB_LISTEN", "127.0.0.1:0");
    c
}

/// `--policies` and `--data` for the fixtures, relative to the repository.
const FIXTURES: [&str; 4] = [
    "--policies",
    "tests/fixtures/policies",
    "--data",
    "tests/fixtures/data",
];

/// The shipped policies with the fixture data: what the shipped decision
/// tables (`tests/tables`) are written against.
const SHIPPED: [&str; 4] = ["--policies", "policies", "--data", "tests/fixtures/data"];

/// [`output`] off the async workers, for tests that also serve.
pub async fn output_blocking(mut c: Command) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || output(&mut c))
        .await
        .unwrap()
}

pub fn output(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn test_subcommand_runs_tables_and_sets_exit_codes() {
    let (code, out, _) = output(tilgang().arg("test").args(SHIPPED).arg("tests/tables"));
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.csv");
    std::fs::write(
        &wrong,
        "supplier,owner,scope,expect\n974760673,991825827,altinn:serviceowner/instances.write,allow\n",
    )
    .unwrap();
    let (code, out, _) = output(tilgang().arg("test").args(FIXTURES).arg(&wrong));
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "wrong.csv:2: supplier 974760673 owner 991825827 scope \
             `altinn:serviceowner/instances.write`: expected allow, got deny (reasons: none)"
        ),
        "{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");

    std::fs::write(&wrong, "who,what\n").unwrap();
    let (code, _, err) = output(tilgang().arg("test").args(FIXTURES).arg(&wrong));
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

/// The one test of the shipped `policies/` besides the decision tables: they load,
/// from the directory and from the copy built into the binary, with the same
/// revision. No assertion on what they hold, which is the policy authors' call.
#[test]
fn validate_accepts_the_shipped_policies_and_their_embedded_copy() {
    let data = repo().join("tests/fixtures/data");
    let (code, from_dir, err) = output(tilgang().arg("validate").arg("--data").arg(&data));
    assert_eq!(code, 0, "{err}");
    assert!(
        from_dir.starts_with("ok: ") && from_dir.contains(" policies from policies, "),
        "{from_dir}"
    );
    // A working directory without `policies/`: the embedded copy.
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, embedded, err) = output(
        tilgang()
            .current_dir(elsewhere.path())
            .arg("validate")
            .arg("--data")
            .arg(&data),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        embedded.contains(" policies from <embedded policies>, "),
        "{embedded}"
    );
    let revision = |out: &str| out.trim_end().rsplit(' ').next().unwrap().to_string();
    assert_eq!(revision(&embedded), revision(&from_dir));
}

#[test]
fn validate_reports_file_and_line() {
    let (code, out, _) = output(tilgang().arg("validate").args(FIXTURES));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 5 policies"), "{out}");

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
    let (code, out, _) = output(
        tilgang()
            .args([
                "check",
                "--supplier",
                "0192:810418672",
                "--owner",
                "991825827",
                "--scope",
                WRITE,
            ])
            .args(FIXTURES),
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with("allow\nreasons: delegated-scope\n"),
        "{out}"
    );
    let (code, out, _) = output(
        tilgang()
            .args([
                "check",
                "--supplier",
                READ_SUPPLIER,
                "--owner",
                OWNER,
                "--scope",
                WRITE,
            ])
            .args(FIXTURES),
    );
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
    let addr = s.sidecar.admin_addr.unwrap().to_string();
    let run = |args: Vec<String>| {
        let mut c = tilgang();
        c.env("TILGANG_ADMIN_ADDR", &addr).args(args);
        output_blocking(c)
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
        &format!("http://{}", s.sidecar.admin_addr.unwrap()),
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

#[test]
fn a_missing_data_directory_is_an_error() {
    let table = repo().join("tests/tables");
    // A typo in `--data`, for each offline subcommand.
    let typo = [
        "--policies",
        "tests/fixtures/policies",
        "--data",
        "tests/fixtures/dat",
    ];
    let check = [
        "check",
        "--supplier",
        FULL_SUPPLIER,
        "--owner",
        OWNER,
        "--scope",
        READ,
    ];
    let runs: [Vec<&std::ffi::OsStr>; 3] = [
        vec!["validate".as_ref()],
        check.iter().map(|a| a.as_ref()).collect(),
        vec!["test".as_ref(), table.as_os_str()],
    ];
    for args in &runs {
        let (code, out, err) = output(tilgang().args(args).args(typo));
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(
            err, "error: data directory `tests/fixtures/dat` does not exist\n",
            "{args:?}"
        );
        assert_eq!(out, "", "{args:?}");
    }
    // The default `data`, in a directory that has none.
    let empty = tempfile::tempdir().unwrap();
    let policies = repo().join("tests/fixtures/policies");
    for args in &runs {
        let (code, _, err) = output(
            tilgang()
                .current_dir(empty.path())
                .args(args)
                .arg("--policies")
                .arg(&policies),
        );
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(
            err, "error: data directory `data` does not exist\n",
            "{args:?}"
        );
    }
    // A file where the directory should be.
    let (code, _, err) = output(tilgang().args(["validate", "--data", "Cargo.toml"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        "error: data directory `Cargo.toml` is not a directory\n"
    );
    // The directory exists but holds nothing: valid, and says so.
    let (code, out, err) = output(
        tilgang()
            .arg("validate")
            .arg("--policies")
            .arg(&policies)
            .arg("--data")
            .arg(empty.path()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 delegations from 0 owners"), "{out}");
}

/// A pipe whose reader has already gone: every write to it fails with `EPIPE`.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// Exit code and stderr of a run whose stdout is a closed pipe.
fn with_closed_stdout(c: &mut Command) -> (i32, String) {
    let o = c.stdout(closed_stdout()).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_offline_subcommands_quietly_with_their_exit_code() {
    let check = |supplier: &str| {
        let mut c = tilgang();
        c.args([
            "check",
            "--supplier",
            supplier,
            "--owner",
            OWNER,
            "--scope",
            WRITE,
        ])
        .args(FIXTURES);
        c
    };
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.csv");
    std::fs::write(
        &failing,
        "supplier,owner,scope,expect\n974760673,991825827,altinn:serviceowner/instances.write,allow\n",
    )
    .unwrap();
    let runs: Vec<(Command, i32)> = vec![
        (check(FULL_SUPPLIER), 0),
        // A deny stays a deny when nobody reads it.
        (check(READ_SUPPLIER), 1),
        (
            {
                let mut c = tilgang();
                c.arg("validate").args(FIXTURES);
                c
            },
            0,
        ),
        (
            {
                let mut c = tilgang();
                c.arg("test").args(SHIPPED).arg("tests/tables");
                c
            },
            0,
        ),
        (
            {
                let mut c = tilgang();
                c.arg("test").args(FIXTURES).arg(&failing);
                c
            },
            1,
        ),
    ];
    for (mut c, want) in runs {
        let (code, err) = with_closed_stdout(&mut c);
        assert_eq!(code, want, "{c:?}: {err}");
        assert_eq!(err, "", "{c:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_admin_subcommands_quietly() {
    let s = TestServer::start().await;
    let addr = s.sidecar.admin_addr.unwrap().to_string();
    let run = |args: &[&str]| {
        let mut c = tilgang();
        c.env("TILGANG_ADMIN_ADDR", &addr).args(args);
        async move {
            tokio::task::spawn_blocking(move || with_closed_stdout(&mut c))
                .await
                .unwrap()
        }
    };
    let delegations = |owner: &str, supplier: &str| {
        let request = tilgang::proto::ListDelegationsRequest {
            owner: owner.into(),
            supplier: supplier.into(),
            ..Default::default()
        };
        let s = &s;
        async move {
            s.admin()
                .await
                .list_delegations(request)
                .await
                .unwrap()
                .into_inner()
                .delegations
        }
    };

    for args in [
        &["rights"][..],
        &["rights", "--json"],
        &["delegations"],
        &["delegations", "--json"],
        &["delegations", "--owner", OWNER],
    ] {
        let (code, err) = run(args).await;
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
    }

    // The writes take effect whether or not anybody reads what they print.
    let (code, err) = run(&[
        "delegate",
        "--owner",
        OWNER,
        "--supplier",
        NEW_SUPPLIER,
        "--right",
        "instances-read",
        "--actor",
        DAGL,
    ])
    .await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(delegations(OWNER, NEW_SUPPLIER).await.len(), 1);

    // `revoke` also tells stderr, which still works, how to undo.
    let (code, err) = run(&[
        "revoke",
        "--owner",
        OWNER,
        "--supplier",
        NEW_SUPPLIER,
        "--actor",
        DAGL,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let token = err
        .split("tilgang undo ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the undo token on stderr: {err}"))
        .to_string();
    assert!(delegations(OWNER, NEW_SUPPLIER).await.is_empty());

    let (code, err) = run(&["undo", &token, "--actor", DAGL]).await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(delegations(OWNER, NEW_SUPPLIER).await.len(), 1);

    // An error is still an error, on stderr.
    let (code, err) = run(&["undo", &token, "--actor", DAGL]).await;
    assert_eq!(code, 2);
    assert!(err.contains("already used"), "{err}");
    s.stop().await;
}
