//! When a changed file may be acted on: only once two reads at least a quiet
//! period apart found the same content.
//!
//! A save in place (`open(O_TRUNC)`, then one or more `write`s) passes through
//! states that are not what its author wrote: an empty file, then a prefix. A
//! prefix of a policy file can be valid Cedar that lacks a `forbid`, and an
//! empty `.cedar` file is a valid policy set that forbids nothing, so acting on
//! one of those states can allow what both the old and the new file forbid.
//! File metadata cannot tell these states apart (a reader can see a file at
//! size 0 while its mtime is still the old one), so stability is decided by
//! content: a digest that is the same in a read that began more than `quiet`
//! (plus [`SLACK`]) after an earlier read ended. A writer that pauses no more
//! than `quiet` between its truncate and its write, or between two writes, is
//! then never caught between them.
//!
//! The same bytes can stand in a file twice with something else between: an
//! in-place save writes the same prefix every time. So what is compared is not
//! the bytes alone but what the caller observed: the bytes together with the
//! file's metadata (inode, size, mtime, ctime) before and after the read, which
//! every write moves (see `load::version_of`).
//!
//! This module decides; it reads nothing and keeps no clock of its own (callers
//! pass the instants, so tests can drive time).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Digest;
use crate::ids::OrgNumber;

/// What is judged as one piece of content: the policies directory as a whole
/// (its files must fit each other), one owner's file, `roles.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Policies,
    Owner(OrgNumber),
    Roles,
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Policies => f.write_str("the policies"),
            Self::Owner(o) => write!(f, "the delegations of {o}"),
            Self::Roles => f.write_str("roles.json"),
        }
    }
}

/// Whether content may be acted on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Seen unchanged across the quiet period: load it (or reject it).
    Settled,
    /// Changed recently, maybe mid-save: look again at `retry_at`.
    Unsettled { retry_at: Instant },
}

/// The content last seen for a unit that differs from the running snapshot.
#[derive(Debug, Clone, Copy)]
struct Seen {
    digest: Digest,
    /// When the read that first saw this digest ended.
    at: Instant,
    /// Once settled it stays settled for as long as the same digest is read,
    /// so a rejected file is not made to wait again on every look.
    settled: bool,
}

/// Tracks units whose content differs from the snapshot until it settles.
/// Keyed by [`Unit`] for the snapshot's files; another file kind brings a
/// key of its own (the organization register: `()`, one file).
#[derive(Debug)]
pub struct Settler<K = Unit> {
    quiet: Duration,
    seen: Mutex<HashMap<K, Seen>>,
}

/// What the settler compares between two reads: the content and the version
/// of the files it was read from, so the same bytes written again (an in-place
/// save writes the same prefix every time) do not look unchanged.
pub fn observed(content: &Digest, version: &Digest) -> Digest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(content);
    h.update(version);
    h.finalize().into()
}

/// Added to the quiet period between the two reads. A writer is a program on
/// a busy machine: its 150 ms sleep between truncate and write may take 240.
/// The promise is about the pause the writer asked for, so the reads keep this
/// much further apart.
pub const SLACK: Duration = Duration::from_millis(100);

/// Added to the quiet period when scheduling a second look, so that look is
/// sure to begin after the period has passed.
const MARGIN: Duration = Duration::from_millis(10);

