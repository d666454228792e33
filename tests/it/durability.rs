//! Crash consistency beyond SIGKILL. A killed process leaves its writes in the
//! page cache, so `crash.rs` cannot notice a missing fsync; a power cut would.
//! Here the real server records the file-system steps of each admin write in
//! order (`DelegationStore::record_ops`), and `check` holds each write's steps
//! against the commit protocol. Removing any fsync from `store::files` (or
//! reordering the undo record after the owner file) fails these tests; the
//! checker itself is tested on hand-made logs with each required step dropped.

use std::sync::Arc;

use tilgang::store::oplog::{Op, OpLog, Place};
use tonic::Code;

use crate::util::*;

const AUDIT: &str = "audit.jsonl";

/// Which write a log is of: revocations and undos must make their undo
/// record durable before they touch the owner's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Delegate,
    Revoke,
    Undo,
}

/// Check one acknowledged write's steps (ending with its `Ack`) against the
/// protocol. Returns the first rule broken.
fn check(ops: &[Op], write: Write) -> Result<(), String> {
    let Some((Op::Ack { .. }, body)) = ops.split_last() else {
        return Err("the log does not end with the acknowledgement".into());
    };
    if body.iter().any(|op| matches!(op, Op::Ack { .. })) {
        return Err("more than one acknowledgement in one write".into());
    }
    let ack = body.len();
    let at = |i: usize| format!("step {i} ({:?})", ops[i]);

    // Every write to a file is followed by that file's fsync, before the file
    // is renamed (a temp file) or before the acknowledgement (an append).
    for (i, op) in body.iter().enumerate() {
        let Op::Write { dir, name } = op else {
            continue;
        };
        let renamed = body[i..]
            .iter()
            .position(|o| matches!(o, Op::Rename { dir: d, from, .. } if d == dir && from == name))
            .map_or(ack, |p| i + p);
        let synced = body[i..renamed]
            .iter()
            .any(|o| matches!(o, Op::SyncFile { dir: d, name: n } if d == dir && n == name));
        if !synced {
            return Err(format!(
                "{}: written but not fsynced before it is renamed or acknowledged",
                at(i)
            ));
        }
    }
    // Every rename into place moves a file that was written (and, above,
    // fsynced after its last write).
    for (i, op) in body.iter().enumerate() {
        let Op::Rename { dir, from, .. } = op else {
            continue;
        };
        let written = body[..i]
            .iter()
            .any(|o| matches!(o, Op::Write { dir: d, name } if d == dir && name == from));
        if !written {
            return Err(format!("{}: renames a file that was never written", at(i)));
        }
    }
    // Every change to a directory (create, rename, unlink) is followed by that
    // directory's fsync before the acknowledgement.
    for (i, op) in body.iter().enumerate() {
        let dir = match op {
            Op::Create { dir, .. } | Op::Rename { dir, .. } | Op::Unlink { dir, .. } => dir,
            _ => continue,
        };
        let synced = body[i + 1..]
            .iter()
            .any(|o| matches!(o, Op::SyncDir { dir: d } if d == dir));
        if !synced {
            return Err(format!(
                "{}: its directory is not fsynced before the acknowledgement",
                at(i)
            ));
        }
    }
    // Every acknowledged change replaces or removes the owner's file, and is
    // audited.
    let owner_change = body.iter().position(|o| {
        matches!(
            o,
            Op::Rename {
                dir: Place::Delegations | Place::Owner(_),
                ..
            } | Op::Unlink {
                dir: Place::Delegations | Place::Owner(_),
                ..
            }
        )
    });
    let Some(owner_change) = owner_change else {
        return Err("the owner's file was neither replaced nor removed".into());
    };
    let audited = body
        .iter()
        .any(|o| matches!(o, Op::Write { dir: Place::Data, name } if name == AUDIT));
    if !audited {
        return Err("no audit line was appended".into());
    }
    // A revocation's undo record, and an undo's "used" mark, are durable (in
    // place, and `undo/` fsynced) before the owner's file changes.
    if write != Write::Delegate {
        let before = &body[..owner_change];
        let Some(renamed) = before.iter().position(|o| {
            matches!(
                o,
                Op::Rename {
                    dir: Place::Undo,
                    ..
                }
            )
        }) else {
            return Err(format!(
                "{}: the owner's file changes before the undo record is in place",
                at(owner_change)
            ));
        };
        let synced = before[renamed..]
            .iter()
            .any(|o| matches!(o, Op::SyncDir { dir: Place::Undo }));
        if !synced {
            return Err(format!(
                "{}: the owner's file changes before the undo record is durable",
                at(owner_change)
            ));
        }
    }
    Ok(())
}

