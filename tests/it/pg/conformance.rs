//! One conformance suite, run against both backends: each body below is a
//! test twice, `pg::conformance::files::<body>` over a data directory and
//! `pg::conformance::postgres::<body>` over a fresh PostgreSQL database
//! holding the same fixture delegations (imported). The bodies see the
//! backends only through [`Bed`]: start a replica, read back what the store
//! holds, its audit log, and the arguments that point the real binary at it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tilgang::proto::ListDelegationsRequest;
use tilgang::proto::delegations_client::DelegationsClient;
use tilgang::sidecar::Config;
use tilgang::snapshot::load::{PolicySource, load_snapshot};
use tonic::Code;
use tonic::transport::Channel;

use super::harness::*;
use crate::util::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Files,
    Postgres,
}

/// Where a body's delegations live: the work directory (policies, and for
/// the file store its data), and for PostgreSQL the test's database.
pub struct Bed {
    pub kind: Kind,
    pub work: Workdir,
    pub db: Option<TestDb>,
    started: AtomicU32,
}

impl Bed {
    /// The fixture delegations in `kind`'s store; `None`: skipped.
    pub async fn new(kind: Kind, test: &str) -> Option<Self> {
        // The name `cargo test` shows (module_path! starts with the crate).
        let test = test.strip_prefix("it::").unwrap_or(test);
        let (work, db) = match kind {
            Kind::Files => (Workdir::new(), None),
            Kind::Postgres => {
                let db = TestDb::create(&server(test)?, test).await;
                db.import_fixtures().await;
                (pg_workdir(), Some(db))
            }
        };
        Some(Self {
            kind,
            work,
            db,
            started: AtomicU32::new(0),
        })
    }

    pub fn config(&self) -> Config {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        match &self.db {
            None => self.work.config(),
            Some(db) => pg_config(
                &self.work,
                db.store(&format!("replica-{n}")),
                Some(tilgang::sidecar::DEFAULT_MAX_STALENESS),
            ),
        }
    }

    /// A replica, once it decides from the store's delegations.
    pub async fn start(&self) -> Replica {
        self.start_with(|_| {}).await
    }

    pub async fn start_with(&self, tweak: impl FnOnce(&mut Config)) -> Replica {
        let mut cfg = self.config();
        tweak(&mut cfg);
        Replica::start_loaded(cfg).await
    }

    /// `serve`'s arguments for the real binary on this store (besides the
    /// work directory's).
    pub fn serve_args(&self) -> Vec<String> {
        match &self.db {
            None => Vec::new(),
            Some(db) => store_args(&db.url_as("binary")),
        }
    }

    /// What the store holds, read without any replica: the files loaded
    /// afresh, or the table.
    pub async fn rows(&self) -> Rows {
        match &self.db {
            None => {
                let src = PolicySource::Dir(self.work.policies());
                snapshot_rows(&load_snapshot(&src, &self.work.data()).unwrap())
            }
            Some(db) => store_rows(&db.client().await).await,
        }
    }

    /// The audit log's lines (changes and refusals), oldest first.
    pub async fn audit(&self) -> Vec<serde_json::Value> {
        match &self.db {
            None => std::fs::read_to_string(self.work.data().join("audit.jsonl"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Some(db) => store_audit(&db.client().await)
                .await
                .into_iter()
                .map(|(_, l)| l)
                .collect(),
        }
    }

    /// The audit log's change lines, as their `change`.
    pub async fn changes(&self) -> Vec<String> {
        self.audit()
            .await
            .iter()
            .filter_map(|l| l.get("change").and_then(|c| c.as_str()).map(str::to_string))
            .collect()
    }
}

/// Each body as two tests, one per backend.
macro_rules! both_backends {
    ($($body:ident),* $(,)?) => {
        both_backends!(@kind files, Files, $($body),*);
        both_backends!(@kind postgres, Postgres, $($body),*);
    };
    (@kind $module:ident, $kind:ident, $($body:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $body() {
                    let test = concat!(module_path!(), "::", stringify!($body));
                    if let Some(bed) = super::Bed::new(super::Kind::$kind, test).await {
                        super::$body(bed).await;
                    }
                }
            )*
        }
    };
}

both_backends!(
    delegate_revoke_undo_drive_decisions,
    delegate_is_idempotent_and_additive,
    refusals_write_nothing,
    undo_works_on_another_replica,
    undo_expires_and_is_authorized,
    paging_lists_every_delegation_once,
    concurrent_writes_serialize,
    acknowledged_writes_survive_kill_9,
    roles_file_decides_who_may_write,
    undo_of_a_right_gone_from_the_catalogue_restores_nothing,
);

async fn list_of(a: &DelegationsClient<Channel>, owner: &str, supplier: &str) -> Vec<String> {
    let req = ListDelegationsRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        page_size: 1000,
        ..Default::default()
    };
    a.clone()
        .list_delegations(req)
        .await
        .unwrap()
        .into_inner()
        .delegations
        .into_iter()
        .map(|d| d.supplier)
        .collect()
}

