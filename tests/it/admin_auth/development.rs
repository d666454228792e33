//! Development mode: no admin credentials, `actor` trusted, marked
//! unverified, and only on loopback.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn development_mode_marks_its_actors_unverified_and_stays_on_loopback() {
    // The default: no --admin-jwks on 127.0.0.1. Works, and says so.
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    a.delegate(delegate(DAGL)).await.unwrap();
    let lines = audit(&s);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["actor"], DAGL);
    assert_eq!(lines[0]["actor_auth"], "unverified");
    // A token is not needed, and `actor` is: it is the only name there is.
    let e = a.delegate(delegate("")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("`actor`"), "{}", e.message());
    s.stop().await;

    // Any other address is refused before a port is bound, saying why.
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let work = Workdir::new();
        let mut cfg = work.config();
        cfg.admin_listen = Some(addr.into());
        let e = Sidecar::start(cfg).await.err().unwrap().to_string();
        assert!(
            e.contains("--admin-jwks") && e.contains("loopback"),
            "{addr}: {e}"
        );
    }
    // --admin-jwks without an audience: another service's token would do.
    let work = Workdir::new();
    let jwks = work.dir.path().join("jwks.json");
    write_jwks(&jwks, &[es256().jwk("es")]);
    let mut cfg = work.config();
    cfg.admin_auth = Some(tokens(jwks, None, None));
    let e = Sidecar::start(cfg).await.err().unwrap().to_string();
    assert!(e.contains("--admin-jwt-audience"), "{e}");
    // With --admin-jwks it may listen anywhere.
    let work = Workdir::new();
    let jwks = work.dir.path().join("jwks.json");
    write_jwks(&jwks, &[es256().jwk("es")]);
    let mut cfg = work.config();
    cfg.admin_listen = Some("0.0.0.0:0".into());
    cfg.admin_auth = Some(tokens(jwks, None, Some(AUDIENCE)));
    let sidecar = Sidecar::start(cfg).await.unwrap();
    assert!(sidecar.admin_addr.unwrap().ip().is_unspecified());
    sidecar.shutdown().await.unwrap();
}

#[test]
fn serve_refuses_a_non_loopback_admin_address_without_admin_jwks() {
    use crate::cli::{output, tilgang};
    let work = Workdir::new();
    let (code, _, err) = output(tilgang().args([
        "serve",
        "--policies",
        work.policies().to_str().unwrap(),
        "--data",
        work.data().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--admin-listen",
        "0.0.0.0:0",
    ]));
    assert_ne!(code, 0);
    assert!(
        err.contains("not a loopback address") && err.contains("--admin-jwks"),
        "{err}"
    );
}

/// `--admin-listen off`: no admin listener at all (a gateway replica on the
/// shared store, whose loopback admin listener could otherwise write to it).
/// The gateway still decides; nothing listens where an admin would.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_can_be_turned_off() {
    let work = Workdir::new();
    let s = TestServer::start_in(work, |c| c.admin_listen = None).await;
    assert_eq!(s.sidecar.admin_addr, None);
    let r = s
        .gateway()
        .await
        .is_authorized(req(FULL_SUPPLIER, OWNER, READ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    s.stop().await;

    // The binary: its `serving` line says `admin_addr=off`.
    let work = Workdir::new();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tilgang"));
    command
        .arg("serve")
        .arg("--policies")
        .arg(work.policies())
        .arg("--data")
        .arg(work.data())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--metrics-listen", "off", "--web-listen", "off"]);
    let p = ServerProcess::start(command);
    assert_eq!(p.admin, "off");
    assert!(p.gateway.starts_with("127.0.0.1:"), "{}", p.gateway);
}
