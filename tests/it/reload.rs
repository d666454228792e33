//! Hot reload with real file edits: policy edits flip decisions, broken edits keep
//! the last good snapshot, editor-style and ConfigMap-style saves, delegation
//! files deleted and created by hand.

use std::time::Duration;

use crate::util::*;

const FORBID_WRITE: &str = r#"
@id("freeze-writes")
forbid (principal, action == Tilgang::Action::"callApi", resource == Tilgang::Scope::"altinn:serviceowner/instances.write");
"#;

#[tokio::test(flavor = "multi_thread")]
async fn policy_edit_flips_the_decision_without_restart() {
    let s = TestServer::start().await;
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    let before = s.revision();

    std::fs::write(s.work.policies().join("freeze.cedar"), FORBID_WRITE).unwrap();
    eventually("the forbid policy to apply", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    let r = s.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert_eq!(r.reasons, ["freeze-writes"]);
    assert_ne!(r.revision, before);
    assert!(s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed);

    std::fs::remove_file(s.work.policies().join("freeze.cedar")).unwrap();
    eventually("the forbid policy to go", || async {
        s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    // Same files as at the start: same revision.
    assert_eq!(s.revision(), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_edit_keeps_last_good_then_fix_is_picked_up() {
    let s = TestServer::start().await;
    let before = s.revision();
    let path = s.work.policies().join("api-access.cedar");
    let good = std::fs::read_to_string(&path).unwrap();

    // A syntax error, and separately a schema error: both rejected.
    std::fs::write(&path, good.replace("when {", "when {{")).unwrap();
    // A negative can only be shown by waiting past the debounce; then the
    // decision and revision must still be the old ones.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = s.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert!(r.allowed, "last good policies still decide");
    assert_eq!(r.revision, before);

    std::fs::write(
        &path,
        good.replace("delegation.rights", "delegation.rightz"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.revision(), before);
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);

    // The fix: a valid edit that also changes behaviour (read-only for everyone).
    let fixed = format!("{good}\n{FORBID_WRITE}");
    std::fs::write(&path, fixed).unwrap();
    eventually("the fixed policies to apply", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    assert_ne!(s.revision(), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn editor_rename_save_is_picked_up() {
    let s = TestServer::start().await;
    let path = s.work.policies().join("api-access.cedar");
    let good = std::fs::read_to_string(&path).unwrap();
    save_by_rename(&path, &format!("{good}\n{FORBID_WRITE}"));
    eventually("the renamed-in file to apply", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    // And a second save by rename (the watch survives the first).
    save_by_rename(&path, &good);
    eventually("the second save to apply", || async {
        s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rights_catalogue_edit_adds_a_scope_without_rebuild() {
    let s = TestServer::start().await;
    let scope = "altinn:serviceowner/instances.delete";
    assert!(!s.decide(FULL_SUPPLIER, OWNER, scope).await.allowed);
    let path = s.work.policies().join("rights.json");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "\"altinn:serviceowner/instances.write\"",
        "\"altinn:serviceowner/instances.write\", \"altinn:serviceowner/instances.delete\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    eventually("the new scope to be granted by instances-full", || async {
        s.decide(FULL_SUPPLIER, OWNER, scope).await.allowed
    })
    .await;
    assert!(!s.decide(READ_SUPPLIER, OWNER, scope).await.allowed);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delegation_file_deleted_and_recreated_by_hand() {
    let s = TestServer::start().await;
    let path = s.work.owner_file(OWNER);
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed);

    std::fs::remove_file(&path).unwrap();
    eventually("the deleted delegations to stop allowing", || async {
        !s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed
    })
    .await;
    // Other owners are untouched.
    assert!(s.decide("311654306", OTHER_OWNER, READ).await.allowed);

    std::fs::write(&path, &saved).unwrap();
    eventually("the recreated file to allow again", || async {
        s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed
    })
    .await;

    // A broken hand edit keeps that owner's last good delegations.
    let before = s.revision();
    std::fs::write(&path, "[ { not json").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed);
    assert_eq!(s.revision(), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn configmap_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let work = Workdir::new();
    // Lay the policies out as the kubelet does: files are symlinks into `..data`,
    // which is a symlink to a timestamped directory swapped atomically.
    let pol = work.policies();
    let v1 = pol.join("..2026_11_25_v1");
    std::fs::create_dir(&v1).unwrap();
    let names: Vec<String> = std::fs::read_dir(&pol)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    for n in &names {
        std::fs::rename(pol.join(n), v1.join(n)).unwrap();
    }
    symlink("..2026_11_25_v1", pol.join("..data")).unwrap();
    for n in &names {
        symlink(format!("..data/{n}"), pol.join(n)).unwrap();
    }
    let s = TestServer::start_in(work, |_| {}).await;
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);

    let v2 = pol.join("..2026_11_25_v2");
    copy_dir(&v1, &v2);
    let cedar = std::fs::read_to_string(v2.join("api-access.cedar")).unwrap();
    std::fs::write(
        v2.join("api-access.cedar"),
        format!("{cedar}\n{FORBID_WRITE}"),
    )
    .unwrap();
    symlink("..2026_11_25_v2", pol.join("..data_tmp")).unwrap();
    std::fs::rename(pol.join("..data_tmp"), pol.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();

    eventually("the swapped ConfigMap to apply", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    s.stop().await;
}

/// A store and reloader over a fresh work dir, with no watcher running: only
/// what the test calls changes the snapshot.
fn offline_reloader() -> (
    Workdir,
    std::sync::Arc<tilgang::snapshot::SnapshotStore>,
    tilgang::snapshot::watch::Reloader,
) {
    use tilgang::snapshot::load::{PolicySource, load_snapshot};
    let work = Workdir::new();
    let src = PolicySource::Dir(work.policies());
    let snap = load_snapshot(&src, &work.data()).unwrap();
    let store = std::sync::Arc::new(tilgang::snapshot::SnapshotStore::new(snap));
    let reloader = tilgang::snapshot::watch::Reloader::new(store.clone(), src, work.data());
    (work, store, reloader)
}

#[test]
fn rescan_finds_changes_without_any_events() {
    // The fallback for file systems that drop events, with no watcher running:
    // only `rescan` can see these changes.
    let (work, store, reloader) = offline_reloader();
    let owner = tilgang::ids::OrgNumber::parse(OWNER).unwrap();
    let supplier = tilgang::ids::OrgNumber::parse(FULL_SUPPLIER).unwrap();
    let before = store.load().revision().to_string();

    reloader.rescan();
    assert_eq!(
        store.load().revision(),
        before,
        "nothing changed, nothing swapped"
    );

    std::fs::remove_file(work.owner_file(OWNER)).unwrap();
    reloader.rescan();
    assert!(store.load().delegation(&owner, &supplier).is_none());
    assert_ne!(store.load().revision(), before);

    // An edit in place (same inode) is seen through its new size and mtime.
    let other = work.owner_file(OTHER_OWNER);
    let text = std::fs::read_to_string(&other).unwrap();
    let edited = text.replace(
        r#"{ "type": "Tilgang::Right", "id": "instances-full" },"#,
        "",
    );
    assert_ne!(edited, text);
    std::fs::write(&other, edited).unwrap();
    let (o, s) = (
        tilgang::ids::OrgNumber::parse(OTHER_OWNER).unwrap(),
        tilgang::ids::OrgNumber::parse("311654306").unwrap(),
    );
    reloader.rescan();
    let rights = store.load().delegation(&o, &s).unwrap().rights.clone();
    assert_eq!(rights.len(), 1);

    std::fs::write(work.policies().join("broken.cedar"), "permit(").unwrap();
    let after_delete = store.load().revision().to_string();
    reloader.rescan();
    assert_eq!(
        store.load().revision(),
        after_delete,
        "broken policies rejected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_policies_directory_is_watched_again() {
    // A rescan far in the future: only file events can explain a quick reload.
    let work = Workdir::new();
    let s = TestServer::start_in(work, |c| c.rescan = Duration::from_secs(600)).await;
    let pol = s.work.policies();
    let saved = s.work.dir.path().join("policies.saved");
    copy_dir(&pol, &saved);
    std::fs::write(saved.join("freeze.cedar"), FORBID_WRITE).unwrap();

    // Replace the whole directory; the new one carries a forbid.
    std::fs::remove_dir_all(&pol).unwrap();
    copy_dir(&saved, &pol);
    eventually("the replaced directory to be read", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    // An ordinary edit in the new directory: seen only if it is watched.
    std::fs::remove_file(pol.join("freeze.cedar")).unwrap();
    eventually("an edit in the new directory to apply", || async {
        s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_in_the_data_directory_blocks_nothing() {
    let s = TestServer::start().await;
    let fifo = s.work.owner_file(NEW_SUPPLIER);
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    // The watcher sees it and refuses it without opening it; writes elsewhere go on.
    let mut a = s.admin().await;
    let write = a.delegate(tilgang::proto::DelegateRequest {
        owner: OTHER_OWNER.into(),
        supplier: READ_SUPPLIER.into(),
        rights: vec!["instances-read".into()],
        actor: OTHER_ADMIN.into(),
    });
    let done = tokio::time::timeout(Duration::from_secs(10), write).await;
    assert!(done.expect("the write is not blocked").is_ok());
    assert!(s.decide(READ_SUPPLIER, OTHER_OWNER, READ).await.allowed);
    std::fs::remove_file(&fifo).unwrap();
    s.stop().await;
}

#[test]
fn a_policy_change_rejected_for_its_data_is_retried_when_the_data_changes() {
    let (work, store, reloader) = offline_reloader();
    // A stray file in delegations/ makes any full reload fail; the running
    // snapshot's revision does not change because of it.
    let stray = work.data().join("delegations").join("12.json");
    std::fs::write(&stray, "[]").unwrap();
    std::fs::write(work.policies().join("freeze.cedar"), FORBID_WRITE).unwrap();
    let before = store.load().revision().to_string();
    assert!(reloader.reload_policies().is_err());
    assert!(reloader.reload_policies().is_err(), "still rejected");
    assert_eq!(store.load().revision(), before);

    // Removing the stray file changes nothing in the snapshot, but the policy
    // change must now be accepted.
    std::fs::remove_file(&stray).unwrap();
    assert_eq!(reloader.reload_policies(), Ok(true));
    assert_ne!(store.load().revision(), before);
}

/// Set a file's modification time, as if it had been saved at `when`.
fn set_mtime(path: &std::path::Path, when: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn a_policy_file_caught_mid_save_is_left_for_later() {
    use std::time::SystemTime;
    use tilgang::engine::{AccessRequest, decide};
    use tilgang::ids::{OrgNumber, Scope};
    // An in-place save truncates, then writes. A rescan in between reads an
    // empty file, which is valid Cedar that permits nothing; had it been
    // published, a broken save would then keep that as the "last good" set.
    let hour = Duration::from_secs(3600);
    let (work, store, reloader) = offline_reloader();
    let reloader = reloader.with_quiet_period(hour);
    for f in std::fs::read_dir(work.policies()).unwrap() {
        set_mtime(&f.unwrap().path(), SystemTime::now() - 2 * hour);
    }
    let write_allowed = || {
        let req = AccessRequest {
            supplier: OrgNumber::parse(FULL_SUPPLIER).unwrap(),
            owner: OrgNumber::parse(OWNER).unwrap(),
            scope: Scope::parse(WRITE).unwrap(),
        };
        decide(&store.load(), &req).allowed
    };
    let before = store.load().revision().to_string();
    let path = work.policies().join("api-access.cedar");
    let good = std::fs::read_to_string(&path).unwrap();

    let truncated = std::fs::File::create(&path).unwrap();
    reloader.rescan();
    assert_eq!(
        store.load().revision(),
        before,
        "the empty file is not published"
    );
    assert!(write_allowed());
    assert!(
        reloader.take_unsettled(),
        "and the watcher is told to look again"
    );
    assert!(!reloader.take_unsettled(), "once");

    // The save finishes broken and goes quiet: rejected, the good set stays.
    std::fs::write(&path, good.replace("when {", "when {{")).unwrap();
    drop(truncated);
    set_mtime(&path, SystemTime::now() - 2 * hour);
    reloader.rescan();
    assert_eq!(store.load().revision(), before);
    assert!(write_allowed());
    assert!(!reloader.take_unsettled());

    // A modification time in the future (clock skew) counts as settled, or the
    // file would never load.
    std::fs::write(&path, format!("{good}\n{FORBID_WRITE}")).unwrap();
    set_mtime(&path, SystemTime::now() + hour);
    reloader.rescan();
    assert_ne!(store.load().revision(), before);
    assert!(!write_allowed());
}

#[test]
fn a_delegation_file_caught_mid_save_is_neither_published_nor_reported() {
    use std::time::SystemTime;
    let hour = Duration::from_secs(3600);
    let (work, store, reloader) = offline_reloader();
    let reloader = reloader.with_quiet_period(hour);
    let owner = tilgang::ids::OrgNumber::parse(OWNER).unwrap();
    let supplier = tilgang::ids::OrgNumber::parse(FULL_SUPPLIER).unwrap();
    let path = work.owner_file(OWNER);
    let good = std::fs::read_to_string(&path).unwrap();

    // Half written: not JSON yet. Not an error either, only not finished.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert_eq!(reloader.reload_owner(&owner), Ok(false));
    assert!(reloader.take_unsettled());
    assert!(store.load().delegation(&owner, &supplier).is_some());

    // Left alone for the quiet period, the same half file is an error.
    set_mtime(&path, SystemTime::now() - 2 * hour);
    assert!(reloader.reload_owner(&owner).is_err());
    assert!(store.load().delegation(&owner, &supplier).is_some());

    // A deletion is never half done: it applies at once.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(reloader.reload_owner(&owner), Ok(true));
    assert!(store.load().delegation(&owner, &supplier).is_none());
    assert!(!reloader.take_unsettled());
}
