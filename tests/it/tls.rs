//! TLS on the gateway and admin listeners: served with the configured
//! certificate, client certificates required when a CA bundle is given, and a
//! certificate rotated on disk served to new connections while open ones
//! keep theirs. Certificates are generated per test (`pki`).

use std::time::Duration;

use tilgang::proto::ListRightsRequest;
use tilgang::proto::authorizer_client::AuthorizerClient;
use tilgang::proto::delegations_client::DelegationsClient;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::pki::{Ca, write};
use crate::util::*;

/// A channel to `addr` over TLS with `tls`, or the error connecting.
async fn channel(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<Channel, String> {
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Whether a gateway call over `tls` is answered.
async fn gateway_answers(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<bool, String> {
    let mut c = AuthorizerClient::new(channel(addr, tls).await?);
    let r = c
        .is_authorized(req(FULL_SUPPLIER, OWNER, READ))
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(r.into_inner().allowed)
}

async fn admin_answers(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<usize, String> {
    let mut c = DelegationsClient::new(channel(addr, tls).await?);
    let r = c
        .list_rights(ListRightsRequest {})
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(r.into_inner().rights.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn both_listeners_serve_tls_and_plaintext_clients_get_nothing() {
    let (ca, other) = (Ca::new("tilgang test CA"), Ca::new("someone else"));
    let work = Workdir::new();
    let dir = work.dir.path().to_path_buf();
    let gateway = write(&dir, "gateway", &ca.server(), None);
    let admin = write(&dir, "admin", &ca.server(), None);
    let s = TestServer::start_in(work, |c| {
        c.tls = Some(gateway);
        c.admin_tls = Some(admin);
    })
    .await;
    let (g, a) = (s.sidecar.gateway_addr, s.sidecar.admin_addr.unwrap());

    assert_eq!(gateway_answers(g, ca.client(None)).await, Ok(true));
    assert_eq!(admin_answers(a, ca.client(None)).await, Ok(2));
    // A client that does not trust the issuer refuses the server.
    assert!(gateway_answers(g, other.client(None)).await.is_err());
    assert!(admin_answers(a, other.client(None)).await.is_err());
    // Plaintext HTTP/2 to a TLS listener: no answer.
    let plain = AuthorizerClient::connect(format!("http://{g}")).await;
    if let Ok(mut c) = plain {
        assert!(
            c.is_authorized(req(FULL_SUPPLIER, OWNER, READ))
                .await
                .is_err()
        );
    }

    // The CLI with --ca-file; without it, told to give one.
    use crate::cli::{output_blocking, tilgang};
    let ca_file = s.work.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (addr, ca_path) = (a.to_string(), ca_file.to_str().unwrap().to_string());
    let mut c = tilgang();
    c.args(["rights", "--admin-addr", &addr, "--ca-file", &ca_path]);
    let (code, out, err) = output_blocking(c).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("instances-full"), "{out}");
    let mut c = tilgang();
    c.args(["rights", "--admin-addr", &addr]);
    let (code, _, err) = output_blocking(c).await;
    assert_ne!(code, 0);
    assert!(err.contains("--ca-file"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_clients_with_its_certificates_get_in() {
    let (ca, clients, other) = (
        Ca::new("server CA"),
        Ca::new("client CA"),
        Ca::new("other CA"),
    );
    let work = Workdir::new();
    let dir = work.dir.path().to_path_buf();
    let gateway = write(&dir, "gateway", &ca.server(), Some(&clients));
    let admin = write(&dir, "admin", &ca.server(), Some(&clients));
    let s = TestServer::start_in(work, |c| {
        c.tls = Some(gateway);
        c.admin_tls = Some(admin);
    })
    .await;
    let (g, a) = (s.sidecar.gateway_addr, s.sidecar.admin_addr.unwrap());
    let ours = clients.issue(&["gateway.example"]);
    let theirs = other.issue(&["gateway.example"]);

    assert_eq!(gateway_answers(g, ca.client(Some(&ours))).await, Ok(true));
    assert_eq!(admin_answers(a, ca.client(Some(&ours))).await, Ok(2));
    for (what, identity) in [("no certificate", None), ("another CA's", Some(&theirs))] {
        assert!(
            gateway_answers(g, ca.client(identity)).await.is_err(),
            "gateway, {what}"
        );
        assert!(
            admin_answers(a, ca.client(identity)).await.is_err(),
            "admin, {what}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_serves_new_connections_while_open_ones_keep_theirs() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let work = Workdir::new();
    let dir = work.dir.path().to_path_buf();
    let files = write(&dir, "gateway", &old_ca.server(), None);
    let s = TestServer::start_in(work, |c| {
        c.tls = Some(files);
        c.tls_rescan = Duration::from_millis(100);
    })
    .await;
    let g = s.sidecar.gateway_addr;
    // A client that trusts only the old CA, connected and calling.
    let mut open = AuthorizerClient::new(channel(g, old_ca.client(None)).await.unwrap());
    let ask = req(FULL_SUPPLIER, OWNER, READ);
    assert!(
        open.is_authorized(ask.clone())
            .await
            .unwrap()
            .into_inner()
            .allowed
    );

    // cert-manager renews with another CA: the certificate, then the key.
    write(&dir, "gateway", &new_ca.server(), None);
    let tls = s.sidecar.gateway_tls.clone().unwrap();
    eventually("the new certificate to be put in force", || {
        let tls = tls.clone();
        async move { tls.status().reloads == 1 }
    })
    .await;
    assert_eq!(tls.status().problem, None);

    // The open connection keeps its session: it could not reconnect, since
    // it trusts only the old CA.
    for _ in 0..5 {
        assert!(
            open.is_authorized(ask.clone())
                .await
                .unwrap()
                .into_inner()
                .allowed
        );
    }
    // New connections get the new certificate.
    assert!(gateway_answers(g, old_ca.client(None)).await.is_err());
    assert_eq!(gateway_answers(g, new_ca.client(None)).await, Ok(true));

    // A broken change (a key that does not fit) keeps the new certificate.
    let stray = new_ca.server();
    crate::util::save_by_rename(&dir.join("gateway.key"), &stray.key);
    eventually("the broken change to be reported", || {
        let tls = tls.clone();
        async move { tls.status().problem.is_some() }
    })
    .await;
    assert_eq!(tls.status().reloads, 1);
    assert_eq!(gateway_answers(g, new_ca.client(None)).await, Ok(true));

    // Operators see it: one reload, the files refused now, and when the
    // certificate served expires.
    let metrics = s.sidecar.metrics_addr.unwrap().to_string();
    let (_, _, body) = http_get(&metrics, "GET", "/metrics", &[]).await;
    assert!(
        body.contains("tilgang_tls_reloads_total{listener=\"gateway\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("tilgang_tls_files_refused{listener=\"gateway\"} 1"),
        "{body}"
    );
    let expiry: i64 = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "tilgang_tls_certificate_expiry_timestamp_seconds{listener=\"gateway\"} ",
            )
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(expiry > crate::jwt::now() as i64, "{expiry}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_the_tls_handshake_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("tilgang test CA");
    let work = Workdir::new();
    let files = write(work.dir.path(), "gateway", &ca.server(), None);
    let s = TestServer::start_in(work, |c| {
        c.tls = Some(files);
        c.limits.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let g = s.sidecar.gateway_addr;
    // Silent, and a ClientHello cut off after its first bytes.
    for first in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00][..]] {
        let mut tcp = tokio::net::TcpStream::connect(g).await.unwrap();
        tcp.write_all(first).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{first:?}: still open after 10 s");
    }
    // The listener still serves.
    assert_eq!(gateway_answers(g, ca.client(None)).await, Ok(true));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_map_to_persons_and_services() {
    use tilgang::proto::DelegateRequest;
    use tonic::Code;
    const DAGL: &str = "01017012345";
    const LEDE: &str = "04048612345";
    const STRANGER: &str = "02029054321";
    let (ca, clients) = (Ca::new("server CA"), Ca::new("client CA"));
    let work = Workdir::new();
    let dir = work.dir.path().to_path_buf();
    let admin = write(&dir, "admin", &ca.server(), Some(&clients));
    let identities = dir.join("admin-clients.json");
    std::fs::write(
        &identities,
        serde_json::json!({"clients": [
            {"uri": "spiffe://cluster.local/ns/altinn/sa/portal", "service": "altinn-portal"},
            {"dns": "ops.tilgang.example", "person": DAGL},
        ]})
        .to_string(),
    )
    .unwrap();
    let s = TestServer::start_in(work, |c| {
        c.admin_tls = Some(admin);
        c.admin_clients = Some(identities);
        // Authenticated by certificates alone, so not bound to loopback.
        c.admin_listen = Some("0.0.0.0:0".into());
    })
    .await;
    let a = std::net::SocketAddr::from(([127, 0, 0, 1], s.sidecar.admin_addr.unwrap().port()));
    let portal = clients.issue_uri("spiffe://cluster.local/ns/altinn/sa/portal");
    let ops = clients.issue(&["ops.tilgang.example"]);
    let unknown = clients.issue(&["someone.example"]);
    let client = |identity| {
        let tls = ca.client(Some(identity));
        async move { DelegationsClient::new(channel(a, tls).await.unwrap()) }
    };
    let delegate = |supplier: &str, actor: &str| DelegateRequest {
        owner: OWNER.into(),
        supplier: supplier.into(),
        rights: vec!["instances-read".into()],
        actor: actor.into(),
    };

    // A person's certificate acts for that person.
    let mut c = client(&ops).await;
    let d = c
        .delegate(delegate(NEW_SUPPLIER, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.delegated_by, DAGL);
    let e = c.delegate(delegate(NEW_SUPPLIER, LEDE)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // A service names the person it acts for; the policy still decides.
    let mut c = client(&portal).await;
    let d = c
        .delegate(delegate(READ_SUPPLIER, LEDE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.delegated_by, LEDE);
    let e = c.delegate(delegate(READ_SUPPLIER, "")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .delegate(delegate(READ_SUPPLIER, STRANGER))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // A certificate the CA issued but the file does not list: unauthenticated.
    let mut c = client(&unknown).await;
    let e = c.list_rights(ListRightsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        e.message().contains("not in the admin client identities"),
        "{}",
        e.message()
    );

    let audit: Vec<serde_json::Value> = std::fs::read_to_string(s.work.data().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pick = |k: &str| -> Vec<(String, String, String)> {
        audit
            .iter()
            .filter(|l| l.get(k).is_some())
            .map(|l| {
                let f = |n: &str| l[n].as_str().unwrap_or("-").to_string();
                (f("actor"), f("actor_auth"), f("service"))
            })
            .collect()
    };
    let s_ = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        pick("change"),
        [
            s_(DAGL, "client-certificate", "-"),
            s_(LEDE, "service", "altinn-portal"),
        ]
    );
    assert_eq!(
        pick("refused"),
        [
            s_(DAGL, "client-certificate", "-"),
            s_(STRANGER, "service", "altinn-portal"),
            s_("-", "none", "-"),
        ]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_saved_in_place_slowly_never_breaks_a_handshake() {
    let ca = Ca::new("tilgang test CA");
    let work = Workdir::new();
    let dir = work.dir.path().to_path_buf();
    let files = write(&dir, "gateway", &ca.server(), None);
    let cert_path = files.cert.clone();
    let s = TestServer::start_in(work, |c| {
        c.tls = Some(files);
        c.tls_rescan = Duration::from_millis(100);
    })
    .await;
    let g = s.sidecar.gateway_addr;
    let tls = s.sidecar.gateway_tls.clone().unwrap();

    // New connections, one after another, while the certificate file is
    // truncated, left empty, then written in two halves with pauses longer
    // than the look period: every state on disk is seen twice.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (stop, tls_client) = (stop.clone(), ca.client(None));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match gateway_answers(g, tls_client.clone()).await {
                    Ok(true) => ok += 1,
                    other => failed.push(other),
                }
            }
            (ok, failed)
        })
    };
    let next = ca.server();
    let (first, second) = next.cert.split_at(next.cert.len() / 2);
    std::fs::write(&cert_path, "").unwrap();
    eventually("the empty certificate file to be refused", || {
        let tls = tls.clone();
        async move { tls.status().problem.is_some() }
    })
    .await;
    std::fs::write(&cert_path, first).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::write(&cert_path, format!("{first}{second}")).unwrap();
    // The key still belongs to the old certificate: refused too. Then the key.
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::write(dir.join("gateway.key"), &next.key).unwrap();
    eventually("the new pair to be put in force", || {
        let tls = tls.clone();
        async move { tls.status().reloads == 1 && tls.status().problem.is_none() }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = prober.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} handshakes or calls failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 5, "only {ok} calls made");
    s.stop().await;
}
