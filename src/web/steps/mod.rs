//! One handler per URL of the owner's page, and what they share: the visit
//! (session, language, who is logged in, who they act for), the CSRF check
//! on every POST, and the one way a write is done ([`Web::write`], the admin
//! store's operation with the same metrics and audit as the gRPC admin API).
//! Every state change is a POST answered with a redirect (POST-redirect-GET);
//! a GET changes nothing but the session's language.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;

use super::i18n::{Lang, Texts};
use super::session::{Draft, LoggedIn, Receipt, ReceiptKind, SessionId, random_hex, same_secret};
use super::views::{self, FieldError, Frame, Row};
use super::{STYLESHEET, STYLESHEET_PATH, Web};

mod account;
mod add;
mod change;
mod lists;
mod visit;

use crate::catalogue::Right;
use crate::ids::{IdError, OrgNumber, PersonId, RightId};
use crate::store::audit::{Actor, ActorAuth, Channel, RefusalRecord};
use crate::store::{DelegationStore, DelegationView, ListFilter, Position, StoreError};
use crate::telemetry::metrics::AdminKind;
use crate::telemetry::{AdminFailure, Who};
use account::{
    choose_org, choose_org_page, login_dev, login_page, logout, oidc_callback, oidc_login,
};
use add::{add_page, add_submit, confirm_page, confirm_submit, rights_page, rights_submit};
use change::{edit_page, edit_submit, receipt, undo};
#[cfg(test)]
use lists::before_prefix;
use lists::{overview, received};

/// Suppliers per overview page.
const PAGE: usize = 50;

pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login_page).post(login_dev))
        .route("/logout", post(logout))
        .route("/auth/login", get(oidc_login))
        .route("/auth/callback", get(oidc_callback))
        .route("/org", get(choose_org_page).post(choose_org))
        .route("/overview", get(overview))
        .route("/add", get(add_page).post(add_submit))
        .route("/add/rights", get(rights_page).post(rights_submit))
        .route("/add/confirm", get(confirm_page).post(confirm_submit))
        .route("/receipt/{key}", get(receipt))
        .route("/edit/{supplier}", get(edit_page).post(edit_submit))
        .route("/undo/{key}", post(undo))
        .route("/received", get(received))
        .route(STYLESHEET_PATH.as_str(), get(stylesheet))
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(
            web.clone(),
            security_headers,
        ))
        .with_state(web)
}

/// Headers every answer carries: no framing, no inline script or style, no
/// referrer beyond the site; pages are never cached (they show personal
/// data), the content-named stylesheet is, for a year.
async fn security_headers(State(web): State<Arc<Web>>, mut r: Response) -> Response {
    let h = r.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(web.csp.clone());
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, "no-store");
    r
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A form's fields, in order, repeated names kept.
type Fields = Vec<(String, String)>;

/// A page answered before a handler got to its own (login, a refusal):
/// boxed, since a `Response` is large next to what succeeds.
type Early = Box<Response>;

/// One request's view of its session.
struct Visit {
    sid: SessionId,
    /// A `Set-Cookie` value when the session is new or its id changed.
    set_cookie: Option<String>,
    lang: Lang,
    csrf: String,
    login: Option<LoggedIn>,
    acting_for: Option<OrgNumber>,
    path: String,
    /// The browser named a session that has ended.
    expired: bool,
}

impl Visit {
    fn t(&self) -> &'static Texts {
        self.lang.texts()
    }
}

#[derive(Debug, Deserialize, Default)]
struct Common {
    lang: Option<String>,
}

/// Rights of the catalogue, each with whether `held` has it.
fn marked<'a>(catalogue: &'a [Right], held: &[RightId]) -> Vec<(&'a Right, bool)> {
    catalogue
        .iter()
        .map(|r| (r, held.contains(&r.id)))
        .collect()
}

fn named<'a>(catalogue: &'a [Right], ids: &[RightId]) -> Vec<&'a Right> {
    catalogue.iter().filter(|r| ids.contains(&r.id)).collect()
}

/// A stamp of what the edit form showed: the delegation's rights and when it
/// last changed. A different stamp at submit means someone else changed it.
fn version_of(view: &DelegationView) -> String {
    let rights: Vec<&str> = view.rights.iter().map(RightId::as_str).collect();
    let text = format!("{}|{}", view.updated_at, rights.join(","));
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

/// The fields of an `application/x-www-form-urlencoded` body, in order,
/// repeated names kept (checkboxes). A malformed escape stays as written.
fn fields(raw: &[u8]) -> Fields {
    let decode = |s: &[u8]| -> String {
        let plus: Vec<u8> = s
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_encoding::percent_decode(&plus)
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|b| *b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// An organisation number as a person types it: spaces and dots removed.
fn typed_org(typed: &str, t: &Texts) -> Result<OrgNumber, &'static str> {
    let bare: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .collect();
    match OrgNumber::parse(&bare) {
        Ok(o) => Ok(o),
        Err(IdError::Empty) => Err(t.err_org_empty),
        Err(IdError::OrgChecksum(_)) => Err(t.err_org_checksum),
        Err(_) => Err(t.err_org_format),
    }
}

async fn root(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let v = web.visit(&headers, "/", None);
    web.redirect(&v, "/overview")
}

async fn not_found(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let v = web.visit(&headers, "/", None);
    let t = v.t();
    web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_send_them() {
        let f = fields(b"csrf=ab%2Fc&org=974+760+673&right=a&right=b&empty=&bad=%zz&cut=%4");
        assert_eq!(field(&f, "csrf"), Some("ab/c"));
        assert_eq!(field(&f, "org"), Some("974 760 673"));
        assert_eq!(all(&f, "right"), ["a", "b"]);
        assert_eq!(field(&f, "empty"), Some(""));
        assert_eq!(field(&f, "bad"), Some("%zz"));
        assert_eq!(field(&f, "cut"), Some("%4"));
    }

    #[test]
    fn a_prefix_starts_after_the_last_number_below_it() {
        let before = before_prefix("97476").unwrap();
        assert!(before.as_str() < "974760000", "{before}");
        // No valid number lies between it and the prefix's lowest number.
        let low: u64 = before.as_str().parse().unwrap();
        for n in low + 1..974_760_000 {
            assert!(OrgNumber::parse(&format!("{n:09}")).is_err(), "{n}");
        }
        assert_eq!(before_prefix(""), None);
        assert_eq!(before_prefix("0000"), None);
        assert_eq!(before_prefix("1234567890"), None);
    }

    #[test]
    fn typed_org_numbers() {
        let t = Lang::Nb.texts();
        assert_eq!(
            typed_org("974 760 673", t).map(|o| o.to_string()),
            Ok("974760673".into())
        );
        assert_eq!(
            typed_org("974.760.673", t).map(|o| o.to_string()),
            Ok("974760673".into())
        );
        assert_eq!(typed_org("", t), Err(t.err_org_empty));
        assert_eq!(typed_org("12345", t), Err(t.err_org_format));
        assert_eq!(typed_org("974760674", t), Err(t.err_org_checksum));
    }
}
