use super::*;
use crate::auth::TokenError;
use crate::auth::testkit::{self, jwks, now};
use crate::auth::verify::{Verifier, VerifierConfig};
use serde_json::json;
use std::io::Write as _;

/// Short periods so the tests run quickly; the rule is the same.
const FAST: JwksOptions = JwksOptions {
    quiet: Duration::from_millis(100),
    rescan: Duration::from_secs(60),
};

/// Wait (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn token(kid: &str, key: &testkit::TestKey) -> String {
    testkit::token(
        key,
        &json!({"alg": "ES256", "kid": kid}),
        &json!({"exp": now() + 600}),
    )
}

fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn write_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    verifier: Verifier,
}

fn fixture(keys: &[serde_json::Value], options: JwksOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(keys)).unwrap();
    let file = JwksFile::open_with(&path, options).unwrap();
    let verifier = Verifier::new(Arc::new(file), VerifierConfig::default()).unwrap();
    Fixture {
        _dir: dir,
        path,
        verifier,
    }
}

fn rotation(write: fn(&Path, &str)) {
    let f = fixture(&[testkit::p256().jwk("old")], FAST);
    let old = token("old", testkit::p256());
    let new = token("new", testkit::p256_2());
    assert!(f.verifier.verify(&old).is_ok());
    assert_eq!(
        f.verifier.verify(&new),
        Err(TokenError::UnknownKey { kid: "new".into() })
    );
    // Overlap: both keys published.
    write(
        &f.path,
        &jwks(&[testkit::p256().jwk("old"), testkit::p256_2().jwk("new")]),
    );
    eventually("the new key", || f.verifier.verify(&new).is_ok());
    assert!(f.verifier.verify(&old).is_ok());
    // The old key retired.
    write(&f.path, &jwks(&[testkit::p256_2().jwk("new")]));
    eventually("the old key to go", || {
        f.verifier.verify(&old) == Err(TokenError::UnknownKey { kid: "old".into() })
    });
    assert!(f.verifier.verify(&new).is_ok());
    let status = f.verifier.jwks().status();
    assert_eq!(
        (status.reloads, status.rejected, status.problem),
        (2, 0, None)
    );
}

#[test]
fn keys_rotate_through_a_file_replaced_by_rename() {
    rotation(write_by_rename);
}

#[test]
fn keys_rotate_through_a_file_saved_in_place() {
    rotation(write_in_place);
}

#[test]
fn a_kubernetes_style_symlink_swap_is_seen() {
    // `jwks.json -> ..data/jwks.json`, `..data -> ..v1`, swapped by
    // renaming a new `..data` link over the old one.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(
        d.join("..v1/jwks.json"),
        jwks(&[testkit::p256().jwk("old")]),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/jwks.json", d.join("jwks.json")).unwrap();
    let file = Arc::new(JwksFile::open_with(d.join("jwks.json"), FAST).unwrap());
    let v = Verifier::new(file, VerifierConfig::default()).unwrap();
    let new = token("new", testkit::p256_2());
    std::fs::create_dir(d.join("..v2")).unwrap();
    std::fs::write(
        d.join("..v2/jwks.json"),
        jwks(&[testkit::p256_2().jwk("new")]),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    eventually("the swapped key", || v.verify(&new).is_ok());
}

#[test]
fn a_broken_file_keeps_the_last_good_keys_and_is_reported_once() {
    let f = fixture(&[testkit::p256().jwk("k")], FAST);
    let good = token("k", testkit::p256());
    for (n, broken) in ["{\"keys\": [", "{\"keys\": []}", "not json"]
        .iter()
        .enumerate()
    {
        write_by_rename(&f.path, broken);
        eventually("the refusal", || {
            f.verifier.jwks().status().rejected == n as u64 + 1
        });
        let problem = f.verifier.jwks().status().problem.unwrap();
        assert!(problem.contains("is invalid"), "{problem}");
        assert!(f.verifier.verify(&good).is_ok(), "{broken}");
    }
    let status = f.verifier.jwks().status();
    assert_eq!((status.reloads, status.rejected), (0, 3));
    // Gone: still the old keys, reported.
    std::fs::remove_file(&f.path).unwrap();
    eventually("the missing file reported", || {
        f.verifier
            .jwks()
            .status()
            .problem
            .is_some_and(|p| p.contains("cannot read"))
    });
    assert!(f.verifier.verify(&good).is_ok());
    // Back to the loaded content: the problem clears, nothing reloads.
    std::fs::write(&f.path, jwks(&[testkit::p256().jwk("k")])).unwrap();
    eventually("the problem to clear", || {
        f.verifier.jwks().status().problem.is_none()
    });
    assert_eq!(f.verifier.jwks().status().reloads, 0);
}

#[test]
fn a_save_in_place_that_pauses_mid_write_is_never_judged_half_written() {
    // Truncate, pause for less than the quiet period, write: the empty
    // file in between must be neither loaded nor reported. The pauses
    // are 100 ms against a 400 ms quiet period, so a loaded machine
    // stretching the writer's sleeps does not fail the test.
    let options = JwksOptions {
        quiet: Duration::from_millis(400),
        rescan: Duration::from_secs(60),
    };
    let f = fixture(&[testkit::p256().jwk("old")], options);
    let new = token("new", testkit::p256_2());
    let text = jwks(&[testkit::p256_2().jwk("new")]);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&f.path)
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (first, rest) = text.split_at(text.len() / 2);
    file.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    file.write_all(rest.as_bytes()).unwrap();
    drop(file);
    eventually("the new key", || f.verifier.verify(&new).is_ok());
    assert_eq!(f.verifier.jwks().status().rejected, 0);
}

