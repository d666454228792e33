//! Differential test (issues 8 and 18): tilgang's decisions are exactly Cedar's,
//! through `IsAuthorized` and through Envoy's `Check`.
//!
//! Each *world* is random: a rights catalogue, a schema (the fixture one, or one
//! whose `Delegation` has extra optional attributes), policies drawn from
//! templates (the shipped ones, forbids and permits on scopes, orgs and rights,
//! rules over delegation attributes, rules over the call, policies that fail at
//! evaluation, and some the validator refuses), a route table, and the
//! delegation files of several owners, all written to disk in tilgang's
//! formats. For each world, two kinds of question are asked:
//!
//! - `IsAuthorized` requests (delegated, undelegated, reversed and self pairs,
//!   unknown orgs, scopes no right gives, repeats): `engine::decide`;
//! - `Check` asks: a pair and what a gateway saw of the call (`engine::Call`:
//!   method, path, the route template it matched, and the token's consumer,
//!   supplier, scopes, delegation source and client id), `engine::decide_call`.
//!   Per pair ([`World::checks`]) one call is asked again and again, calls
//!   that differ from it in one part only ([`Part`]: method, path, route,
//!   consumer, whether there is a supplier, supplier, scopes, delegation
//!   source, client id) and, now and then, `IsAuthorized` of the same pair,
//!   interleaved with the neighbouring pairs' asks. Calls are mostly as a
//!   gateway makes them (the token's consumer is the owner, its supplier the
//!   principal or absent when the owner acts for itself) and sometimes not;
//!   scopes include ones the catalogue does not know; the same route has many
//!   paths, and some paths repeat exactly. Policies over the call read each
//!   part alone (`context.http.method == "GET"`, `context.http.path like
//!   "/storage/api/v1/instances/*"`, `context.token.supplier == principal`,
//!   `resource in context.token.scopes`, `context.token.delegationSource`,
//!   `context.token.clientId like ...`, ...), only its presence (`context.token
//!   has supplier`), or the record or set whole (`context.http == {...}`,
//!   `[context.http].contains(...)`, `context.token.scopes == [...]`), so a
//!   memo of `Check` decisions keyed by less than what the policies read
//!   gives some call another call's answer, and differs.
//!
//! Each question is answered twice:
//!
//! - the fast path, through the public API only: [`fast_load`]
//!   (`load_snapshot`), `Snapshot::with_owner` ([`fast_with_owner`]),
//!   `Snapshot::with_withheld`, a policy reload as `snapshot::reload` does it
//!   ([`fast_reload_policies`]: the same delegation records under the new
//!   policies), and `engine::decide` / `engine::decide_call`, called at least
//!   twice per question, in two passes of different order, with decisions on
//!   other snapshots in between, so any cache is exercised;
//! - the reference, [`Reference`]: plain Cedar `Authorizer::is_authorized`
//!   over *all* entities (Right and Scope entities from `rights.json`, every
//!   delegation of every owner file), built here from the same files without
//!   tilgang's loader; for `Check` with `context.http` and `context.token`
//!   built here from the test's own description of the call
//!   ([`Reference::call_context`]).
//!
//! Each fast decision must match: `allowed`, the set of reasons (policy
//! `@id`s; none when errors turned Cedar's allow into a deny) and whether there
//! were errors. With the delegations withheld, the reference has none and
//! every deny must carry an error. Then the world changes (owner files
//! rewritten or removed, new owners; then policies, often one over the call,
//! or the catalogue) and is compared again on the new snapshots and,
//! interleaved, on the old one, so a stale cache shows. The summary counts,
//! per part of a call, how often Cedar answered a call and the same call with
//! only that part changed differently: how often a memo that ignored that part
//! would have been caught.
//!
//! Settings (environment):
//! - `TILGANG_DIFF_COMPARISONS`: how many `IsAuthorized` fast decisions to
//!   compare, at least (default [`DEFAULT_COMPARISONS`]); each question's
//!   Cedar decision is compared with two or more fast ones.
//! - `TILGANG_DIFF_CHECK_COMPARISONS`: how many `Check` fast decisions to
//!   compare, at least (default: `TILGANG_DIFF_COMPARISONS` when that is
//!   set, else [`DEFAULT_CHECK_COMPARISONS`], which keeps plain `cargo test`
//!   about as fast as without `Check`: a `Check` is never memoised today, so
//!   each costs a whole Cedar evaluation). Worlds run until both are reached;
//!   the two budgets set how many `Check` asks each world makes. The full run
//!   of issues 8 and 18, a million of each:
//!   `TILGANG_DIFF_COMPARISONS=1000000 cargo test --release --test differential`.
//! - `TILGANG_DIFF_SEED`: the master seed (decimal or `0x` hex); random and
//!   printed otherwise. A failure prints the seed, world and budgets to replay
//!   with.
//! - `TILGANG_DIFF_WORLD`: run only this world of the seed.
//! - `TILGANG_DIFF_THREADS`: worker threads (default: one per core).
//! - `TILGANG_DIFF_LITERAL_DELEGATIONS=1`: also draw policies that name a
//!   delegation entity literally (`Tilgang::Delegation::"o/s".rights`).
//!   tilgang gives Cedar only the request's own delegation, so it refuses such
//!   policies at load; a world with one must be refused (see
//!   `a_policy_naming_another_pairs_delegation_is_refused`).

// Test helpers outside `#[test]` functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision as CedarDecision, Entities, EntityId,
    EntityTypeName, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
    SchemaFragment,
};
use serde_json::{Value, json};
use tilgang::engine::{AccessRequest, Call, Token, decide, decide_call};
use tilgang::ids::{OrgNumber, Scope};
use tilgang::snapshot::Snapshot;
use tilgang::snapshot::load::{
    LoadErrors, PolicySource, load_owner, load_policies, load_snapshot, revalidate,
};

/// `IsAuthorized` fast decisions compared by `cargo test`: with
/// [`DEFAULT_CHECK_COMPARISONS`], 15 to 30 s in a debug build on two busy
/// cores, about a fifth more CPU than before `Check` was compared. A million
/// of each (`TILGANG_DIFF_COMPARISONS=1000000`) takes one to two minutes with
/// `--release`.
const DEFAULT_COMPARISONS: u64 = 250_000;
/// `Check` fast decisions compared by `cargo test` (see
/// `TILGANG_DIFF_CHECK_COMPARISONS`). A `Check` is not memoised, so in a
/// debug build each costs about as much as four `IsAuthorized` ones.
const DEFAULT_CHECK_COMPARISONS: u64 = 15_000;

// ---------------------------------------------------------------------------
// The fast path: tilgang's public API, one helper per call so a rename in the
// engine is a one-line change here.

/// Load a snapshot as `tilgang serve` does at start-up.
fn fast_load(policies: &Path, data: &Path) -> Result<Snapshot, LoadErrors> {
    load_snapshot(&PolicySource::Dir(policies.to_path_buf()), data)
}

/// `snap` with one owner's slice re-read from its file, as a reload of that one
/// file does (the file removed: the owner removed).
fn fast_with_owner(snap: &Snapshot, data: &Path, owner: &str) -> Snapshot {
    let owner = OrgNumber::parse(owner).unwrap();
    let slice = load_owner(data, &owner, &snap.policies, None)
        .unwrap_or_else(|e| panic!("owner file {owner} does not load: {e}"));
    snap.with_owner(owner, slice.map(Arc::new))
}

/// `snap` with the policies in `policies` reloaded, as `snapshot::reload`
/// publishes them: every owner's delegations revalidated and kept as they
/// are (the same records), not read again.
fn fast_reload_policies(snap: &Snapshot, policies: &Path, data: &Path) -> Result<Snapshot, String> {
    let bundle = load_policies(&PolicySource::Dir(policies.to_path_buf()))
        .map_err(|e| format!("the policies do not reload: {e}"))?;
    let mut owners = snap.owners.clone();
    for (owner, slice) in &snap.owners {
        let kept = revalidate(data, owner, slice, &bundle)
            .map_err(|e| format!("owner {owner} does not revalidate: {e}"))?;
        owners.insert(*owner, Arc::new(kept));
    }
    Ok(snap.with_policies(Arc::new(bundle), owners))
}

fn access_request(q: &Query) -> AccessRequest {
    AccessRequest {
        supplier: OrgNumber::parse(&q.supplier_spelled).unwrap(),
        owner: OrgNumber::parse(&q.owner_spelled).unwrap(),
        scope: Scope::parse(&q.scope).unwrap(),
    }
}

fn outcome(d: tilgang::engine::Decision) -> Outcome {
    Outcome {
        allowed: d.allowed,
        reasons: d.reasons.into_iter().collect(),
        errored: !d.errors.is_empty(),
        detail: d.errors.join("; "),
    }
}

/// One fast decision (`IsAuthorized`).
fn fast_decide(snap: &Snapshot, q: &Query) -> Outcome {
    outcome(decide(snap, &access_request(q)))
}

/// One fast decision on Envoy's `Check` path: `engine::decide_call` with the
/// call, built from the test's own description of it.
fn fast_check(snap: &Snapshot, q: &Query, c: &CallSpec) -> Outcome {
    let org = |o: &str| OrgNumber::parse(&c.spell(o)).unwrap();
    let call = Call {
        method: &c.method,
        path: &c.path,
        route: &c.route,
        token: Token {
            consumer: org(&c.consumer),
            supplier: c.supplier.as_deref().map(org),
            scopes: c.scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
            delegation_source: c.delegation_source.clone(),
            client_id: c.client_id.clone(),
        },
    };
    outcome(decide_call(snap, &access_request(q), Some(&call)))
}

/// One fast decision of either kind.
fn fast_ask(snap: &Snapshot, a: &Ask) -> Outcome {
    match &a.call {
        None => fast_decide(snap, &a.q),
        Some(c) => fast_check(snap, &a.q, c),
    }
}

// ---------------------------------------------------------------------------
// The reference: plain Cedar over every entity, from the files.

/// What a decision says, as compared. `detail` (error texts) is shown, not compared.
#[derive(Debug, Clone)]
struct Outcome {
    allowed: bool,
    reasons: BTreeSet<String>,
    errored: bool,
    detail: String,
}

impl Outcome {
    fn show(&self) -> String {
        format!(
            "allowed {}, reasons {:?}, errors: {}",
            self.allowed,
            self.reasons,
            if self.errored { &self.detail } else { "none" }
        )
    }

