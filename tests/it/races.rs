//! Files saved in place while clients ask: no answer may come from a state of
//! a file that neither its old nor its new complete content gives (empty,
//! truncated, half written). And bad data in one file never holds back a good
//! change in another.
//!
//! Each race alternates a file between two complete contents A and B, both of
//! which give the same answer to the clients' question, with saves in place
//! (`O_TRUNC`, then the bytes) of three kinds: one `write` with no pause,
//! several `write`s with pauses between them (the first chunk ending where
//! the file is still valid), and a pause between the truncate and the write.
//! Pauses go up to the quiet period (150 ms, the debounce window), which is
//! what tilgang promises to ride out.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tilgang::proto::IsAuthorizedResponse;

use crate::util::*;

/// One way of saving a file in place.
#[derive(Debug, Clone, Copy)]
enum Save {
    /// Truncate and write everything at once.
    Whole,
    /// Truncate, write the first `at` bytes, pause, write the rest.
    Chunked { at: usize, pause: Duration },
    /// Truncate, pause, write everything.
    Paused(Duration),
}

/// Save `bytes` in place; returns the longest time the file actually stood
/// between two of its changes (truncate, writes). A busy machine may stretch
/// a pause the schedule asked for.
fn save_in_place(path: &std::path::Path, bytes: &[u8], how: Save) -> Duration {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut write = |chunk: &[u8]| {
        longest = longest.max(last.elapsed());
        f.write_all(chunk).unwrap();
        last = Instant::now();
    };
    match how {
        Save::Whole => write(bytes),
        Save::Chunked { at, pause } => {
            write(&bytes[..at]);
            std::thread::sleep(pause);
            write(&bytes[at..]);
        }
        Save::Paused(pause) => {
            std::thread::sleep(pause);
            write(bytes);
        }
    }
    longest
}

/// The longest pause inside a save that tilgang promises to ride out: the
/// quiet period (150 ms) plus the slack it keeps for a writer's scheduling.
fn covered() -> Duration {
    Duration::from_millis(150) + tilgang::snapshot::settle::SLACK
}