#[test]
fn an_unknown_kid_asks_the_watcher_for_a_look_at_most_once_a_second() {
    // The watcher's end of the channel, held by the test: a lost event
    // is then simulated exactly.
    let set = KeySet::from_json(jwks(&[testkit::p256().jwk("k")]).as_bytes()).unwrap();
    let (tx, rx) = mpsc::channel();
    let file = JwksFile {
        wake: Some(tx),
        ..JwksFile::fixed(set)
    };
    let v = Verifier::new(Arc::new(file), VerifierConfig::default()).unwrap();
    let stranger = token("other", testkit::p256());
    for _ in 0..100 {
        assert_eq!(
            v.verify(&stranger),
            Err(TokenError::UnknownKey {
                kid: "other".into()
            })
        );
    }
    assert!(matches!(rx.try_recv(), Ok(Msg::Look)));
    assert!(
        rx.try_recv().is_err(),
        "one look for a burst of unknown kids"
    );
    // A known kid asks for nothing.
    assert!(v.verify(&token("k", testkit::p256())).is_ok());
    assert!(rx.try_recv().is_err());
}

#[test]
fn start_up_refuses_a_missing_invalid_or_odd_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    assert!(matches!(
        JwksFile::open_with(&path, FAST),
        Err(JwksError::Read { .. })
    ));
    std::fs::write(&path, "{\"keys\": []}").unwrap();
    let err = JwksFile::open_with(&path, FAST).unwrap_err();
    assert!(matches!(err, JwksError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("no key usable"), "{err}");
    assert!(matches!(
        JwksFile::open_with(dir.path(), FAST),
        Err(JwksError::NotAFile { .. })
    ));
    std::fs::write(&path, vec![b' '; MAX_JWKS_BYTES as usize + 1]).unwrap();
    assert!(matches!(
        JwksFile::open_with(&path, FAST),
        Err(JwksError::TooLarge { .. })
    ));
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        dir.path().join("fifo"),
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    assert!(matches!(
        JwksFile::open_with(dir.path().join("fifo"), FAST),
        Err(JwksError::NotAFile { .. })
    ));
}

fn digest(n: u8) -> Digest {
    [n; 32]
}

#[test]
fn a_change_is_judged_once_after_two_agreeing_reads_a_gap_apart() {
    let gap = Duration::from_millis(250);
    let mut s = Settle::new(gap);
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    assert_eq!(s.observe(digest(1), t0, ms(1)), Verdict::Wait);
    assert_eq!(s.due(), Some(ms(1) + gap + MARGIN));
    // Not more than the gap after the first read ended.
    assert_eq!(s.observe(digest(1), ms(200), ms(201)), Verdict::Wait);
    assert_eq!(s.observe(digest(1), ms(251), ms(252)), Verdict::Wait);
    assert_eq!(s.observe(digest(1), ms(252), ms(253)), Verdict::Judge);
    assert_eq!(s.due(), None);
    // Judged once: later looks at the same observation do nothing.
    for n in [300, 5_000, 60_000] {
        assert_eq!(s.observe(digest(1), ms(n), ms(n + 1)), Verdict::Judged);
    }
    // Something else restarts the wait from its own read.
    assert_eq!(s.observe(digest(2), ms(70_000), ms(70_001)), Verdict::Wait);
    assert_eq!(s.observe(digest(1), ms(70_300), ms(70_301)), Verdict::Wait);
    assert_eq!(s.observe(digest(1), ms(70_552), ms(70_553)), Verdict::Judge);
    s.clear();
    assert_eq!(s.due(), None);
    assert_eq!(s.observe(digest(1), ms(80_000), ms(80_001)), Verdict::Wait);
}

#[test]
fn a_read_during_a_write_never_agrees_with_another() {
    let read = |steady| FileRead {
        bytes: b"{}".to_vec(),
        before: Stamp {
            dev: 1,
            ino: 2,
            len: 2,
            modified: (3, 4),
            changed: (5, 6),
        },
        steady,
    };
    assert_eq!(read(true).version(), read(true).version());
    assert_ne!(read(false).version(), read(false).version());
    let mut moved = read(true);
    moved.before.changed = (5, 7);
    assert_ne!(moved.version(), read(true).version());
}

#[test]
fn zero_quiet_judges_the_first_read() {
    let mut s = Settle::new(settle_gap(Duration::ZERO));
    let t = Instant::now();
    assert_eq!(s.observe(digest(1), t, t), Verdict::Judge);
    assert_eq!(s.observe(digest(1), t, t), Verdict::Judged);
    assert_eq!(settle_gap(DEFAULT_QUIET), Duration::from_millis(250));
}

#[test]
fn a_fixed_set_has_no_file_and_ignores_nudges() {
    let set = KeySet::from_json(jwks(&[testkit::p256().jwk("k")]).as_bytes()).unwrap();
    let f = JwksFile::fixed(set);
    assert_eq!(f.path(), None);
    f.nudge();
    assert_eq!(f.status(), JwksStatus::default());
    assert_eq!(f.keys().kids(), ["k"]);
}

#[test]
fn a_fixed_set_is_replaced_by_its_owner_and_a_watched_one_is_not() {
    let set = |key: &testkit::TestKey, kid: &str| {
        KeySet::from_json(jwks(&[key.jwk(kid)]).as_bytes()).unwrap()
    };
    let fixed = JwksFile::fixed(set(testkit::p256(), "old"));
    assert!(fixed.replace(set(testkit::p256_2(), "new")));
    assert_eq!(fixed.keys().kids(), ["new"]);
    let f = fixture(&[testkit::p256().jwk("file")], FAST);
    let watched = f.verifier.jwks();
    assert!(!watched.replace(set(testkit::p256_2(), "new")));
    assert_eq!(watched.keys().kids(), ["file"]);
}