    fn same(&self, other: &Self) -> bool {
        self.allowed == other.allowed
            && self.reasons == other.reasons
            && self.errored == other.errored
    }
}

fn euid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(ty).unwrap(), EntityId::new(id))
}

/// Plain Cedar, built from a policies directory and a data directory.
struct Reference {
    schema: Schema,
    policies: PolicySet,
    /// Cedar's policy id → the policy's `@id`, which is what tilgang reports.
    ids: HashMap<PolicyId, String>,
    entities: Entities,
    action: EntityUid,
    /// Parsed once: parsing a type name runs Cedar's parser.
    org_type: EntityTypeName,
    scope_type: EntityTypeName,
    delegation_type: EntityTypeName,
}

/// The files of a directory whose names end with `suffix`, sorted by name.
fn files_ending(dir: &Path, suffix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(suffix) && !name.starts_with('.') {
            out.push((name, std::fs::read_to_string(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

impl Reference {
    fn build(policies_dir: &Path, data_dir: &Path) -> Result<Self, String> {
        let mut fragments = Vec::new();
        for (name, text) in files_ending(policies_dir, ".cedarschema") {
            let (f, _) = SchemaFragment::from_cedarschema_str(&text)
                .map_err(|e| format!("schema {name}: {e}"))?;
            fragments.push(f);
        }
        let schema = Schema::from_schema_fragments(fragments).map_err(|e| e.to_string())?;

        // All policy files as one policy set; tilgang reports `@id`s.
        let all: String = files_ending(policies_dir, ".cedar")
            .into_iter()
            .map(|(_, t)| t + "\n")
            .collect();
        let policies = PolicySet::from_str(&all).map_err(|e| format!("policies: {e}"))?;
        let ids = policies
            .policies()
            .map(|p| {
                let id = p.annotation("id").unwrap_or_default().to_string();
                (p.id().clone(), id)
            })
            .collect();

        // Right and Scope entities from the catalogue; a scope's parents are the
        // rights that give it.
        let catalogue: Value = serde_json::from_str(
            &std::fs::read_to_string(policies_dir.join("rights.json")).unwrap(),
        )
        .map_err(|e| e.to_string())?;
        let mut entities = Vec::new();
        let mut givers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in catalogue["rights"].as_array().unwrap() {
            let id = r["id"].as_str().unwrap();
            entities.push(json!({
                "uid": { "type": "Tilgang::Right", "id": id },
                "attrs": { "name": r["name"] },
                "parents": [],
            }));
            for s in r["scopes"].as_array().unwrap() {
                givers
                    .entry(s.as_str().unwrap().to_string())
                    .or_default()
                    .push(json!({ "type": "Tilgang::Right", "id": id }));
            }
        }
        for (scope, parents) in givers {
            entities.push(json!({
                "uid": { "type": "Tilgang::Scope", "id": scope },
                "attrs": {},
                "parents": parents,
            }));
        }
        // Every delegation of every owner.
        for (name, text) in files_ending(&data_dir.join("delegations"), ".json") {
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
            entities.extend(v.as_array().unwrap().iter().cloned());
        }
        let entities = Entities::from_json_value(Value::Array(entities), Some(&schema))
            .map_err(|e| format!("entities: {e}"))?;
        Ok(Self {
            schema,
            policies,
            ids,
            entities,
            action: euid("Tilgang::Action", "callApi"),
            org_type: EntityTypeName::from_str("Tilgang::Organization").unwrap(),
            scope_type: EntityTypeName::from_str("Tilgang::Scope").unwrap(),
            delegation_type: EntityTypeName::from_str("Tilgang::Delegation").unwrap(),
        })
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    /// The whole context of a `Check`, written here from the schema's `Http`
    /// and `Token`, not by tilgang's code: `owner`, the pair's `delegation`
    /// when there is one, `http` `{method, path, route}` and `token` `{scopes,
    /// consumer, supplier?, delegationSource?, clientId?}`, whose optional
    /// attributes are absent (not empty) when the token has no such claim.
    /// (Cedar's JSON context parser would do as well, at ten times the cost.)
    fn call_context(&self, q: &Query, c: &CallSpec, delegated: bool) -> Result<Context, String> {
        let text = |s: &str| RestrictedExpression::new_string(s.to_string());
        let org = |id: &str| RestrictedExpression::new_entity_uid(Self::uid(&self.org_type, id));
        let mut token =
            vec![
                (
                    "scopes".to_string(),
                    RestrictedExpression::new_set(c.scopes.iter().map(|s| {
                        RestrictedExpression::new_entity_uid(Self::uid(&self.scope_type, s))
                    })),
                ),
                ("consumer".to_string(), org(&c.consumer)),
            ];
        let optional = [
            ("supplier", c.supplier.as_deref().map(org)),
            ("delegationSource", c.delegation_source.as_deref().map(text)),
            ("clientId", c.client_id.as_deref().map(text)),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                token.push((name.to_string(), v));
            }
        }
        let http = [
            ("method".to_string(), text(&c.method)),
            ("path".to_string(), text(&c.path)),
            ("route".to_string(), text(&c.route)),
        ];
        let mut context = vec![
            ("owner".to_string(), org(&q.owner)),
            (
                "http".to_string(),
                RestrictedExpression::new_record(http).map_err(|e| e.to_string())?,
            ),
            (
                "token".to_string(),
                RestrictedExpression::new_record(token).map_err(|e| e.to_string())?,
            ),
        ];
        if delegated {
            let id = format!("{}/{}", q.owner, q.supplier);
            context.push((
                "delegation".to_string(),
                RestrictedExpression::new_entity_uid(Self::uid(&self.delegation_type, &id)),
            ));
        }
        Context::from_pairs(context).map_err(|e| e.to_string())
    }

    /// Plain Cedar's decision: `IsAuthorized` (no call), or Envoy's `Check`
    /// with the call in the context.
    fn decide(&self, q: &Query, call: Option<&CallSpec>) -> Outcome {
        let fail = |detail: String| Outcome {
            allowed: false,
            reasons: BTreeSet::new(),
            errored: true,
            detail,
        };
        let delegation = Self::uid(
            &self.delegation_type,
            &format!("{}/{}", q.owner, q.supplier),
        );
        let delegated = self.entities.get(&delegation).is_some();
        let context = if let Some(c) = call {
            match self.call_context(q, c, delegated) {
                Ok(c) => c,
                Err(e) => return fail(format!("context: {e}")),
            }
        } else {
            let mut context = vec![(
                "owner".to_string(),
                RestrictedExpression::new_entity_uid(Self::uid(&self.org_type, &q.owner)),
            )];
            if delegated {
                context.push((
                    "delegation".to_string(),
                    RestrictedExpression::new_entity_uid(delegation),
                ));
            }
            match Context::from_pairs(context) {
                Ok(c) => c,
                Err(e) => return fail(format!("context: {e}")),
            }
        };
        let request = match Request::new(
            Self::uid(&self.org_type, &q.supplier),
            self.action.clone(),
            Self::uid(&self.scope_type, &q.scope),
            context,
            Some(&self.schema),
        ) {
            Ok(r) => r,
            Err(e) => return fail(format!("request: {e}")),
        };
        let response = Authorizer::new().is_authorized(&request, &self.policies, &self.entities);
        // Shown with the policy's `@id`, as tilgang names it.
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                AuthorizationError::PolicyEvaluationError(e) => format!(
                    "policy `{}`: {}",
                    self.ids.get(e.policy_id()).map_or("?", String::as_str),
                    e.inner()
                ),
            })
            .collect();
        let cedar_allow = response.decision() == CedarDecision::Allow;
        let allowed = cedar_allow && errors.is_empty();
        // tilgang's rule (`engine::evaluate`): when errors turn Cedar's allow into
        // a deny, the permits that matched are not reasons.
        let reasons = if cedar_allow && !allowed {
            BTreeSet::new()
        } else {
            response
                .diagnostics()
                .reason()
                .map(|p| self.ids.get(p).cloned().unwrap_or_else(|| p.to_string()))
                .collect()
        };
        Outcome {
            allowed,
            reasons,
            errored: !errors.is_empty(),
            detail: errors.join("; "),
        }
    }
}

// ---------------------------------------------------------------------------
// Randomness.

/// SplitMix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// An integer in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }
    /// `lo..=hi` distinct elements (fewer if there are not that many).
    fn sample_between<T: Clone>(&mut self, xs: &[T], lo: usize, hi: usize) -> Vec<T> {
        let k = self.range(lo, hi);
        self.sample(xs, k)
    }
    /// `k` distinct elements (fewer if there are not that many), in random order.
    fn sample<T: Clone>(&mut self, xs: &[T], k: usize) -> Vec<T> {
        let mut v = xs.to_vec();
        self.shuffle(&mut v);
        v.truncate(k);
        v
    }
}

/// The seed of world `index` of `master`.
fn world_seed(master: u64, index: u64) -> u64 {
    Rng(master ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03)).next()
}

/// `count` distinct valid org numbers: random 8-digit prefixes completed with
/// the check digit `OrgNumber::parse` accepts (the one implementation of the rule).
fn org_numbers(rng: &mut Rng, count: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    while out.len() < count {
        let prefix = format!("{:08}", rng.next() % 100_000_000);
        if let Some(n) = (0..10)
            .map(|d| format!("{prefix}{d}"))
            .find(|n| OrgNumber::parse(n).is_ok())
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Worlds: what is written to disk.

const SCHEMA: &str = include_str!("fixtures/policies/tilgang.cedarschema");
const ADMIN_POLICY: &str = include_str!("fixtures/policies/admin.cedar");

/// Scopes to draw from: realistic ones, and ones that need escaping in Cedar
/// text (`"`, `\`, `*`).
const SCOPE_WORDS: &[&str] = &[
    "altinn:serviceowner/instances.read",
    "altinn:serviceowner/instances.write",
    "altinn:events.subscribe",
    "svc:a/read",
    "svc:a/write",
    "svc:b",
    "odd:\"quoted\"\\path",
    "wild:*star*",
    "urn:x:y:z",
    "a",
];
const RIGHT_IDS: &[&str] = &[
    "instances-full",
    "instances-read",
    "events",
    "r.a",
    "r_b",
    "x-1",
    "9",
];
const RIGHT_NAMES: &[&str] = &[
    "Appinstanser (full tilgang)",
    "Lesetilgang",
    "Hendelser ø/æ/å",
    "name with \"quotes\"",
    "x",
];
const PEOPLE: &[&str] = &[
    "01017012345",
    "02029054321",
    "ola@nordmann.no",
    "",
    "Ærlig Åse",
    "quote\"back\\slash",
];
const TIMES: &[&str] = &[
    "2026-01-05T09:00:00Z",
    "2026-02-10T12:30:00Z",
    "2025-12-31T23:59:59Z",
    "2026-03-01T08:15:00Z",
    "not a time",
];
const NOTES: &[&str] = &["vip", "legacy customer", "", "ø-notat", "vip-2"];
const TIERS: &[i64] = &[-3, -2, -1, 0, 1, 2, 3, 4, 5, i64::MAX, i64::MIN];

// What calls through Envoy (`Check`) are drawn from.

/// Methods of calls (HEAD is in no route table, and calls need not match one).
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
/// Route templates; a world uses some of them. No two match the same path.
const ROUTES: &[&str] = &[
    "/storage/api/v1/instances",
    "/storage/api/v1/instances/{instanceOwnerPartyId}/{instanceGuid}",
    "/storage/api/v1/instances/{instanceOwnerPartyId}/{instanceGuid}/data/{dataGuid}",
    "/storage/api/v1/instances/{instanceOwnerPartyId}/{instanceGuid}/process",
    "/storage/api/v1/applications/{org}/{app}",
    "/events/api/v1/subscriptions/{id}",
    "/x",
];
/// Values for route parameters; a world uses two to four, so that the same
/// route has many paths and paths repeat exactly. Some need escaping in Cedar
/// text (`"`), or in a `like` pattern (`*`).
const PARAM_VALUES: &[&str] = &[
    "50001337",
    "512345",
    "6f6a1f5e-8c1e-4e55-9b7a-1a2b3c4d5e6f",
    "ttd",
    "x*y",
    "q\"uote",
];
/// `like` patterns over paths, as Cedar text.
const PATH_PATTERNS: &[&str] = &[
    "/storage/api/v1/instances/*",
    "/storage/api/v1/instances/50001337/*",
    "*/data/*",
    "*x\\*y*",
    "/x",
    "/events/*",
];
const DELEGATION_SOURCES: &[&str] = &["altinn", "altinn:delegation/2", "other", ""];
const CLIENT_IDS: &[&str] = &["client-1", "client-2", "svc-abc", "x*y", ""];
/// `like` patterns over client ids, as Cedar text.
const CLIENT_PATTERNS: &[&str] = &["client-*", "svc*", "*", "x\\*y", "*-2"];

#[derive(Debug, Clone)]
struct Right {
    id: String,
    name: String,
    scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Delegation {
    supplier: String,
    rights: Vec<String>,
    delegated_by: String,
    created_at: String,
    updated_at: String,
    tier: Option<i64>,
    note: Option<String>,
}

#[derive(Debug, Clone)]
struct Policy {
    text: String,
    /// The validator may refuse it (then tilgang refuses the files).
    may_be_refused: bool,
    /// The template it was drawn from (see `World::policy_of_kind`).
    kind: usize,
}

/// Everything a world writes to disk, kept as data so it can be changed and
/// written again.
#[derive(Debug, Clone)]
struct World {
    /// `Delegation` has `tier?: Long` and `note?: String`.
    extended: bool,
    literal_delegations: bool,
    rights: Vec<Right>,
    /// Every scope requests use: given by some right or by none.
    scopes: Vec<String>,
    /// The orgs owners and suppliers are drawn from.
    orgs: Vec<String>,
    /// Orgs in no file (until one becomes a new owner).
    strangers: Vec<String>,
    owners: BTreeMap<String, Vec<Delegation>>,
    policies: Vec<Policy>,
    next_policy: usize,
    /// The route templates calls use, and the values of their parameters.
    routes: Vec<String>,
    params: Vec<String>,
    /// How the world spells a template for a method ([`spelled_route`]).
    salt: u64,
    /// `routes.json`: (method, template, scope).
    route_table: Vec<(String, String, String)>,
}

/// A string as a Cedar string literal.
fn lit(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const CALL: &str = "action == Tilgang::Action::\"callApi\"";

/// How a world's route table spells `template` for `method`: as it is, or,
/// for a third of the (method, template) pairs with parameters, with other
/// parameter names (`{x_id}`), as a table may for the same shape under
/// another method. The route a call matched thus follows its method too.
fn spelled_route(salt: u64, method: &str, template: &str) -> String {
    let mut h = salt;
    for b in method.bytes().chain(template.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    if template.contains('{') && Rng(h).next().is_multiple_of(3) {
        template.replace('{', "{x_")
    } else {
        template.to_string()
    }
}

/// The templates over the call (see `World::policy_of_kind`) valid against
/// the schema, and those the validator refuses.
const CALL_KINDS: std::ops::RangeInclusive<usize> = 30..=52;
const REFUSED_CALL_KINDS: [usize; 3] = [53, 54, 55];
/// One template per part of the call (method, path, route, consumer,
/// supplier's presence, supplier, scopes, the set of scopes whole, delegation
/// source, client id, the record whole): every world gets two of them in turn.
const COVERING: [usize; 11] = [30, 31, 33, 37, 34, 35, 36, 47, 38, 39, 40];

fn org(o: &str) -> String {
    format!("Tilgang::Organization::{}", lit(o))
}
fn right(r: &str) -> String {
    format!("Tilgang::Right::{}", lit(r))
}
fn scope(s: &str) -> String {
    format!("Tilgang::Scope::{}", lit(s))
}

impl World {
    /// World `index`: every fourth has a policy that fails at evaluation
    /// whenever there is a delegation, every eighth one the validator refuses,
    /// so any run of eight worlds reaches every outcome.
    fn generate(rng: &mut Rng, index: u64, literal_delegations: bool) -> Self {
        let mut scope_pool: Vec<String> = rng
            .sample_between(SCOPE_WORDS, 3, SCOPE_WORDS.len())
            .into_iter()
            .map(str::to_string)
            .collect();
        scope_pool.push(format!("gen:{}", rng.below(1000)));
        // Some scopes of the pool are given by no right.
        let given = rng.range(1, scope_pool.len());
        let rights = rng
            .sample_between(RIGHT_IDS, 1, 6)
            .into_iter()
            .map(|id| Right {
                id: id.to_string(),
                name: rng.pick(RIGHT_NAMES).to_string(),
                scopes: rng.sample_between(&scope_pool[..given], 1, 4),
            })
            .collect();
        let count = rng.range(20, 70);
        let all = org_numbers(rng, count);
        let strangers = all[..5].to_vec();
        let orgs = all[5..].to_vec();
        let routes: Vec<String> = rng
            .sample_between(ROUTES, 2, ROUTES.len())
            .into_iter()
            .map(str::to_string)
            .collect();
        let params = rng
            .sample_between(PARAM_VALUES, 2, 4)
            .into_iter()
            .map(str::to_string)
            .collect();
        let salt = rng.next();
        // Some of the routes in `routes.json`, by methods routes may name.
        let mut route_table = Vec::new();
        for r in &routes {
            for m in rng.sample_between(&METHODS[..5], 0, 2) {
                let path = spelled_route(salt, m, r);
                route_table.push((m.to_string(), path, rng.pick(&scope_pool).clone()));
            }
        }
        let mut w = World {
            extended: rng.percent(50),
            literal_delegations,
            rights,
            scopes: scope_pool,
            orgs,
            strangers,
            owners: BTreeMap::new(),
            policies: Vec::new(),
            next_policy: 0,
            routes,
            params,
            salt,
            route_table,
        };
        for owner in rng.sample_between(&w.orgs, 2, 6) {
            let suppliers: Vec<String> = w.orgs.iter().filter(|o| **o != owner).cloned().collect();
            // Up to ~50 suppliers; now and then an empty file.
            let n = if rng.percent(5) { 0 } else { rng.range(1, 50) };
            let list = rng
                .sample(&suppliers, n)
                .into_iter()
                .map(|s| w.delegation(rng, s))
                .collect();
            w.owners.insert(owner, list);
        }
        // Now and then the shipped policies, which read the call, whole.
        if rng.percent(30) {
            for kind in [0, 3, 4, 5] {
                let p = w.policy_of_kind(rng, kind);
                w.policies.push(p);
            }
        }
        for _ in 0..rng.range(1, 7) {
            let p = w.policy(rng);
            w.policies.push(p);
        }
        // Two policies over the call, in turn, so that any five worlds read
        // every part of it.
        let mut extra = vec![
            COVERING[(2 * index as usize) % COVERING.len()],
            COVERING[(2 * index as usize + 1) % COVERING.len()],
        ];
        // With the extra attributes, rules over them.
        if w.extended {
            extra.push(if rng.percent(50) { 18 } else { 20 });
            if rng.percent(50) {
                extra.push(19);
            }
        }
        if index % 4 == 1 {
            extra.push(28);
        } else if rng.percent(30) {
            extra.push(if w.extended && rng.percent(50) {
                20
            } else {
                21
            });
        }
        if index % 8 == 7 {
            extra.push(if rng.percent(50) {
                22 + rng.below(3)
            } else {
                *rng.pick(&REFUSED_CALL_KINDS)
            });
        }
        for kind in extra {
            let p = w.policy_of_kind(rng, kind);
            w.policies.push(p);
        }
        w
    }

    fn delegation(&self, rng: &mut Rng, supplier: String) -> Delegation {
        let ids: Vec<String> = self.rights.iter().map(|r| r.id.clone()).collect();
        let created_at = rng.pick(TIMES).to_string();
        Delegation {
            supplier,
            rights: rng.sample_between(&ids, 1, ids.len()),
            delegated_by: rng.pick(PEOPLE).to_string(),
            updated_at: if rng.percent(50) {
                created_at.clone()
            } else {
                rng.pick(TIMES).to_string()
            },
            created_at,
            tier: (self.extended && rng.percent(60)).then(|| *rng.pick(TIERS)),
            note: (self.extended && rng.percent(40)).then(|| rng.pick(NOTES).to_string()),
        }
    }

    fn right_ids(&self) -> Vec<&str> {
        self.rights.iter().map(|r| r.id.as_str()).collect()
    }

    /// Some delegated (owner, supplier) pair, if there is one.
    fn some_pair(&self, rng: &mut Rng) -> Option<(String, &Delegation)> {
        let given: Vec<(&String, &Vec<Delegation>)> =
            self.owners.iter().filter(|(_, d)| !d.is_empty()).collect();
        if given.is_empty() {
            return None;
        }
        let (owner, ds) = rng.pick(&given);
        Some(((*owner).clone(), rng.pick(ds)))
    }

    /// A random org: mostly from the files, sometimes one in none.
    fn some_org(&self, rng: &mut Rng) -> String {
        if rng.percent(10) {
            rng.pick(&self.strangers).clone()
        } else if rng.percent(40) && !self.owners.is_empty() {
            let owners: Vec<&String> = self.owners.keys().collect();
            (*rng.pick(&owners)).clone()
        } else {
            rng.pick(&self.orgs).clone()
        }
    }

    /// A scope for a request: from the catalogue, the pool, or nowhere.
    fn some_scope(&self, rng: &mut Rng) -> String {
        match rng.below(10) {
            0 => format!("never:{}", rng.below(3)),
            1..=3 => rng.pick(&self.scopes).clone(),
            _ => {
                let r = rng.pick(&self.rights);
                rng.pick(&r.scopes).clone()
            }
        }
    }

    /// A route template of the world and a path it matches.
    fn some_path(&self, rng: &mut Rng) -> (String, String) {
        let template = rng.pick(&self.routes).clone();
        let path = self.fill(rng, &template);
        (template, path)
    }

    /// A path `route` matches: each `{param}` a value of the world's.
    fn fill(&self, rng: &mut Rng, route: &str) -> String {
        let mut out = Vec::new();
        for segment in route.split('/') {
            if segment.starts_with('{') {
                out.push(rng.pick(&self.params).as_str());
            } else {
                out.push(segment);
            }
        }
        out.join("/")
    }

    /// Some org other than `not`.
    fn other_org(&self, rng: &mut Rng, not: &str) -> String {
        loop {
            let o = self.some_org(rng);
            if o != not {
                return o;
            }
        }
    }

    /// A call for `q` as Envoy's `Check` would make it: the token's consumer
    /// is the owner and its supplier the principal (absent when the owner
    /// acts for itself), mostly; sometimes not, which the engine's API
    /// allows. The token's scopes: mostly the one asked for, and others from
    /// the catalogue or from nowhere.
    fn call(&self, rng: &mut Rng, q: &Query) -> CallSpec {
        let (template, path) = self.some_path(rng);
        let method = rng.pick(METHODS).to_string();
        let consumer = if rng.percent(85) {
            q.owner.clone()
        } else {
            self.other_org(rng, &q.owner)
        };
        let supplier = match rng.below(100) {
            _ if q.supplier == q.owner => rng.percent(25).then(|| q.supplier.clone()),
            0..=84 => Some(q.supplier.clone()),
            85..=92 => None,
            _ => Some(self.other_org(rng, &q.supplier)),
        };
        let mut scopes = Vec::new();
        if rng.percent(75) {
            scopes.push(q.scope.clone());
        }
        for _ in 0..rng.range(0, 3) {
            scopes.push(self.some_scope(rng));
        }
        rng.shuffle(&mut scopes);
        CallSpec {
            route: spelled_route(self.salt, &method, &template),
            method,
            path,
            template,
            consumer,
            supplier,
            scopes,
            delegation_source: rng
                .percent(45)
                .then(|| rng.pick(DELEGATION_SOURCES).to_string()),
            client_id: rng.percent(55).then(|| rng.pick(CLIENT_IDS).to_string()),
            prefixed: rng.percent(10),
        }
    }

    /// `base` with one part changed, if it has that part to change.
    fn vary(&self, rng: &mut Rng, q: &Query, base: &CallSpec, part: Part) -> Option<CallSpec> {
        let mut c = base.clone();
        let toggle = |rng: &mut Rng, now: &Option<String>, values: &[&str]| {
            let options: Vec<Option<String>> = std::iter::once(None)
                .chain(values.iter().map(|v| Some(v.to_string())))
                .filter(|o| o != now)
                .collect();
            rng.pick(&options).clone()
        };
        match part {
            // The route a gateway matched follows the method and the path.
            Part::Method => {
                let others: Vec<&&str> = METHODS.iter().filter(|m| **m != c.method).collect();
                c.method = rng.pick(&others).to_string();
                c.route = spelled_route(self.salt, &c.method, &c.template);
            }
            Part::Path => {
                for _ in 0..8 {
                    c.path = self.fill(rng, &c.template);
                    if c.path != base.path {
                        break;
                    }
                }
            }
            Part::Route => {
                let others: Vec<&String> =
                    self.routes.iter().filter(|r| **r != c.template).collect();
                c.template = (*rng.pick(&others)).clone();
                c.path = self.fill(rng, &c.template);
                c.route = spelled_route(self.salt, &c.method, &c.template);
            }
            Part::Consumer => {
                c.consumer = if c.consumer == q.owner {
                    self.other_org(rng, &q.owner)
                } else {
                    q.owner.clone()
                };
            }
            Part::HasSupplier => {
                c.supplier = match c.supplier {
                    Some(_) => None,
                    None => Some(q.supplier.clone()),
                };
            }
            Part::Supplier => {
                let now = c.supplier.clone()?;
                c.supplier = Some(if now != q.supplier && rng.percent(50) {
                    q.supplier.clone()
                } else {
                    self.other_org(rng, &now)
                });
            }
            Part::Scopes => {
                let s = if rng.percent(50) {
                    q.scope.clone()
                } else {
                    self.some_scope(rng)
                };
                if c.scopes.contains(&s) {
                    c.scopes.retain(|x| *x != s);
                } else {
                    let at = rng.below(c.scopes.len() + 1);
                    c.scopes.insert(at, s);
                }
            }
            Part::DelegationSource => {
                c.delegation_source = toggle(rng, &c.delegation_source, DELEGATION_SOURCES);
            }
            Part::ClientId => c.client_id = toggle(rng, &c.client_id, CLIENT_IDS),
            Part::Call => return None,
        }
        (c != *base).then_some(c)
    }

    /// About `n` asks through Envoy's `Check` for pairs as [`Self::queries`]
    /// draws them (a quarter made self pairs, the owner acting for itself):
    /// per pair a call asked one to three times, calls that differ from it in
    /// one part only (each asked once or twice), and now and then
    /// `IsAuthorized` of the same pair. Pairs follow each other, their asks
    /// interleaved with their neighbours'. Also returns the (call, variant,
    /// part) triples.
    fn checks(&self, rng: &mut Rng, n: usize) -> (Vec<Ask>, Vec<(Ask, Ask, Part)>) {
        let mut asks: Vec<Ask> = Vec::with_capacity(n + 16);
        let mut variants = Vec::new();
        while asks.len() < n {
            let Some(mut q) = self.queries(rng, 1).pop() else {
                continue;
            };
            if rng.percent(25) {
                q.supplier.clone_from(&q.owner);
                q.supplier_spelled.clone_from(&q.owner_spelled);
            }
            let ask = |call: Option<&Arc<CallSpec>>| Ask {
                q: q.clone(),
                call: call.cloned(),
                with_calls: true,
            };
            let base = Arc::new(self.call(rng, &q));
            for _ in 0..rng.range(1, 3) {
                asks.push(ask(Some(&base)));
            }
            if rng.percent(40) {
                asks.push(ask(None));
                variants.push((ask(Some(&base)), ask(None), Part::Call));
            }
            for _ in 0..rng.range(1, 4) {
                let part = *rng.pick(&PARTS[..PARTS.len() - 1]);
                let Some(v) = self.vary(rng, &q, &base, part) else {
                    continue;
                };
                let v = Arc::new(v);
                for _ in 0..rng.range(1, 2) {
                    asks.push(ask(Some(&v)));
                }
                variants.push((ask(Some(&base)), ask(Some(&v)), part));
            }
        }
        // Interleave neighbours: each ask moves up to 16 places.
        for i in 0..asks.len() {
            let j = rng.range(i, (i + 16).min(asks.len() - 1));
            asks.swap(i, j);
        }
        (asks, variants)
    }

    /// One policy from the templates, with a fresh `@id`.
    fn policy(&mut self, rng: &mut Rng) -> Policy {
        if rng.percent(35) {
            let kind = CALL_KINDS.start() + rng.below(CALL_KINDS.clone().count());
            return self.policy_of_kind(rng, kind);
        }
        let mut kind = rng.below(if self.literal_delegations { 28 } else { 26 });
        // A policy the validator refuses spoils the whole world: only the
        // worlds `generate` picks get one.
        if (22..=24).contains(&kind) {
            kind = rng.below(18);
        }
        self.policy_of_kind(rng, kind)
    }

    /// A policy from template `kind` (see the match), with a fresh `@id`.
    fn policy_of_kind(&mut self, rng: &mut Rng, kind: usize) -> Policy {
        self.next_policy += 1;
        let id = format!("p{}", self.next_policy);
        let rights = self.right_ids();
        let r = rng.pick(&rights).to_string();
        let r2 = rng.pick(&rights).to_string();
        let (o1, o2) = (self.some_org(rng), self.some_org(rng));
        let s = self.some_scope(rng);
        let s2 = self.some_scope(rng);
        let person = rng.pick(PEOPLE);
        let effect = if rng.percent(50) { "permit" } else { "forbid" };
        let has_d = "context has delegation";
        let d = "context.delegation";
        let (has_h, h) = ("context has http", "context.http");
        let (has_t, t) = ("context has token", "context.token");
        let method = *rng.pick(METHODS);
        let (template, path) = self.some_path(rng);
        let route = lit(&spelled_route(self.salt, method, &template));
        let (m, path) = (lit(method), lit(&path));
        let record = format!("{{\"method\": {m}, \"path\": {path}, \"route\": {route}}}");
        // Most templates over the call: one condition.
        let when = |condition: String| {
            format!("{effect} (principal, {CALL}, resource) when {{ {condition} }};")
        };
        let mut refusable = false;
        let body = match kind {
            // The shipped permit and forbids (more often than the others).
            0..=2 => format!(
                "permit (principal is Tilgang::Organization, {CALL}, resource is Tilgang::Scope)\n\
                 when {{\n  {has_d} &&\n  {d}.owner == context.owner &&\n  \
                 {d}.supplier == principal &&\n  resource in {d}.rights\n}};"
            ),
            3 => format!(
                "forbid (principal, {CALL}, resource)\nwhen {{ principal == context.owner }}\n\
                 unless {{ context has token && !(context.token has supplier) }};"
            ),
            4 => format!(
                "forbid (principal, {CALL}, resource)\n\
                 when {{ context has token && !(resource in context.token.scopes) }};"
            ),
            5 => format!(
                "permit (principal is Tilgang::Organization, {CALL}, resource is Tilgang::Scope)\n\
                 when {{ context has token && !(context.token has supplier) && \
                 principal == context.owner && principal == context.token.consumer }};"
            ),
            // Specific scopes, orgs and rights.
            6 => format!("{effect} (principal, {CALL}, resource == {});", scope(&s)),
            7 => format!("{effect} (principal == {}, {CALL}, resource);", org(&o1)),
            8 => format!(
                "{effect} (principal, {CALL}, resource) when {{ context.owner == {} }};",
                org(&o1)
            ),
            9 => format!(
                "{effect} (principal, {CALL}, resource in {}) \
                 when {{ context.owner in [{}, {}] }};",
                right(&r),
                org(&o1),
                org(&o2)
            ),
            10 => format!(
                "{effect} (principal in {}, action in [Tilgang::Action::\"callApi\"], resource) \
                 when {{ resource in [{}, {}] }};",
                org(&o1),
                scope(&s),
                scope(&s2)
            ),
            11 => format!(
                "{effect} (principal, {CALL}, resource) \
                 when {{ principal == context.owner }};"
            ),
            12 => format!(
                "{effect} (principal, {CALL}, resource is Tilgang::Scope) \
                 unless {{ resource in {} || resource in {} }};",
                right(&r),
                right(&r2)
            ),
            // Over the delegation's attributes.
            13 => format!(
                "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                 {d}.delegatedBy == {} && resource in {d}.rights }};",
                lit(person)
            ),
            // The month (or `not a t`): no character that needs escaping.
            14 => format!(
                "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                 {d}.createdAt like \"{}*\" }};",
                &rng.pick(TIMES)[..7]
            ),
            15 => format!(
                "{effect} (principal, {CALL}, resource is Tilgang::Scope) when {{ {has_d} && \
                 {d}.updatedAt != {d}.createdAt && {d}.rights.contains({}) }};",
                right(&r)
            ),
            16 => format!(
                "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                 {d}.rights.containsAny([{}, {}]) && {d}.supplier == {} }};",
                right(&r),
                right(&r2),
                org(&o1)
            ),
            17 => format!(
                "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                 {d}.rights.containsAll([{}]) && !({d}.owner == {}) }};",
                right(&r),
                org(&o2)
            ),
            // The schema's extra attributes: refused by the validator when the
            // schema does not have them.
            18 => {
                refusable = !self.extended;
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                     {d} has tier && {d}.tier > {} }};",
                    rng.range(0, 4)
                )
            }
            19 => {
                refusable = !self.extended;
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                     {d} has note && {d}.note like \"*{}*\" && resource in {d}.rights }};",
                    rng.pick(&["vip", "legacy", "ø", ""])
                )
            }
            // Fails at evaluation: overflow when |tier| >= 2.
            20 => {
                refusable = !self.extended;
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                     {d} has tier && {d}.tier * 4611686018427387904 > 0 }};"
                )
            }
            // Fails at evaluation when the right is not in the catalogue
            // (28: never is).
            21 | 28 => {
                let which = if kind == 21 && rng.percent(50) {
                    r.clone()
                } else {
                    "gone".to_string()
                };
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                     {}.name like \"*a*\" }};",
                    right(&which)
                )
            }
            // Refused by the validator in strict mode.
            22 => {
                refusable = true;
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ {has_d} && {d}.tier > 2 }};"
                )
            }
            23 => {
                refusable = true;
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ {d}.delegatedBy == {} }};",
                    lit(person)
                )
            }
            24 => {
                refusable = true;
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ {has_d} && \
                     {d}.createdAt < \"2026-02\" }};"
                )
            }
            25 => format!(
                "{effect} (principal is Tilgang::Organization, {CALL}, resource) \
                 when {{ {has_d} && {d}.delegatedBy == {} }} unless {{ resource == {} }};",
                lit(person),
                scope(&s)
            ),
            // A delegation named literally (opt-in, see the module docs):
            // tilgang must refuse it.
            26 | 27 => {
                refusable = true;
                let other = match self.some_pair(rng) {
                    Some((o, del)) => format!("{o}/{}", del.supplier),
                    None => format!("{o1}/{o2}"),
                };
                let condition = if kind == 26 {
                    format!(".rights.contains({})", right(&r))
                } else {
                    " has delegatedBy".to_string()
                };
                format!(
                    "{effect} (principal, {CALL}, resource) when {{ \
                     Tilgang::Delegation::{}{condition} }};",
                    lit(&other),
                )
            }
            // Over the call (`context.http`, `context.token`), which only
            // Envoy's `Check` gives. Each part on its own first.
            30 => when(format!("{has_h} && {h}.method == {m}")),
            31 => when(format!(
                "{has_h} && {h}.path like \"{}\"",
                rng.pick(PATH_PATTERNS)
            )),
            32 => when(format!("{has_h} && {h}.path == {path}")),
            33 => when(format!("{has_h} && {h}.route == {route}")),
            // Presence only: the memo must key on whether there is a supplier.
            34 => when(format!("{has_t} && {t} has supplier")),
            35 => format!(
                "{effect} (principal is Tilgang::Organization, {CALL}, resource) \
                 when {{ {has_t} && {t} has supplier && {t}.supplier == principal }};"
            ),
            36 => when(format!("{has_t} && resource in {t}.scopes")),
            37 => when(format!("{has_t} && {t}.consumer == context.owner")),
            38 => when(format!(
                "{has_t} && {t} has delegationSource && {t}.delegationSource == {}",
                lit(rng.pick::<&str>(DELEGATION_SOURCES))
            )),
            39 => when(format!(
                "{has_t} && {t} has clientId && {t}.clientId like \"{}\"",
                rng.pick(CLIENT_PATTERNS)
            )),
            // The record whole: every part of it counts.
            40 => when(format!("{has_h} && {h} == {record}")),
            // The shipped permit, except for one method through a gateway.
            41 => format!(
                "permit (principal is Tilgang::Organization, {CALL}, resource is Tilgang::Scope)\n\
                 when {{\n  {has_d} &&\n  {d}.owner == context.owner &&\n  \
                 {d}.supplier == principal &&\n  resource in {d}.rights\n}}\n\
                 unless {{ {has_h} && {h}.method == {m} }};"
            ),
            // Fails at evaluation for some calls only (`gone` is no right).
            42 => {
                let only = if rng.percent(50) {
                    format!("{has_h} && {h}.method == {m}")
                } else {
                    let id = lit(rng.pick::<&str>(CLIENT_IDS));
                    format!("{has_t} && {t} has clientId && {t}.clientId == {id}")
                };
                when(format!("{only} && {}.name like \"*\"", right("gone")))
            }
            43 => when(format!(
                "{has_t} && {t} has supplier && {t}.supplier == {}",
                org(&o1)
            )),
            44 => when(format!(
                "{has_t} && ({t}.consumer == principal || {t}.consumer in [{}, {}])",
                org(&o1),
                org(&o2)
            )),
            45 => when(format!("{has_h} && {h}.route == {h}.path")),
            46 => when(match rng.below(4) {
                0 => format!(
                    "{has_t} && {t}.scopes.containsAny([{}, {}])",
                    scope(&s),
                    scope(&s2)
                ),
                1 => format!("{has_t} && {t}.scopes.contains(resource)"),
                2 => format!("{has_t} && {t}.scopes.isEmpty()"),
                _ => format!(
                    "{has_t} && {t}.scopes.containsAll([resource, {}])",
                    scope(&s)
                ),
            }),
            // The set whole.
            47 => when(if rng.percent(50) {
                format!("{has_t} && {t}.scopes == [resource]")
            } else {
                format!("{has_t} && {t}.scopes == [{}, {}]", scope(&s), scope(&s2))
            }),
            // Presence only.
            48 => when(match rng.below(4) {
                0 => format!("{has_t} && {t} has delegationSource"),
                1 => format!("{has_t} && {t} has clientId"),
                2 => has_h.to_string(),
                _ => has_t.to_string(),
            }),
            49 => when(if rng.percent(50) {
                format!("{has_t} && {t} has supplier && {t}.supplier == {t}.consumer")
            } else {
                format!("{has_t} && {t} has supplier && {t}.supplier == context.owner")
            }),
            50 => when(match rng.below(3) {
                0 => format!("{has_h} && {h}.method like \"P*\""),
                1 => format!("{has_h} && {h}.route like \"*{{instanceGuid}}*\""),
                _ => format!("{has_h} && {h}.method != \"GET\" && {h}.route like \"/storage/*\""),
            }),
            // The record inside a set; both records of a call together.
            51 => when(if rng.percent(50) {
                format!("{has_h} && [{h}].contains({record})")
            } else {
                format!("{has_h} && {has_t} && {h}.method == {m} && !({t} has supplier)")
            }),
            // The delegation and the token together.
            52 => when(if rng.percent(50) {
                format!(
                    "{has_d} && {has_t} && {t} has supplier && {d}.supplier == {t}.supplier && \
                     resource in {d}.rights"
                )
            } else {
                format!(
                    "{has_d} && {has_t} && {t} has delegationSource && \
                     {d}.delegatedBy == {t}.delegationSource"
                )
            }),
            // Refused by the validator: optional attributes read unguarded.
            53 => {
                refusable = true;
                when(format!("{h}.method == {m}"))
            }
            54 => {
                refusable = true;
                when(format!("{has_t} && {t}.supplier == principal"))
            }
            55 => {
                refusable = true;
                when(format!("{has_t} && {t}.clientId like \"*\""))
            }
            _ => unreachable!("no template {kind}"),
        };
        Policy {
            text: format!("@id(\"{id}\")\n{body}\n"),
            may_be_refused: refusable,
            kind,
        }
    }

    fn names_a_delegation(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.text.contains("Tilgang::Delegation::\""))
    }

    fn may_be_refused(&self) -> bool {
        self.policies.iter().any(|p| p.may_be_refused)
    }

    fn schema(&self) -> String {
        if self.extended {
            let s = SCHEMA.replacen(
                "updatedAt: String,",
                "updatedAt: String,\n    tier?: Long,\n    note?: String,",
                1,
            );
            assert_ne!(
                s, SCHEMA,
                "the fixture schema declares `updatedAt: String,`"
            );
            s
        } else {
            SCHEMA.to_string()
        }
    }

    /// Write the policies directory: schema, catalogue, the admin policy and
    /// the generated policies spread over up to three files (none empty).
    fn write_policies(&self, dir: &Path) {
        if dir.exists() {
            std::fs::remove_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tilgang.cedarschema"), self.schema()).unwrap();
        std::fs::write(dir.join("admin.cedar"), ADMIN_POLICY).unwrap();
        let rights: Vec<Value> = self
            .rights
            .iter()
            .map(|r| json!({ "id": r.id, "name": r.name, "scopes": r.scopes }))
            .collect();
        std::fs::write(
            dir.join("rights.json"),
            serde_json::to_string_pretty(&json!({ "rights": rights })).unwrap(),
        )
        .unwrap();
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for (i, p) in self.policies.iter().enumerate() {
            let name = ["api-access.cedar", "extra.cedar", "z.cedar"][i % 3];
            files.entry(name.to_string()).or_default().push_str(&p.text);
        }
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let routes: Vec<Value> = self
            .route_table
            .iter()
            .map(|(method, path, scope)| {
                json!({ "method": method, "path": path, "scope": scope, "source": "differential" })
            })
            .collect();
        std::fs::write(
            dir.join("routes.json"),
            serde_json::to_string_pretty(&json!({ "routes": routes })).unwrap(),
        )
        .unwrap();
    }

    /// One owner's file, in the on-disk format (`tests/fixtures/data/delegations`).
    fn owner_file(&self, owner: &str) -> String {
        let entities: Vec<Value> = self.owners[owner]
            .iter()
            .map(|d| {
                let mut attrs = json!({
                    "owner": { "type": "Tilgang::Organization", "id": owner },
                    "supplier": { "type": "Tilgang::Organization", "id": d.supplier },
                    "rights": d.rights.iter()
                        .map(|r| json!({ "type": "Tilgang::Right", "id": r }))
                        .collect::<Vec<_>>(),
                    "delegatedBy": d.delegated_by,
                    "createdAt": d.created_at,
                    "updatedAt": d.updated_at,
                });
                if let Some(t) = d.tier {
                    attrs["tier"] = t.into();
                }
                if let Some(n) = &d.note {
                    attrs["note"] = n.as_str().into();
                }
                json!({
                    "uid": { "type": "Tilgang::Delegation", "id": format!("{owner}/{}", d.supplier) },
                    "attrs": attrs,
                    "parents": [],
                })
            })
            .collect();
        serde_json::to_string_pretty(&entities).unwrap()
    }

    fn write_owner(&self, data: &Path, owner: &str) {
        let path = data.join("delegations").join(format!("{owner}.json"));
        if self.owners.contains_key(owner) {
            std::fs::write(path, self.owner_file(owner)).unwrap();
        } else {
            let _ = std::fs::remove_file(path);
        }
    }

    fn write_data(&self, data: &Path) {
        std::fs::create_dir_all(data.join("delegations")).unwrap();
        for owner in self.owners.keys() {
            self.write_owner(data, owner);
        }
    }

    /// Change some owners' delegations: add, remove and modify delegations,
    /// remove owners, add owners. Returns the owners whose file changed.
    fn change_data(&mut self, rng: &mut Rng) -> Vec<String> {
        let mut changed = Vec::new();
        let owners: Vec<String> = self.owners.keys().cloned().collect();
        for owner in owners {
            if rng.percent(15) {
                self.owners.remove(&owner);
                changed.push(owner);
                continue;
            }
            if rng.percent(40) {
                continue;
            }
            let mut list = self.owners.remove(&owner).unwrap();
            for _ in 0..rng.range(0, 5) {
                if !list.is_empty() {
                    let i = rng.below(list.len());
                    list.remove(i);
                }
            }
            for _ in 0..rng.range(0, 8) {
                if list.is_empty() {
                    break;
                }
                let i = rng.below(list.len());
                let fresh = self.delegation(rng, list[i].supplier.clone());
                let d = &mut list[i];
                match rng.below(4) {
                    0 => d.rights = fresh.rights,
                    1 => d.delegated_by = fresh.delegated_by,
                    2 => d.updated_at = fresh.updated_at,
                    _ => (d.tier, d.note) = (fresh.tier, fresh.note),
                }
            }
            for _ in 0..rng.range(0, 6) {
                let s = rng.pick(&self.orgs).clone();
                if s != owner && !list.iter().any(|d| d.supplier == s) {
                    let d = self.delegation(rng, s);
                    list.push(d);
                }
            }
            self.owners.insert(owner.clone(), list);
            changed.push(owner);
        }
        if rng.percent(40) {
            // A new owner: an org that was a supplier or in no file at all.
            let owner = if rng.percent(50) {
                rng.pick(&self.orgs).clone()
            } else {
                rng.pick(&self.strangers).clone()
            };
            if !self.owners.contains_key(&owner) {
                let suppliers: Vec<String> =
                    self.orgs.iter().filter(|o| **o != owner).cloned().collect();
                let list = rng
                    .sample_between(&suppliers, 1, 20)
                    .into_iter()
                    .map(|s| self.delegation(rng, s))
                    .collect();
                self.owners.insert(owner.clone(), list);
                changed.push(owner);
            }
        }
        changed
    }

    /// Change the policies or the catalogue (never removing a right, which
    /// delegations may name).
    fn change_policies(&mut self, rng: &mut Rng) {
        // A policy over the call drawn again from its template (other
        // literals, often another part of the call read) or, without one,
        // one added: what a memo keyed by the old policies' reads would miss.
        if rng.percent(40) {
            let over_call: Vec<usize> = (0..self.policies.len())
                .filter(|i| CALL_KINDS.contains(&self.policies[*i].kind))
                .collect();
            let kind = CALL_KINDS.start() + rng.below(CALL_KINDS.clone().count());
            if over_call.is_empty() {
                let p = self.policy_of_kind(rng, kind);
                self.policies.push(p);
            } else {
                let i = *rng.pick(&over_call);
                let kind = if rng.percent(50) {
                    self.policies[i].kind
                } else {
                    kind
                };
                self.policies[i] = self.policy_of_kind(rng, kind);
            }
            return;
        }
        match rng.below(4) {
            0 if self.policies.len() > 1 => {
                let i = rng.below(self.policies.len());
                self.policies.remove(i);
            }
            1 => {
                let i = rng.below(self.rights.len());
                let s = rng.pick(&self.scopes).clone();
                if !self.rights[i].scopes.contains(&s) {
                    self.rights[i].scopes.push(s);
                }
            }
            2 => {
                let i = rng.below(self.policies.len());
                let p = self.policy(rng);
                self.policies[i] = p;
            }
            _ => {
                let p = self.policy(rng);
                self.policies.push(p);
            }
        }
    }

    /// Requests: delegated, reversed, random and self pairs, orgs in no file,
    /// scopes no right gives, and repeats.
    fn queries(&self, rng: &mut Rng, n: usize) -> Vec<Query> {
        let mut out: Vec<Query> = Vec::with_capacity(n);
        while out.len() < n {
            let kind = rng.below(100);
            let (supplier, owner, scope) = match (kind, self.some_pair(rng)) {
                (0..=39, Some((owner, d))) => {
                    let scope = if rng.percent(60) {
                        let given: Vec<&String> = self
                            .rights
                            .iter()
                            .filter(|r| d.rights.contains(&r.id))
                            .flat_map(|r| &r.scopes)
                            .collect();
                        (*rng.pick(&given)).clone()
                    } else {
                        self.some_scope(rng)
                    };
                    (d.supplier.clone(), owner, scope)
                }
                (40..=49, Some((owner, d))) => (owner, d.supplier.clone(), self.some_scope(rng)),
                (50..=59, _) => {
                    let o = self.some_org(rng);
                    (o.clone(), o, self.some_scope(rng))
                }
                (60..=87, _) | (0..=49, None) => {
                    (self.some_org(rng), self.some_org(rng), self.some_scope(rng))
                }
                _ if !out.is_empty() => {
                    let q = rng.pick(&out).clone();
                    out.push(q);
                    continue;
                }
                _ => continue,
            };
            let spell = |rng: &mut Rng, o: &str| {
                if rng.percent(10) {
                    format!("0192:{o}")
                } else {
                    o.to_string()
                }
            };
            out.push(Query {
                supplier_spelled: spell(rng, &supplier),
                owner_spelled: spell(rng, &owner),
                supplier,
                owner,
                scope,
            });
        }
        out
    }
}

