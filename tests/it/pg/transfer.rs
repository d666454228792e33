//! Moving data with the real binary: `tilgang import` a data directory
//! into one store, `tilgang export` it, import that into a second store and
//! export again: the same bytes, in files `tilgang validate` accepts and
//! that hold the delegations the original directory held.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use tilgang::snapshot::load::{PolicySource, load_snapshot};

use super::harness::*;
use crate::util::*;

/// Run `tilgang args…`: exit code, stdout, stderr.
fn tilgang(args: &[&str]) -> (i32, String, String) {
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_tilgang"))
            .args(args)
            .env_remove("TILGANG_STORE")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn rows_of(policies: &Path, data: &Path) -> Rows {
    snapshot_rows(&load_snapshot(&PolicySource::Dir(policies.to_path_buf()), data).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn export_import_export_gives_the_same_bytes() {
    const TEST: &str = "pg::transfer::export_import_export_gives_the_same_bytes";
    let Some(server) = server(TEST) else { return };
    let (one, two) = (
        TestDb::create(&server, TEST).await,
        TestDb::create(&server, TEST).await,
    );
    // The fixtures, and an owner with more suppliers than one file holds.
    let work = Workdir::new();
    let big = org_numbers(95_000_000, 1).remove(0);
    write_owner(
        &work,
        &big,
        &org_numbers(96_000_000, 1100),
        "instances-read",
    );
    let policies = arg(&work.policies());
    let total = rows_of(&work.policies(), &work.data()).len();
    assert_eq!(total, 1103);

    let (code, out, err) = tilgang(&[
        "import",
        &arg(&work.data()),
        "--store",
        &one.url,
        "--policies",
        &policies,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("imported {total} delegations")),
        "{out}"
    );
    // Again: nothing changes, no new revision.
    let (code, out, err) = tilgang(&[
        "import",
        &arg(&work.data()),
        "--store",
        &one.url,
        "--policies",
        &policies,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(store_state(&one.client().await).await.0, 1);

    let first = tempfile::tempdir().unwrap();
    let (code, out, err) = tilgang(&[
        "export",
        "--store",
        &one.url,
        "--policies",
        &policies,
        &arg(first.path()),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("exported {total} delegations of 3 owners")),
        "{out}"
    );
    assert!(
        first.path().join("delegations").join(&big).is_dir(),
        "the big owner is split into parts"
    );
    // `validate` accepts the export, and it holds what the original held.
    std::fs::copy(
        work.data().join("roles.json"),
        first.path().join("roles.json"),
    )
    .unwrap();
    let (code, out, err) = tilgang(&[
        "validate",
        "--policies",
        &policies,
        "--data",
        &arg(first.path()),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        rows_of(&work.policies(), first.path()),
        rows_of(&work.policies(), &work.data())
    );
    // An export never writes over delegations.
    let (code, _, err) = tilgang(&[
        "export",
        "--store",
        &one.url,
        "--policies",
        &policies,
        &arg(first.path()),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("already holds delegations"), "{err}");

    // Through the second store and out again: the same bytes.
    let (code, out, err) = tilgang(&[
        "import",
        &arg(first.path()),
        "--store",
        &two.url,
        "--policies",
        &policies,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let second = tempfile::tempdir().unwrap();
    let (code, out, err) = tilgang(&[
        "export",
        "--store",
        &two.url,
        "--policies",
        &policies,
        &arg(second.path()),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::remove_file(first.path().join("roles.json")).unwrap();
    let (a, b) = (tree(first.path()), tree(second.path()));
    assert!(a.len() > 3, "{:?}", a.keys());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(b[path] == *bytes, "{path} differs");
    }
}