// --- The checker, on hand-made logs. ---

fn create(dir: Place, name: &str) -> Op {
    Op::Create {
        dir,
        name: name.into(),
    }
}
fn write(dir: Place, name: &str) -> Op {
    Op::Write {
        dir,
        name: name.into(),
    }
}
fn sync_file(dir: Place, name: &str) -> Op {
    Op::SyncFile {
        dir,
        name: name.into(),
    }
}
fn rename(dir: Place, from: &str, to: &str) -> Op {
    Op::Rename {
        dir,
        from: from.into(),
        to: to.into(),
    }
}
fn unlink(dir: Place, name: &str) -> Op {
    Op::Unlink {
        dir,
        name: name.into(),
    }
}
fn sync_dir(dir: Place) -> Op {
    Op::SyncDir { dir }
}

/// A temp file written, fsynced and renamed into place, then its directory fsynced.
fn replace(dir: Place, name: &str) -> Vec<Op> {
    let tmp = ".tilgang-tmp-Ab3dEf6hIj9L";
    vec![
        create(dir, tmp),
        write(dir, tmp),
        sync_file(dir, tmp),
        rename(dir, tmp, name),
        sync_dir(dir),
    ]
}

fn audited() -> Vec<Op> {
    vec![write(Place::Data, AUDIT), sync_file(Place::Data, AUDIT)]
}

const OWNER_FILE: &str = "991825827.json";
const RECORD: &str = "0123456789abcdef0123456789abcdef.json";

/// What a correct delegate, revoke, revoke of the last right, and undo log.
fn good_logs() -> Vec<(Write, Vec<Op>)> {
    let ack = |what| Op::Ack { what };
    let delegate = [replace(Place::Delegations, OWNER_FILE), audited()].concat();
    let revoke = [
        replace(Place::Undo, RECORD),
        replace(Place::Delegations, OWNER_FILE),
        audited(),
    ]
    .concat();
    let revoke_last = [
        replace(Place::Undo, RECORD),
        vec![
            unlink(Place::Delegations, OWNER_FILE),
            sync_dir(Place::Delegations),
        ],
        audited(),
    ]
    .concat();
    // A rotated audit log: the new one's link is fsynced too.
    let rotated = [
        replace(Place::Delegations, OWNER_FILE),
        vec![create(Place::Data, AUDIT), sync_dir(Place::Data)],
        audited(),
    ]
    .concat();
    vec![
        (Write::Delegate, [delegate, vec![ack("delegate")]].concat()),
        (
            Write::Revoke,
            [revoke.clone(), vec![ack("revoke")]].concat(),
        ),
        (Write::Revoke, [revoke_last, vec![ack("revoke")]].concat()),
        (Write::Undo, [revoke, vec![ack("undo")]].concat()),
        (Write::Delegate, [rotated, vec![ack("delegate")]].concat()),
    ]
}

#[test]
fn the_checker_accepts_the_protocol() {
    for (write, log) in good_logs() {
        assert_eq!(check(&log, write), Ok(()), "{log:#?}");
    }
}

#[test]
fn the_checker_notices_any_required_step_missing() {
    for (write, log) in good_logs() {
        for i in 0..log.len() {
            // A create is an event, not a duty: without one, nothing is owed.
            if matches!(log[i], Op::Create { .. }) {
                continue;
            }
            let mut dropped = log.clone();
            let op = dropped.remove(i);
            assert!(
                check(&dropped, write).is_err(),
                "{write:?} without {op:?} passed the check"
            );
        }
    }
}