/// What a gateway saw of a call (`engine::Call`), as the test describes it:
/// org numbers bare, spelled to tilgang with `0192:` when `prefixed`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CallSpec {
    method: String,
    path: String,
    route: String,
    /// The template of `ROUTES` the path was made from (`route` spells it).
    template: String,
    consumer: String,
    supplier: Option<String>,
    /// As the token lists them: in any order, perhaps twice.
    scopes: Vec<String>,
    delegation_source: Option<String>,
    client_id: Option<String>,
    prefixed: bool,
}

impl CallSpec {
    fn spell(&self, org: &str) -> String {
        if self.prefixed {
            format!("0192:{org}")
        } else {
            org.to_string()
        }
    }

    fn show(&self) -> String {
        format!(
            "{} {} (route {}), token: consumer {}, supplier {:?}, scopes {:?}, \
             delegationSource {:?}, clientId {:?}{}",
            self.method,
            self.path,
            self.route,
            self.consumer,
            self.supplier,
            self.scopes,
            self.delegation_source,
            self.client_id,
            if self.prefixed {
                " (0192: spelled)"
            } else {
                ""
            }
        )
    }
}

/// A part of a call a policy may read, which [`World::vary`] changes alone;
/// `Call` is the call itself (`Check` against `IsAuthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Method,
    Path,
    Route,
    Consumer,
    HasSupplier,
    Supplier,
    Scopes,
    DelegationSource,
    ClientId,
    Call,
}

