//! Large owners (issue 8): past `SPLIT_AT` suppliers the admin store splits an
//! owner's file into parts, `delegations/<owner>/<ppp>.json` by the first three
//! digits of the supplier; then a write replaces one part. Decisions, listings,
//! restarts, hand edits and an interrupted split, against the real server and
//! real files.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tilgang::proto::{DelegateRequest, ListDelegationsRequest, UndoRevokeRequest};
use tilgang::snapshot::load::{PART_MAX, SPLIT_AT};

use crate::util::*;

/// `n` valid org numbers in four prefixes (`100`, `200`, `300`, `400`), none
/// of them a fixture org.
pub fn spread_suppliers(n: usize) -> Vec<String> {
    let quarter = n.div_ceil(4);
    let mut all: Vec<String> = [10_000_000, 20_000_000, 30_000_000, 40_000_000]
        .into_iter()
        .flat_map(|start| org_numbers(start, quarter))
        .collect();
    all.truncate(n);
    all
}

fn owner_dir(work: &Workdir, owner: &str) -> PathBuf {
    work.data().join("delegations").join(owner)
}

/// Each part file's suppliers, by file name.
fn parts(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        let suppliers = v
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["attrs"]["supplier"]["id"].as_str().unwrap().to_string())
            .collect();
        out.insert(name, suppliers);
    }
    out
}

fn delegate(supplier: &str) -> DelegateRequest {
    DelegateRequest {
        owner: OWNER.into(),
        supplier: supplier.into(),
        rights: vec!["instances-read".into()],
        actor: DAGL.into(),
    }
}

