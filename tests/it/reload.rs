//! Hot reload with real file edits: policy edits flip decisions, broken edits keep
//! the last good snapshot, editor-style and ConfigMap-style saves, delegation
//! files deleted and created by hand.

use std::time::Duration;

use crate::util::*;
use tilgang::snapshot::reload::ManualClock;

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

/// Wait until the sidecar reports (and logs) a rejected change at `location`
/// whose message says `says`.
async fn rejected(s: &TestServer, location: &str, says: &str) {
    eventually(
        &format!("a rejected change at {location}: {says}"),
        || async {
            s.sidecar
                .reloader
                .problems()
                .iter()
                .any(|p| p.location.contains(location) && p.message.contains(says))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_edit_keeps_last_good_then_fix_is_picked_up() {
    let s = TestServer::start().await;
    let before = s.revision();
    let path = s.work.policies().join("api-access.cedar");
    let good = std::fs::read_to_string(&path).unwrap();

    // A syntax error, and separately a schema error: both rejected. The
    // positive signal is the rejection itself (what the log reports); then the
    // decision and revision must still be the old ones.
    std::fs::write(&path, good.replace("when {", "when {{")).unwrap();
    rejected(&s, "api-access.cedar:", "unexpected token").await;
    let r = s.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert!(r.allowed, "last good policies still decide");
    assert_eq!(r.revision, before);

    std::fs::write(
        &path,
        good.replace("delegation.rights", "delegation.rightz"),
    )
    .unwrap();
    rejected(&s, "api-access.cedar:", "rightz").await;
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
    rejected(&s, "991825827.json", "last good delegations").await;
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
    tilgang::snapshot::reload::Reloader,
) {
    use tilgang::snapshot::load::{PolicySource, load_snapshot};
    let work = Workdir::new();
    let src = PolicySource::Dir(work.policies());
    let snap = load_snapshot(&src, &work.data()).unwrap();
    let store = std::sync::Arc::new(tilgang::snapshot::SnapshotStore::new(snap));
    let reloader = tilgang::snapshot::reload::Reloader::new(store.clone(), src, work.data());
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
fn a_policy_change_that_does_not_fit_loaded_data_is_rejected_then_retried() {
    use tilgang::snapshot::reload::Reloaded;
    let (work, store, reloader) = offline_reloader();
    // Drop `instances-read` from the catalogue while 974760673 still holds it.
    let rights = work.policies().join("rights.json");
    let mut catalogue: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rights).unwrap()).unwrap();
    catalogue["rights"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["id"] != "instances-read");
    std::fs::write(&rights, catalogue.to_string()).unwrap();
    let before = store.load().revision().to_string();
    let errors = reloader.reload_policies().unwrap_err();
    let shown = errors.to_string();
    assert!(
        shown.contains("991825827.json"),
        "names the owner's file: {shown}"
    );
    assert!(shown.contains("instances-read"), "{shown}");
    assert!(reloader.reload_policies().is_err(), "still rejected");
    assert_eq!(store.load().revision(), before);

    assert!(
        shown.contains("983887457.json"),
        "names every owner: {shown}"
    );

    // The owners revoke the right by hand; the same policy change now fits,
    // and is retried because the data it was rejected for changed.
    for o in [OWNER, OTHER_OWNER] {
        let path = work.owner_file(o);
        let mut entries: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for e in &mut entries {
            e["attrs"]["rights"]
                .as_array_mut()
                .unwrap()
                .retain(|r| r["id"] != "instances-read");
        }
        entries.retain(|e| !e["attrs"]["rights"].as_array().unwrap().is_empty());
        std::fs::write(&path, serde_json::to_string(&entries).unwrap()).unwrap();
        let owner = tilgang::ids::OrgNumber::parse(o).unwrap();
        assert_eq!(reloader.reload_owner(&owner), Ok(Reloaded::Published));
    }
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Published));
    assert_eq!(store.load().policies.catalogue.rights().len(), 1);
}

/// A reloader like `serve`'s, with a quiet period, over a fresh work dir,
/// reading the time from a clock the test moves.
fn quiet_reloader(
    quiet: Duration,
) -> (
    Workdir,
    std::sync::Arc<tilgang::snapshot::SnapshotStore>,
    tilgang::snapshot::reload::Reloader,
    std::sync::Arc<ManualClock>,
) {
    let (work, store, reloader) = offline_reloader();
    let clock = std::sync::Arc::new(ManualClock::default());
    let reloader = reloader.with_quiet_period(quiet).with_clock(clock.clone());
    (work, store, reloader, clock)
}

/// Move the reloader's clock past the quiet period (and its slack).
fn after_quiet(clock: &ManualClock, quiet: Duration) {
    clock.advance(quiet + tilgang::snapshot::settle::SLACK + Duration::from_millis(30));
}