/// The saves of one race: every kind, pauses spread below the quiet period,
/// and gaps between saves from 10 ms to a little over the quiet period (so
/// the contents do get published while the clients ask).
///
/// `TILGANG_RACE_ROUNDS` (default 1) multiplies the number of saves, for a
/// longer stress run: `TILGANG_RACE_ROUNDS=20 cargo test --test it races`.
fn schedule(split_at: usize) -> Vec<(Save, Duration)> {
    let rounds: u64 = std::env::var("TILGANG_RACE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let ms = Duration::from_millis;
    let mut out = Vec::new();
    for i in 0..40 * rounds {
        out.push((Save::Whole, ms(10 + (i * 37) % 200)));
    }
    for i in 0..16 * rounds {
        let pause = ms((i * 11) % 151);
        out.push((
            Save::Chunked {
                at: split_at,
                pause,
            },
            ms(10 + (i * 53) % 180),
        ));
    }
    for i in 0..8 * rounds {
        out.push((Save::Paused(ms((i * 19) % 151)), ms(20 + (i * 41) % 180)));
    }
    out
}

/// Long enough for a save to be seen, settle and be published: the debounce
/// window, the quiet period, and room for a busy machine.
const HOLD: Duration = Duration::from_millis(1200);

/// What a race saw.
#[derive(Debug, Default)]
struct Tally {
    saves: usize,
    /// The longest a file stood half-saved, as measured by the writer.
    longest_pause: Duration,
    answers: usize,
    wrong: Vec<String>,
    revisions: std::collections::BTreeSet<String>,
}

/// Rounds a race may take to be judged. A loaded machine can hold the
/// writer up past what tilgang promises; such a round proves nothing either
/// way, so it is run again, and a test none of whose rounds could be judged
/// fails rather than passing silently.
const ATTEMPTS: usize = 3;

/// [`race_once`] until a round can be judged (see [`ATTEMPTS`]); that
/// round's tally.
async fn race(
    s: &TestServer,
    path: std::path::PathBuf,
    a: String,
    b: String,
    split_at: usize,
    question: tilgang::proto::IsAuthorizedRequest,
    right: fn(&IsAuthorizedResponse) -> bool,
) -> Tally {
    for attempt in 1..=ATTEMPTS {
        let t = race_once(
            s,
            path.clone(),
            a.clone(),
            b.clone(),
            split_at,
            question.clone(),
            right,
        )
        .await;
        if judged(&t) {
            return t;
        }
        eprintln!("round {attempt} of {ATTEMPTS} could not be judged; running it again");
    }
    panic!(
        "none of {ATTEMPTS} rounds could be judged: the machine held the writer up past \
         the {:?} covered every time, so the race proved nothing",
        covered()
    );
}

/// Alternate `path` between `a` and `b` with in-place saves while three
/// clients keep asking `question`; `right` says whether an answer is one that
/// both contents give. `a` must already be in effect.
async fn race_once(
    s: &TestServer,
    path: std::path::PathBuf,
    a: String,
    b: String,
    split_at: usize,
    question: tilgang::proto::IsAuthorizedRequest,
    right: fn(&IsAuthorizedResponse) -> bool,
) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut gw = s.gateway().await;
        let (stop, answers, question) = (stop.clone(), answers.clone(), question.clone());
        clients.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            let mut revisions = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let r = gw
                    .is_authorized(question.clone())
                    .await
                    .unwrap()
                    .into_inner();
                answers.fetch_add(1, Ordering::Relaxed);
                if !right(&r) {
                    wrong.push(format!("{r:?}"));
                }
                revisions.insert(r.revision);
            }
            (wrong, revisions)
        }));
    }
    let (saves, longest_pause) = tokio::task::spawn_blocking(move || {
        let plan = schedule(split_at);
        let mut longest = Duration::ZERO;
        for (i, (how, gap)) in plan.iter().enumerate() {
            let text = if i % 2 == 0 { &b } else { &a };
            longest = longest.max(save_in_place(&path, text.as_bytes(), *how));
            // Now and then B is left alone long enough to be published, so
            // the clients see new snapshots appear while the saves go on.
            let hold = if i % 16 == 8 { HOLD } else { Duration::ZERO };
            std::thread::sleep(*gap + hold);
        }
        (plan.len(), longest)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally {
        saves,
        longest_pause,
        answers: 0,
        ..Tally::default()
    };
    for c in clients {
        let (wrong, revisions) = c.await.unwrap();
        tally.wrong.extend(wrong);
        tally.revisions.extend(revisions);
    }
    tally.answers = answers.load(Ordering::Relaxed);
    println!(
        "{} saves (longest pause {:?}), {} answers, {} revisions seen, {} wrong",
        tally.saves,
        tally.longest_pause,
        tally.answers,
        tally.revisions.len(),
        tally.wrong.len()
    );
    tally
}

/// Whether the race stayed within what tilgang promises: if the machine
/// stretched a pause past it, the race proves nothing either way.
fn judged(t: &Tally) -> bool {
    if t.longest_pause > covered() {
        eprintln!(
            "not judged: the writer was held up for {:?}, past the {:?} covered",
            t.longest_pause,
            covered()
        );
        return false;
    }
    true
}

fn assert_clean(t: &Tally) {
    assert!(t.answers > t.saves, "the clients kept asking throughout");
    assert!(
        t.wrong.is_empty(),
        "{} of {} answers came from a partial file, e.g. {}",
        t.wrong.len(),
        t.answers,
        t.wrong[0]
    );
}

const FREEZE_OTHER: &str = r#"@id("freeze-974760673-writes")
forbid (principal == Tilgang::Organization::"974760673", action == Tilgang::Action::"callApi", resource == Tilgang::Scope::"altinn:serviceowner/instances.write");
"#;

const FREEZE_SUPPLIER: &str = r#"
@id("freeze-810418672")
forbid (principal == Tilgang::Organization::"810418672", action == Tilgang::Action::"callApi", resource);
"#;

fn frozen(r: &IsAuthorizedResponse) -> bool {
    !r.allowed && r.reasons == ["freeze-810418672"] && r.errors.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_file_saved_in_place_never_lets_a_forbidden_supplier_in() {
    let s = TestServer::start().await;
    let path = s.work.policies().join("freeze.cedar");
    // A: the forbid after another policy, so the first policy alone is a
    // valid prefix that forbids nothing for the supplier asked about.
    let a = format!("{FREEZE_OTHER}{FREEZE_SUPPLIER}");
    let b = format!(
        "{}{FREEZE_SUPPLIER}",
        FREEZE_OTHER.replace("freeze-974760673-writes", "freeze-974760673-writes-b")
    );
    save_by_rename(&path, &a);
    let q = req(FULL_SUPPLIER, OWNER, READ);
    eventually("the forbid to apply", || async {
        frozen(&s.decide(FULL_SUPPLIER, OWNER, READ).await)
    })
    .await;
    let t = race(&s, path, a, b, FREEZE_OTHER.len(), q, frozen).await;
    assert_clean(&t);
    assert!(
        t.revisions.len() >= 2,
        "both contents were published meanwhile"
    );
    s.stop().await;
}

fn allowed_by_delegation(r: &IsAuthorizedResponse) -> bool {
    r.allowed && r.reasons == ["delegated-scope"] && r.errors.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catalogue_saved_in_place_never_changes_an_answer() {
    let s = TestServer::start().await;
    // B adds a right; `instances-full` gives write in both.
    let rights = s.work.policies().join("rights.json");
    let a = std::fs::read_to_string(&rights).unwrap();
    let mut catalogue: serde_json::Value = serde_json::from_str(&a).unwrap();
    catalogue["rights"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": "instances-events",
            "name": "Hendelser",
            "scopes": ["altinn:serviceowner/instances.events"]
        }));
    let b = serde_json::to_string_pretty(&catalogue).unwrap();
    let q = req(FULL_SUPPLIER, OWNER, WRITE);
    let t = race(&s, rights, a, b, 40, q, allowed_by_delegation).await;
    assert_clean(&t);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_saved_in_place_never_changes_an_answer() {
    let s = TestServer::start().await;
    let q = req(FULL_SUPPLIER, OWNER, WRITE);
    // B adds an optional attribute.
    let schema = s.work.policies().join("tilgang.cedarschema");
    let a = std::fs::read_to_string(&schema).unwrap();
    let b = a.replace(
        "updatedAt: String,",
        "updatedAt: String,\n    note?: String,",
    );
    assert_ne!(a, b);
    let split = a.find("entity Delegation").unwrap();
    let t = race(&s, schema, a, b, split, q, allowed_by_delegation).await;
    assert_clean(&t);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_file_saved_in_place_never_drops_a_delegation() {
    let s = TestServer::start().await;
    let path = s.work.owner_file(OWNER);
    let a = std::fs::read_to_string(&path).unwrap();
    // B: the same delegations, one with a later `updatedAt`.
    let b = a.replacen("2026-01-05T09:00:00Z\"\n", "2026-01-06T09:00:00Z\"\n", 1);
    assert_ne!(a, b);
    let q = req(FULL_SUPPLIER, OWNER, WRITE);
    let split = a.len() / 2;
    let t = race(&s, path, a, b, split, q, allowed_by_delegation).await;
    assert_clean(&t);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_saved_in_place_never_refuse_an_admin_write() {
    let s = TestServer::start().await;
    let path = s.work.data().join("roles.json");
    let a = std::fs::read_to_string(&path).unwrap();
    let b = a.replace("\"REGN\"", "\"REGNA\"");
    assert_ne!(a, b);
    let stop = Arc::new(AtomicBool::new(false));
    let mut admin = s.admin().await;
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let suppliers = org_numbers(40_000_000, 400);
            let mut done = 0;
            for supplier in suppliers {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = admin
                    .delegate(tilgang::proto::DelegateRequest {
                        owner: OWNER.into(),
                        supplier,
                        rights: vec!["instances-read".into()],
                        actor: DAGL.into(),
                    })
                    .await;
                if let Err(e) = r {
                    return Err(format!(
                        "write {done} refused during a roles.json save: {e}"
                    ));
                }
                done += 1;
            }
            Ok(done)
        })
    };
    let q = req(FULL_SUPPLIER, OWNER, WRITE);
    let t = race(&s, path, a, b, 30, q, allowed_by_delegation).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    println!("admin writes during the roles.json saves: {writes:?}");
    assert!(writes.unwrap() > 0);
    assert_clean(&t);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_owner_file_does_not_hold_back_a_new_forbid() {
    let s = TestServer::start().await;
    let broken = s.work.owner_file(OTHER_OWNER);
    let good = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&broken, "[ { broken").unwrap();
    // The new forbid, in a file of its own.
    std::fs::write(s.work.policies().join("freeze.cedar"), FREEZE_SUPPLIER).unwrap();
    eventually(
        "the forbid to apply despite the broken owner file",
        || async { frozen(&s.decide(FULL_SUPPLIER, OWNER, READ).await) },
    )
    .await;
    // The broken owner keeps its last good delegations.
    let r = s.decide("311654306", OTHER_OWNER, WRITE).await;
    assert!(allowed_by_delegation(&r), "{r:?}");
    // Fixed, and changed: the new content loads, under the new policies.
    std::fs::write(
        &broken,
        good.replace(
            r#"{ "type": "Tilgang::Right", "id": "instances-full" },"#,
            "",
        ),
    )
    .unwrap();
    eventually("the fixed owner file to load", || async {
        !s.decide("311654306", OTHER_OWNER, WRITE).await.allowed
    })
    .await;
    assert!(allowed_by_delegation(
        &s.decide("311654306", OTHER_OWNER, READ).await
    ));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_roles_file_refuses_admin_writes_until_fixed() {
    use tonic::Code;
    let s = TestServer::start().await;
    let mut a = s.admin().await;
    let write = || tilgang::proto::DelegateRequest {
        owner: OWNER.into(),
        supplier: NEW_SUPPLIER.into(),
        rights: vec!["instances-read".into()],
        actor: DAGL.into(),
    };
    let roles = s.work.data().join("roles.json");
    let good = std::fs::read_to_string(&roles).unwrap();
    // A typo that drops nobody's role: the last good roles would still allow
    // DAGL, but tilgang must not act on roles someone is changing.
    std::fs::write(&roles, good.replace("\"DAGL\" }", "\"DAGL\" ")).unwrap();
    // Probe with a write that changes nothing when it is allowed (revoking what
    // was never delegated is NOT_FOUND), so waiting writes nothing.
    let probe = || tilgang::proto::RevokeRequest {
        owner: OWNER.into(),
        supplier: NEW_SUPPLIER.into(),
        rights: vec![],
        actor: DAGL.into(),
    };
    eventually("admin writes to be refused", || {
        let mut a = a.clone();
        async move {
            a.revoke(probe())
                .await
                .is_err_and(|e| e.code() == Code::FailedPrecondition)
        }
    })
    .await;
    // And they stay refused while the file is broken.
    let e = a.delegate(write()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("roles.json"), "{}", e.message());
    // Nothing was written, and the gateway decides as before.
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert!(allowed_by_delegation(
        &s.decide(FULL_SUPPLIER, OWNER, WRITE).await
    ));

    std::fs::write(&roles, &good).unwrap();
    eventually("admin writes to work again", || {
        let mut a = a.clone();
        async move { a.delegate(write()).await.is_ok() }
    })
    .await;
    assert!(allowed_by_delegation(
        &s.decide(NEW_SUPPLIER, OWNER, READ).await
    ));
    drop(a);
    s.stop().await;
}