const PARTS: [Part; 10] = [
    Part::Method,
    Part::Path,
    Part::Route,
    Part::Consumer,
    Part::HasSupplier,
    Part::Supplier,
    Part::Scopes,
    Part::DelegationSource,
    Part::ClientId,
    Part::Call,
];

/// One question to both sides: `IsAuthorized` (no call) or Envoy's `Check`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Ask {
    q: Query,
    call: Option<Arc<CallSpec>>,
    /// Drawn by [`World::checks`] (with calls), not [`World::queries`].
    with_calls: bool,
}

/// One request: the bare org numbers, and as spelled to tilgang (sometimes
/// with the `0192:` prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Query {
    supplier: String,
    owner: String,
    supplier_spelled: String,
    owner_spelled: String,
    scope: String,
}

// ---------------------------------------------------------------------------
// Running worlds.

/// What one kind of fast decision (`IsAuthorized`, or Envoy's `Check`)
/// came to.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Fast decisions compared with the reference.
    compared: u64,
    /// Reference decisions (distinct question × snapshot content).
    reference: u64,
    allowed: u64,
    denied_with_reasons: u64,
    errored: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.compared += o.compared;
        self.reference += o.reference;
        self.allowed += o.allowed;
        self.denied_with_reasons += o.denied_with_reasons;
        self.errored += o.errored;
    }

    fn show(&self) -> String {
        format!(
            "{} fast decisions compared with {} Cedar decisions; Cedar said allow {}, \
             deny with reasons {}, errors {}",
            self.compared, self.reference, self.allowed, self.denied_with_reasons, self.errored
        )
    }
}

