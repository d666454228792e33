//! Decisions memoised per policy bundle. A gateway decision is a pure
//! function of (policies, the pair's delegation record, supplier, owner,
//! scope) and, for an Envoy `Check`, of the parts of the call the policies
//! can read ([`CallReads`]): the key holds exactly those, so a memoised
//! answer is used only for a request Cedar could not tell apart. The memo
//! belongs to one bundle (new policies, new memo), and the key holds the
//! record's process-unique id (a changed delegation is a new record).

use std::collections::HashMap;
use std::sync::Arc;

use super::reads::CallReads;
use super::{AccessRequest, Call, Decision};
use crate::catalogue::Catalogue;
use crate::ids::OrgNumber;
use crate::snapshot::DelegationRecord;

/// How many decisions one policy bundle memoises, for each of
/// `IsAuthorized` and `Check`: about 100 bytes each (a `Check` key also holds
/// the call fields the policies read).
const MEMO_CAPACITY: usize = 1 << 17;

/// Decisions made with one policy bundle, by (owner, supplier, scope, the
/// pair's record id or 0 for none) and, for a call, what the policies can
/// read of it. Bounded: the least used are forgotten. Only scopes the
/// catalogue knows are memoised, so a flood of made-up scopes cannot crowd
/// out the real ones.
pub struct Memo {
    scopes: HashMap<String, u32>,
    cache: quick_cache::sync::Cache<PairKey, Arc<Decision>>,
    reads: CallReads,
    calls: quick_cache::sync::Cache<(PairKey, Box<[u8]>), Arc<Decision>>,
}

type PairKey = (OrgNumber, OrgNumber, u32, u64);

/// A call's key as a lookup builds it: on the stack for the usual few
/// fields, boxed only when a decision is stored under it.
type CallKey = smallvec::SmallVec<[u8; 192]>;

/// `(PairKey, Box<[u8]>)` borrowed, to look a call up without allocating:
/// it hashes as the tuple does (field by field, the bytes as a slice).
#[derive(Hash)]
struct CallKeyRef<'a>(&'a PairKey, &'a [u8]);

impl quick_cache::Equivalent<(PairKey, Box<[u8]>)> for CallKeyRef<'_> {
    fn equivalent(&self, key: &(PairKey, Box<[u8]>)) -> bool {
        *self.0 == key.0 && *self.1 == *key.1
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("scopes", &self.scopes.len())
            .field("entries", &self.cache.len())
            .field("reads", &self.reads)
            .field("call_entries", &self.calls.len())
            .finish()
    }
}

impl Memo {
    /// An empty memo for the bundle of `catalogue` and `policies`.
    pub fn new(catalogue: &Catalogue, policies: &cedar_policy::PolicySet) -> Self {
        let scopes = catalogue
            .scopes()
            .keys()
            .enumerate()
            .map(|(i, s)| (s.to_string(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        Self {
            scopes,
            cache: quick_cache::sync::Cache::new(MEMO_CAPACITY),
            reads: CallReads::of_set(policies),
            calls: quick_cache::sync::Cache::new(MEMO_CAPACITY),
        }
    }

    /// What the policies can read of a call.
    pub fn reads(&self) -> CallReads {
        self.reads
    }

    /// The memoised decision for the request, else `decide()`'s, memoised.
    pub(super) fn decide(
        &self,
        req: &AccessRequest,
        record: Option<&DelegationRecord>,
        call: Option<&Call<'_>>,
        decide: impl FnOnce() -> Decision,
    ) -> Decision {
        let Some(pair) = self.pair_key(req, record) else {
            return decide();
        };
        let Some(call) = call else {
            return memoised(&self.cache, &pair, || pair, decide);
        };
        let mut key = CallKey::new();
        self.call_key(call, &mut key);
        let lookup = CallKeyRef(&pair, &key);
        memoised(&self.calls, &lookup, || (pair, key[..].into()), decide)
    }

    fn pair_key(&self, req: &AccessRequest, record: Option<&DelegationRecord>) -> Option<PairKey> {
        let scope = *self.scopes.get(req.scope.as_str())?;
        Some((req.owner, req.supplier, scope, record.map_or(0, |r| r.id)))
    }

    /// The fields of `call` the policies can read, each tagged and length
    /// prefixed, so two calls get the same key only when every read field
    /// is the same (an absent field is not an empty one).
    fn call_key(&self, call: &Call<'_>, key: &mut CallKey) {
        let r = &self.reads;
        let t = &call.token;
        let put = |key: &mut CallKey, s: Option<&str>| match s {
            Some(s) => {
                key.push(1);
                key.extend_from_slice(&(s.len() as u32).to_le_bytes());
                key.extend_from_slice(s.as_bytes());
            }
            None => key.push(0),
        };
        let fields: [(bool, Option<&str>); 7] = [
            (r.method, Some(call.method)),
            (r.path, Some(call.path)),
            (r.route, Some(call.route)),
            (r.consumer, Some(t.consumer.as_str())),
            (r.supplier, t.supplier.as_ref().map(OrgNumber::as_str)),
            (r.delegation_source, t.delegation_source.as_deref()),
            (r.client_id, t.client_id.as_deref()),
        ];
        for (read, value) in fields {
            if read {
                put(key, value);
            }
        }
        if r.scopes {
            key.extend_from_slice(&(t.scopes.len() as u32).to_le_bytes());
            for s in &t.scopes {
                put(key, Some(s.as_str()));
            }
        }
    }

    /// How many decisions are memoised now.
    pub fn len(&self) -> usize {
        self.cache.len() + self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The decision stored under `lookup` (a key, or a borrowed form of one),
/// else `decide()`'s, stored under `owned()`: the owned key is built only
/// when something is stored.
fn memoised<K, Q>(
    cache: &quick_cache::sync::Cache<K, Arc<Decision>>,
    lookup: &Q,
    owned: impl FnOnce() -> K,
    decide: impl FnOnce() -> Decision,
) -> Decision
where
    K: Eq + std::hash::Hash + Clone,
    Q: std::hash::Hash + quick_cache::Equivalent<K> + ?Sized,
{
    if let Some(d) = cache.get(lookup) {
        return Decision::clone(&d);
    }
    let d = decide();
    cache.insert(owned(), Arc::new(d.clone()));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A borrowed key finds what was stored under the owned one (same hash,
    /// same equality), and only that.
    #[test]
    fn borrowed_call_keys_find_stored_ones() {
        let org = |o| OrgNumber::parse(o).unwrap();
        let pair: PairKey = (org("991825827"), org("810418672"), 1, 7);
        let cache = quick_cache::sync::Cache::<(PairKey, Box<[u8]>), u8>::new(16);
        cache.insert((pair, b"GET /x".as_slice().into()), 1);
        assert_eq!(cache.get(&CallKeyRef(&pair, b"GET /x")), Some(1));
        assert_eq!(cache.get(&CallKeyRef(&pair, b"GET /y")), None);
        assert_eq!(cache.get(&CallKeyRef(&pair, b"GET /")), None);
        let other: PairKey = (pair.0, pair.1, 1, 8);
        assert_eq!(cache.get(&CallKeyRef(&other, b"GET /x")), None);
    }
}
