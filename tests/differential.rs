//! Differential test (issue 8): tilgang's decisions are exactly Cedar's.
//!
//! Each *world* is random: a rights catalogue, a schema (the fixture one, or one
//! whose `Delegation` has extra optional attributes), policies drawn from
//! templates (the shipped ones, forbids and permits on scopes, orgs and rights,
//! rules over delegation attributes, policies that fail at evaluation, and some
//! the validator refuses), and the delegation files of several owners, all
//! written to disk in tilgang's formats. For each world, requests (delegated,
//! undelegated, reversed and self pairs, unknown orgs, scopes no right gives,
//! repeats) are answered twice:
//!
//! - the fast path, through the public API only: [`fast_load`]
//!   (`load_snapshot`), `Snapshot::with_owner` ([`fast_with_owner`]) and
//!   `engine::decide`, called at least twice per request, in two passes of
//!   different order, with decisions on other snapshots in between, so any
//!   cache is exercised;
//! - the reference, [`Reference`]: plain Cedar `Authorizer::is_authorized`
//!   over *all* entities (Right and Scope entities from `rights.json`, every
//!   delegation of every owner file), built here from the same files without
//!   tilgang's loader.
//!
//! Each fast decision must match: `allowed`, the set of reasons (policy
//! `@id`s; none when errors turned Cedar's allow into a deny) and whether there
//! were errors. Then the world changes (owner files rewritten or removed, new
//! owners; then policies or the catalogue) and is compared again on the new
//! snapshots and, interleaved, on the old one, so a stale cache shows.
//!
//! Settings (environment):
//! - `TILGANG_DIFF_COMPARISONS`: how many fast decisions to compare (default
//!   [`DEFAULT_COMPARISONS`]); each request's Cedar decision is compared
//!   with two or more fast ones. The full run of issue 8, a million:
//!   `TILGANG_DIFF_COMPARISONS=1000000 cargo test --release --test differential`.
//! - `TILGANG_DIFF_SEED`: the master seed (decimal or `0x` hex); random and
//!   printed otherwise. A failure prints the seed and world to replay with.
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
use tilgang::engine::{AccessRequest, decide};
use tilgang::ids::{OrgNumber, Scope};
use tilgang::snapshot::Snapshot;
use tilgang::snapshot::load::{LoadErrors, PolicySource, load_owner, load_snapshot};

/// Fast decisions compared by `cargo test`: about 20 s in a debug build on two
/// cores (a million takes about two minutes there, and 25 s with
/// `--release`; see `TILGANG_DIFF_COMPARISONS`).
const DEFAULT_COMPARISONS: u64 = 250_000;

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