/// Every supplier `OWNER` has delegated to, through the paged listing.
async fn listed(s: &TestServer) -> Vec<String> {
    let mut a = s.admin().await;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = a
            .list_delegations(ListDelegationsRequest {
                owner: OWNER.into(),
                supplier: String::new(),
                page_size: 1000,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(r.delegations.into_iter().map(|d| d.supplier));
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

/// A server whose `OWNER` has `SPLIT_AT` suppliers in its single file, and
/// has just been split by delegating to `NEW_SUPPLIER`.
async fn split_server() -> (TestServer, Vec<String>) {
    let work = Workdir::new();
    let suppliers = spread_suppliers(SPLIT_AT);
    write_owner(&work, OWNER, &suppliers, "instances-read");
    let s = TestServer::start_in(work, |_| {}).await;
    assert!(s.work.owner_file(OWNER).exists());
    s.admin()
        .await
        .delegate(delegate(NEW_SUPPLIER))
        .await
        .unwrap();
    (s, suppliers)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_owner_is_split_into_parts_and_decides_the_same() {
    let (s, suppliers) = split_server().await;
    assert!(
        !s.work.owner_file(OWNER).exists(),
        "the single file is gone"
    );
    let found = parts(&owner_dir(&s.work, OWNER));
    let names: Vec<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["100.json", "200.json", "300.json", "400.json", "889.json"]
    );
    for (name, in_part) in &found {
        assert!(
            in_part.iter().all(|sup| name.starts_with(&sup[..3])),
            "{name}"
        );
        assert!(in_part.windows(2).all(|w| w[0] < w[1]), "{name} is sorted");
    }
    assert_eq!(found.values().map(Vec::len).sum::<usize>(), SPLIT_AT + 1);

    for sup in [
        &suppliers[0],
        &suppliers[SPLIT_AT - 1],
        &NEW_SUPPLIER.to_string(),
    ] {
        assert!(s.decide(sup, OWNER, READ).await.allowed, "{sup}");
        assert!(!s.decide(sup, OWNER, WRITE).await.allowed, "{sup}");
    }
    assert!(!s.decide("311654306", OWNER, READ).await.allowed);
    let mut want = suppliers.clone();
    want.push(NEW_SUPPLIER.into());
    want.sort();
    assert_eq!(listed(&s).await, want);

    // A restart loads the parts: the same decisions and the same revision.
    let revision = s.revision();
    let work = s.stop().await;
    let s = TestServer::start_in(work, |_| {}).await;
    assert_eq!(s.revision(), revision);
    assert!(s.decide(&suppliers[1], OWNER, READ).await.allowed);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert_eq!(listed(&s).await.len(), SPLIT_AT + 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_split_owner_replaces_one_part_and_takes_effect_at_once() {
    let (s, suppliers) = split_server().await;
    let dir = owner_dir(&s.work, OWNER);
    let inode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().ino();
    let before: BTreeMap<String, u64> = parts(&dir).keys().map(|n| (n.clone(), inode(n))).collect();
    let mut a = s.admin().await;

    let gone = &suppliers[5];
    let token = a
        .revoke(revoke_all(OWNER, gone))
        .await
        .unwrap()
        .into_inner()
        .undo_token;
    assert!(
        !s.decide(gone, OWNER, READ).await.allowed,
        "revoked at once"
    );
    assert!(s.decide(&suppliers[6], OWNER, READ).await.allowed);
    let changed = format!("{}.json", &gone[..3]);
    for (name, ino) in &before {
        assert_eq!(inode(name) != *ino, *name == changed, "{name}");
    }
    assert!(!parts(&dir)[&changed].contains(gone));

    a.undo_revoke(UndoRevokeRequest {
        undo_token: token,
        actor: DAGL.into(),
    })
    .await
    .unwrap();
    assert!(
        s.decide(gone, OWNER, READ).await.allowed,
        "restored at once"
    );

    // The last supplier of a part: the part file goes.
    a.revoke(revoke_all(OWNER, NEW_SUPPLIER)).await.unwrap();
    assert!(!dir.join("889.json").exists());
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert_eq!(listed(&s).await.len(), SPLIT_AT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_edits_of_parts_are_reloaded_and_checked() {
    let (s, suppliers) = split_server().await;
    let dir = owner_dir(&s.work, OWNER);
    let part = dir.join("100.json");
    let original = std::fs::read_to_string(&part).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();

    // A supplier added by hand to its part: allowed once reloaded.
    let added = org_numbers(10_090_000, 1).remove(0);
    let mut entity = v[0].clone();
    entity["uid"]["id"] = format!("{OWNER}/{added}").into();
    entity["attrs"]["supplier"]["id"] = added.clone().into();
    v.as_array_mut().unwrap().push(entity.clone());
    save_by_rename(&part, &serde_json::to_string_pretty(&v).unwrap());
    eventually("the hand-added supplier is allowed", || async {
        s.decide(&added, OWNER, READ).await.allowed
    })
    .await;

    // One in the wrong part: refused, named, and the last good stays.
    let stray = org_numbers(60_000_000, 1).remove(0);
    entity["uid"]["id"] = format!("{OWNER}/{stray}").into();
    entity["attrs"]["supplier"]["id"] = stray.clone().into();
    v.as_array_mut().unwrap().push(entity);
    save_by_rename(&part, &serde_json::to_string_pretty(&v).unwrap());
    eventually("the stray supplier is reported", || async {
        s.sidecar.reloader.problems().iter().any(|p| {
            p.message
                .contains(&format!("{stray} does not belong in `100.json`"))
        })
    })
    .await;
    assert!(!s.decide(&stray, OWNER, READ).await.allowed);
    assert!(s.decide(&added, OWNER, READ).await.allowed);
    assert!(s.decide(&suppliers[0], OWNER, READ).await.allowed);

    // And tilgang validate says the same.
    let (code, _, err) = validate(&s.work);
    assert_ne!(code, 0);
    assert!(err.contains("does not belong in"), "{err}");

    save_by_rename(&part, &original);
    eventually("the problem clears", || async {
        s.sidecar.reloader.problems().is_empty()
    })
    .await;
    assert!(!s.decide(&added, OWNER, READ).await.allowed);
    s.stop().await;
}

/// `tilgang validate` on the workdir: (exit code, stdout, stderr).
fn validate(work: &Workdir) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tilgang"))
        .arg("validate")
        .arg("--policies")
        .arg(work.policies())
        .arg("--data")
        .arg(work.data())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A crash between writing the parts and removing the single file leaves
/// both: the file is what loads, the directory is ignored, and the next write
/// splits again (removing parts that no supplier needs any more).
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_split_loads_the_file_and_the_next_write_finishes_it() {
    let work = Workdir::new();
    let suppliers = spread_suppliers(SPLIT_AT + 1);
    write_owner(&work, OWNER, &suppliers, "instances-read");
    // A stale part, as a split of other content would have left.
    let leftover = org_numbers(55_500_000, 1).remove(0);
    let stale = Workdir::new();
    write_owner(
        &stale,
        OWNER,
        std::slice::from_ref(&leftover),
        "instances-read",
    );
    std::fs::create_dir(owner_dir(&work, OWNER)).unwrap();
    std::fs::copy(
        stale.owner_file(OWNER),
        owner_dir(&work, OWNER).join(format!("{}.json", &leftover[..3])),
    )
    .unwrap();

    let (code, _, err) = validate(&work);
    assert_eq!(code, 0, "{err}");
    let s = TestServer::start_in(work, |_| {}).await;
    assert!(s.decide(&suppliers[0], OWNER, READ).await.allowed);
    assert!(
        !s.decide(&leftover, OWNER, READ).await.allowed,
        "the directory is not read"
    );

    s.admin()
        .await
        .delegate(delegate(NEW_SUPPLIER))
        .await
        .unwrap();
    assert!(!s.work.owner_file(OWNER).exists());
    let found = parts(&owner_dir(&s.work, OWNER));
    assert!(
        !found.contains_key(&format!("{}.json", &leftover[..3])),
        "{found:?}"
    );
    assert_eq!(found.values().map(Vec::len).sum::<usize>(), SPLIT_AT + 2);
    assert!(!s.decide(&leftover, OWNER, READ).await.allowed);
    assert!(s.decide(&suppliers[SPLIT_AT], OWNER, READ).await.allowed);
    s.stop().await;
}

/// Parts in `dir` are prefix-free and none holds more than `PART_MAX`.
fn assert_small_and_prefix_free(found: &BTreeMap<String, Vec<String>>) {
    let stems: Vec<&str> = found.keys().map(|n| n.trim_end_matches(".json")).collect();
    for w in stems.windows(2) {
        assert!(!w[1].starts_with(w[0]), "{} overlaps {}", w[0], w[1]);
    }
    for (name, in_part) in found {
        assert!(in_part.len() <= PART_MAX, "{name} holds {}", in_part.len());
        let stem = name.trim_end_matches(".json");
        assert!(in_part.iter().all(|s| s.starts_with(stem)), "{name}");
    }
}

/// Consecutive org numbers share their first digits: the split uses longer
/// prefixes, so no part is large.
#[tokio::test(flavor = "multi_thread")]
async fn consecutive_suppliers_are_split_by_longer_prefixes() {
    let work = Workdir::new();
    let suppliers = org_numbers(50_000_000, SPLIT_AT);
    assert!(suppliers.iter().all(|s| s.starts_with("500")));
    write_owner(&work, OWNER, &suppliers, "instances-read");
    let s = TestServer::start_in(work, |_| {}).await;
    let added = org_numbers(50_050_000, 1).remove(0);
    s.admin().await.delegate(delegate(&added)).await.unwrap();
    let found = parts(&owner_dir(&s.work, OWNER));
    assert!(found.len() > 1, "{:?}", found.keys());
    assert_small_and_prefix_free(&found);
    assert_eq!(found.values().map(Vec::len).sum::<usize>(), SPLIT_AT + 1);
    assert!(s.decide(&added, OWNER, READ).await.allowed);
    assert!(
        s.decide(&suppliers[SPLIT_AT - 1], OWNER, READ)
            .await
            .allowed
    );
    s.stop().await;
}

/// A part grown past twice `PART_MAX` (here written so by hand) is split
/// again, one digit longer, by the next write to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_grown_part_is_split_again() {
    let work = Workdir::new();
    let suppliers = org_numbers(50_000_000, 2 * PART_MAX);
    let staging = Workdir::new();
    write_owner(&staging, OWNER, &suppliers, "instances-read");
    std::fs::create_dir(owner_dir(&work, OWNER)).unwrap();
    std::fs::rename(
        staging.owner_file(OWNER),
        owner_dir(&work, OWNER).join("500.json"),
    )
    .unwrap();
    std::fs::remove_file(work.owner_file(OWNER)).unwrap();
    let s = TestServer::start_in(work, |_| {}).await;
    assert!(s.decide(&suppliers[0], OWNER, READ).await.allowed);

    let added = org_numbers(50_050_000, 1).remove(0);
    s.admin().await.delegate(delegate(&added)).await.unwrap();
    let found = parts(&owner_dir(&s.work, OWNER));
    assert!(!found.contains_key("500.json"), "{:?}", found.keys());
    assert_small_and_prefix_free(&found);
    assert_eq!(
        found.values().map(Vec::len).sum::<usize>(),
        2 * PART_MAX + 1
    );
    for sup in [&suppliers[0], &suppliers[2 * PART_MAX - 1], &added] {
        assert!(s.decide(sup, OWNER, READ).await.allowed, "{sup}");
    }
    assert_eq!(listed(&s).await.len(), 2 * PART_MAX + 1);
    // And it loads so after a restart.
    let revision = s.revision();
    let work = s.stop().await;
    let s = TestServer::start_in(work, |_| {}).await;
    assert_eq!(s.revision(), revision);
    s.stop().await;
}
