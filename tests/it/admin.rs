//! The admin API over real listeners: the delegate → revoke → undo flow and its
//! effect on gateway decisions, every rejection, concurrency, restart, audit.

use std::time::Duration;

use tilgang::proto::delegations_client::DelegationsClient;
use tilgang::proto::{
    DelegateRequest, Delegation, ListDelegationsRequest, ListRightsRequest, RevokeRequest,
    UndoRevokeRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::util::*;

fn delegate(owner: &str, supplier: &str, rights: &[&str], actor: &str) -> DelegateRequest {
    DelegateRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: rights.iter().map(|r| r.to_string()).collect(),
        actor: actor.into(),
    }
}

fn revoke(owner: &str, supplier: &str, rights: &[&str], actor: &str) -> RevokeRequest {
    RevokeRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: rights.iter().map(|r| r.to_string()).collect(),
        actor: actor.into(),
    }
}

fn undo(token: &str, actor: &str) -> UndoRevokeRequest {
    UndoRevokeRequest {
        undo_token: token.into(),
        actor: actor.into(),
    }
}

async fn right_ids(a: &DelegationsClient<Channel>) -> Vec<String> {
    let mut a = a.clone();
    let r = a
        .list_rights(ListRightsRequest {})
        .await
        .unwrap()
        .into_inner();
    r.rights.into_iter().map(|r| r.id).collect()
}

async fn list_of(a: &DelegationsClient<Channel>, owner: &str, supplier: &str) -> Vec<Delegation> {
    let req = ListDelegationsRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        ..Default::default()
    };
    let mut a = a.clone();
    a.list_delegations(req)
        .await
        .unwrap()
        .into_inner()
        .delegations
}

