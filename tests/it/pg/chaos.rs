//! When the store goes away: a follower's connection terminated (and kept
//! out while writes are made), PostgreSQL stopped and restarted under load,
//! a follower started before PostgreSQL, a follower whose cursor the feed
//! no longer serves, and an admin replica killed mid-write. Tests that stop
//! PostgreSQL run their own private cluster, never the shared server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tilgang::proto::delegations_client::DelegationsClient;
use tilgang::sidecar::DEFAULT_MAX_STALENESS;
use tilgang::store::pg::StoreConfig;
use tokio_postgres::Client;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use super::harness::*;
use crate::util::*;

/// End every session `role` has; their process ids.
async fn terminate(c: &Client, role: &str) -> Vec<i32> {
    c.query(
        // OFFSET 0 keeps the filter apart: the terminations apply to the
        // role's sessions only, never to a row the filter would drop.
        "SELECT pid, pg_terminate_backend(pid) FROM
             (SELECT pid FROM pg_stat_activity WHERE usename = $1 OFFSET 0) AS theirs",
        &[&role],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn sessions(c: &Client, role: &str) -> Vec<i32> {
    c.query(
        "SELECT pid FROM pg_stat_activity WHERE usename = $1",
        &[&role],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_follower_reconnects_and_catches_up() {
    const TEST: &str = "pg::chaos::a_terminated_follower_reconnects_and_catches_up";
    let Some(server) = server(TEST) else { return };
    let db = TestDb::create(&server, TEST).await;
    db.import_fixtures().await;
    let work = pg_workdir();
    let admin = Replica::start_loaded(pg_config(
        &work,
        db.store("admin"),
        Some(DEFAULT_MAX_STALENESS),
    ))
    .await;
    // The follower logs in as a role of its own, so the test can end its
    // sessions, and keep it from logging in again.
    let (role, url) = db.reader_role().await;
    let store = StoreConfig::new(
        &with_param(&url, "application_name", "follower"),
        None,
        None,
        None,
    )
    .unwrap();
    let f = Replica::start_loaded(follower_config(&work, store)).await;
    let mut a = admin.admin().await;
    let c = db.client().await;

    // Terminated: it reconnects at once and sees what comes next.
    let killed = terminate(&c, &role).await;
    assert!(!killed.is_empty(), "the follower had no session to end");
    let r1 = a
        .revoke(revoke(OWNER, READ_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner()
        .store_revision;
    let d = f.decide_at(READ_SUPPLIER, OWNER, READ, r1).await.unwrap();
    assert!(!d.allowed, "{d:?}");
    within("a new session of the follower", LONG, || async {
        sessions(&c, &role)
            .await
            .iter()
            .any(|p| !killed.contains(p))
    })
    .await;

    // Terminated and kept out while writes are made.
    c.batch_execute(&format!("ALTER ROLE \"{role}\" NOLOGIN"))
        .await
        .unwrap();
    terminate(&c, &role).await;
    within("the follower to notice it is cut off", LONG, || async {
        !f.connected()
    })
    .await;
    assert_eq!(
        metric(&f.metrics(), "tilgang_store_connected").await,
        Some(0.0)
    );
    let before = f.store_revision();
    let r2 = a
        .revoke(revoke(OWNER, FULL_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner()
        .store_revision;
    let r3 = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], DAGL))
        .await
        .unwrap()
        .into_inner()
        .store_revision;
    // Asked at the revocation's revision, the cut-off follower says it is
    // behind, naming the revision; it never answers from before it.
    let e = f
        .decide_at(FULL_SUPPLIER, OWNER, WRITE, r2)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains(&format!("minimum {r2}")),
        "{}",
        e.message()
    );
    // Not asked at it, it decides from its last snapshot: the stale allow
    // that minimum revisions exist for.
    assert_eq!(f.store_revision(), before);
    assert!(f.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);

    // A caller asking at r2 all through the reconnect: never an allow.
    let stop = Arc::new(AtomicBool::new(false));
    let denied = Arc::new(AtomicU64::new(0));
    let prober = {
        let (stop, denied, mut g) = (stop.clone(), denied.clone(), f.gateway().await);
        tokio::spawn(async move {
            let mut behind = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut q = req(FULL_SUPPLIER, OWNER, WRITE);
                q.min_revision = r2;
                match g.is_authorized(q).await {
                    Ok(d) => {
                        assert!(!d.get_ref().allowed, "a wrong allow: {:?}", d.get_ref());
                        denied.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                        behind += 1;
                    }
                }
            }
            behind
        })
    };
    c.batch_execute(&format!("ALTER ROLE \"{role}\" LOGIN"))
        .await
        .unwrap();
    f.reach(r3).await;
    within("the prober to be answered at r2", LONG, || async {
        prober.is_finished() || denied.load(Ordering::Relaxed) > 0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let behind = prober.await.unwrap();
    assert!(denied.load(Ordering::Relaxed) > 0, "behind {behind} times");
    assert!(f.connected());
    assert!(!f.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(f.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert_eq!(snapshot_rows(&f.snapshot()), store_rows(&c).await);
    assert_eq!(f.store_revision(), store_state(&c).await.0);
    admin.stop().await;
    f.stop().await;
}

/// What the decisions under load saw.
#[derive(Debug, Default)]
struct Seen {
    decisions: u64,
    /// Allowed where it must be denied: a revoked pair.
    wrong_allows: Vec<String>,
    /// A decision that did not come (any gRPC error).
    errors: Vec<String>,
    /// Denied a delegated pair, with the reason.
    withheld: Vec<String>,
}

/// Ask `follower` over and over until `stop`: the delegated
/// `FULL_SUPPLIER` (allowed, or denied with a reason when delegations are
/// withheld) and the revoked `READ_SUPPLIER` (never allowed).
fn decide_under_load(follower: &Replica, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Seen> {
    let addr = follower.sidecar.gateway_addr;
    tokio::spawn(async move {
        let mut g =
            tilgang::proto::authorizer_client::AuthorizerClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            for (supplier, scope, revoked) in
                [(FULL_SUPPLIER, WRITE, false), (READ_SUPPLIER, READ, true)]
            {
                seen.decisions += 1;
                match g.is_authorized(req(supplier, OWNER, scope)).await {
                    Ok(d) => {
                        let d = d.into_inner();
                        if d.allowed && revoked {
                            seen.wrong_allows.push(format!("{d:?}"));
                        } else if !d.allowed && !revoked {
                            seen.withheld.push(d.errors.join("; "));
                        }
                    }
                    Err(e) => seen.errors.push(format!("{e:?}")),
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    })
}

/// How a write under load ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Acked(u64),
    /// `UNAVAILABLE`: nothing was written.
    Unavailable,
    /// Anything else (a commit nobody confirmed is `INTERNAL`).
    Other(Code),
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_and_restarted_under_load() {
    const TEST: &str = "pg::chaos::postgres_stopped_and_restarted_under_load";
    let Some(cluster) = Cluster::new(TEST) else {
        return;
    };
    cluster.start();
    let db = TestDb::create(&cluster.url, TEST).await;
    db.import_fixtures().await;
    let work = pg_workdir();
    let admin = Replica::start_loaded(pg_config(
        &work,
        db.store("admin"),
        Some(DEFAULT_MAX_STALENESS),
    ))
    .await;
    let f = Replica::start_loaded(follower_config(&work, db.store("follower"))).await;
    let max_staleness = Duration::from_secs(2);
    let g = {
        let mut cfg = pg_config(&work, db.store("strict"), Some(max_staleness));
        cfg.admin_listen = None;
        Replica::start_loaded(cfg).await
    };
    let mut a = admin.admin().await;
    let r1 = a
        .revoke(revoke(OWNER, READ_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner()
        .store_revision;
    f.reach(r1).await;
    g.reach(r1).await;

    // Load: decisions on both followers, writes on the admin replica.
    let stop = Arc::new(AtomicBool::new(false));
    let load_f = decide_under_load(&f, stop.clone());
    let load_g = decide_under_load(&g, stop.clone());
    let outcomes: Arc<Mutex<Vec<(String, Outcome)>>> = Arc::default();
    let writer = {
        let (stop, outcomes, mut a) = (stop.clone(), outcomes.clone(), a.clone());
        tokio::spawn(async move {
            for sup in org_numbers(80_000_000, 100_000) {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let outcome = match a
                    .delegate(delegate(OWNER, &sup, &["instances-read"], DAGL))
                    .await
                {
                    Ok(d) => Outcome::Acked(d.into_inner().store_revision),
                    Err(e) if e.code() == Code::Unavailable => Outcome::Unavailable,
                    Err(e) => Outcome::Other(e.code()),
                };
                outcomes.lock().unwrap().push((sup, outcome));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let count = |want: fn(&Outcome) -> bool| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| want(o))
            .count()
    };
    within("some writes before the stop", LONG, || async {
        count(|o| matches!(o, Outcome::Acked(_))) >= 5
    })
    .await;

    cluster.stop();
    for r in [&f, &g] {
        within("the follower to report the store away", LONG, || async {
            metric(&r.metrics(), "tilgang_store_connected").await == Some(0.0)
        })
        .await;
    }
    // Admin writes fail with UNAVAILABLE.
    within("writes refused as unavailable", LONG, || async {
        count(|o| *o == Outcome::Unavailable) >= 3
    })
    .await;
    let e = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("nothing was written"),
        "{}",
        e.message()
    );
    // Staleness is reported, and grows; the replica still serves.
    let (status, h) = health(&f.metrics()).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["store"]["connected"], false);
    let first = h["store"]["staleness_seconds"].as_f64().unwrap();
    within("staleness to grow", LONG, || async {
        let (_, h) = health(&f.metrics()).await;
        h["store"]["staleness_seconds"].as_f64().unwrap() > first + 1.0
    })
    .await;
    let staleness = metric(&f.metrics(), "tilgang_store_staleness_seconds").await;
    assert!(staleness.is_some_and(|s| s > 1.0), "{staleness:?}");
    assert_eq!(
        grpc_health(f.sidecar.gateway_addr, "").await,
        ServingStatus::Serving as i32
    );
    // Past --max-staleness, the strict follower denies what relied on
    // delegations, and says why; the other still decides from its snapshot.
    within(
        "the strict follower to withhold delegations",
        LONG,
        || async {
            let d = g.decide(FULL_SUPPLIER, OWNER, WRITE).await;
            !d.allowed && d.errors.iter().any(|e| e.contains("withheld"))
        },
    )
    .await;
    assert_eq!(
        metric(&g.metrics(), "tilgang_store_withheld").await,
        Some(1.0)
    );
    let (_, h) = health(&g.metrics()).await;
    assert!(h["store"]["withheld"].is_string(), "{h}");
    assert!(f.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(!f.decide(READ_SUPPLIER, OWNER, READ).await.allowed);

    cluster.start();
    for r in [&f, &g] {
        within("the follower to reconnect", LONG, || async {
            metric(&r.metrics(), "tilgang_store_connected").await == Some(1.0)
        })
        .await;
    }
    // A new write after the restart reaches both followers.
    let deadline = std::time::Instant::now() + LONG;
    let fresh = loop {
        let r = a
            .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-full"], DAGL))
            .await;
        match r {
            Ok(d) => break d.into_inner().store_revision,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "no write succeeds after the restart: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for r in [&f, &g] {
        let d = r
            .decide_at(NEW_SUPPLIER, OWNER, WRITE, fresh)
            .await
            .unwrap();
        assert!(d.allowed, "{d:?}");
    }
    within(
        "the strict follower to use delegations again",
        LONG,
        || async { g.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed },
    )
    .await;
    assert_eq!(
        metric(&g.metrics(), "tilgang_store_withheld").await,
        Some(0.0)
    );
    within("some writes after the restart", LONG, || async {
        let o = outcomes.lock().unwrap();
        o.iter()
            .rev()
            .take(3)
            .all(|(_, o)| matches!(o, Outcome::Acked(_)))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (seen_f, seen_g) = (load_f.await.unwrap(), load_g.await.unwrap());

    // Decisions never failed and never allowed the revoked pair; the
    // lenient follower never denied the delegated one; the strict one
    // denied it only with the reason.
    for (name, seen) in [("follower", &seen_f), ("strict", &seen_g)] {
        assert!(seen.decisions > 20, "{name}: {seen:?}");
        assert!(seen.errors.is_empty(), "{name}: {:?}", seen.errors);
        assert!(
            seen.wrong_allows.is_empty(),
            "{name}: {:?}",
            seen.wrong_allows
        );
    }
    assert!(seen_f.withheld.is_empty(), "{:?}", seen_f.withheld);
    assert!(!seen_g.withheld.is_empty());
    assert!(
        seen_g.withheld.iter().all(|e| e.contains("withheld")),
        "{:?}",
        seen_g.withheld
    );

    // Nothing lost, nothing half-written.
    let c = db.client().await;
    let head = assert_feed_consecutive(&c).await;
    let rows = store_rows(&c).await;
    let in_feed: Vec<String> = c
        .query("SELECT supplier FROM tilgang_changes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let audited = store_audit(&c).await;
    let outcomes = outcomes.lock().unwrap().clone();
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (sup, outcome) in &outcomes {
        let pair = (OWNER.to_string(), sup.clone());
        match outcome {
            Outcome::Acked(_) => {
                *tally.entry("acked").or_default() += 1;
                assert!(rows.contains_key(&pair), "acknowledged {sup} lost");
            }
            Outcome::Unavailable => {
                *tally.entry("unavailable").or_default() += 1;
                assert!(!rows.contains_key(&pair), "{sup} refused yet written");
                assert!(!in_feed.contains(sup), "{sup} refused yet in the feed");
                assert!(
                    !audited.iter().any(|(_, l)| l["supplier"] == sup.as_str()),
                    "{sup} refused yet audited"
                );
            }
            Outcome::Other(code) => {
                assert_eq!(*code, Code::Internal, "{sup}");
                *tally.entry("unconfirmed").or_default() += 1;
            }
        }
    }
    eprintln!(
        "{TEST}: writes {tally:?}, decisions {} + {}",
        seen_f.decisions, seen_g.decisions
    );
    for r in [&admin, &f, &g] {
        r.reach(head).await;
        assert_eq!(snapshot_rows(&r.snapshot()), rows);
    }
    admin.stop().await;
    f.stop().await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_started_while_postgres_is_down() {
    const TEST: &str = "pg::chaos::a_follower_started_while_postgres_is_down";
    let Some(cluster) = Cluster::new(TEST) else {
        return;
    };
    let name = TestDb::fresh_name(TEST);
    let url = with_param(
        &with_database(&cluster.url, &name),
        "application_name",
        "follower",
    );
    let work = pg_workdir();
    let f = Replica::start(pg_config(
        &work,
        store_config(&url),
        Some(DEFAULT_MAX_STALENESS),
    ))
    .await;

    // Not serving, and deciding without delegations, saying why.
    for service in ["", "tilgang.v1.Authorizer"] {
        assert_eq!(
            grpc_health(f.sidecar.gateway_addr, service).await,
            ServingStatus::NotServing as i32,
            "{service:?}"
        );
    }
    let (status, h) = health(&f.metrics()).await;
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "not_serving");
    assert_eq!(h["backend"], "postgres");
    assert_eq!(h["store"]["loaded"], false);
    assert_eq!(h["store"]["connected"], false);
    let d = f.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert!(!d.allowed);
    assert!(
        d.errors.iter().any(|e| e.contains("no delegations loaded")),
        "{d:?}"
    );
    assert_eq!(
        metric(&f.metrics(), "tilgang_store_withheld").await,
        Some(1.0)
    );
    let e = f
        .decide_at(FULL_SUPPLIER, OWNER, WRITE, 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);

    // PostgreSQL comes up; the schema is migrated and the delegations put in.
    cluster.start();
    let db = TestDb::create_named(&cluster.url, &name).await;
    let imported = db.import_fixtures().await;
    within("health SERVING", LONG, || async {
        grpc_health(f.sidecar.gateway_addr, "").await == ServingStatus::Serving as i32
    })
    .await;
    f.reach(imported).await;
    let (status, h) = health(&f.metrics()).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["status"], "serving");
    assert_eq!(h["store"]["loaded"], true);
    assert_eq!(h["store"]["revision"], imported);
    assert!(h["store"]["withheld"].is_null(), "{h}");
    assert!(f.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(f.decide(READ_SUPPLIER, OWNER, READ).await.allowed);
    assert!(!f.decide(READ_SUPPLIER, OWNER, WRITE).await.allowed);
    assert_eq!(
        grpc_health(f.sidecar.gateway_addr, "tilgang.v1.Authorizer").await,
        ServingStatus::Serving as i32
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_cursor_forces_a_full_reload() {
    const TEST: &str = "pg::chaos::a_pruned_cursor_forces_a_full_reload";
    let Some(server) = server(TEST) else { return };
    let db = TestDb::create(&server, TEST).await;
    let imported = db.import_fixtures().await;
    let work = pg_workdir();
    let admin = Replica::start_loaded(pg_config(
        &work,
        db.store("admin"),
        Some(DEFAULT_MAX_STALENESS),
    ))
    .await;
    let args = store_args(&db.url_as("follower"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let f = ServerProcess::spawn_with(&work, &[], &args);
    within("the follower's first snapshot", LONG, || async {
        health(&f.metrics).await.0 == 200
    })
    .await;
    assert_eq!(health(&f.metrics).await.1["store"]["revision"], imported);

    // The follower makes no progress while the store moves on and prunes
    // its feed past the follower's cursor.
    f.signal("-STOP");
    let mut a = admin.admin().await;
    for sup in org_numbers(70_000_000, 20) {
        a.delegate(delegate(OWNER, &sup, &["instances-read"], DAGL))
            .await
            .unwrap();
    }
    a.revoke(revoke(OWNER, FULL_SUPPLIER, &[], DAGL))
        .await
        .unwrap();
    let c = db.client().await;
    // Besides, a row the feed never mentions: only a full reload brings it.
    let unfed = org_numbers(71_000_000, 1).remove(0);
    c.batch_execute(&format!(
        "BEGIN;
         UPDATE tilgang_state SET pruned_through = revision - 1;
         DELETE FROM tilgang_changes WHERE revision < (SELECT revision FROM tilgang_state);
         INSERT INTO tilgang_delegations
             (owner, supplier, rights, delegated_by, created_at, updated_at, extra, revision)
         SELECT '{OWNER}', '{unfed}', ARRAY['instances-read'], '{DAGL}',
                '2026-03-01T00:00:00Z', '2026-03-01T00:00:00Z', NULL, revision
         FROM tilgang_state;
         COMMIT;"
    ))
    .await
    .unwrap();
    let (head, pruned) = store_state(&c).await;
    assert!(pruned > imported && head == pruned + 1);
    f.signal("-CONT");

    let line = wait_log(&f, "reloading everything", LONG);
    assert!(line.contains("cannot serve this cursor"), "{line}");
    wait_log(&f, "loaded every delegation from the store", LONG);
    within("the follower at the store's revision", LONG, || async {
        health(&f.metrics).await.1["store"]["revision"] == head
    })
    .await;
    let mut fa = DelegationsClient::connect(format!("http://{}", f.admin))
        .await
        .unwrap();
    let rows = store_rows(&c).await;
    assert_eq!(listed_rows(&mut fa).await, rows);
    let mut g = tilgang::proto::authorizer_client::AuthorizerClient::connect(format!(
        "http://{}",
        f.gateway
    ))
    .await
    .unwrap();
    for (supplier, allowed) in [(unfed.as_str(), true), (FULL_SUPPLIER, false)] {
        let d = g
            .is_authorized(req(supplier, OWNER, READ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.allowed, allowed, "{supplier}: {d:?}");
        assert_eq!(d.store_revision, head);
    }
    admin.stop().await;
}

/// One acknowledged write, as the writer saw it.
#[derive(Debug, Clone)]
struct Acked {
    revision: u64,
    supplier: String,
    after: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_killed_mid_write_loses_no_acknowledged_write() {
    const TEST: &str = "pg::chaos::an_admin_killed_mid_write_loses_no_acknowledged_write";
    let Some(server) = server(TEST) else { return };
    let db = TestDb::create(&server, TEST).await;
    db.import_fixtures().await;
    let work = pg_workdir();
    let args = store_args(&db.url_as("admin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = ServerProcess::spawn_with(&work, &[], &args);
    within("the admin's first snapshot", LONG, || async {
        health(&p.metrics).await.0 == 200
    })
    .await;

    // Eight callers, each delegating to its own suppliers and revoking
    // part again, until the process dies under them.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let suppliers = org_numbers(90_000_000, 800);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let url = format!("http://{}", p.admin);
        let acked = acked.clone();
        let mine: Vec<String> = suppliers.iter().skip(w).step_by(8).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let Ok(mut a) = DelegationsClient::connect(url).await else {
                return;
            };
            for sup in mine {
                let r = a
                    .delegate(delegate(
                        OWNER,
                        &sup,
                        &["instances-full", "instances-read"],
                        DAGL,
                    ))
                    .await;
                let Ok(d) = r else { return };
                let d = d.into_inner();
                acked.lock().unwrap().push(Acked {
                    revision: d.store_revision,
                    supplier: sup.clone(),
                    after: d.rights,
                });
                let r = a
                    .revoke(revoke(OWNER, &sup, &["instances-full"], DAGL))
                    .await;
                let Ok(r) = r else { return };
                let r = r.into_inner();
                acked.lock().unwrap().push(Acked {
                    revision: r.store_revision,
                    supplier: sup,
                    after: r.remaining.unwrap().rights,
                });
            }
        }))
    }
    within("writes to be acknowledged", LONG, || async {
        acked.lock().unwrap().len() >= 60
    })
    .await;
    p.signal("-KILL");
    for t in tasks {
        t.await.unwrap();
    }
    drop(p);
    let acked = acked.lock().unwrap().clone();

    // Every acknowledged write is in the store at its revision; the
    // revisions are consecutive, each with its audit line.
    let c = db.client().await;
    let head = assert_feed_consecutive(&c).await;
    let feed: BTreeMap<u64, (String, String, Option<Vec<String>>)> = c
        .query(
            "SELECT revision, owner, supplier, rights FROM tilgang_changes",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, (r.get(1), r.get(2), r.get(3))))
        .collect();
    for a in &acked {
        let (owner, supplier, rights) = &feed[&a.revision];
        assert_eq!((owner.as_str(), supplier), (OWNER, &a.supplier), "{a:?}");
        let mut rights = rights.clone().unwrap_or_default();
        rights.sort();
        assert_eq!(rights, a.after, "{a:?}");
    }
    let (_, pruned) = store_state(&c).await;
    let audit = store_audit(&c).await;
    let audited: Vec<u64> = audit.iter().filter_map(|(r, _)| *r).collect();
    assert_eq!(
        audited,
        (pruned + 1..=head).collect::<Vec<_>>(),
        "one audit line per revision"
    );
    // The rows are what the feed's last word on each pair says.
    let rows = store_rows(&c).await;
    let mut last: BTreeMap<(String, String), Option<Vec<String>>> = BTreeMap::new();
    for (owner, supplier, rights) in feed.values() {
        last.insert((owner.clone(), supplier.clone()), rights.clone());
    }
    for (pair, rights) in &last {
        let mut rights = rights.clone().unwrap_or_default();
        rights.sort();
        let held = rows.get(pair).map(|r| r.rights.clone()).unwrap_or_default();
        assert_eq!(held, rights, "{pair:?}");
    }

    // A fresh follower agrees with the store.
    let f = Replica::start_loaded(follower_config(&work, db.store("fresh"))).await;
    f.reach(head).await;
    assert_eq!(f.store_revision(), head);
    assert_eq!(snapshot_rows(&f.snapshot()), rows);
    eprintln!(
        "{TEST}: {} writes acknowledged before the kill, store at revision {head}",
        acked.len()
    );
    f.stop().await;
}
