//! A fleet on one store, all in-process: two admin replicas writing at
//! once while followers follow; a revocation reaching five followers (with
//! and without a minimum revision); and minimum revisions that are waited
//! for, or time out, over every way a caller can name one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tilgang::proto::BatchIsAuthorizedRequest;
use tilgang::sidecar::DEFAULT_MAX_STALENESS;
use tonic::Code;

use super::harness::*;
use crate::util::*;

/// One acknowledged write: its revision, its pair, what the pair held after.
#[derive(Debug, Clone)]
struct Acked {
    revision: u64,
    pair: (String, String),
    after: Vec<String>,
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// `writes` acknowledged writes through `admin`: delegations and
/// revocations over a few shared pairs, so writers collide. A revocation
/// that finds nothing is no write (and must use up no revision).
async fn writer(admin: &Replica, seed: u64, writes: usize, suppliers: Vec<String>) -> Vec<Acked> {
    let owners = [(OWNER, DAGL), (OTHER_OWNER, OTHER_ADMIN)];
    let mut a = admin.admin().await;
    let mut rng = Lcg(seed);
    let mut acked = Vec::new();
    let mut refused = 0;
    while acked.len() < writes {
        let (owner, actor) = owners[rng.next(2) as usize];
        let supplier = &suppliers[rng.next(suppliers.len() as u64) as usize];
        let pair = (owner.to_string(), supplier.clone());
        let result = match rng.next(4) {
            0 => a
                .delegate(delegate(owner, supplier, &["instances-read"], actor))
                .await
                .map(|r| (r.get_ref().store_revision, r.into_inner().rights)),
            1 => a
                .delegate(delegate(owner, supplier, &["instances-full"], actor))
                .await
                .map(|r| (r.get_ref().store_revision, r.into_inner().rights)),
            2 => a
                .revoke(revoke(owner, supplier, &[], actor))
                .await
                .map(|r| {
                    let r = r.into_inner();
                    (r.store_revision, r.remaining.unwrap().rights)
                }),
            _ => a
                .revoke(revoke(owner, supplier, &["instances-full"], actor))
                .await
                .map(|r| {
                    let r = r.into_inner();
                    (r.store_revision, r.remaining.unwrap().rights)
                }),
        };
        match result {
            Ok((revision, after)) => acked.push(Acked {
                revision,
                pair,
                after,
            }),
            Err(e) if e.code() == Code::NotFound => refused += 1,
            Err(e) => panic!("write {} failed: {e:?}", acked.len()),
        }
        assert!(refused < 10 * writes, "the writer makes no progress");
    }
    acked
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_and_followers_end_equal_to_the_store() {
    const TEST: &str = "pg::fleet::two_writers_and_followers_end_equal_to_the_store";
    let Some(server) = server(TEST) else { return };
    let db = TestDb::create(&server, TEST).await;
    let work = pg_workdir();
    let staleness = Some(DEFAULT_MAX_STALENESS);
    let admins = [
        Replica::start_loaded(pg_config(&work, db.store("admin-1"), staleness)).await,
        Replica::start_loaded(pg_config(&work, db.store("admin-2"), staleness)).await,
    ];
    let mut followers = Vec::new();
    for i in 0..3 {
        followers.push(
            Replica::start_loaded(follower_config(&work, db.store(&format!("follower-{i}")))).await,
        );
    }

    // 200 acknowledged writes through each admin replica, by four callers
    // each, over the same twelve suppliers of two owners.
    let suppliers = org_numbers(50_000_000, 12);
    let mut all: Vec<Acked> = Vec::new();
    {
        let mut calls = Vec::new();
        for (i, admin) in admins.iter().enumerate() {
            for c in 0..4 {
                let seed = (i * 4 + c) as u64 + 1;
                calls.push(writer(admin, seed, 50, suppliers.clone()));
            }
        }
        for acked in join_all(calls).await {
            all.extend(acked);
        }
    }
    assert_eq!(all.len(), 400);
    let c = db.client().await;

    // None lost, none twice: the acknowledged revisions are exactly 1..=n,
    // and the feed holds each once.
    let head = assert_feed_consecutive(&c).await;
    let mut revisions: Vec<u64> = all.iter().map(|a| a.revision).collect();
    revisions.sort();
    assert_eq!(revisions, (1..=head).collect::<Vec<_>>());

    // Serialized: each pair holds what its last acknowledged write left.
    let rows = store_rows(&c).await;
    let mut last: BTreeMap<(String, String), &Acked> = BTreeMap::new();
    for a in &all {
        let e = last.entry(a.pair.clone()).or_insert(a);
        if a.revision > e.revision {
            *e = a;
        }
    }
    for (pair, a) in &last {
        let held = rows.get(pair).map(|r| r.rights.clone()).unwrap_or_default();
        assert_eq!(held, a.after, "{pair:?} after revision {}", a.revision);
    }
    // And no write lost another's: per pair, in revision order, each
    // audited change starts from what the one before it left.
    let audit = store_audit(&c).await;
    assert_eq!(audit.len() as u64, head, "one audit line per revision");
    let mut held: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
    let mut by_revision: Vec<_> = audit.iter().collect();
    by_revision.sort_by_key(|(r, _)| *r);
    for (i, (revision, line)) in by_revision.iter().enumerate() {
        assert_eq!(*revision, Some(i as u64 + 1));
        let pair = (
            line["owner"].as_str().unwrap().to_string(),
            line["supplier"].as_str().unwrap().to_string(),
        );
        let before = held
            .get(&pair)
            .cloned()
            .unwrap_or_else(|| serde_json::json!([]));
        assert_eq!(line["rights_before"], before, "revision {i}: {line}");
        held.insert(pair, line["rights_after"].clone());
    }

    // Every replica ends at the store's revision with the store's rows.
    for r in admins.iter().chain(&followers) {
        r.reach(head).await;
        assert_eq!(r.store_revision(), head);
        assert_eq!(snapshot_rows(&r.snapshot()), rows);
    }
    for r in admins.into_iter().chain(followers) {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_reach_five_followers() {
    const TEST: &str = "pg::fleet::revocations_reach_five_followers";
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
    let mut followers = Vec::new();
    for i in 0..5 {
        followers.push(
            Replica::start_loaded(follower_config(&work, db.store(&format!("follower-{i}")))).await,
        );
    }
    let mut a = admin.admin().await;
    let suppliers = org_numbers(60_000_000, 10);
    let mut revision = 0;
    for sup in &suppliers {
        revision = a
            .delegate(delegate(OWNER, sup, &["instances-read"], DAGL))
            .await
            .unwrap()
            .into_inner()
            .store_revision;
    }
    for f in &followers {
        f.reach(revision).await;
        for sup in &suppliers {
            assert!(f.decide(sup, OWNER, READ).await.allowed);
        }
    }
    let mut gateways = Vec::new();
    for f in &followers {
        gateways.push(f.gateway().await);
    }

    let mut latencies = Vec::new();
    for (i, sup) in suppliers.iter().enumerate() {
        let r = a
            .revoke(revoke(OWNER, sup, &[], DAGL))
            .await
            .unwrap()
            .into_inner()
            .store_revision;
        let acked = Instant::now();
        if i % 2 == 0 {
            // Read your writes: asked at the revocation's revision, every
            // follower denies at once, never from the snapshot before it.
            let asks = gateways.iter().map(|g| {
                let mut g = g.clone();
                let mut q = req(sup, OWNER, READ);
                q.min_revision = r;
                async move { g.is_authorized(q).await.unwrap().into_inner() }
            });
            for d in join_all(asks).await {
                assert!(!d.allowed, "an allow after the revocation: {d:?}");
                assert!(d.store_revision >= r);
            }
        } else {
            // Without a minimum revision it arrives by itself, soon.
            let polls = gateways.iter().map(|g| {
                let mut g = g.clone();
                let sup = sup.clone();
                async move {
                    loop {
                        let d = g
                            .is_authorized(req(&sup, OWNER, READ))
                            .await
                            .unwrap()
                            .into_inner();
                        if !d.allowed {
                            assert!(d.store_revision >= r);
                            return acked.elapsed();
                        }
                        assert!(
                            acked.elapsed() < Duration::from_secs(5),
                            "a revocation took over 5 s to reach a follower"
                        );
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
            latencies.extend(join_all(polls).await);
        }
    }
    latencies.sort();
    let worst = *latencies.last().unwrap();
    eprintln!(
        "revocation visible at 5 followers without min_revision: median {:?}, worst {worst:?} ({} samples)",
        latencies[latencies.len() / 2],
        latencies.len()
    );
    // Notified followers apply a change in milliseconds (and poll every
    // 500 ms besides); the bound leaves room for a loaded machine.
    assert!(worst < Duration::from_secs(3), "{latencies:?}");
    admin.stop().await;
    for f in followers {
        f.stop().await;
    }
}

/// `IsAuthorized` with the minimum revision in the gRPC metadata.
fn with_metadata(
    supplier: &str,
    value: &str,
) -> tonic::Request<tilgang::proto::IsAuthorizedRequest> {
    let mut r = tonic::Request::new(req(supplier, OWNER, READ));
    r.metadata_mut()
        .insert("x-tilgang-min-revision", value.parse().unwrap());
    r
}

/// An Envoy check of a read by `supplier`, with the minimum revision in
/// the checked request's headers.
fn check_at(supplier: &str, min: &str) -> envoy_types::ext_authz::v3::pb::CheckRequest {
    let p = crate::ext_authz::payload(Some(supplier), OWNER, &[READ]);
    let mut c = crate::ext_authz::check("GET", crate::ext_authz::INSTANCE, Some(p));
    let http = c
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.headers
        .insert("x-tilgang-min-revision".into(), min.into());
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn minimum_revisions_wait_and_time_out() {
    const TEST: &str = "pg::fleet::minimum_revisions_wait_and_time_out";
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
    let f = Replica::start_loaded(follower_config(&work, db.store("follower"))).await;
    let mut a = admin.admin().await;
    let head = admin.store_revision();
    f.reach(head).await;
    let mut g = f.gateway().await;
    let mut envoy = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{}", f.sidecar.gateway_addr),
    )
    .await
    .unwrap();

    // The next revision, asked for before it exists: the answer waits for
    // the write, and includes it.
    let asked = {
        let mut g = g.clone();
        let mut q = req(NEW_SUPPLIER, OWNER, READ);
        q.min_revision = head + 1;
        tokio::spawn(async move {
            let t = Instant::now();
            (g.is_authorized(q).await, t.elapsed())
        })
    };
    let by_metadata = {
        let mut g = g.clone();
        let q = with_metadata(NEW_SUPPLIER, &(head + 1).to_string());
        tokio::spawn(async move { g.is_authorized(q).await })
    };
    // Only to have the requests waiting when the write lands; what is
    // checked after is the answer, which must include the write.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let d = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.store_revision, head + 1);
    let (answer, waited) = asked.await.unwrap();
    let answer = answer.unwrap().into_inner();
    assert!(answer.allowed, "answered before the write: {answer:?}");
    assert!(answer.store_revision > head);
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let answer = by_metadata.await.unwrap().unwrap().into_inner();
    assert!(answer.allowed && answer.store_revision > head, "{answer:?}");

    // A revision that never comes: UNAVAILABLE naming it, after the bounded
    // wait; over the request field, the metadata, a batch and Envoy's check.
    let far = head + 1000;
    let (mut g2, mut g3, mut envoy2) = (g.clone(), g.clone(), envoy.clone());
    let t = Instant::now();
    let (field, metadata, batch, check) = tokio::join!(
        f.decide_at(FULL_SUPPLIER, OWNER, READ, far),
        g2.is_authorized(with_metadata(FULL_SUPPLIER, &far.to_string())),
        g3.batch_is_authorized(BatchIsAuthorizedRequest {
            requests: vec![req(FULL_SUPPLIER, OWNER, READ), {
                let mut q = req(READ_SUPPLIER, OWNER, READ);
                q.min_revision = far;
                q
            }],
        }),
        envoy2.check(check_at(FULL_SUPPLIER, &far.to_string())),
    );
    let elapsed = t.elapsed();
    for (what, e) in [
        ("field", field.unwrap_err()),
        ("metadata", metadata.unwrap_err()),
        ("batch", batch.unwrap_err()),
    ] {
        assert_eq!(e.code(), Code::Unavailable, "{what}: {e:?}");
        assert!(
            e.message().contains(&format!("minimum {far}")),
            "{what}: {}",
            e.message()
        );
    }
    let check = check.unwrap().into_inner();
    assert_eq!(
        check.status.as_ref().unwrap().code,
        Code::Unavailable as i32
    );
    assert!(
        check.status.unwrap().message.contains(&far.to_string()),
        "the check's reason names the revision"
    );
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );

    // A revision already reached is answered at once; a bad one is refused.
    let now = f.store_revision().to_string();
    let ok = g
        .is_authorized(with_metadata(FULL_SUPPLIER, &now))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.allowed);
    let ok = envoy.check(check_at(FULL_SUPPLIER, &now)).await.unwrap();
    assert_eq!(ok.into_inner().status.unwrap().code, Code::Ok as i32);
    for bad in ["abc", "-1", "1e3"] {
        let e = g
            .is_authorized(with_metadata(FULL_SUPPLIER, bad))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(
            e.message().contains("`x-tilgang-min-revision`"),
            "{bad}: {}",
            e.message()
        );
    }
    let bad = envoy.check(check_at(FULL_SUPPLIER, "abc")).await.unwrap();
    let status = bad.into_inner().status.unwrap();
    assert_eq!(status.code, Code::PermissionDenied as i32);
    assert!(
        status.message.contains("x-tilgang-min-revision"),
        "{status:?}"
    );

    // A follower asked for its admin's write right after the reply.
    let r = a
        .revoke(revoke(OWNER, FULL_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    let d = f
        .decide_at(FULL_SUPPLIER, OWNER, READ, r.store_revision)
        .await
        .unwrap();
    assert!(!d.allowed, "{d:?}");
    admin.stop().await;
    f.stop().await;
}