/// One fast decision.
fn fast_decide(snap: &Snapshot, q: &Query) -> Outcome {
    let req = AccessRequest {
        supplier: OrgNumber::parse(&q.supplier_spelled).unwrap(),
        owner: OrgNumber::parse(&q.owner_spelled).unwrap(),
        scope: Scope::parse(&q.scope).unwrap(),
    };
    let d = decide(snap, &req);
    Outcome {
        allowed: d.allowed,
        reasons: d.reasons.into_iter().collect(),
        errored: !d.errors.is_empty(),
        detail: d.errors.join("; "),
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

    fn decide(&self, q: &Query) -> Outcome {
        let fail = |detail: String| Outcome {
            allowed: false,
            reasons: BTreeSet::new(),
            errored: true,
            detail,
        };
        let mut context = vec![(
            "owner".to_string(),
            RestrictedExpression::new_entity_uid(Self::uid(&self.org_type, &q.owner)),
        )];
        let delegation = Self::uid(
            &self.delegation_type,
            &format!("{}/{}", q.owner, q.supplier),
        );
        if self.entities.get(&delegation).is_some() {
            context.push((
                "delegation".to_string(),
                RestrictedExpression::new_entity_uid(delegation),
            ));
        }
        let context = match Context::from_pairs(context) {
            Ok(c) => c,
            Err(e) => return fail(format!("context: {e}")),
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
        for _ in 0..rng.range(1, 7) {
            let p = w.policy(rng);
            w.policies.push(p);
        }
        let mut extra = Vec::new();
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
            extra.push(22 + rng.below(3));
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

    /// One policy from the templates, with a fresh `@id`.
    fn policy(&mut self, rng: &mut Rng) -> Policy {
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
            _ => unreachable!("no template {kind}"),
        };
        Policy {
            text: format!("@id(\"{id}\")\n{body}\n"),
            may_be_refused: refusable,
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

/// One request: the bare org numbers, and as spelled to tilgang (sometimes
/// with the `0192:` prefix).
#[derive(Debug, Clone)]
struct Query {
    supplier: String,
    owner: String,
    supplier_spelled: String,
    owner_spelled: String,
    scope: String,
}

// ---------------------------------------------------------------------------
// Running worlds.

#[derive(Debug, Default)]
struct Tally {
    /// Fast decisions compared with the reference.
    compared: u64,
    /// Reference decisions (distinct request × snapshot content).
    reference: u64,
    allowed: u64,
    denied_with_reasons: u64,
    errored: u64,
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
        self.compared += o.compared;
        self.reference += o.reference;
        self.allowed += o.allowed;
        self.denied_with_reasons += o.denied_with_reasons;
        self.errored += o.errored;
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
}

struct Ctx {
    seed: u64,
    world: u64,
    dir: PathBuf,
    tally: Tally,
    /// Set once a difference was found, so the directory is kept.
    keep: bool,
}

impl Ctx {
    fn differ(&mut self, phase: &str, label: &str, q: &Query, fast: &Outcome, want: &Outcome) {
        self.keep = true;
        self.tally.differences += 1;
        if self.tally.shown.len() >= 3 {
            return;
        }
        let mut m = String::new();
        writeln!(
            m,
            "world {} of seed {} ({phase}, {label}): supplier {} owner {} scope `{}`",
            self.world, self.seed, q.supplier_spelled, q.owner_spelled, q.scope
        )
        .unwrap();
        writeln!(m, "  tilgang: {}", fast.show()).unwrap();
        writeln!(m, "  Cedar:   {}", want.show()).unwrap();
        writeln!(
            m,
            "  files: {} (replay: TILGANG_DIFF_SEED={} TILGANG_DIFF_WORLD={})",
            self.dir.display(),
            self.seed,
            self.world
        )
        .unwrap();
        self.tally.shown.push(m);
    }

    /// Decide every query on every pairing, in two passes (the second in
    /// another order) with the pairings interleaved, and compare.
    fn compare(
        &mut self,
        rng: &mut Rng,
        phase: &str,
        refs: &[&Reference],
        pairings: &[Pairing<'_>],
        queries: &[Query],
    ) {
        let mut wanted: Vec<Vec<Option<Outcome>>> = vec![vec![None; refs.len()]; queries.len()];
        let mut order: Vec<usize> = (0..queries.len()).collect();
        for pass in 0..2 {
            if pass == 1 {
                rng.shuffle(&mut order);
            }
            for &i in &order {
                let q = &queries[i];
                for p in pairings {
                    let want = wanted[i][p.reference]
                        .get_or_insert_with(|| {
                            self.tally.reference += 1;
                            let o = refs[p.reference].decide(q);
                            if o.allowed {
                                self.tally.allowed += 1;
                            } else if !o.reasons.is_empty() {
                                self.tally.denied_with_reasons += 1;
                            }
                            if o.errored {
                                self.tally.errored += 1;
                            }
                            o
                        })
                        .clone();
                    let fast = fast_decide(p.snap, q);
                    self.tally.compared += 1;
                    if !fast.same(&want) {
                        self.differ(phase, p.label, q, &fast, &want);
                    }
                }
            }
        }
    }
}

/// How many requests each phase of a world asks.
const QUERIES: usize = 1000;

/// Generate world `index` of `seed` in a temporary directory and compare in
/// three phases. The directory is kept when anything differed.
fn run_world(seed: u64, index: u64, literal_delegations: bool) -> Tally {
    let tmp = tempfile::tempdir().unwrap();
    let mut ctx = Ctx {
        seed,
        world: index,
        dir: tmp.path().to_path_buf(),
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
             (replay: TILGANG_DIFF_SEED={seed} TILGANG_DIFF_WORLD={index})",
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
    let policies = ctx.dir.join("policies");
    let data = ctx.dir.join("data");
    let mut world = World::generate(&mut rng, ctx.world, literal_delegations);
    world.write_policies(&policies);
    world.write_data(&data);

    // Phase 1: as generated.
    let Some((snap1, ref1)) = load_both(&world, &policies, &data)? else {
        ctx.tally.refused += 1;
        return Ok(());
    };
    let q1 = world.queries(&mut rng, QUERIES);
    let only = |label, snap, reference| Pairing {
        label,
        snap,
        reference,
    };
    ctx.compare(
        &mut rng,
        "initial",
        &[&ref1],
        &[only("load_snapshot", &snap1, 0)],
        &q1,
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
    ctx.compare(
        &mut rng,
        "owner files changed",
        &[&ref1, &ref2],
        &[
            only("load_snapshot", &snap2, 1),
            only("the old snapshot", &snap1, 0),
            only("with_owner", &incremental, 1),
        ],
        &q2,
    );

    // Phase 3: the policies or the catalogue change.
    world.change_policies(&mut rng);
    world.write_policies(&policies);
    let Some((snap3, ref3)) = load_both(&world, &policies, &data)? else {
        ctx.tally.refused += 1;
        return Ok(());
    };
    let mut q3 = world.queries(&mut rng, QUERIES);
    q3.extend(rng.sample(&q2, QUERIES / 4));
    ctx.compare(
        &mut rng,
        "policies changed",
        &[&ref2, &ref3],
        &[
            only("load_snapshot", &snap3, 1),
            only("the old snapshot", &snap2, 0),
        ],
        &q3,
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

/// Run worlds 0, 1, 2, ... of `seed` on `threads` threads until `target` fast
/// decisions were compared (or only `only`), stopping early at a difference.
fn run(seed: u64, target: u64, only: Option<u64>, threads: usize, literal: bool) -> Tally {
    let next = AtomicU64::new(only.unwrap_or(0));
    let compared = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let total = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    if compared.load(Ordering::Relaxed) >= target || failed.load(Ordering::Relaxed)
                    {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if only.is_some_and(|o| i != o) {
                        break;
                    }
                    let t = run_world(seed, i, literal);
                    compared.fetch_add(t.compared, Ordering::Relaxed);
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
    format!(
        "seed {seed}: {} fast decisions compared with {} Cedar decisions in {} worlds \
         ({} refused by the validator as the generator allowed) in {:.1} s; \
         Cedar said allow {}, deny with reasons {}, errors {}",
        t.compared,
        t.reference,
        t.worlds,
        t.refused,
        elapsed.as_secs_f64(),
        t.allowed,
        t.denied_with_reasons,
        t.errored,
    )
}

#[test]
fn tilgang_decides_exactly_as_cedar_over_all_entities() {
    let seed = env_u64("TILGANG_DIFF_SEED").unwrap_or_else(fresh_seed);
    let target = env_u64("TILGANG_DIFF_COMPARISONS").unwrap_or(DEFAULT_COMPARISONS);
    let only = env_u64("TILGANG_DIFF_WORLD");
    let threads = env_u64("TILGANG_DIFF_THREADS").map_or_else(
        || std::thread::available_parallelism().map_or(2, usize::from),
        |n| n as usize,
    );
    let literal = std::env::var("TILGANG_DIFF_LITERAL_DELEGATIONS").is_ok_and(|v| v == "1");
    eprintln!("differential: seed {seed} (replay with TILGANG_DIFF_SEED={seed})");
    let started = Instant::now();
    let t = run(seed, target, only, threads.max(1), literal);
    let summary = report(seed, &t, started.elapsed());
    eprintln!("differential: {summary}");
    assert!(
        t.differences == 0,
        "{} difference(s) between tilgang and plain Cedar; {summary}\n{}",
        t.differences,
        t.shown.join("\n")
    );
    if only.is_none() {
        assert!(t.compared >= target, "{summary}");
    }
    // The generator reaches every outcome, so a drift in it that made every
    // answer the same (and so trivially equal) would fail here.
    if t.worlds >= 8 {
        assert!(
            t.allowed > 0 && t.denied_with_reasons > 0 && t.errored > 0 && t.refused > 0,
            "{summary}"
        );
        assert!(t.reference * 4 > t.compared, "{summary}");
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
    let want = reference.decide(&q);
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
