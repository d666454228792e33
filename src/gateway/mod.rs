//! What an HTTP gateway tells tilgang, turned into the engine's question: the
//! route table names the scope a request needs ([`routes`]), the token's
//! claims name who calls for whom ([`claims`]), and [`prepare`] puts them
//! together as an [`AccessRequest`] with the [`Call`] Cedar sees in its
//! context. No proto or HTTP library types here (the ext_authz adapter in
//! `grpc` does that translation), no I/O, and no decision: Cedar decides.

pub mod claims;
pub mod routes;

use crate::engine::{AccessRequest, Call, Token};
use claims::Claims;
use routes::{NoRoute, RouteTable, without_query};

/// The engine's question for an HTTP call: the supplier (or the owner, when
/// the token has no `supplier`) asks to use the route's scope on the
/// consumer's API.
pub fn prepare<'a>(
    routes: &'a RouteTable,
    method: &'a str,
    path: &'a str,
    claims: Claims,
) -> Result<(AccessRequest, Call<'a>), NoRoute> {
    let route = routes.lookup(method, path)?;
    let request = AccessRequest {
        supplier: claims.supplier.unwrap_or(claims.consumer),
        owner: claims.consumer,
        scope: route.scope.clone(),
    };
    let call = Call {
        method,
        path: without_query(path),
        route: &route.path,
        token: Token {
            consumer: claims.consumer,
            supplier: claims.supplier,
            scopes: claims.scopes,
            delegation_source: claims.delegation_source,
            client_id: claims.client_id,
        },
    };
    Ok((request, call))
}
