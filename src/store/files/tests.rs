use super::*;

fn data() -> (tempfile::TempDir, DataDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    (dir, data)
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn writes_replace_and_leave_no_temp_files() {
    let (dir, data) = data();
    data.write_atomic(Place::Delegations, "a.json", b"one")
        .unwrap();
    data.write_atomic(Place::Delegations, "a.json", b"two")
        .unwrap();
    let p = dir.path().join("delegations").join("a.json");
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // A mode someone chose is kept.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    data.write_atomic(Place::Delegations, "a.json", b"three")
        .unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(names(&dir.path().join("delegations")), ["a.json"]);
    assert_eq!(
        data.read(Place::Delegations, "a.json").unwrap().unwrap(),
        b"three"
    );
    data.remove_durable(Place::Delegations, "a.json").unwrap();
    data.remove_durable(Place::Delegations, "a.json").unwrap();
    assert!(!p.exists());
    assert_eq!(data.read(Place::Delegations, "a.json").unwrap(), None);
}

#[test]
fn temp_names_are_exactly_ours() {
    let ours = temp_name().unwrap();
    assert!(is_temp_name(&ours), "{ours}");
    assert!(is_temp_name(".tmp-aB3xY9"), "legacy");
    for not_ours in [
        ".tmp-aB3xY",
        ".tmp-aB3xY90",
        ".tmp-aB3x-9",
        ".tmp-aB3xY9.json",
        "x.tmp-aB3xY9",
        ".TMP-aB3xY9",
        ".tilgang-tmp-",
        ".tilgang-tmp-abcdefghijk",
        ".tilgang-tmp-abcdefghijklm",
        ".tilgang-tmp-abcdefghijk_",
        ".tilgang-tmp-abcdéfghijk",
        "tilgang-tmp-abcdefghijkl",
        "991825827.json",
    ] {
        assert!(!is_temp_name(not_ours), "{not_ours}");
    }
}

#[test]
fn a_hard_linked_log_is_not_appended_through() {
    let (dir, data) = data();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("passwd");
    std::fs::write(&target, "outside\n").unwrap();
    std::fs::hard_link(&target, dir.path().join("audit.jsonl")).unwrap();
    let e = data.open_append(Place::Data, "audit.jsonl").unwrap_err();
    assert!(e.to_string().contains("2 hard links"), "{e}");
    assert!(e.to_string().contains("audit.jsonl"), "{e}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "outside\n");
    // With the other name gone it is the log's own file again.
    std::fs::remove_file(&target).unwrap();
    let (mut f, _) = data.open_append(Place::Data, "audit.jsonl").unwrap();
    std::io::Write::write_all(&mut f, b"line\n").unwrap();
}

#[test]
fn symlinks_are_refused_and_nothing_is_written_through_them() {
    use std::os::unix::fs::symlink;
    let (dir, data) = data();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target");
    std::fs::write(&target, "outside").unwrap();

    // A file that is a symlink: not replaced, not removed, not read, not appended to.
    std::fs::create_dir(dir.path().join("undo")).unwrap();
    let link = dir.path().join("undo").join("r.json");
    symlink(&target, &link).unwrap();
    let is_refusal = |e: &std::io::Error| {
        SymlinkRefused::find(e).is_some_and(|r| r.path == link || r.path.ends_with("audit.jsonl"))
    };
    let Err(WriteError::NotApplied(e)) = data.write_atomic(Place::Undo, "r.json", b"x") else {
        panic!("replaced a symlink");
    };
    assert!(is_refusal(&e), "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let Err(WriteError::NotApplied(e)) = data.remove_durable(Place::Undo, "r.json") else {
        panic!("removed a symlink");
    };
    assert!(is_refusal(&e), "{e}");
    assert!(is_refusal(&data.read(Place::Undo, "r.json").unwrap_err()));
    symlink(&target, dir.path().join("audit.jsonl")).unwrap();
    assert!(is_refusal(
        &data.open_append(Place::Data, "audit.jsonl").unwrap_err()
    ));
    assert!(is_refusal(
        &data.file_id(Place::Data, "audit.jsonl").unwrap_err()
    ));
    assert!(link.is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "outside");
    assert_eq!(names(outside.path()), ["target"]);

    // A directory that is a symlink: nothing is created in it.
    std::fs::remove_dir_all(dir.path().join("undo")).unwrap();
    symlink(outside.path(), dir.path().join("undo")).unwrap();
    let Err(WriteError::NotApplied(e)) = data.write_atomic(Place::Undo, "r.json", b"x") else {
        panic!("wrote through a symlinked directory");
    };
    let refusal = SymlinkRefused::find(&e).unwrap();
    assert_eq!(refusal.path, dir.path().join("undo"));
    assert_eq!(refusal.wanted, "directory");
    assert!(data.sweep_temp_files(Place::Undo).is_err());
    assert_eq!(names(outside.path()), ["target"]);
}

#[test]
fn the_sweep_removes_only_our_temp_files() {
    use std::os::unix::fs::symlink;
    let (dir, data) = data();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join(".tmp-abc123");
    std::fs::write(&target, "outside").unwrap();
    let ours = [".tilgang-tmp-Ab3dEf6hIj9L", ".tmp-Ab3dEf"];
    let theirs = [
        ".tmp-Ab3dE",
        ".tmp-Ab3dEf7",
        ".tmp-Ab3dEf.json",
        ".tilgang-tmp-short",
        "991825827.json",
        ".991825827.json.swp",
    ];
    for d in ["delegations", "undo"] {
        let d = dir.path().join(d);
        std::fs::create_dir(&d).unwrap();
        for n in ours.iter().chain(&theirs) {
            std::fs::write(d.join(n), "x").unwrap();
        }
        // Named like ours but not a regular file: left alone.
        std::fs::create_dir(d.join(".tmp-dir123")).unwrap();
        symlink(&target, d.join(".tmp-lnk123")).unwrap();
    }
    std::fs::write(dir.path().join(".tmp-top123"), "x").unwrap();
    assert_eq!(data.sweep_temp_files(Place::Delegations).unwrap(), 2);
    assert_eq!(data.sweep_temp_files(Place::Undo).unwrap(), 2);
    for d in ["delegations", "undo"] {
        let mut left: Vec<&str> = theirs.to_vec();
        left.extend([".tmp-dir123", ".tmp-lnk123"]);
        left.sort();
        assert_eq!(names(&dir.path().join(d)), left);
    }
    assert!(
        dir.path().join(".tmp-top123").exists(),
        "only two directories"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "outside");
    assert_eq!(data.sweep_temp_files(Place::Delegations).unwrap(), 0);
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let (dir, data) = data();
    std::fs::create_dir(dir.path().join("undo")).unwrap();
    let fifo = dir.path().join("undo").join("f.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return; // no mkfifo here: nothing to show
    }
    assert!(data.read(Place::Undo, "f.json").is_err());
    std::fs::rename(&fifo, dir.path().join("audit.jsonl")).unwrap();
    assert!(data.open_append(Place::Data, "audit.jsonl").is_err());
}