#[derive(Debug, Default)]
struct Tally {
    is_authorized: Counts,
    check: Counts,
    /// Per part of a call: how often Cedar answered a call and the same call
    /// with only that part changed differently (on one snapshot's content),
    /// i.e. how often a memo that ignored the part would have been caught.
    telling: BTreeMap<String, u64>,
    worlds: u64,
    /// Worlds (or their policy change) tilgang refused, as the generator allowed.
    refused: u64,
    /// Decisions that differed, and the first few of them (and any world
    /// whose files one side refused and the other did not) described.
    differences: u64,
    shown: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.is_authorized.add(&o.is_authorized);
        self.check.add(&o.check);
        for (part, n) in &o.telling {
            *self.telling.entry(part.clone()).or_default() += n;
        }
        self.worlds += o.worlds;
        self.refused += o.refused;
        self.differences += o.differences;
        self.shown.extend(o.shown.iter().cloned());
    }
}

/// A snapshot under test and the reference it must agree with.
struct Pairing<'a> {
    label: &'static str,
    snap: &'a Snapshot,
    reference: usize,
    /// The snapshot withholds its delegations (`Snapshot::with_withheld`):
    /// the reference has none, and tilgang adds why to every deny's errors.
    withheld: bool,
    /// Asked only what [`World::checks`] drew (`Check`, and `IsAuthorized`
    /// of the same pairs), to spare time.
    calls_only: bool,
}