impl<K: Eq + std::hash::Hash + Copy> Settler<K> {
    /// `quiet` zero settles everything at once (offline tools, which read once).
    pub fn new(quiet: Duration) -> Self {
        Self {
            quiet: if quiet.is_zero() {
                quiet
            } else {
                quiet + SLACK
            },
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<K, Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Judge what was observed of `unit` (its content and version, as one
    /// digest), read between `started` and `finished`, whose content differs
    /// from what the snapshot holds.
    pub fn check(&self, unit: K, digest: Digest, started: Instant, finished: Instant) -> Verdict {
        if self.quiet.is_zero() {
            return Verdict::Settled;
        }
        let mut seen = self.seen();
        match seen.get_mut(&unit) {
            Some(s) if s.digest == digest => {
                // Strictly more than the quiet period (and its slack) between
                // the end of the first read and the start of this one: a pause
                // of up to `quiet` in a writer's save cannot span both.
                if s.settled || started.saturating_duration_since(s.at) > self.quiet {
                    s.settled = true;
                    Verdict::Settled
                } else {
                    Verdict::Unsettled {
                        retry_at: s.at + self.quiet + MARGIN,
                    }
                }
            }
            _ => {
                seen.insert(
                    unit,
                    Seen {
                        digest,
                        at: finished,
                        settled: false,
                    },
                );
                Verdict::Unsettled {
                    retry_at: finished + self.quiet + MARGIN,
                }
            }
        }
    }

    /// The unit's content is the snapshot's again (or was published): nothing
    /// to wait for.
    pub fn forget(&self, unit: &K) {
        self.seen().remove(unit);
    }

    /// The units waiting for a second look, and when the earliest is due.
    pub fn pending(&self) -> (Vec<K>, Option<Instant>) {
        let seen = self.seen();
        let mut units = Vec::new();
        let mut due: Option<Instant> = None;
        for (unit, s) in seen.iter().filter(|(_, s)| !s.settled) {
            units.push(*unit);
            let at = s.at + self.quiet + MARGIN;
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        (units, due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_millis(150);
    /// The quiet period with its slack: what the reads must be further apart than.
    const APART: Duration = Duration::from_millis(250);

    fn d(n: u8) -> Digest {
        [n; 32]
    }

    #[test]
    fn the_same_content_a_quiet_period_apart_settles() {
        let s = Settler::new(Q);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(matches!(
            s.check(Unit::Policies, d(1), t0, ms(1)),
            Verdict::Unsettled { .. }
        ));
        // Not yet a quiet period after the first read ended, nor the quiet
        // period without its slack.
        for n in [100, 160, 240] {
            assert!(matches!(
                s.check(Unit::Policies, d(1), ms(n), ms(n + 1)),
                Verdict::Unsettled { .. }
            ));
        }
        // Exactly the quiet period and its slack is not enough: strictly more.
        assert!(matches!(
            s.check(Unit::Policies, d(1), ms(251), ms(252)),
            Verdict::Unsettled { .. }
        ));
        assert_eq!(
            s.check(Unit::Policies, d(1), ms(252), ms(253)),
            Verdict::Settled
        );
        // Stays settled for the same content (a rejected file is not re-waited).
        assert_eq!(
            s.check(Unit::Policies, d(1), ms(253), ms(254)),
            Verdict::Settled
        );
        assert_eq!(s.pending(), (vec![], None));
    }

    #[test]
    fn other_content_in_between_starts_the_wait_again() {
        let s = Settler::new(Q);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let _ = s.check(Unit::Roles, d(1), t0, t0);
        // A write landed: different content, the clock restarts from this read.
        assert_eq!(
            s.check(Unit::Roles, d(2), ms(200), ms(201)),
            Verdict::Unsettled {
                retry_at: ms(201) + APART + MARGIN
            }
        );
        assert!(matches!(
            s.check(Unit::Roles, d(2), ms(300), ms(301)),
            Verdict::Unsettled { .. }
        ));
        assert_eq!(
            s.check(Unit::Roles, d(2), ms(452), ms(453)),
            Verdict::Settled
        );
        // Settled content that changes again waits again.
        assert!(matches!(
            s.check(Unit::Roles, d(3), ms(600), ms(601)),
            Verdict::Unsettled { .. }
        ));
    }

    #[test]
    fn units_are_independent_and_pending_names_the_earliest() {
        let s = Settler::new(Q);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let owner = OrgNumber::parse("991825827").unwrap();
        let _ = s.check(Unit::Owner(owner), d(1), t0, ms(5));
        let _ = s.check(Unit::Policies, d(1), t0, ms(1));
        let (mut units, due) = s.pending();
        units.sort_by_key(|u| format!("{u}"));
        assert_eq!(units, [Unit::Owner(owner), Unit::Policies]);
        assert_eq!(due, Some(ms(1) + APART + MARGIN));
        s.forget(&Unit::Policies);
        assert_eq!(
            s.pending(),
            (vec![Unit::Owner(owner)], Some(ms(5) + APART + MARGIN))
        );
    }

    #[test]
    fn zero_quiet_settles_at_once() {
        let s = Settler::new(Duration::ZERO);
        let t = Instant::now();
        assert_eq!(s.check(Unit::Policies, d(1), t, t), Verdict::Settled);
        assert_eq!(s.pending(), (vec![], None));
    }
}
