//! Server-side sessions for the owner's page: a random id in a cookie, the
//! rest here. Bounded in number (the oldest idle session makes room), with an
//! idle and an absolute lifetime; a new id at login (no fixation). Each
//! session has its synchronizer CSRF token and a lock that serialises its
//! state-changing requests, so a double-submitted form is done once. No I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};

use super::i18n::Lang;

/// 32 random bytes, hex: the cookie's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    fn random() -> Self {
        Self(random_hex(32))
    }

    /// A cookie value that could be one of ours (64 lowercase hex digits).
    pub fn parse(value: &str) -> Option<Self> {
        (value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `n` random bytes as lowercase hex. A failing random source is a fatal
/// condition for a login system; it never happens on Linux after boot.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // Never reached on a booted Linux; fail safe rather than predictable.
        std::process::abort();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Who is logged in.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub person: PersonId,
    pub name: Option<String>,
    /// `false` in development mode: typed in, not verified.
    pub verified: bool,
    /// For the provider's logout (`id_token_hint`).
    pub id_token: Option<super::oidc::IdToken>,
}

/// The add-supplier flow's answers so far.
#[derive(Debug, Clone)]
pub struct Draft {
    pub supplier: OrgNumber,
    pub rights: Vec<RightId>,
    /// Names the confirmation: a second submit of the same form finds its
    /// receipt instead of writing again.
    pub nonce: String,
}

/// What a finished write showed, kept so a reload or a double submit shows
/// it again, and an undo can find its token.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub owner: OrgNumber,
    pub supplier: OrgNumber,
    pub kind: ReceiptKind,
}

#[derive(Debug, Clone)]
pub enum ReceiptKind {
    Given {
        given: Vec<RightId>,
        now_held: Vec<RightId>,
    },
    Removed {
        removed: Vec<RightId>,
        undo: UndoToken,
        undo_until: String,
    },
    Undone,
}

/// Receipts kept per session; older ones are dropped.
const MAX_RECEIPTS: usize = 32;

/// One session's state.
#[derive(Debug)]
pub struct Session {
    created: Instant,
    seen: Instant,
    pub csrf: String,
    pub lang: Option<Lang>,
    pub login: Option<LoggedIn>,
    pub acting_for: Option<OrgNumber>,
    pub draft: Option<Draft>,
    receipts: Vec<(String, Receipt)>,
    /// Rights the last confirmation could not give (gone from the
    /// catalogue meanwhile), for its receipt.
    pub not_given: Vec<String>,
    /// Where to go after login (a path of ours).
    pub return_to: Option<String>,
    /// A login under way with the OpenID provider (state, nonce, verifier).
    pub pending_login: Option<super::oidc::PendingLogin>,
    /// The last login at the provider was refused: the next one asks it to
    /// authenticate again instead of reusing its session.
    pub login_refused: bool,
    /// Held for the whole of a state-changing request.
    pub writing: Arc<tokio::sync::Mutex<()>>,
}

impl Session {
    fn new(now: Instant) -> Self {
        Self {
            created: now,
            seen: now,
            csrf: random_hex(32),
            lang: None,
            login: None,
            acting_for: None,
            draft: None,
            receipts: Vec::new(),
            not_given: Vec::new(),
            return_to: None,
            pending_login: None,
            login_refused: false,
            writing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Keep `receipt` under `key` (a new random key when `None`); returns the key.
    pub fn keep_receipt(&mut self, key: Option<String>, receipt: Receipt) -> String {
        let key = key.unwrap_or_else(|| random_hex(16));
        self.receipts.retain(|(k, _)| *k != key);
        if self.receipts.len() >= MAX_RECEIPTS {
            self.receipts.remove(0);
        }
        self.receipts.push((key.clone(), receipt));
        key
    }

    pub fn receipt(&self, key: &str) -> Option<&Receipt> {
        self.receipts.iter().find(|(k, _)| k == key).map(|(_, r)| r)
    }
}

/// Session lifetimes and how many may exist.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(2 * 3600),
        }
    }
}

