//! The decision: (snapshot, request) → allow/deny with reasons. Pure: no I/O, no
//! proto types, no clocks. Every failure on this path is a deny with the error
//! reported, never an allow.
//!
//! Per request it assembles a small entity slice (the catalogue's Right and Scope
//! entities plus the one delegation for the pair, built from its compact
//! record), so the cost does not grow with the number of delegations stored.
//!
//! A gateway decision is a pure function of (policies, the pair's delegation
//! record, supplier, owner, scope), so it is memoised ([`Memo`]): the memo
//! belongs to one policy bundle (new policies, new memo) and its key holds the
//! record's process-unique id (a changed delegation is a new record), so a
//! memoised answer is never used once anything it was made from has changed.
//! Calls through Envoy (with `context.http` and `context.token`) are
//! memoised too, under the parts of the call the policies can read
//! ([`reads`]): the request's path is in the key only when a policy reads it.

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{Authorizer, Context, Decision as CedarDecision, Request, RestrictedExpression};

use crate::ids::{OrgNumber, PersonId, Scope};
use crate::model::{
    ACTION_TYPE, DELEGATION_TYPE, ORG_TYPE, PERSON_TYPE, RIGHT_TYPE, SCOPE_TYPE, uid,
};
use crate::snapshot::{DelegationRecord, PolicyBundle, Snapshot};

mod memo;
pub mod reads;

pub use memo::Memo;

/// A gateway's question: may `supplier` use `scope` on `owner`'s API?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub supplier: OrgNumber,
    pub owner: OrgNumber,
    pub scope: Scope,
}

/// What a gateway that speaks HTTP saw of a call (Envoy `ext_authz`): the
/// request and the caller's token. Cedar sees it as `context.http` and
/// `context.token`, so policy authors can write rules over routes and claims;
/// the engine itself draws no conclusion from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    pub method: &'a str,
    /// The request path, without the query string.
    pub path: &'a str,
    /// The route template the path matched.
    pub route: &'a str,
    pub token: Token,
}

/// The token's claims as Cedar sees them (`context.token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub consumer: OrgNumber,
    pub supplier: Option<OrgNumber>,
    pub scopes: Vec<Scope>,
    pub delegation_source: Option<String>,
    pub client_id: Option<String>,
}

/// The answer, with the ids of the policies that decided and any evaluation errors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub allowed: bool,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
}

impl Decision {
    fn deny_with(error: String) -> Self {
        Self {
            allowed: false,
            reasons: Vec::new(),
            errors: vec![error],
        }
    }
}

/// The Cedar action gateways' checks use.
pub const CALL_API: &str = "callApi";
/// The Cedar action admin writes are checked against.
pub const ADMINISTER: &str = "administerDelegations";

fn evaluate(
    bundle: &PolicyBundle,
    principal: cedar_policy::EntityUid,
    action: &str,
    resource: cedar_policy::EntityUid,
    context: Vec<(String, RestrictedExpression)>,
    extra: Option<Result<cedar_policy::Entity, String>>,
) -> Decision {
    let context = match Context::from_pairs(context) {
        Ok(c) => c,
        Err(e) => return Decision::deny_with(format!("context: {e}")),
    };
    let request = match Request::new(
        principal,
        uid(ACTION_TYPE, action),
        resource,
        context,
        Some(&bundle.schema),
    ) {
        Ok(r) => r,
        Err(e) => return Decision::deny_with(format!("request does not fit the schema: {e}")),
    };
    // The shared part is used as is; only a request with a delegation pays for
    // a copy. Entities were validated against the schema when loaded.
    let with_extra;
    let entities = match extra {
        None => &bundle.base_entities,
        Some(Err(e)) => return Decision::deny_with(format!("delegation: {e}")),
        Some(Ok(e)) => match bundle.base_entities.clone().add_entities([e], None) {
            Ok(all) => {
                with_extra = all;
                &with_extra
            }
            Err(e) => return Decision::deny_with(format!("entities: {e}")),
        },
    };
    let response = Authorizer::new().is_authorized(&request, &bundle.policies, entities);
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| e.to_string())
        .collect();
    let allowed = response.decision() == CedarDecision::Allow && errors.is_empty();
    // When errors turn Cedar's allow into a deny, no policy determined the deny:
    // reporting the permits that matched would mislead whoever reads the reasons.
    let reasons = if response.decision() == CedarDecision::Allow && !allowed {
        Vec::new()
    } else {
        response
            .diagnostics()
            .reason()
            .map(|p| p.to_string())
            .collect()
    };
    Decision {
        allowed,
        reasons,
        errors,
    }
}

/// The Cedar entity of one delegation, as the owner file holds it. tilgang's
/// own attributes are built directly; a record with attributes a policy
/// author's schema adds goes through Cedar's JSON parser with the schema,
/// exactly as the file was checked at load.
fn delegation_entity(
    bundle: &PolicyBundle,
    r: &DelegationRecord,
) -> Result<cedar_policy::Entity, String> {
    if !r.extra_attrs.is_empty() {
        return cedar_policy::Entity::from_json_value(r.to_json(), Some(&bundle.schema))
            .map_err(|e| e.to_string());
    }
    let text = |s: &str| RestrictedExpression::new_string(s.to_string());
    let org = |o: &OrgNumber| RestrictedExpression::new_entity_uid(uid(ORG_TYPE, o.as_str()));
    let attrs = HashMap::from([
        ("owner".to_string(), org(&r.owner)),
        ("supplier".to_string(), org(&r.supplier)),
        (
            "rights".to_string(),
            RestrictedExpression::new_set(
                r.rights
                    .iter()
                    .map(|id| RestrictedExpression::new_entity_uid(uid(RIGHT_TYPE, id.as_str()))),
            ),
        ),
        ("delegatedBy".to_string(), text(&r.delegated_by)),
        ("createdAt".to_string(), text(&r.created_at)),
        ("updatedAt".to_string(), text(&r.updated_at)),
    ]);
    let id = format!("{}/{}", r.owner, r.supplier);
    cedar_policy::Entity::new(uid(DELEGATION_TYPE, &id), attrs, HashSet::new())
        .map_err(|e| e.to_string())
}

