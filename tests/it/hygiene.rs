//! The data directory, kept clean and unhijackable: tilgang's own stale temp
//! files are removed at start (and nothing else), and a symlink anywhere
//! tilgang writes is refused with a clear error, with nothing written through
//! it. The data directory itself may be a symlink.

use std::os::unix::fs::symlink;
use std::path::Path;

use tilgang::proto::{DelegateRequest, RevokeRequest, UndoRevokeRequest};
use tilgang::sidecar::Sidecar;
use tonic::Code;

use crate::util::*;

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

fn grant(owner: &str, supplier: &str, actor: &str) -> DelegateRequest {
    DelegateRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: vec!["instances-read".into()],
        actor: actor.into(),
    }
}

fn revoke_all(owner: &str, supplier: &str, actor: &str) -> RevokeRequest {
    RevokeRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: vec![],
        actor: actor.into(),
    }
}

/// A directory outside the data directory, with one file in it, to point
/// symlinks at and check afterwards.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), "outside\n").unwrap();
        Self { dir }
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("target")
    }

    /// Nothing was created, changed or removed here.
    fn untouched(&self) {
        assert_eq!(names(self.dir.path()), ["target"]);
        assert_eq!(std::fs::read_to_string(self.file()).unwrap(), "outside\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_temp_files_are_removed_at_start_and_nothing_else() {
    let work = Workdir::new();
    let outside = Outside::new();
    let ours = [".tilgang-tmp-Ab3dEf6hIj9L", ".tmp-Ab3dEf", ".tmp-999999"];
    let theirs = [
        ".tmp-Ab3dE",
        ".tmp-Ab3dEf7",
        ".tmp-Ab3d-f",
        ".tmp-Ab3dEf.json",
        "x.tmp-Ab3dEf",
        ".tilgang-tmp-Ab3dEf6hIj9",
        ".tilgang-tmp-Ab3dEf6hIj9LM",
        "notes.txt",
    ];
    let mut expected = Vec::new();
    for d in ["delegations", "undo"] {
        let d = work.data().join(d);
        std::fs::create_dir_all(&d).unwrap();
        for n in ours.iter().chain(&theirs) {
            std::fs::write(d.join(n), "[ half a file").unwrap();
        }
        // Named like ours, but not files tilgang makes: left alone.
        std::fs::create_dir(d.join(".tmp-dirABC")).unwrap();
        symlink(outside.file(), d.join(".tilgang-tmp-LinkLinkLink")).unwrap();
        let mut left: Vec<String> = names(&d)
            .into_iter()
            .filter(|n| !ours.contains(&n.as_str()))
            .collect();
        left.sort();
        expected.push(left);
    }
    // Elsewhere in the data directory: not ours to sweep.
    std::fs::write(work.data().join(".tmp-Ab3dEf"), "x").unwrap();

    let s = TestServer::start_in(work, |_| {}).await;
    for (d, left) in ["delegations", "undo"].iter().zip(&expected) {
        assert_eq!(&names(&s.work.data().join(d)), left, "{d}");
    }
    assert!(s.work.data().join(".tmp-Ab3dEf").exists());
    outside.untouched();
    // The fixture's owner files are still there and still decide.
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_where_tilgang_writes_refuses_the_start() {
    for place in ["audit.jsonl", "undo", "delegations"] {
        let work = Workdir::new();
        let outside = Outside::new();
        let path = work.data().join(place);
        if path.is_dir() {
            // Keep what the loader reads, so only the write side can object.
            copy_dir(&path, &outside.dir.path().join("copy"));
            std::fs::remove_dir_all(&path).unwrap();
            symlink(outside.dir.path().join("copy"), &path).unwrap();
        } else if place == "undo" {
            symlink(outside.dir.path(), &path).unwrap();
        } else {
            symlink(outside.file(), &path).unwrap();
        }
        let Err(e) = Sidecar::start(work.config()).await else {
            panic!("started with `{place}` a symlink");
        };
        let e = format!("{:#}", anyhow::Error::from(e));
        assert!(
            e.contains(&format!("{place}` is a symbolic link")),
            "{place}: {e}"
        );
        assert_eq!(
            std::fs::read_to_string(outside.file()).unwrap(),
            "outside\n"
        );
        let outside_names = names(outside.dir.path());
        assert!(
            outside_names == ["target"] || outside_names == ["copy", "target"],
            "{outside_names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_placed_while_serving_is_refused_and_nothing_written_through_it() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let data = s.work.data();

    // The owner's file: not replaced, not removed, not written through.
    let outside = Outside::new();
    let owner_file = s.work.owner_file(OTHER_OWNER);
    let target = outside.dir.path().join(format!("{OTHER_OWNER}.json"));
    std::fs::rename(&owner_file, &target).unwrap();
    symlink(&target, &owner_file).unwrap();
    let before = std::fs::read_to_string(&target).unwrap();
    for r in [
        a.delegate(grant(OTHER_OWNER, NEW_SUPPLIER, OTHER_ADMIN))
            .await
            .map(drop),
        // The owner's only supplier: this would remove the file.
        a.revoke(revoke_all(OTHER_OWNER, "311654306", OTHER_ADMIN))
            .await
            .map(drop),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        // The loader refuses to read it already; the writer would refuse too.
        let m = e.message();
        assert!(
            m.contains(&format!("{OTHER_OWNER}.json")) && m.contains("symbolic link"),
            "{m}"
        );
        assert!(
            m.contains("nothing was written") || m.contains("left untouched"),
            "{m}"
        );
    }
    assert!(owner_file.is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), before);
    assert_eq!(
        names(outside.dir.path()),
        [format!("{OTHER_OWNER}.json"), "target".into()]
    );

    // `undo/` replaced by a symlink: the revocation is refused before any change.
    let outside = Outside::new();
    std::fs::remove_dir_all(data.join("undo")).unwrap();
    symlink(outside.dir.path(), data.join("undo")).unwrap();
    let e = a
        .revoke(revoke_all(OWNER, FULL_SUPPLIER, DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("undo` is a symbolic link"),
        "{}",
        e.message()
    );
    assert!(
        s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed,
        "not revoked"
    );
    outside.untouched();
    std::fs::remove_file(data.join("undo")).unwrap();

    // `audit.jsonl` replaced by a symlink: the change is in effect (it was
    // made durable before the audit), the caller is told the line is missing,
    // and no line goes through the link.
    let outside = Outside::new();
    std::fs::remove_file(data.join("audit.jsonl")).unwrap();
    symlink(outside.file(), data.join("audit.jsonl")).unwrap();
    let e = a
        .delegate(grant(OWNER, NEW_SUPPLIER, DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(
        e.message().contains("its audit line could not be written")
            && e.message().contains("audit.jsonl` is a symbolic link"),
        "{}",
        e.message()
    );
    outside.untouched();

    // `delegations/` replaced by a symlink to a copy: reads go on, writes stop.
    let outside = Outside::new();
    let copy = outside.dir.path().join("copy");
    copy_dir(&data.join("delegations"), &copy);
    std::fs::remove_dir_all(data.join("delegations")).unwrap();
    symlink(&copy, data.join("delegations")).unwrap();
    let copied = names(&copy);
    let e = a
        .delegate(grant(OWNER, READ_SUPPLIER, DAGL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("delegations` is a symbolic link"),
        "{}",
        e.message()
    );
    assert_eq!(names(&copy), copied);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_undo_record_is_an_unknown_token() {
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let token = a
        .revoke(revoke_all(OWNER, FULL_SUPPLIER, DAGL))
        .await
        .unwrap()
        .into_inner()
        .undo_token;
    let outside = Outside::new();
    let record = s.work.data().join("undo").join(format!("{token}.json"));
    let target = outside.dir.path().join("record.json");
    std::fs::rename(&record, &target).unwrap();
    symlink(&target, &record).unwrap();
    let before = std::fs::read_to_string(&target).unwrap();
    let e = a
        .undo_revoke(UndoRevokeRequest {
            undo_token: token.clone(),
            actor: DAGL.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // The "used" mark was not written through the link.
    assert_eq!(std::fs::read_to_string(&target).unwrap(), before);
    assert!(record.is_symlink());
    assert!(!s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_itself_may_be_a_symlink() {
    let work = Workdir::new();
    let real = work.dir.path().join("data-real");
    std::fs::rename(work.data(), &real).unwrap();
    symlink(&real, work.data()).unwrap();
    let s = TestServer::start_in(work, |_| {}).await;
    let mut a = s.admin().await;
    a.delegate(grant(OWNER, NEW_SUPPLIER, DAGL)).await.unwrap();
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let text =
        std::fs::read_to_string(real.join("delegations").join(format!("{OWNER}.json"))).unwrap();
    assert!(text.contains(NEW_SUPPLIER));
    assert_eq!(
        std::fs::read_to_string(real.join("audit.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    s.stop().await;
}
