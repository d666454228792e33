//! What the tour uses: `tilgang ask` against a running sidecar, and
//! `tilgang dev-token`, whose tokens a sidecar with `--jwks` on the JWKS it
//! wrote accepts. The real binary, real files.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;
use tilgang::auth::VerifierConfig;
use tilgang::sidecar::BearerConfig;

use crate::bearer::{ask, bearer_check};
use crate::cli::{output_blocking, tilgang};
use crate::util::*;

fn ask_cmd(s: &TestServer, supplier: &str, scope: &str) -> std::process::Command {
    let mut c = tilgang();
    c.args([
        "ask",
        "--supplier",
        supplier,
        "--owner",
        OWNER,
        "--scope",
        scope,
    ])
    .args(["--addr", &s.sidecar.gateway_addr.to_string()]);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_prints_the_running_sidecars_decision() {
    let s = TestServer::start().await;
    let (code, out, err) = output_blocking(ask_cmd(&s, FULL_SUPPLIER, WRITE)).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "allow\nreasons: delegated-scope\nrevision: {}\n",
            s.revision()
        )
    );
    let (code, out, err) = output_blocking(ask_cmd(&s, READ_SUPPLIER, WRITE)).await;
    assert_eq!(code, 1, "{err}");
    assert!(out.starts_with("deny\nreasons: none\n"), "{out}");

    // Bad input is the server's INVALID_ARGUMENT, naming the field.
    let (code, _, err) = output_blocking(ask_cmd(&s, "12345", READ)).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("InvalidArgument") && err.contains("supplier"),
        "{err}"
    );
    let addr = s.sidecar.gateway_addr.to_string();
    s.stop().await;

    // Nobody there.
    let mut c = tilgang();
    c.args([
        "ask",
        "--supplier",
        FULL_SUPPLIER,
        "--owner",
        OWNER,
        "--scope",
        READ,
    ])
    .args(["--addr", &addr]);
    let (code, _, err) = output_blocking(c).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot connect to the gateway listener"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_tokens_are_accepted_by_a_sidecar_trusting_the_dev_jwks() {
    let work = Workdir::new();
    let dev = work.dir.path().join("dev");
    let mint = |supplier: Option<&str>, extra: &[&str]| {
        let mut c = tilgang();
        c.args(["dev-token", "--owner", OWNER])
            .arg("--dir")
            .arg(&dev);
        if let Some(s) = supplier {
            c.args(["--supplier", s]);
        }
        c.args(extra);
        c
    };
    let (code, first, err) = output_blocking(mint(Some(FULL_SUPPLIER), &[])).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("development"),
        "the first run says what it wrote: {err}"
    );
    let key = dev.join("signing-key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is the owner's alone");
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dev.join("jwks.json")).unwrap()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "tilgang-dev");
    let key_bytes = std::fs::read(&key).unwrap();

    // Later runs reuse the key.
    let (code, read_only, err) = output_blocking(mint(
        Some(READ_SUPPLIER),
        &["--scope", READ, "--scope", WRITE, "--ttl", "60"],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("wrote"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes);
    let (code, _, err) = output_blocking(mint(Some("123"), &[])).await;
    assert_eq!(code, 2);
    assert!(err.contains("--supplier"), "{err}");
    let (code, _, _) = output_blocking(mint(None, &["--ttl", "0"])).await;
    assert_eq!(code, 2);

    let path = dev.join("jwks.json");
    let s = TestServer::start_in(work, |c| {
        c.bearer = Some(BearerConfig {
            jwks: path,
            verifier: VerifierConfig {
                issuer: Some("https://maskinporten.no/".into()),
                ..VerifierConfig::default()
            },
        });
    })
    .await;
    let bearer = |t: &str| Some(format!("Bearer {}", t.trim()));
    let (code, http, reason) = ask(&s, bearer_check(bearer(&first))).await;
    assert_eq!((code, http), (0, 0), "{reason}");
    // The read-only supplier's token is good; its delegation is not enough
    // to write, and reading is allowed.
    let (_, http, reason) = ask(&s, bearer_check(bearer(&read_only))).await;
    assert_eq!(http, 0, "{reason}");
    // A token signed by another dev key is refused.
    let other = s.work.dir.path().join("other");
    let mut c = tilgang();
    c.args(["dev-token", "--owner", OWNER, "--supplier", FULL_SUPPLIER])
        .arg("--dir")
        .arg(&other);
    let (_, stranger, _) = output_blocking(c).await;
    let (_, http, reason) = ask(&s, bearer_check(bearer(&stranger))).await;
    assert_eq!(http, 401, "{reason}");
    assert!(reason.contains("signature"), "{reason}");
    s.stop().await;
}

/// `tilgang delegations --organizations`: the overview with names.
#[tokio::test(flavor = "multi_thread")]
async fn delegations_show_names_from_the_entity_register() {
    let s = TestServer::start().await;
    let register = s.work.dir.path().join("enheter.json.gz");
    let entries = format!(
        r#"[{{"organisasjonsnummer":"{OWNER}","navn":"TJENESTEEIER AS"}},
            {{"organisasjonsnummer":"{FULL_SUPPLIER}","navn":"FULL LEVERANDØR AS"}}]"#
    );
    std::fs::write(&register, crate::register::gzip(&entries)).unwrap();
    let run = |json: bool| {
        let mut c = tilgang();
        c.args(["delegations", "--owner", OWNER])
            .arg("--organizations")
            .arg(&register)
            .args(["--admin-addr", &s.sidecar.admin_addr.unwrap().to_string()]);
        if json {
            c.arg("--json");
        }
        c
    };
    let (code, out, err) = output_blocking(run(false)).await;
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("OWNER_NAME") && header.contains("SUPPLIER_NAME"),
        "{out}"
    );
    let full = out.lines().find(|l| l.contains(FULL_SUPPLIER)).unwrap();
    assert!(
        full.contains("TJENESTEEIER AS") && full.contains("FULL LEVERANDØR AS"),
        "{full}"
    );
    let read = out.lines().find(|l| l.contains(READ_SUPPLIER)).unwrap();
    assert!(read.contains(" - "), "a number the register lacks: {read}");
    let (code, out, err) = output_blocking(run(true)).await;
    assert_eq!(code, 0, "{err}");
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let one = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["supplier"] == FULL_SUPPLIER)
        .unwrap();
    assert_eq!(one["supplier_name"], "FULL LEVERANDØR AS");
    assert_eq!(one["owner_name"], "TJENESTEEIER AS");
    s.stop().await;
}