struct Ctx {
    seed: u64,
    world: u64,
    /// The environment that replays this world.
    replay: String,
    dir: PathBuf,
    /// How many `Check` asks each phase makes.
    checks: usize,
    tally: Tally,
    /// Set once a difference was found, so the directory is kept.
    keep: bool,
}

impl Ctx {
    fn differ(&mut self, phase: &str, label: &str, a: &Ask, fast: &Outcome, want: &Outcome) {
        self.keep = true;
        self.tally.differences += 1;
        if self.tally.shown.len() >= 3 {
            return;
        }
        let q = &a.q;
        let mut m = String::new();
        writeln!(
            m,
            "world {} of seed {} ({phase}, {label}): supplier {} owner {} scope `{}`",
            self.world, self.seed, q.supplier_spelled, q.owner_spelled, q.scope
        )
        .unwrap();
        match &a.call {
            None => writeln!(m, "  IsAuthorized").unwrap(),
            Some(c) => writeln!(m, "  Check: {}", c.show()).unwrap(),
        }
        writeln!(m, "  tilgang: {}", fast.show()).unwrap();
        writeln!(m, "  Cedar:   {}", want.show()).unwrap();
        writeln!(
            m,
            "  files: {} (replay: {} TILGANG_DIFF_WORLD={})",
            self.dir.display(),
            self.replay,
            self.world
        )
        .unwrap();
        self.tally.shown.push(m);
    }