/// Decide a gateway request.
pub fn decide(snap: &Snapshot, req: &AccessRequest) -> Decision {
    decide_call(snap, req, None)
}

/// `context.http` and `context.token` for a call.
fn call_context(call: &Call<'_>) -> [(String, RestrictedExpression); 2] {
    let text = |s: &str| RestrictedExpression::new_string(s.to_string());
    let org = |o: &OrgNumber| RestrictedExpression::new_entity_uid(uid(ORG_TYPE, o.as_str()));
    let http = RestrictedExpression::new_record([
        ("method".to_string(), text(call.method)),
        ("path".to_string(), text(call.path)),
        ("route".to_string(), text(call.route)),
    ]);
    let t = &call.token;
    let mut token = vec![
        (
            "scopes".to_string(),
            RestrictedExpression::new_set(
                t.scopes
                    .iter()
                    .map(|s| RestrictedExpression::new_entity_uid(uid(SCOPE_TYPE, s.as_str()))),
            ),
        ),
        ("consumer".to_string(), org(&t.consumer)),
    ];
    // Optional attributes are left out, not empty, so `has` means "the token
    // said so".
    if let Some(s) = &t.supplier {
        token.push(("supplier".to_string(), org(s)));
    }
    if let Some(d) = &t.delegation_source {
        token.push(("delegationSource".to_string(), text(d)));
    }
    if let Some(c) = &t.client_id {
        token.push(("clientId".to_string(), text(c)));
    }
    // Records of distinct keys cannot fail to build; if one did, a string in
    // its place fails the schema check of the request: a deny, never an allow.
    let token = RestrictedExpression::new_record(token)
        .unwrap_or_else(|_| RestrictedExpression::new_string(String::new()));
    let http = http.unwrap_or_else(|_| RestrictedExpression::new_string(String::new()));
    [("http".to_string(), http), ("token".to_string(), token)]
}

/// Decide a gateway request, with what the gateway saw of the call when it
/// told (Envoy `ext_authz`).
pub fn decide_call(snap: &Snapshot, req: &AccessRequest, call: Option<&Call<'_>>) -> Decision {
    if let Some(why) = snap.withheld() {
        // The delegations may be out of date (a revocation may not have
        // reached this replica): decide as if there were none, and say why
        // when that denies.
        let mut d = decide_uncached(&snap.policies, req, None, call);
        if !d.allowed {
            d.errors.push(why.to_string());
        }
        return d;
    }
    let record = snap.delegation(&req.owner, &req.supplier);
    let bundle = &snap.policies;
    bundle.memo.decide(req, record, call, || {
        decide_uncached(bundle, req, record, call)
    })
}

/// Ask Cedar: the request, with the pair's delegation in the context.
fn decide_uncached(
    bundle: &PolicyBundle,
    req: &AccessRequest,
    record: Option<&DelegationRecord>,
    call: Option<&Call<'_>>,
) -> Decision {
    let owner_uid = uid(ORG_TYPE, req.owner.as_str());
    let mut context = vec![(
        "owner".to_string(),
        RestrictedExpression::new_entity_uid(owner_uid),
    )];
    if let Some(call) = call {
        context.extend(call_context(call));
    }
    if record.is_some() {
        let id = format!("{}/{}", req.owner, req.supplier);
        context.push((
            "delegation".to_string(),
            RestrictedExpression::new_entity_uid(uid(DELEGATION_TYPE, &id)),
        ));
    }
    evaluate(
        bundle,
        uid(ORG_TYPE, req.supplier.as_str()),
        CALL_API,
        uid(SCOPE_TYPE, req.scope.as_str()),
        context,
        record.map(|r| delegation_entity(bundle, r)),
    )
}

/// The admin decision, with the roles the actor holds for the owner (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminDecision {
    pub decision: Decision,
    pub roles: BTreeSet<String>,
}

/// May `actor` change what `owner` delegates? Decided by the policies (`admin.cedar`
/// ships the key-role rule), from the roles `roles.json` gives the actor for `owner`.
pub fn may_administer(snap: &Snapshot, actor: &PersonId, owner: &OrgNumber) -> AdminDecision {
    let roles = snap.roles.of(owner, actor);
    let context = vec![(
        "roles".to_string(),
        RestrictedExpression::new_set(
            roles
                .iter()
                .map(|r| RestrictedExpression::new_string(r.clone())),
        ),
    )];
    let decision = evaluate(
        &snap.policies,
        uid(PERSON_TYPE, actor.as_str()),
        ADMINISTER,
        uid(ORG_TYPE, owner.as_str()),
        context,
        None,
    );
    AdminDecision { decision, roles }
}