#[test]
fn a_policy_file_caught_mid_save_is_never_published() {
    use tilgang::engine::{AccessRequest, decide};
    use tilgang::ids::{OrgNumber, Scope};
    use tilgang::snapshot::reload::Reloaded;
    let quiet = Duration::from_millis(100);
    let (work, store, reloader, clock) = quiet_reloader(quiet);
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
    let frozen = format!("{good}\n{FORBID_WRITE}");
    std::fs::write(&path, &frozen).unwrap();
    after_quiet(&clock, quiet);
    assert_eq!(
        reloader.reload_policies(),
        Ok(Reloaded::Waiting),
        "first sight"
    );
    after_quiet(&clock, quiet);
    assert_eq!(
        reloader.reload_policies(),
        Ok(Reloaded::Published),
        "settled"
    );
    assert!(!write_allowed());
    let frozen_rev = store.load().revision().to_string();
    assert_ne!(frozen_rev, before);

    // Truncated by an in-place save: never loaded, however long it stays.
    std::fs::File::create(&path).unwrap();
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Waiting));
    after_quiet(&clock, quiet);
    let errors = reloader.reload_policies().unwrap_err().to_string();
    assert!(errors.contains("empty"), "{errors}");
    assert_eq!(store.load().revision(), frozen_rev);
    assert!(!write_allowed(), "the forbid stays");

    // A valid prefix (the permits without the forbid), completed within the
    // quiet period: the prefix is never published.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Waiting));
    assert!(!write_allowed());
    std::fs::write(&path, &frozen).unwrap();
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Unchanged));
    after_quiet(&clock, quiet);
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Unchanged));
    assert_eq!(store.load().revision(), frozen_rev);
    assert!(!write_allowed());
    assert_eq!(reloader.next_retry(), None, "nothing left waiting");
}

#[test]
fn a_delegation_file_caught_mid_save_keeps_the_last_good_delegations() {
    use tilgang::snapshot::reload::Reloaded;
    let quiet = Duration::from_millis(100);
    let (work, store, reloader, clock) = quiet_reloader(quiet);
    let owner = tilgang::ids::OrgNumber::parse(OWNER).unwrap();
    let supplier = tilgang::ids::OrgNumber::parse(FULL_SUPPLIER).unwrap();
    let path = work.owner_file(OWNER);
    let good = std::fs::read_to_string(&path).unwrap();

    // Half written: not JSON yet. Not reported either, only not finished.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert_eq!(reloader.reload_owner(&owner), Ok(Reloaded::Waiting));
    assert!(
        reloader.next_retry().is_some(),
        "the watcher is told when to look again"
    );
    assert!(store.load().delegation(&owner, &supplier).is_some());

    // Left so for the quiet period, the same half file is an error, and the
    // owner keeps its last good delegations.
    after_quiet(&clock, quiet);
    let e = reloader.reload_owner(&owner).unwrap_err();
    assert!(e.message.contains("last good delegations"), "{e}");
    assert!(store.load().delegation(&owner, &supplier).is_some());
    assert_eq!(reloader.next_retry(), None);

    // A deletion waits like any change (an editor may delete, then write).
    std::fs::remove_file(&path).unwrap();
    assert_eq!(reloader.reload_owner(&owner), Ok(Reloaded::Waiting));
    assert!(store.load().delegation(&owner, &supplier).is_some());
    std::fs::write(&path, &good).unwrap();
    assert_eq!(reloader.reload_owner(&owner), Ok(Reloaded::Unchanged));
    std::fs::remove_file(&path).unwrap();
    assert_eq!(reloader.reload_owner(&owner), Ok(Reloaded::Waiting));
    after_quiet(&clock, quiet);
    assert_eq!(reloader.reload_owner(&owner), Ok(Reloaded::Published));
    assert!(store.load().delegation(&owner, &supplier).is_none());
}

#[test]
fn a_file_that_cannot_be_read_leaves_nothing_waiting() {
    use tilgang::snapshot::reload::Reloaded;
    let quiet = Duration::from_millis(100);
    let (work, _store, reloader, _clock) = quiet_reloader(quiet);
    let owner = tilgang::ids::OrgNumber::parse(OWNER).unwrap();
    let path = work.owner_file(OWNER);
    std::fs::write(&path, "[").unwrap();
    assert_eq!(reloader.reload_owner(&owner), Ok(Reloaded::Waiting));
    assert!(reloader.next_retry().is_some());
    // Now a symlink (refused, not read): reported, and no retry is left due,
    // or the watcher would wake for it again and again.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(work.owner_file(OTHER_OWNER), &path).unwrap();
    let e = reloader.reload_owner(&owner).unwrap_err();
    assert!(e.message.contains("symbolic link"), "{e}");
    assert_eq!(reloader.next_retry(), None);
}

#[test]
fn the_same_prefix_written_again_by_the_next_save_is_not_settled() {
    use tilgang::snapshot::reload::Reloaded;
    // Every in-place save writes the same prefix first. Two reads far enough
    // apart can both find it, with the complete file in between: the bytes
    // alone would call that settled and publish a policy set without the
    // forbid. The file's version (ctime, mtime, size) tells them apart.
    let quiet = Duration::from_millis(100);
    let (work, store, reloader, clock) = quiet_reloader(quiet);
    let path = work.policies().join("freeze.cedar");
    let first = "@id(\"freeze-writes\")\nforbid (principal, action == Tilgang::Action::\"callApi\", resource == Tilgang::Scope::\"altinn:serviceowner/instances.write\");\n";
    let whole = format!(
        "{first}@id(\"freeze-810418672\")\nforbid (principal == Tilgang::Organization::\"810418672\", action, resource);\n"
    );
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Waiting));
    after_quiet(&clock, quiet);
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Published));
    let complete = store.load().revision().to_string();

    let save_prefix = || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(first.as_bytes()).unwrap();
    };
    save_prefix();
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Waiting));
    std::fs::write(&path, &whole).unwrap();
    // The file system's clock, not the reloader's: the next save's inode
    // change time must differ (its granularity is a few milliseconds).
    std::thread::sleep(Duration::from_millis(20));
    save_prefix();
    after_quiet(&clock, quiet);
    assert_eq!(
        reloader.reload_policies(),
        Ok(Reloaded::Waiting),
        "the prefix of the second save is not the one seen before"
    );
    assert_eq!(store.load().revision(), complete);
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(reloader.reload_policies(), Ok(Reloaded::Unchanged));
    assert_eq!(store.load().revision(), complete);
}