    /// Decide every ask on every pairing, in two passes (the second in
    /// another order) with the pairings interleaved, and compare. Then count
    /// which variants of a call Cedar told apart.
    fn compare(
        &mut self,
        rng: &mut Rng,
        phase: &str,
        refs: &[&Reference],
        pairings: &[Pairing<'_>],
        asks: &[Ask],
        variants: &[(Ask, Ask, Part)],
    ) {
        // The reference decides each distinct ask once per reference.
        let mut distinct: HashMap<&Ask, usize> = HashMap::new();
        let ids: Vec<usize> = asks
            .iter()
            .map(|a| {
                let next = distinct.len();
                *distinct.entry(a).or_insert(next)
            })
            .collect();
        let mut wanted: Vec<Vec<Option<Outcome>>> = vec![vec![None; refs.len()]; distinct.len()];
        let mut order: Vec<usize> = (0..asks.len()).collect();
        for pass in 0..2 {
            if pass == 1 {
                rng.shuffle(&mut order);
            }
            for &i in &order {
                let a = &asks[i];
                for p in pairings {
                    if p.calls_only && !a.with_calls {
                        continue;
                    }
                    let counts = if a.call.is_some() {
                        &mut self.tally.check
                    } else {
                        &mut self.tally.is_authorized
                    };
                    let mut want = wanted[ids[i]][p.reference]
                        .get_or_insert_with(|| {
                            counts.reference += 1;
                            let o = refs[p.reference].decide(&a.q, a.call.as_deref());
                            if o.allowed {
                                counts.allowed += 1;
                            } else if !o.reasons.is_empty() {
                                counts.denied_with_reasons += 1;
                            }
                            if o.errored {
                                counts.errored += 1;
                            }
                            o
                        })
                        .clone();
                    if p.withheld && !want.allowed {
                        want.errored = true;
                        want.detail = "(why the delegations are withheld)".into();
                    }
                    let fast = fast_ask(p.snap, a);
                    counts.compared += 1;
                    if !fast.same(&want) {
                        self.differ(phase, p.label, a, &fast, &want);
                    }
                }
            }
        }
        for (base, variant, part) in variants {
            let (Some(&b), Some(&v)) = (distinct.get(base), distinct.get(variant)) else {
                continue;
            };
            for (x, y) in wanted[b].iter().zip(&wanted[v]) {
                if let (Some(x), Some(y)) = (x, y)
                    && !x.same(y)
                {
                    *self.tally.telling.entry(format!("{part:?}")).or_default() += 1;
                }
            }
        }
    }
}

/// How many `IsAuthorized` requests each phase of a world asks.
const QUERIES: usize = 1000;
/// How many `Check` asks each phase makes when both budgets are the same
/// (see [`checks_per_phase`]).
const CHECKS: usize = 900;

/// `Check` asks per phase, so that both budgets run out about together.
fn checks_per_phase(target: u64, check_target: u64) -> usize {
    let n = CHECKS as u64 * check_target / target.max(1);
    n.clamp(30, 8 * CHECKS as u64) as usize
}

/// `IsAuthorized` requests as asks.
fn plain(queries: &[Query]) -> Vec<Ask> {
    queries
        .iter()
        .map(|q| Ask {
            q: q.clone(),
            call: None,
            with_calls: false,
        })
        .collect()
}

/// `a` and `b` riffled: each keeps its order.
fn riffle(rng: &mut Rng, a: Vec<Ask>, b: Vec<Ask>) -> Vec<Ask> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let (left, right) = (a.len(), b.len());
        if left + right == 0 {
            return out;
        }
        if rng.below(left + right) < left {
            out.extend(a.next());
        } else {
            out.extend(b.next());
        }
    }
}

/// The asks among `asks` that [`World::checks`] drew.
fn calls_of(asks: &[Ask]) -> Vec<Ask> {
    asks.iter().filter(|a| a.with_calls).cloned().collect()
}

/// Generate world `index` of `seed` in a temporary directory and compare in
/// three phases. The directory is kept when anything differed.
fn run_world(
    seed: u64,
    index: u64,
    literal_delegations: bool,
    checks: usize,
    replay: &str,
) -> Tally {
    let tmp = tempfile::tempdir().unwrap();
    let mut ctx = Ctx {
        seed,
        world: index,
        replay: replay.to_string(),
        dir: tmp.path().to_path_buf(),
        checks,
        tally: Tally {
            worlds: 1,
            ..Tally::default()
        },
        keep: false,
    };
    if let Err(problem) = phases(&mut ctx, literal_delegations) {
        ctx.keep = true;
        ctx.tally.differences += 1;
        ctx.tally.shown.push(format!(
            "world {index} of seed {seed}: {problem}\n  files: {} \
             (replay: {replay} TILGANG_DIFF_WORLD={index})",
            tmp.path().display()
        ));
    }
    if ctx.keep {
        let _ = tmp.keep();
    }
    ctx.tally
}

/// tilgang's snapshot and plain Cedar from the files as they are now, or why
/// not. `Ok(None)`: tilgang refused them, as the generator allowed.
fn load_both(
    world: &World,
    policies: &Path,
    data: &Path,
) -> Result<Option<(Snapshot, Reference)>, String> {
    let snap = match fast_load(policies, data) {
        Ok(_) if world.names_a_delegation() => {
            return Err("tilgang loaded a policy that names a delegation literally".into());
        }
        Ok(s) => s,
        Err(_) if world.may_be_refused() => return Ok(None),
        Err(e) => {
            return Err(format!(
                "tilgang refused files the generator considers valid: {e}"
            ));
        }
    };
    let reference = Reference::build(policies, data)
        .map_err(|e| format!("tilgang loaded files plain Cedar refuses: {e}"))?;
    Ok(Some((snap, reference)))
}