async fn delegate_revoke_undo_drive_decisions(bed: Bed) {
    let s = bed.start().await;
    let mut a = s.admin().await;
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let mut revisions = vec![s.store_revision()];

    // Delegate both rights: allowed at once on this replica.
    let d = a
        .delegate(delegate(
            OWNER,
            NEW_SUPPLIER,
            &["instances-full", "instances-read"],
            DAGL,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-full", "instances-read"]);
    assert_eq!(d.scopes, [READ, WRITE]);
    assert_eq!(d.delegated_by, DAGL);
    assert!(!d.updated_at.is_empty() && d.created_at == d.updated_at);
    revisions.push(d.store_revision);
    assert!(s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);

    // Revoke some: full access goes, read stays.
    let r = a
        .revoke(revoke(OWNER, NEW_SUPPLIER, &["instances-full"], DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.remaining.as_ref().unwrap().rights, ["instances-read"]);
    assert_eq!(r.remaining.as_ref().unwrap().scopes, [READ]);
    revisions.push(r.store_revision);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let partial = r.undo_token;

    // Revoke all (no rights named): denied, and gone from the overview.
    let r = a
        .revoke(revoke(OWNER, NEW_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    assert!(r.remaining.unwrap().rights.is_empty());
    assert_eq!(r.undo_token.len(), 32);
    assert!(!r.undo_expires_at.is_empty());
    revisions.push(r.store_revision);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let listed = list_of(&a, OWNER, "").await;
    assert_eq!(listed, [FULL_SUPPLIER, READ_SUPPLIER], "the fixture's two");

    // Undo the last: read is back, exactly that; the token works once.
    let d = a
        .undo_revoke(undo(&r.undo_token, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-read"]);
    revisions.push(d.store_revision);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    let e = a.undo_revoke(undo(&r.undo_token, DAGL)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("already used"), "{}", e.message());

    // The earlier, partial revocation undone too: full access is back.
    let d = a
        .undo_revoke(undo(&partial, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-full", "instances-read"]);
    revisions.push(d.store_revision);
    assert!(s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);

    // Each write made the next store revision, and a decision asking for
    // the last one is answered at it.
    assert!(
        revisions.windows(2).all(|w| w[1] == w[0] + 1),
        "{revisions:?}"
    );
    let last = *revisions.last().unwrap();
    let at = s.decide_at(NEW_SUPPLIER, OWNER, WRITE, last).await.unwrap();
    assert!(at.allowed && at.store_revision >= last, "{at:?}");

    // One audit line per change, with before and after.
    let audit = bed.audit().await;
    let changes: Vec<&str> = audit.iter().filter_map(|l| l["change"].as_str()).collect();
    assert_eq!(changes, ["grant", "revoke", "revoke-last", "undo", "undo"]);
    assert_eq!(
        audit[1]["rights_before"],
        serde_json::json!(["instances-full", "instances-read"])
    );
    assert_eq!(
        audit[1]["rights_after"],
        serde_json::json!(["instances-read"])
    );
    for l in &audit {
        assert_eq!(l["actor"], DAGL);
        assert_eq!(l["owner"], OWNER);
        assert_eq!(l["supplier"], NEW_SUPPLIER);
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
    }
    // What the replica decides from is exactly what the store holds.
    assert_eq!(bed.rows().await, snapshot_rows(&s.snapshot()));
    s.stop().await;
}

async fn delegate_is_idempotent_and_additive(bed: Bed) {
    let s = bed.start().await;
    let mut a = s.admin().await;
    let first = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-full"], DAGL))
        .await
        .unwrap()
        .into_inner();
    let again = a
        .delegate(delegate(
            OWNER,
            NEW_SUPPLIER,
            &["instances-full"],
            "04048612345",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.rights, first.rights);
    assert_eq!(again.created_at, first.created_at);
    assert_eq!(again.delegated_by, "04048612345");
    let both = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(both.rights, ["instances-full", "instances-read"]);
    assert_eq!(both.created_at, first.created_at);
    let rows = bed.rows().await;
    let row = &rows[&(OWNER.to_string(), NEW_SUPPLIER.to_string())];
    assert_eq!(row.rights, ["instances-full", "instances-read"]);
    assert_eq!(row.created_at, first.created_at);
    assert_eq!(row.delegated_by, DAGL);
    s.stop().await;
}

async fn refusals_write_nothing(bed: Bed) {
    let s = bed.start().await;
    let mut a = s.admin().await;
    let rows_before = bed.rows().await;
    let revision_before = s.store_revision();

    // No key role for the owner: a role for another owner, a role that is
    // not a key role (REGN), no role at all.
    for actor in [OTHER_ADMIN, "03038712345", "99999999999"] {
        let e = a
            .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], actor))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{actor}");
        assert!(
            e.message().contains("DAGL") && e.message().contains("APIADM"),
            "{}",
            e.message()
        );
        assert!(e.message().contains(actor));
    }
    let e = a
        .revoke(revoke(OWNER, FULL_SUPPLIER, &[], OTHER_ADMIN))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Malformed: INVALID_ARGUMENT naming the field.
    let cases = [
        (
            delegate("99182582", NEW_SUPPLIER, &["instances-read"], DAGL),
            "`owner`",
        ),
        (
            delegate(OWNER, "889640783", &["instances-read"], DAGL),
            "`supplier`",
        ),
        (
            delegate(OWNER, NEW_SUPPLIER, &["instances-read"], ""),
            "`actor`",
        ),
        (
            delegate(OWNER, OWNER, &["instances-read"], DAGL),
            "`supplier`",
        ),
        (delegate(OWNER, NEW_SUPPLIER, &[], DAGL), "`rights`"),
        (
            delegate(OWNER, NEW_SUPPLIER, &["../etc/passwd"], DAGL),
            "`rights[0]`",
        ),
        (
            delegate(OWNER, NEW_SUPPLIER, &["instances-admin"], DAGL),
            "`rights`",
        ),
    ];
    for (r, field) in cases {
        let e = a.delegate(r.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{r:?}");
        assert!(e.message().starts_with(field), "{r:?}: {}", e.message());
    }

    // Nothing to revoke.
    let e = a
        .revoke(revoke(OWNER, NEW_SUPPLIER, &[], DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = a
        .revoke(revoke(OWNER, READ_SUPPLIER, &["instances-full"], DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("instances-full"), "{}", e.message());

    // Undo tokens: malformed, unknown.
    let e = a.undo_revoke(undo("not-a-token", DAGL)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("`undo_token`"), "{}", e.message());
    let e = a
        .undo_revoke(undo(&"0".repeat(32), DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Nothing was written, and no revision was used up.
    assert_eq!(bed.rows().await, rows_before);
    assert_eq!(s.store_revision(), revision_before);
    if let Some(db) = &bed.db {
        let c = db.client().await;
        assert_eq!(store_state(&c).await.0, revision_before);
        assert_feed_consecutive(&c).await;
    }
    // The refusals are on record (not the malformed requests), and no change.
    let audit = bed.audit().await;
    assert!(audit.iter().all(|l| l.get("change").is_none()), "{audit:?}");
    let got: Vec<(&str, &str)> = audit
        .iter()
        .map(|l| {
            (
                l["refused"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("delegate", "forbidden"),
            ("delegate", "forbidden"),
            ("delegate", "forbidden"),
            ("revoke", "forbidden"),
            ("undo", "unknown_token"),
        ]
    );
    assert!(!audit[4].to_string().contains(&"0".repeat(32)));
    s.stop().await;
}

async fn undo_works_on_another_replica(bed: Bed) {
    let one = bed.start().await;
    let given = bed.rows().await[&(OWNER.to_string(), READ_SUPPLIER.to_string())].clone();
    let r = one
        .admin()
        .await
        .revoke(revoke(OWNER, READ_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    assert!(!one.decide(READ_SUPPLIER, OWNER, READ).await.allowed);

    // The file store has one writer per data directory: its other replica
    // is the next process on it. PostgreSQL's runs beside the first.
    let (one, two) = match bed.kind {
        Kind::Files => {
            one.stop().await;
            (None, bed.start().await)
        }
        Kind::Postgres => {
            let two = bed.start().await;
            let d = two
                .decide_at(READ_SUPPLIER, OWNER, READ, r.store_revision)
                .await
                .unwrap();
            assert!(!d.allowed, "the revocation reached the other replica");
            (Some(one), two)
        }
    };
    assert!(!two.decide(READ_SUPPLIER, OWNER, READ).await.allowed);
    let mut a2 = two.admin().await;
    let d = a2
        .undo_revoke(undo(&r.undo_token, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-read"]);
    assert_eq!(
        d.created_at, given.created_at,
        "the undo restores when it was first given"
    );
    assert!(two.decide(READ_SUPPLIER, OWNER, READ).await.allowed);

    // Used is used, on every replica.
    let again = match &one {
        Some(one) => {
            let at = one
                .decide_at(READ_SUPPLIER, OWNER, READ, d.store_revision)
                .await
                .unwrap();
            assert!(at.allowed, "the undo reached the first replica");
            one.admin()
                .await
                .undo_revoke(undo(&r.undo_token, DAGL))
                .await
        }
        None => a2.undo_revoke(undo(&r.undo_token, DAGL)).await,
    };
    let e = again.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("already used"), "{}", e.message());
    assert_eq!(bed.changes().await, ["revoke-last", "undo"]);
    if let Some(one) = one {
        one.stop().await;
    }
    two.stop().await;
}

async fn undo_expires_and_is_authorized(bed: Bed) {
    let s = bed.start_with(|c| c.undo_window = Duration::ZERO).await;
    let mut a = s.admin().await;
    let r = a
        .revoke(revoke(OWNER, READ_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    // Someone who may not administer the owner learns nothing of the token.
    let e = a
        .undo_revoke(undo(&r.undo_token, OTHER_ADMIN))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(!e.message().contains(OWNER), "{}", e.message());
    // The owner's admin is told why.
    let e = a.undo_revoke(undo(&r.undo_token, DAGL)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("expired"), "{}", e.message());
    assert!(!s.decide(READ_SUPPLIER, OWNER, READ).await.allowed);
    assert!(
        !bed.rows()
            .await
            .contains_key(&(OWNER.to_string(), READ_SUPPLIER.to_string()))
    );
    s.stop().await;
}

type Pair = (String, String);

/// Every page of a listing, as pairs per page; only the last lacks a token.
async fn walk(
    a: &mut DelegationsClient<Channel>,
    owner: &str,
    supplier: &str,
    size: i32,
) -> Vec<Vec<Pair>> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let r = a
            .list_delegations(ListDelegationsRequest {
                owner: owner.into(),
                supplier: supplier.into(),
                page_size: size,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(
            r.delegations
                .into_iter()
                .map(|d| (d.owner, d.supplier))
                .collect(),
        );
        if r.next_page_token.is_empty() {
            return pages;
        }
        assert!(pages.len() < 1000, "the walk does not end");
        token = r.next_page_token;
    }
}

async fn paging_lists_every_delegation_once(bed: Bed) {
    let s = bed.start().await;
    let mut a = s.admin().await;
    let added = org_numbers(30_000_000, 30);
    for sup in &added {
        a.delegate(delegate(OWNER, sup, &["instances-read"], DAGL))
            .await
            .unwrap();
    }
    let mut owners: Vec<Pair> = added
        .iter()
        .chain([FULL_SUPPLIER.to_string(), READ_SUPPLIER.to_string()].iter())
        .map(|s| (OWNER.to_string(), s.clone()))
        .collect();
    owners.sort();

    // One owner, pages of 7: every delegation once, in order.
    let pages = walk(&mut a, OWNER, "", 7).await;
    let lens: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(lens, [7, 7, 7, 7, 4]);
    assert_eq!(pages.concat(), owners);

    // Everything, pages of 5, across owners in (owner, supplier) order.
    let whole = walk(&mut a, "", "", 5).await.concat();
    let mut sorted = whole.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(whole, sorted, "in order, none twice");
    assert_eq!(whole.len(), owners.len() + 1, "and the other owner's one");
    assert_eq!(whole, walk(&mut a, "", "", 1000).await.concat());

    // A supplier across owners, a page each.
    a.delegate(delegate(
        OTHER_OWNER,
        FULL_SUPPLIER,
        &["instances-read"],
        OTHER_ADMIN,
    ))
    .await
    .unwrap();
    let by_supplier = walk(&mut a, "", FULL_SUPPLIER, 1).await;
    assert_eq!(
        by_supplier.concat(),
        [
            (OTHER_OWNER.to_string(), FULL_SUPPLIER.to_string()),
            (OWNER.to_string(), FULL_SUPPLIER.to_string())
        ]
    );

    // Writes between pages: what exists throughout is listed once; removed
    // ahead of the walk is not; added ahead of it is.
    let first = a
        .list_delegations(ListDelegationsRequest {
            owner: OWNER.into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let removed_ahead = owners[20].1.clone();
    a.revoke(revoke(OWNER, &removed_ahead, &[], DAGL))
        .await
        .unwrap();
    let added_ahead = "999999999".to_string();
    a.delegate(delegate(OWNER, &added_ahead, &["instances-read"], DAGL))
        .await
        .unwrap();
    let mut got: Vec<String> = first.delegations.into_iter().map(|d| d.supplier).collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let r = a
            .list_delegations(ListDelegationsRequest {
                owner: OWNER.into(),
                page_size: 10,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        got.extend(r.delegations.into_iter().map(|d| d.supplier));
        token = r.next_page_token;
    }
    let mut want: Vec<String> = owners
        .iter()
        .map(|(_, s)| s.clone())
        .filter(|s| *s != removed_ahead)
        .collect();
    want.push(added_ahead);
    want.sort();
    assert_eq!(got, want);
    s.stop().await;
}

async fn concurrent_writes_serialize(bed: Bed) {
    let s = bed.start().await;
    let suppliers = org_numbers(10_000_000, 24);
    let mut tasks = Vec::new();
    for sup in &suppliers {
        let mut a = s.admin().await;
        let sup = sup.clone();
        tasks.push(tokio::spawn(async move {
            a.delegate(delegate(OWNER, &sup, &["instances-read"], DAGL))
                .await
                .unwrap()
                .into_inner()
                .store_revision
        }));
    }
    let mut revisions = Vec::new();
    for t in tasks {
        revisions.push(t.await.unwrap());
    }
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 24, "each write its own revision");
    let rows = bed.rows().await;
    for sup in &suppliers {
        assert!(
            rows.contains_key(&(OWNER.to_string(), sup.clone())),
            "{sup}"
        );
        assert!(s.decide(sup, OWNER, READ).await.allowed);
    }

    // The same revocation eight times at once: one takes effect, seven find
    // nothing left.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut a = s.admin().await;
        tasks.push(tokio::spawn(async move {
            a.revoke(revoke(OWNER, READ_SUPPLIER, &[], DAGL))
                .await
                .map(|r| r.into_inner().undo_token)
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(token) => tokens.push(token),
            Err(e) => assert_eq!(e.code(), Code::NotFound, "{e:?}"),
        }
    }
    assert_eq!(tokens.len(), 1, "exactly one revocation took effect");

    // Its undo eight times at once: one restores, seven are told it is used.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut a = s.admin().await;
        let token = tokens[0].clone();
        tasks.push(tokio::spawn(async move {
            a.undo_revoke(undo(&token, DAGL)).await
        }));
    }
    let mut restored = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => {
                assert_eq!(d.into_inner().rights, ["instances-read"]);
                restored += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                assert!(e.message().contains("already used"), "{}", e.message());
            }
        }
    }
    assert_eq!(restored, 1, "exactly one undo took effect");
    assert!(s.decide(READ_SUPPLIER, OWNER, READ).await.allowed);

    let mut changes = bed.changes().await;
    changes.sort();
    let mut want = vec!["grant".to_string(); 24];
    want.extend(["revoke-last".to_string(), "undo".to_string()]);
    want.sort();
    assert_eq!(changes, want, "one audit line per change that took effect");
    assert_eq!(bed.rows().await, snapshot_rows(&s.snapshot()));
    if let Some(db) = &bed.db {
        assert_feed_consecutive(&db.client().await).await;
    }
    s.stop().await;
}

async fn acknowledged_writes_survive_kill_9(bed: Bed) {
    let args = bed.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::spawn_with(&bed.work, &[], &args);
    within("the binary to load its snapshot", LONG, || async {
        health(&server.metrics).await.0 == 200
    })
    .await;
    let mut a = DelegationsClient::connect(format!("http://{}", server.admin))
        .await
        .unwrap();
    let suppliers = org_numbers(40_000_000, 10);
    for sup in &suppliers {
        a.delegate(delegate(OWNER, sup, &["instances-full"], DAGL))
            .await
            .unwrap();
    }
    let token = a
        .revoke(revoke(OWNER, FULL_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner()
        .undo_token;
    let last = a
        .revoke(revoke(OWNER, &suppliers[0], &["instances-full"], DAGL))
        .await
        .unwrap()
        .into_inner();
    assert!(last.remaining.unwrap().rights.is_empty());
    // Acknowledged; now the process dies without a word.
    server.signal("-KILL");
    let mut server = server;
    server.exit_within(Duration::from_secs(10)).await.unwrap();

    let s = bed.start().await;
    for sup in &suppliers[1..] {
        assert!(s.decide(sup, OWNER, WRITE).await.allowed, "{sup} lost");
    }
    assert!(!s.decide(&suppliers[0], OWNER, READ).await.allowed);
    assert!(!s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed);
    // The undo record survived too.
    let d = s
        .admin()
        .await
        .undo_revoke(undo(&token, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-full"]);
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    let changes = bed.changes().await;
    assert_eq!(changes.len(), 13, "{changes:?}");
    assert_eq!(bed.rows().await, snapshot_rows(&s.snapshot()));
    s.stop().await;
}

async fn roles_file_decides_who_may_write(bed: Bed) {
    let s = bed.start().await;
    let mut a = s.admin().await;
    let newcomer = "05057612345";
    let e = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], newcomer))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // `roles.json` is a file beside either store, and is reloaded.
    let roles = bed.work.data().join("roles.json");
    let mut list: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&roles).unwrap()).unwrap();
    list.push(serde_json::json!({"org": OWNER, "person": newcomer, "role": "APIADM"}));
    save_by_rename(&roles, &serde_json::to_string_pretty(&list).unwrap());
    eventually("the new APIADM role to apply", || {
        let mut a = a.clone();
        async move {
            a.delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], newcomer))
                .await
                .is_ok()
        }
    })
    .await;
    // While it does not load, nobody writes (fail closed); decisions stand.
    std::fs::write(&roles, "[ broken").unwrap();
    eventually("writes to be refused", || {
        let mut a = a.clone();
        async move {
            // Until the broken file is seen, this write changes nothing.
            a.delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], newcomer))
                .await
                .is_err_and(|e| e.code() == Code::FailedPrecondition)
        }
    })
    .await;
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    save_by_rename(&roles, &serde_json::to_string_pretty(&list).unwrap());
    let rows = bed.rows().await;
    assert_eq!(
        rows[&(OWNER.to_string(), NEW_SUPPLIER.to_string())].delegated_by,
        newcomer
    );
    s.stop().await;
}

async fn undo_of_a_right_gone_from_the_catalogue_restores_nothing(bed: Bed) {
    let s = bed.start().await;
    let mut a = s.admin().await;
    let rights = bed.work.policies().join("rights.json");
    let original = std::fs::read_to_string(&rights).unwrap();
    let with_extra = original.replacen(
        "\"rights\": [",
        "\"rights\": [\n    { \"id\": \"extra\", \"name\": \"Extra\", \"scopes\": [\"altinn:serviceowner/extra\"] },",
        1,
    );
    let has_extra = |a: &DelegationsClient<Channel>| {
        let mut a = a.clone();
        async move {
            a.list_rights(tilgang::proto::ListRightsRequest {})
                .await
                .unwrap()
                .into_inner()
                .rights
                .iter()
                .any(|r| r.id == "extra")
        }
    };
    std::fs::write(&rights, &with_extra).unwrap();
    eventually("the extra right to exist", || has_extra(&a)).await;
    a.delegate(delegate(OWNER, NEW_SUPPLIER, &["extra"], DAGL))
        .await
        .unwrap();
    assert!(
        s.decide(NEW_SUPPLIER, OWNER, "altinn:serviceowner/extra")
            .await
            .allowed
    );
    let r = a
        .revoke(revoke(OWNER, NEW_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    std::fs::write(&rights, &original).unwrap();
    eventually("the extra right to be gone", || async {
        !has_extra(&a).await
    })
    .await;
    let e = a.undo_revoke(undo(&r.undo_token, DAGL)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("nothing to restore"),
        "{}",
        e.message()
    );
    // The token was not spent: with the right back, the undo works.
    std::fs::write(&rights, &with_extra).unwrap();
    eventually("the undo to work again", || {
        let mut a = a.clone();
        let token = r.undo_token.clone();
        async move { a.undo_revoke(undo(&token, DAGL)).await.is_ok() }
    })
    .await;
    assert_eq!(bed.changes().await, ["grant", "revoke-last", "undo"]);
    s.stop().await;
}