#[test]
fn the_checker_notices_steps_out_of_order() {
    let ack = Op::Ack { what: "revoke" };
    let undo = replace(Place::Undo, RECORD);
    let owner = replace(Place::Delegations, OWNER_FILE);
    let cases: Vec<(&str, Vec<Op>)> = vec![
        (
            "owner file before the undo record",
            [owner.clone(), undo.clone(), audited(), vec![ack.clone()]].concat(),
        ),
        (
            "owner file after the undo record's rename but before its directory fsync",
            [
                undo[..4].to_vec(),
                owner.clone(),
                vec![sync_dir(Place::Undo)],
                audited(),
                vec![ack.clone()],
            ]
            .concat(),
        ),
        (
            "a write after the temp file's fsync",
            [
                undo.clone(),
                vec![
                    create(Place::Delegations, "t"),
                    write(Place::Delegations, "t"),
                    sync_file(Place::Delegations, "t"),
                    write(Place::Delegations, "t"),
                    rename(Place::Delegations, "t", OWNER_FILE),
                    sync_dir(Place::Delegations),
                ],
                audited(),
                vec![ack.clone()],
            ]
            .concat(),
        ),
        (
            "the directory fsynced before the rename, not after",
            [
                undo.clone(),
                vec![
                    create(Place::Delegations, "t"),
                    write(Place::Delegations, "t"),
                    sync_file(Place::Delegations, "t"),
                    sync_dir(Place::Delegations),
                    rename(Place::Delegations, "t", OWNER_FILE),
                ],
                audited(),
                vec![ack.clone()],
            ]
            .concat(),
        ),
        (
            "acknowledged before the audit line's fsync",
            [
                undo.clone(),
                owner.clone(),
                vec![write(Place::Data, AUDIT), ack.clone()],
                vec![sync_file(Place::Data, AUDIT)],
            ]
            .concat(),
        ),
    ];
    for (what, log) in cases {
        assert!(check(&log, Write::Revoke).is_err(), "passed: {what}");
    }
}

// --- The real server's writes, recorded. ---

/// A server whose store records its file operations, and the log.
async fn recorded() -> (TestServer, Arc<OpLog>) {
    let s = TestServer::start().await;
    let log = Arc::new(OpLog::new());
    s.sidecar.store.files().unwrap().record_ops(log.clone());
    (s, log)
}

/// Take what one write recorded and check it; returns it for further asserts.
fn checked(log: &OpLog, write: Write) -> Vec<Op> {
    let ops = log.take();
    if let Err(e) = check(&ops, write) {
        panic!("{write:?} broke the protocol: {e}\n{ops:#?}");
    }
    ops
}