fn audit_lines(s: &TestServer) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(s.work.data().join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn owner_text(s: &TestServer, owner: &str) -> Option<String> {
    std::fs::read_to_string(s.work.owner_file(owner)).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogue_lists_the_two_rights() {
    let s = TestServer::start().await;
    let rights = s
        .admin()
        .await
        .list_rights(ListRightsRequest {})
        .await
        .unwrap()
        .into_inner()
        .rights;
    let ids: Vec<&str> = rights.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["instances-full", "instances-read"]);
    assert_eq!(
        rights[0].name,
        "Altinn tjenesteeier-API: Appinstanser (full tilgang)"
    );
    assert_eq!(rights[0].scopes, [READ, WRITE]);
    assert_eq!(
        rights[1].name,
        "Altinn tjenesteeier-API: Appinstanser (lesetilgang)"
    );
    assert_eq!(rights[1].scopes, [READ]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delegate_revoke_undo_flow_drives_decisions() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);

    // Delegate both rights: read and write allowed at once (read-your-writes).
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
    assert!(s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);

    // Partial revoke of full access keeps read, since read was also given.
    let r = a
        .revoke(revoke(OWNER, NEW_SUPPLIER, &["instances-full"], DAGL))
        .await
        .unwrap()
        .into_inner();
    let remaining = r.remaining.unwrap();
    assert_eq!(remaining.rights, ["instances-read"]);
    assert_eq!(remaining.scopes, [READ]);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let partial_token = r.undo_token;

    // Revoke the rest (empty rights = all): denied, gone from the overview.
    let r = a
        .revoke(revoke(OWNER, NEW_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    assert!(r.remaining.unwrap().rights.is_empty());
    assert_eq!(r.undo_token.len(), 32);
    assert!(!r.undo_expires_at.is_empty());
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let list = list_of(&a, OWNER, "").await;
    assert!(list.iter().all(|d| d.supplier != NEW_SUPPLIER));
    assert_eq!(list.len(), 2, "the fixture's two delegations remain");

    // Undo the last revocation: read is back, exactly that.
    let d = a
        .undo_revoke(undo(&r.undo_token, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-read"]);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);

    // A token works once.
    let e = a.undo_revoke(undo(&r.undo_token, DAGL)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("already used"), "{}", e.message());

    // The earlier partial revocation can still be undone: full access is back.
    let d = a
        .undo_revoke(undo(&partial_token, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-full", "instances-read"]);
    assert!(s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);

    // One audit line per change, with before and after.
    let audit = audit_lines(&s);
    let changes: Vec<&str> = audit
        .iter()
        .map(|l| l["change"].as_str().unwrap())
        .collect();
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
    // What the admin API published is exactly what a fresh load of the files
    // gives: the same revision.
    let fresh = tilgang::snapshot::load::load_snapshot(
        &tilgang::snapshot::load::PolicySource::Dir(s.work.policies()),
        &s.work.data(),
    )
    .unwrap();
    assert_eq!(fresh.revision(), s.revision());
    let (o, sup) = (
        tilgang::ids::OrgNumber::parse(OWNER).unwrap(),
        tilgang::ids::OrgNumber::parse(NEW_SUPPLIER).unwrap(),
    );
    let on_disk = fresh.delegation(&o, &sup).unwrap();
    let live = s.sidecar.snapshots.load();
    let live = live.delegation(&o, &sup).unwrap();
    assert_eq!(on_disk.rights, live.rights);
    assert!(on_disk.same_content(live));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delegate_is_idempotent_and_additive() {
    let s = TestServer::start().await;
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
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_write_nothing() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let file_before = owner_text(&s, OWNER);

    // Not allowed: a person with no role for the owner, or a role that is not a
    // key role (REGN), or a role for another organisation.
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

    let cases: Vec<(DelegateRequest, &str)> = vec![
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
            delegate(OWNER, NEW_SUPPLIER, &["instances-read"], "../../x"),
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
            delegate("../../../etc", NEW_SUPPLIER, &["instances-read"], DAGL),
            "`owner`",
        ),
    ];
    for (r, field) in cases {
        let e = a.delegate(r.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{r:?}");
        assert!(e.message().starts_with(field), "{r:?}: {}", e.message());
    }
    let e = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-admin"], DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("`instances-full`") && e.message().contains("`instances-read`"),
        "lists the known ids: {}",
        e.message()
    );

    // Revoking what is not delegated.
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
    assert!(e.message().starts_with("`undo_token`"));
    let e = a
        .undo_revoke(undo(&"0".repeat(32), DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    assert_eq!(owner_text(&s, OWNER), file_before, "nothing written");
    // No change audited. The refusals are on record (the forbidden actors,
    // the unknown undo token), with their unverified actors, and never the
    // token; malformed requests are not (nobody was refused, they were wrong).
    let lines = audit_lines(&s);
    assert!(lines.iter().all(|l| l.get("change").is_none()), "{lines:?}");
    let got: Vec<(&str, &str)> = lines
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
    assert!(
        lines.iter().all(|l| l["actor_auth"] == "unverified"),
        "{lines:?}"
    );
    let l = &lines[4];
    assert_eq!(l["actor"], DAGL);
    assert!(!l.to_string().contains(&"0".repeat(32)), "{l}");
    let undo_dir = std::fs::read_dir(s.work.data().join("undo"))
        .unwrap()
        .count();
    assert_eq!(undo_dir, 0);
    // Nothing appeared outside the data directory's known layout.
    let mut top: Vec<String> = std::fs::read_dir(s.work.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [".lock", "audit.jsonl", "delegations", "roles.json", "undo"]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_is_authorized_and_expires() {
    let work = Workdir::new();
    let s = TestServer::start_in(work, |c| c.undo_window = Duration::ZERO).await;
    let mut a = s.admin().await;
    let r = a
        .revoke(revoke(OWNER, READ_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    // Someone who may not administer the owner learns nothing about the token.
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
    s.stop().await;
}

/// One undo attempt's answer, with the token itself blanked out, so answers
/// about different tokens can be compared.
async fn undo_answer(a: &DelegationsClient<Channel>, token: &str, actor: &str) -> (Code, String) {
    let e = a
        .clone()
        .undo_revoke(undo(token, actor))
        .await
        .expect_err("the undo must be refused");
    (e.code(), e.message().replace(token, "TOKEN"))
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_tokens_cannot_be_probed() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let mut revoke_all = async |supplier| {
        a.revoke(revoke(OWNER, supplier, &[], DAGL))
            .await
            .unwrap()
            .into_inner()
            .undo_token
    };
    let live = revoke_all(FULL_SUPPLIER).await;
    let used = revoke_all(READ_SUPPLIER).await;
    a.undo_revoke(undo(&used, DAGL)).await.unwrap();
    // A record that does not parse, and one naming no valid owner.
    let undo_dir = s.work.data().join("undo");
    let broken = "b".repeat(32);
    std::fs::write(undo_dir.join(format!("{broken}.json")), "{ not json").unwrap();
    let bad_owner = "c".repeat(32);
    let text = std::fs::read_to_string(undo_dir.join(format!("{live}.json"))).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&text).unwrap();
    record["owner"] = "123".into();
    std::fs::write(
        undo_dir.join(format!("{bad_owner}.json")),
        record.to_string(),
    )
    .unwrap();
    let unknown = "0".repeat(32);
    let tokens = [&unknown, &live, &used, &broken, &bad_owner];

    // An admin of another owner, a holder of a role that is not a key role,
    // and a person with no role: the same answer for every token.
    for actor in [OTHER_ADMIN, "03038712345", "99999999999"] {
        let expected = undo_answer(&a, &unknown, actor).await;
        assert_eq!(expected.0, Code::NotFound);
        assert!(
            expected.1.contains(&format!("`{actor}`")) && expected.1.contains("pruned 30 days"),
            "{}",
            expected.1
        );
        for token in tokens {
            assert_eq!(
                undo_answer(&a, token, actor).await,
                expected,
                "{actor}, {token}"
            );
        }
    }
    // The owner's admin: unreadable records are unknown to them too, but a
    // used token is told as used.
    let expected = undo_answer(&a, &unknown, DAGL).await;
    for token in [&broken, &bad_owner] {
        assert_eq!(undo_answer(&a, token, DAGL).await, expected);
    }
    let (code, message) = undo_answer(&a, &used, DAGL).await;
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("already used"), "{message}");
    // None of it spent the live token.
    a.undo_revoke(undo(&live, DAGL)).await.unwrap();
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_delegations_to_one_owner_all_persist() {
    let s = TestServer::start().await;
    let suppliers = org_numbers(10_000_000, 24);
    let mut tasks = Vec::new();
    for sup in &suppliers {
        let mut a = s.admin().await;
        let sup = sup.clone();
        tasks.push(tokio::spawn(async move {
            a.delegate(delegate(OWNER, &sup, &["instances-read"], DAGL))
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = owner_text(&s, OWNER).unwrap();
    for sup in &suppliers {
        assert!(
            text.contains(&format!("\"{OWNER}/{sup}\"")),
            "{sup} persisted"
        );
        assert!(s.decide(sup, OWNER, READ).await.allowed);
    }
    let list = list_of(&s.admin().await, OWNER, "").await;
    assert_eq!(list.len(), 24 + 2);
    assert_eq!(audit_lines(&s).len(), 24);
    let fresh = tilgang::snapshot::load::load_snapshot(
        &tilgang::snapshot::load::PolicySource::Dir(s.work.policies()),
        &s.work.data(),
    )
    .unwrap();
    assert_eq!(
        fresh.revision(),
        s.revision(),
        "published = what a reload gives"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_delegations_and_undo_tokens() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    a.delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-full"], DAGL))
        .await
        .unwrap();
    let r = a
        .revoke(revoke(OWNER, FULL_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    let work = s.stop().await;

    let s = TestServer::start_in(work, |_| {}).await;
    assert!(s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    assert!(!s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed);
    let d = s
        .admin()
        .await
        .undo_revoke(undo(&r.undo_token, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-full"]);
    assert_eq!(
        d.created_at, "2026-01-05T09:00:00Z",
        "undo restores when it was first given"
    );
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    assert_eq!(audit_lines(&s).len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_records_long_expired_are_pruned_at_start() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let mut token = async |supplier| {
        a.revoke(revoke(OWNER, supplier, &[], DAGL))
            .await
            .unwrap()
            .into_inner()
            .undo_token
    };
    let (old, fresh) = (token(FULL_SUPPLIER).await, token(READ_SUPPLIER).await);
    let work = s.stop().await;
    // Age one record past its expiry and the retention after it.
    let old_path = work.data().join("undo").join(format!("{old}.json"));
    let text = std::fs::read_to_string(&old_path).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&text).unwrap();
    record["expires_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&old_path, record.to_string()).unwrap();

    let s = TestServer::start_in(work, |_| {}).await;
    eventually("the long-expired record to be pruned", || async {
        !old_path.exists()
    })
    .await;
    let mut a = s.admin().await;
    let e = a.undo_revoke(undo(&old, DAGL)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("pruned 30 days after expiry"), "{e:?}");
    let d = a
        .undo_revoke(undo(&fresh, DAGL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.rights, ["instances-read"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overview_filters_by_owner_supplier_or_both() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    a.delegate(delegate(
        OTHER_OWNER,
        FULL_SUPPLIER,
        &["instances-read"],
        OTHER_ADMIN,
    ))
    .await
    .unwrap();
    let by_supplier = list_of(&a, "", FULL_SUPPLIER).await;
    let owners: Vec<&str> = by_supplier.iter().map(|d| d.owner.as_str()).collect();
    assert_eq!(owners, [OTHER_OWNER, OWNER]);
    let both = list_of(&a, OWNER, "0192:810418672").await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].delegated_by, DAGL);
    assert_eq!(both[0].created_at, "2026-01-05T09:00:00Z");
    assert_eq!(list_of(&a, "", "").await.len(), 4);
    let e = a
        .list_delegations(ListDelegationsRequest {
            owner: "123".into(),
            supplier: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_edits_are_the_source_of_truth() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let path = s.work.owner_file(OWNER);

    // Deleted by hand: the overview and decisions follow, and the admin API
    // works on top of what is on disk.
    std::fs::remove_file(&path).unwrap();
    eventually("the deletion to be seen", || async {
        !s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed
    })
    .await;
    let e = a
        .revoke(revoke(OWNER, FULL_SUPPLIER, &[], DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    a.delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], DAGL))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(FULL_SUPPLIER) && text.contains(NEW_SUPPLIER));

    // A file broken by hand is never overwritten by a write.
    std::fs::write(&path, "[ broken").unwrap();
    let e = a
        .delegate(delegate(OWNER, READ_SUPPLIER, &["instances-read"], DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("left untouched"), "{}", e.message());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "[ broken");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_file_is_hot_reloaded() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let newcomer = "05057612345";
    let e = a
        .delegate(delegate(OWNER, NEW_SUPPLIER, &["instances-read"], newcomer))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let roles = s.work.data().join("roles.json");
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
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_of_a_right_gone_from_the_catalogue_restores_nothing() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let rights = s.work.policies().join("rights.json");
    let original = std::fs::read_to_string(&rights).unwrap();
    let with_extra = original.replacen(
        "\"rights\": [",
        "\"rights\": [\n    { \"id\": \"extra\", \"name\": \"Extra\", \"scopes\": [\"altinn:serviceowner/extra\"] },",
        1,
    );
    std::fs::write(&rights, &with_extra).unwrap();
    eventually("the extra right to exist", || async {
        right_ids(&a).await.contains(&"extra".to_string())
    })
    .await;
    a.delegate(delegate(OWNER, NEW_SUPPLIER, &["extra"], DAGL))
        .await
        .unwrap();
    let r = a
        .revoke(revoke(OWNER, NEW_SUPPLIER, &[], DAGL))
        .await
        .unwrap()
        .into_inner();
    std::fs::write(&rights, &original).unwrap();
    eventually("the extra right to be gone", || async {
        !right_ids(&a).await.contains(&"extra".to_string())
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
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sidecar_per_data_directory() {
    let s = TestServer::start().await;
    let second = tilgang::sidecar::Sidecar::start(s.work.config()).await;
    let Err(e) = second else {
        panic!("a second sidecar started on the same data directory");
    };
    assert!(e.to_string().contains("in use"), "{e}");
    let work = s.stop().await;
    // Released on shutdown: a restart works.
    let s = TestServer::start_in(work, |_| {}).await;
    s.stop().await;
}
