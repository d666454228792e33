//! The admin CLI with a token: from the flag, the environment or a file,
//! and what it says when the listener wants one.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sends_a_token_and_says_when_one_is_wanted() {
    use crate::cli::{output_blocking, tilgang};
    let es = es256();
    let Admin { server: s, .. } = start(&[es.jwk("es")]).await;
    let addr = s.sidecar.admin_addr.unwrap().to_string();
    let token = es.sign("es", &claims(DAGL, 120));
    let token_file = s.work.dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        let mut c = tilgang();
        c.env("TILGANG_ADMIN_ADDR", &addr).envs(env).args(args);
        output_blocking(c)
    };
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let delegate = v(&[
        "delegate",
        "--owner",
        OWNER,
        "--supplier",
        NEW_SUPPLIER,
        "--right",
        "instances-read",
    ]);

    // No token: refused, and told how to give one.
    let (code, _, err) = run(delegate.clone(), vec![]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("wants a bearer token") && err.contains("--token-file"),
        "{err}"
    );
    // A bad one: told it was refused, and why.
    let (code, _, err) = run(
        delegate.clone(),
        vec![("TILGANG_TOKEN", "abc.def.ghi".into())],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("refused the bearer token"), "{err}");

    // From a file (its newline ignored), the environment, or the flag.
    let mut with_file = delegate.clone();
    with_file.extend(v(&["--token-file", token_file.to_str().unwrap()]));
    let (code, out, err) = run(with_file, vec![]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("by {DAGL}")), "{out}");
    let (code, out, err) = run(
        v(&["delegations", "--owner", OWNER]),
        vec![("TILGANG_TOKEN", token.clone())],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(NEW_SUPPLIER), "{out}");
    let (code, _, err) = run(v(&["rights", "--token", &token]), vec![]).await;
    assert_eq!(code, 0, "{err}");
    // The token and the file together are a mistake, said before any call.
    let (code, _, err) = run(
        v(&["rights", "--token", &token, "--token-file", "x"]),
        vec![],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    s.stop().await;
}