fn has(ops: &[Op], want: impl Fn(&Op) -> bool) -> bool {
    ops.iter().any(want)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_write_follows_the_protocol() {
    let (s, log) = recorded().await;
    let mut a = s.admin().await;
    let req = |owner: &str, supplier: &str, rights: &[&str], actor: &str| {
        (
            owner.to_string(),
            supplier.to_string(),
            rights.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            actor.to_string(),
        )
    };

    // Delegate: the owner file replaced.
    let (owner, supplier, rights, actor) = req(
        OWNER,
        NEW_SUPPLIER,
        &["instances-full", "instances-read"],
        DAGL,
    );
    a.delegate(tilgang::proto::DelegateRequest {
        owner,
        supplier,
        rights,
        actor,
    })
    .await
    .unwrap();
    let ops = checked(&log, Write::Delegate);
    assert!(has(
        &ops,
        |o| matches!(o, Op::Rename { dir: Place::Delegations, to, .. } if to == &format!("{OWNER}.json"))
    ));

    // Revoke some rights: the undo record, then the owner file replaced.
    let (owner, supplier, rights, actor) = req(OWNER, NEW_SUPPLIER, &["instances-full"], DAGL);
    a.revoke(tilgang::proto::RevokeRequest {
        owner,
        supplier,
        rights,
        actor,
    })
    .await
    .unwrap();
    checked(&log, Write::Revoke);

    // Revoke the last right of an owner's only supplier: the file is removed.
    let (owner, supplier, rights, actor) = req(OTHER_OWNER, "311654306", &[], OTHER_ADMIN);
    let token = a
        .revoke(tilgang::proto::RevokeRequest {
            owner,
            supplier,
            rights,
            actor,
        })
        .await
        .unwrap()
        .into_inner()
        .undo_token;
    let ops = checked(&log, Write::Revoke);
    assert!(has(&ops, |o| matches!(
        o,
        Op::Unlink {
            dir: Place::Delegations,
            ..
        }
    )));
    assert!(!s.work.owner_file(OTHER_OWNER).exists());

    // Undo it: the token marked used, then the file back.
    a.undo_revoke(tilgang::proto::UndoRevokeRequest {
        undo_token: token.clone(),
        actor: OTHER_ADMIN.into(),
    })
    .await
    .unwrap();
    checked(&log, Write::Undo);
    assert!(s.work.owner_file(OTHER_OWNER).exists());

    // A refused write acknowledges nothing, and writes nothing.
    let e = a
        .undo_revoke(tilgang::proto::UndoRevokeRequest {
            undo_token: token,
            actor: OTHER_ADMIN.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(log.take(), []);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_links_are_made_durable_too() {
    let (s, log) = recorded().await;
    let mut a = s.admin().await;

    // The audit log rotated away: the new one is created, and the data
    // directory fsynced, before the acknowledgement.
    let data = s.work.data();
    std::fs::rename(data.join(AUDIT), data.join("audit.jsonl.1")).unwrap();
    a.delegate(tilgang::proto::DelegateRequest {
        owner: OWNER.into(),
        supplier: NEW_SUPPLIER.into(),
        rights: vec!["instances-read".into()],
        actor: DAGL.into(),
    })
    .await
    .unwrap();
    let ops = checked(&log, Write::Delegate);
    assert!(has(
        &ops,
        |o| matches!(o, Op::Create { dir: Place::Data, name } if name == AUDIT)
    ));

    // `undo/` removed by hand (it is not watched): created again, durably.
    std::fs::remove_dir_all(data.join("undo")).unwrap();
    a.revoke(revoke_all(OWNER, NEW_SUPPLIER)).await.unwrap();
    let ops = checked(&log, Write::Revoke);
    assert!(has(
        &ops,
        |o| matches!(o, Op::Create { dir: Place::Data, name } if name == "undo")
    ));
    s.stop().await;
}

/// A split owner's writes follow the same protocol: the split writes every
/// part durably before it removes the single file, and a write to a split
/// owner replaces one part, nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn a_split_and_a_part_write_follow_the_protocol() {
    let work = Workdir::new();
    let suppliers = crate::split::spread_suppliers(tilgang::snapshot::load::SPLIT_AT);
    write_owner(&work, OWNER, &suppliers, "instances-read");
    let s = TestServer::start_in(work, |_| {}).await;
    let log = Arc::new(OpLog::new());
    s.sidecar.store.files().unwrap().record_ops(log.clone());
    let mut a = s.admin().await;
    let delegate = |supplier: &str| tilgang::proto::DelegateRequest {
        owner: OWNER.into(),
        supplier: supplier.into(),
        rights: vec!["instances-read".into()],
        actor: DAGL.into(),
    };

    a.delegate(delegate(NEW_SUPPLIER)).await.unwrap();
    let ops = checked(&log, Write::Delegate);
    let single = format!("{OWNER}.json");
    let removed = ops
        .iter()
        .position(|o| matches!(o, Op::Unlink { dir: Place::Delegations, name } if *name == single))
        .expect("the single file is removed");
    let last_part = ops
        .iter()
        .rposition(|o| {
            matches!(
                o,
                Op::Rename {
                    dir: Place::Owner(_),
                    ..
                }
            )
        })
        .expect("parts are written");
    assert!(
        last_part < removed,
        "every part is in place before the file goes"
    );
    assert!(!s.work.owner_file(OWNER).exists());

    a.revoke(revoke_all(OWNER, &suppliers[0])).await.unwrap();
    let ops = checked(&log, Write::Revoke);
    let part = format!("{}.json", &suppliers[0][..3]);
    let owner_ops: Vec<&Op> = ops
        .iter()
        .filter(|o| {
            matches!(
                o,
                Op::Rename {
                    dir: Place::Owner(_) | Place::Delegations,
                    ..
                } | Op::Unlink {
                    dir: Place::Owner(_) | Place::Delegations,
                    ..
                }
            )
        })
        .collect();
    assert!(
        matches!(owner_ops.as_slice(), [Op::Rename { dir: Place::Owner(_), to, .. }] if *to == part),
        "{owner_ops:#?}"
    );
    s.stop().await;
}