fn phases(ctx: &mut Ctx, literal_delegations: bool) -> Result<(), String> {
    let mut rng = Rng(world_seed(ctx.seed, ctx.world));
    // The calls and the order of the asks come from a stream of their own,
    // so a world's files are the same whatever the budgets.
    let mut crng = Rng(world_seed(ctx.seed, ctx.world) ^ 0x0c4e_c4ca_11ed_0001);
    let n = ctx.checks;
    let policies = ctx.dir.join("policies");
    let data = ctx.dir.join("data");
    let none = ctx.dir.join("no-delegations");
    std::fs::create_dir_all(none.join("delegations")).unwrap();
    let mut world = World::generate(&mut rng, ctx.world, literal_delegations);
    world.write_policies(&policies);
    world.write_data(&data);

    // Phase 1: as generated; and with the delegations withheld (the shared
    // store out of reach), on the same policy bundle.
    let Some((snap1, ref1)) = load_both(&world, &policies, &data)? else {
        ctx.tally.refused += 1;
        return Ok(());
    };
    let bare1 = Reference::build(&policies, &none)
        .map_err(|e| format!("plain Cedar refuses the policies without delegations: {e}"))?;
    let held1 = snap1.with_withheld(Some(Arc::from("the delegations are out of date")));
    let q1 = world.queries(&mut rng, QUERIES);
    let (c1, v1) = world.checks(&mut crng, n);
    let a1 = riffle(&mut crng, plain(&q1), c1);
    let pairing = |label, snap, reference| Pairing {
        label,
        snap,
        reference,
        withheld: false,
        calls_only: false,
    };
    ctx.compare(
        &mut crng,
        "initial",
        &[&ref1, &bare1],
        &[
            pairing("load_snapshot", &snap1, 0),
            Pairing {
                withheld: true,
                calls_only: true,
                ..pairing("with_withheld", &held1, 1)
            },
        ],
        &a1,
        &v1,
    );

    // Phase 2: owner files change. The new snapshot from a full load and from
    // `with_owner` per changed file, interleaved with the old snapshot, which
    // keeps its answers.
    let before = world.clone();
    let changed = world.change_data(&mut rng);
    for owner in &changed {
        world.write_owner(&data, owner);
    }
    let (snap2, ref2) =
        load_both(&world, &policies, &data)?.ok_or("tilgang refused files it had loaded")?;
    let mut incremental = snap1.clone();
    for owner in &changed {
        incremental = fast_with_owner(&incremental, &data, owner);
    }
    let mut q2 = world.queries(&mut rng, QUERIES);
    // Requests as the world was (delegations and owners since removed), and
    // some of the old requests again, whose old answers a cache may hold.
    q2.extend(before.queries(&mut rng, QUERIES / 4));
    q2.extend(rng.sample(&q1, QUERIES / 4));
    let (mut c2, v2) = world.checks(&mut crng, n);
    c2.extend(before.checks(&mut crng, n / 4).0);
    c2.extend(crng.sample(&calls_of(&a1), n / 4));
    let a2 = riffle(&mut crng, plain(&q2), c2);
    ctx.compare(
        &mut crng,
        "owner files changed",
        &[&ref1, &ref2],
        &[
            pairing("load_snapshot", &snap2, 1),
            pairing("the old snapshot", &snap1, 0),
            pairing("with_owner", &incremental, 1),
        ],
        &a2,
        &v2,
    );

    // Phase 3: the policies or the catalogue change. The new snapshot from a
    // full load, and as a reload publishes it (the old snapshot's delegation
    // records under the new policies), interleaved with the old snapshot.
    world.change_policies(&mut rng);
    world.write_policies(&policies);
    let Some((snap3, ref3)) = load_both(&world, &policies, &data)? else {
        ctx.tally.refused += 1;
        return Ok(());
    };
    let reloaded = fast_reload_policies(&snap2, &policies, &data)
        .map_err(|e| format!("the policies loaded, but {e}"))?;
    let mut q3 = world.queries(&mut rng, QUERIES);
    q3.extend(rng.sample(&q2, QUERIES / 4));
    let (mut c3, v3) = world.checks(&mut crng, n);
    c3.extend(crng.sample(&calls_of(&a2), n / 4));
    let a3 = riffle(&mut crng, plain(&q3), c3);
    ctx.compare(
        &mut crng,
        "policies changed",
        &[&ref2, &ref3],
        &[
            pairing("load_snapshot", &snap3, 1),
            pairing("the old snapshot", &snap2, 0),
            Pairing {
                calls_only: true,
                ..pairing("policies reloaded", &reloaded, 1)
            },
        ],
        &a3,
        &v3,
    );
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// What a run asks for (from the environment).
struct Settings {
    seed: u64,
    /// `IsAuthorized` and `Check` fast decisions to compare, at least.
    target: u64,
    check_target: u64,
    only: Option<u64>,
    threads: usize,
    literal: bool,
}

impl Settings {
    /// The environment that replays a world of this run (with
    /// `TILGANG_DIFF_WORLD`): the budgets set how many `Check` asks a world makes.
    fn replay(&self) -> String {
        format!(
            "TILGANG_DIFF_SEED={} TILGANG_DIFF_COMPARISONS={} TILGANG_DIFF_CHECK_COMPARISONS={}{}",
            self.seed,
            self.target,
            self.check_target,
            if self.literal {
                " TILGANG_DIFF_LITERAL_DELEGATIONS=1"
            } else {
                ""
            }
        )
    }
}

/// Run worlds 0, 1, 2, ... of the seed on the settings' threads until both
/// budgets are compared (or only the one world asked for), stopping early at a
/// difference.
fn run(settings: &Settings) -> Tally {
    let next = AtomicU64::new(settings.only.unwrap_or(0));
    let compared = AtomicU64::new(0);
    let checked = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let total = Mutex::new(Tally::default());
    let checks = checks_per_phase(settings.target, settings.check_target);
    let replay = settings.replay();
    std::thread::scope(|s| {
        for _ in 0..settings.threads {
            s.spawn(|| {
                loop {
                    let done = compared.load(Ordering::Relaxed) >= settings.target
                        && checked.load(Ordering::Relaxed) >= settings.check_target;
                    if done || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if settings.only.is_some_and(|o| i != o) {
                        break;
                    }
                    let t = run_world(settings.seed, i, settings.literal, checks, &replay);
                    compared.fetch_add(t.is_authorized.compared, Ordering::Relaxed);
                    checked.fetch_add(t.check.compared, Ordering::Relaxed);
                    if t.differences > 0 {
                        failed.store(true, Ordering::Relaxed);
                    }
                    total.lock().unwrap().add(&t);
                }
            });
        }
    });
    total.into_inner().unwrap()
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Rng(t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)).next()
}

fn report(seed: u64, t: &Tally, elapsed: std::time::Duration) -> String {
    let telling: Vec<String> = PARTS
        .iter()
        .map(|p| {
            let name = format!("{p:?}");
            format!("{name} {}", t.telling.get(&name).copied().unwrap_or(0))
        })
        .collect();
    format!(
        "seed {seed}: {} worlds ({} refused by the validator as the generator allowed) \
         in {:.1} s\n  IsAuthorized: {}\n  Check: {}\n  \
         a call and the same call but for one part, told apart by Cedar: {}",
        t.worlds,
        t.refused,
        elapsed.as_secs_f64(),
        t.is_authorized.show(),
        t.check.show(),
        telling.join(", "),
    )
}

#[test]
fn tilgang_decides_exactly_as_cedar_over_all_entities() {
    let target = env_u64("TILGANG_DIFF_COMPARISONS");
    let settings = Settings {
        seed: env_u64("TILGANG_DIFF_SEED").unwrap_or_else(fresh_seed),
        target: target.unwrap_or(DEFAULT_COMPARISONS),
        check_target: env_u64("TILGANG_DIFF_CHECK_COMPARISONS")
            .or(target)
            .unwrap_or(DEFAULT_CHECK_COMPARISONS),
        only: env_u64("TILGANG_DIFF_WORLD"),
        threads: env_u64("TILGANG_DIFF_THREADS")
            .map_or_else(
                || std::thread::available_parallelism().map_or(2, usize::from),
                |n| n as usize,
            )
            .max(1),
        literal: std::env::var("TILGANG_DIFF_LITERAL_DELEGATIONS").is_ok_and(|v| v == "1"),
    };
    let seed = settings.seed;
    eprintln!(
        "differential: seed {seed} (replay with {})",
        settings.replay()
    );
    let started = Instant::now();
    let t = run(&settings);
    let summary = report(seed, &t, started.elapsed());
    // Past the test harness's capture, so the counts show on success too.
    let _ = writeln!(std::io::stderr(), "differential: {summary}");
    assert!(
        t.differences == 0,
        "{} difference(s) between tilgang and plain Cedar; {summary}\n{}",
        t.differences,
        t.shown.join("\n")
    );
    if settings.only.is_none() {
        assert!(t.is_authorized.compared >= settings.target, "{summary}");
        assert!(t.check.compared >= settings.check_target, "{summary}");
    }
    // The generator reaches every outcome, so a drift in it that made every
    // answer the same (and so trivially equal) would fail here.
    if t.worlds >= 8 {
        for c in [&t.is_authorized, &t.check] {
            assert!(
                c.allowed > 0 && c.denied_with_reasons > 0 && c.errored > 0,
                "{summary}"
            );
        }
        assert!(t.refused > 0, "{summary}");
        let a = &t.is_authorized;
        assert!(a.reference * 6 > a.compared, "{summary}");
        assert!(!t.telling.is_empty(), "{summary}");
    }
    // Every part of a call, changed alone, changes some answer: the test
    // would catch a memo that ignored any one of them. (A short run may miss
    // one by chance.)
    if t.check.compared >= 200_000 {
        for p in PARTS {
            assert!(
                t.telling.get(&format!("{p:?}")).is_some_and(|n| *n > 0),
                "no call told apart from one with another {p:?}; {summary}"
            );
        }
    }
}

/// A policy may name a delegation entity literally. Plain Cedar over all
/// entities sees that delegation whatever the request; tilgang gives Cedar
/// only the request's own delegation (`ARCHITECTURE.md`, "Per-request entity
/// slice"), so there `has` would be false and a forbid meant to fire for every
/// supplier while 991825827 has delegated to 974760673 would stay silent for
/// another supplier, whose request tilgang would then allow. tilgang refuses
/// such a policy at load, naming it, and keeps deciding on what it had.
#[test]
fn a_policy_naming_another_pairs_delegation_is_refused() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo.join("tests/fixtures/policies")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    std::fs::write(
        dir.path().join("cross.cedar"),
        "@id(\"while-974760673-holds-a-delegation\")\n\
         forbid (principal, action == Tilgang::Action::\"callApi\", resource)\n\
         when { Tilgang::Delegation::\"991825827/974760673\" has delegatedBy };\n",
    )
    .unwrap();
    let data = repo.join("tests/fixtures/data");
    // Plain Cedar over all entities denies another supplier's request ...
    let reference = Reference::build(dir.path(), &data).unwrap();
    let q = Query {
        supplier: "810418672".into(),
        owner: "991825827".into(),
        supplier_spelled: "810418672".into(),
        owner_spelled: "991825827".into(),
        scope: "altinn:serviceowner/instances.read".into(),
    };
    let want = reference.decide(&q, None);
    assert!(!want.allowed, "{}", want.show());
    // ... which tilgang could not reproduce, so it refuses the policy.
    let errors = fast_load(dir.path(), &data)
        .expect_err("tilgang refuses a policy naming a delegation")
        .to_string();
    assert!(
        errors.contains("while-974760673-holds-a-delegation")
            && errors.contains("991825827/974760673")
            && errors.contains("context.delegation"),
        "{errors}"
    );
}