/// Every session, behind one lock (each use is a few map operations).
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<SessionId, Session>>,
    limits: SessionLimits,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            limits,
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.limits.idle
            && now.duration_since(s.created) < self.limits.absolute
    }

    /// A new, empty session. When the limit is reached, expired sessions
    /// go first, then the one idle longest among those nobody logged in to
    /// (anyone can make those by the thousand: they must not push out the
    /// people at work), and only then the one idle longest of all.
    pub fn create(&self, now: Instant) -> SessionId {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.limits.max_sessions {
            map.retain(|_, s| self.live(s, now));
        }
        if map.len() >= self.limits.max_sessions {
            let anonymous = map
                .iter()
                .filter(|(_, s)| s.login.is_none())
                .min_by_key(|(_, s)| s.seen)
                .map(|(k, _)| k.clone());
            let oldest = anonymous.or_else(|| {
                map.iter()
                    .min_by_key(|(_, s)| s.seen)
                    .map(|(k, _)| k.clone())
            });
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        let id = SessionId::random();
        map.insert(id.clone(), Session::new(now));
        id
    }

    /// Run `f` on the live session `id` (marking it seen); `None` when there
    /// is none or it expired (then it is removed).
    pub fn with<R>(
        &self,
        id: &SessionId,
        now: Instant,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Option<R> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let live = map.get(id).is_some_and(|s| self.live(s, now));
        if !live {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.seen = now;
        Some(f(s))
    }

    /// Move the session to a new id with a new CSRF token (at login), so an
    /// id known before the login is worth nothing after it.
    pub fn rotate(&self, id: &SessionId, now: Instant) -> Option<SessionId> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut s = map.remove(id).filter(|s| self.live(s, now))?;
        s.csrf = random_hex(32);
        s.created = now;
        s.seen = now;
        let new = SessionId::random();
        map.insert(new.clone(), s);
        Some(new)
    }

    pub fn remove(&self, id: &SessionId) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> SessionLimits {
        SessionLimits {
            max_sessions: max,
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(300),
        }
    }

    #[test]
    fn sessions_expire_when_idle_and_absolutely() {
        let s = Sessions::new(limits(10));
        let t0 = Instant::now();
        let id = s.create(t0);
        assert!(s.with(&id, t0 + Duration::from_secs(59), |_| ()).is_some());
        // Seen at 59 s: idle counts from there.
        assert!(s.with(&id, t0 + Duration::from_secs(118), |_| ()).is_some());
        assert!(s.with(&id, t0 + Duration::from_secs(179), |_| ()).is_none());
        assert!(s.is_empty(), "an expired session is removed");

        let id = s.create(t0);
        let mut t = t0;
        for _ in 0..6 {
            t += Duration::from_secs(50);
            let live = s.with(&id, t, |_| ()).is_some();
            assert_eq!(live, t - t0 < Duration::from_secs(300));
        }
    }

    #[test]
    fn the_limit_evicts_the_longest_idle() {
        let s = Sessions::new(limits(2));
        let t0 = Instant::now();
        let a = s.create(t0);
        let b = s.create(t0 + Duration::from_secs(1));
        s.with(&a, t0 + Duration::from_secs(2), |_| ());
        let c = s.create(t0 + Duration::from_secs(3));
        assert_eq!(s.len(), 2);
        let now = t0 + Duration::from_secs(4);
        assert!(s.with(&a, now, |_| ()).is_some());
        assert!(s.with(&b, now, |_| ()).is_none(), "b was idle longest");
        assert!(s.with(&c, now, |_| ()).is_some());
    }

    /// A flood of sessions nobody logs in to never ends one a person uses.
    #[test]
    fn anonymous_sessions_make_room_before_logged_in_ones() {
        let s = Sessions::new(limits(3));
        let t0 = Instant::now();
        let person = s.create(t0);
        s.with(&person, t0, |x| {
            x.login = Some(LoggedIn {
                person: PersonId::parse("01017012345").unwrap(),
                name: None,
                verified: false,
                id_token: None,
            })
        });
        for i in 1..100 {
            s.create(t0 + Duration::from_millis(i));
        }
        assert_eq!(s.len(), 3);
        assert!(
            s.with(&person, t0 + Duration::from_secs(1), |_| ())
                .is_some()
        );
    }

    #[test]
    fn rotation_gives_a_new_id_and_token() {
        let s = Sessions::new(limits(10));
        let t0 = Instant::now();
        let old = s.create(t0);
        let token = s.with(&old, t0, |x| x.csrf.clone()).unwrap();
        let new = s.rotate(&old, t0).unwrap();
        assert_ne!(old, new);
        assert!(s.with(&old, t0, |_| ()).is_none());
        assert_ne!(s.with(&new, t0, |x| x.csrf.clone()).unwrap(), token);
    }

    #[test]
    fn ids_and_secrets() {
        assert!(SessionId::parse(&"a".repeat(64)).is_some());
        assert!(SessionId::parse(&"A".repeat(64)).is_none());
        assert!(SessionId::parse("abc").is_none());
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
