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
use crate::catalogue::Right;
use crate::ids::{IdError, OrgNumber, PersonId, RightId};
use crate::store::audit::{Actor, ActorAuth, Channel, RefusalRecord};
use crate::store::{DelegationStore, DelegationView, ListFilter, Position, StoreError};
use crate::telemetry::metrics::{AdminKind, AdminResult};
use crate::telemetry::{AdminFailure, Who};

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

impl Web {
    fn cookie_name(&self) -> &'static str {
        if self.config.secure() {
            "__Host-tilgang"
        } else {
            "tilgang"
        }
    }

    fn cookie(&self, sid: &SessionId) -> String {
        let secure = if self.config.secure() { "; Secure" } else { "" };
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name(),
            sid.as_str()
        )
    }

    fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| SessionId::parse(v))
    }

    /// The visit of a GET: its live session, or a new one.
    fn visit(&self, headers: &HeaderMap, path: &str, lang: Option<&str>) -> Visit {
        let now = Instant::now();
        let chosen = lang.and_then(Lang::parse);
        let accepted = Lang::from_accept(
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        );
        let read = |s: &mut super::session::Session| {
            if chosen.is_some() {
                s.lang = chosen;
            }
            (
                s.lang.unwrap_or(accepted),
                s.csrf.clone(),
                s.login.clone(),
                s.acting_for,
            )
        };
        let cookie = self.session_id(headers);
        let existing = cookie
            .clone()
            .and_then(|sid| self.sessions.with(&sid, now, read).map(|r| (sid, r)));
        // A session id the browser still has but that ended (idle, too old,
        // or this process restarted): the person is told, not just shown
        // the login page.
        let expired = cookie.is_some() && existing.is_none();
        let (sid, set_cookie, (lang, csrf, login, acting_for)) = match existing {
            Some((sid, r)) => (sid, None, r),
            None => {
                let sid = self.sessions.create(now);
                let r = self
                    .sessions
                    .with(&sid, now, read)
                    .unwrap_or_else(|| (chosen.unwrap_or(accepted), String::new(), None, None));
                let cookie = self.cookie(&sid);
                (sid, Some(cookie), r)
            }
        };
        Visit {
            sid,
            set_cookie,
            lang,
            csrf,
            login,
            acting_for,
            path: path.to_string(),
            expired,
        }
    }

    /// The visit of a POST: an existing live session whose CSRF token the
    /// form carries, from a page of this site (`Sec-Fetch-Site`, `Origin`).
    fn posted(&self, headers: &HeaderMap, path: &str, token: Option<&str>) -> Result<Visit, Early> {
        let live = self
            .session_id(headers)
            .is_some_and(|sid| self.sessions.with(&sid, Instant::now(), |_| ()).is_some());
        let v = self.visit(headers, path, None);
        if !live {
            return Err(Box::new(self.to_login(
                &v,
                Some(v.t().err_session_expired),
                None,
            )));
        }
        let site = headers.get("sec-fetch-site").and_then(|h| h.to_str().ok());
        let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
        let same_site = site.is_none_or(|s| s == "same-origin" || s == "none");
        let same_origin = origin.is_none_or(|o| o == self.config.origin());
        let token_ok = token.is_some_and(|t| same_secret(t, &v.csrf));
        if !(same_site && same_origin && token_ok) {
            tracing::info!(
                path,
                token = token_ok,
                same_site,
                same_origin,
                "web: a form was refused (CSRF token or origin)"
            );
            let t = v.t();
            return Err(Box::new(self.message(
                &v,
                StatusCode::FORBIDDEN,
                t.title,
                t.err_form_expired,
            )));
        }
        Ok(v)
    }

    fn frame<'a>(&'a self, v: &'a Visit, many_orgs: bool) -> Frame<'a> {
        let t = v.t();
        let user = v.login.as_ref().map(|l| {
            let who = l.name.clone().unwrap_or_else(|| l.person.to_string());
            let acting = v.acting_for.map(|o| {
                let org = match self.name_of(&o) {
                    Some(name) => format!("{name} ({})", views::spaced_unbroken(&o)),
                    None => views::spaced_unbroken(&o),
                };
                super::i18n::fill(t.acting_for, &[("name", &who), ("org", &org)])
            });
            (who, acting)
        });
        Frame {
            t,
            lang: v.lang,
            path: &v.path,
            dev_mode: self.config.dev_mode,
            stylesheet: STYLESHEET_PATH.as_str(),
            user,
            csrf: &v.csrf,
            many_orgs,
        }
    }

    fn html(&self, v: &Visit, status: StatusCode, markup: Markup) -> Response {
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response();
        if let Some(c) = &v.set_cookie
            && let Ok(c) = HeaderValue::from_str(c)
        {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        r
    }

    fn message(&self, v: &Visit, status: StatusCode, title: &str, text: &str) -> Response {
        let t = v.t();
        let on = v.login.as_ref().map(|_| ("/overview", t.back_to_overview));
        let page = views::message(&self.frame(v, false), title, text, on);
        self.html(v, status, page)
    }

    fn redirect(&self, v: &Visit, to: &str) -> Response {
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
        if let Some(c) = &v.set_cookie
            && let Ok(c) = HeaderValue::from_str(c)
        {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        r
    }

    /// The login page (with `notice`), remembering where to return.
    fn to_login(&self, v: &Visit, notice: Option<&str>, return_to: Option<&str>) -> Response {
        self.sessions.with(&v.sid, Instant::now(), |s| {
            s.return_to = return_to.map(str::to_string);
            s.login = None;
        });
        let frame = self.frame(v, false);
        let page = if self.config.dev_mode {
            views::login_dev(&frame, notice, &[], "")
        } else {
            views::login_oidc(&frame, notice)
        };
        self.html(v, StatusCode::UNAUTHORIZED, page)
    }

    /// The organisations `person` may act for: those `roles.json` gives a
    /// role for and the admin policy lets them administer.
    fn orgs_of(&self, person: &PersonId) -> Vec<OrgNumber> {
        let snap = self.store.snapshot();
        snap.roles
            .orgs_of(person)
            .into_iter()
            .filter(|o| {
                crate::engine::may_administer(&snap, person, o)
                    .decision
                    .allowed
            })
            .collect()
    }

    /// Who is logged in and which organisation they act for, or the page
    /// to show instead (login, choose an organisation, no key role).
    fn acting(&self, v: &mut Visit) -> Result<(LoggedIn, OrgNumber), Early> {
        let Some(login) = v.login.clone() else {
            let path = v.path.clone();
            let notice = v.expired.then_some(v.t().err_session_expired);
            return Err(Box::new(self.to_login(v, notice, Some(&path))));
        };
        let orgs = self.orgs_of(&login.person);
        if let Some(o) = v.acting_for.filter(|o| orgs.contains(o)) {
            return Ok((login, o));
        }
        match orgs.as_slice() {
            [] => {
                let t = v.t();
                Err(Box::new(self.message(
                    v,
                    StatusCode::FORBIDDEN,
                    t.title,
                    t.err_no_key_role,
                )))
            }
            [one] => {
                let one = *one;
                self.sessions
                    .with(&v.sid, Instant::now(), |s| s.acting_for = Some(one));
                v.acting_for = Some(one);
                Ok((login, one))
            }
            _ => Err(Box::new(self.redirect(v, "/org"))),
        }
    }

    /// The first steps of a page that needs a person acting for an
    /// organisation: the visit, who, and for whom; or the page instead.
    fn page_step(
        &self,
        headers: &HeaderMap,
        path: &str,
        lang: Option<&str>,
    ) -> Result<(Visit, LoggedIn, OrgNumber), Early> {
        let mut v = self.visit(headers, path, lang);
        let (login, org) = self.acting(&mut v)?;
        Ok((v, login, org))
    }

    /// The same for a form: its fields, checked (session, CSRF, origin).
    fn form_step(
        &self,
        headers: &HeaderMap,
        path: &str,
        raw: &[u8],
    ) -> Result<(Fields, Visit, LoggedIn, OrgNumber), Early> {
        let f = fields(raw);
        let mut v = self.posted(headers, path, field(&f, "csrf"))?;
        let (login, org) = self.acting(&mut v)?;
        Ok((f, v, login, org))
    }

    fn many_orgs(&self, login: &LoggedIn) -> bool {
        self.orgs_of(&login.person).len() > 1
    }

    /// Do a write as the admin API does: on the blocking pool, counted in
    /// the metrics, and a refusal (forbidden, unknown undo token, roles
    /// invalid) put on record in the audit log, marked `channel: web`.
    async fn write<T: Send + 'static>(
        &self,
        kind: AdminKind,
        login: &LoggedIn,
        owner: OrgNumber,
        supplier: Option<OrgNumber>,
        rights: Vec<String>,
        f: impl FnOnce(&DelegationStore, Actor<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        let person = login.person.clone();
        let auth = if login.verified {
            ActorAuth::Login
        } else {
            ActorAuth::Unverified
        };
        let done = tokio::task::spawn_blocking(move || {
            f(
                &store,
                Actor {
                    person: &person,
                    auth,
                    service: None,
                    channel: Some(Channel::Web),
                },
            )
        })
        .await;
        let who = Who {
            actor: Some(&login.person),
            owner: Some(&owner),
        };
        match done {
            Ok(Ok(v)) => {
                let revision = self.store.snapshot().revision().to_string();
                self.telemetry.admin_ok(kind, &revision);
                Ok(v)
            }
            Ok(Err(e)) => {
                let failure = AdminFailure::Store(&e);
                self.telemetry.admin_failed(kind, who, failure);
                if let (_, Some(reason)) = AdminResult::of(&e)
                    && let Some(not_recorded_before) = self.store.admit_refusal(false)
                {
                    let record = RefusalRecord {
                        time: DelegationStore::now_rfc3339(),
                        refused: kind.as_str().to_string(),
                        reason: reason.as_str().to_string(),
                        actor: Some(login.person.to_string()),
                        actor_auth: auth,
                        service: None,
                        channel: Some(Channel::Web),
                        requested_actor: None,
                        owner: Some(owner.to_string()),
                        supplier: supplier.map(|s| s.to_string()),
                        rights,
                        peer: None,
                        detail: failure.to_string(),
                        not_recorded_before,
                    };
                    let store = self.store.clone();
                    let written =
                        tokio::task::spawn_blocking(move || store.record_refusal(&record)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        tracing::error!("web: could not write a refused call to the audit log");
                    }
                }
                Err(e)
            }
            Err(_) => {
                self.telemetry.admin_failed(kind, who, AdminFailure::Task);
                Err(StoreError::Storage(std::io::Error::other(
                    "the write task failed",
                )))
            }
        }
    }

    /// The page for a store error, in the person's words.
    fn store_error(&self, v: &Visit, e: &StoreError) -> Response {
        let t = v.t();
        let (status, text) = match e {
            StoreError::Forbidden { .. } => (StatusCode::FORBIDDEN, t.err_no_key_role),
            StoreError::UnknownToken { .. } => (StatusCode::NOT_FOUND, t.err_undo_unknown),
            StoreError::TokenExpired { .. } | StoreError::TokenUsed { .. } => {
                (StatusCode::CONFLICT, t.err_undo_too_late)
            }
            StoreError::NothingDelegated { .. } | StoreError::NotDelegated { .. } => {
                (StatusCode::CONFLICT, t.err_changed_elsewhere)
            }
            StoreError::ConcurrentEdit { .. } | StoreError::NothingToRestore { .. } => {
                (StatusCode::CONFLICT, t.err_changed_elsewhere)
            }
            StoreError::SameParty { .. } => (StatusCode::UNPROCESSABLE_ENTITY, t.err_org_own),
            StoreError::NoRights { .. } | StoreError::UnknownRight { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, t.err_nothing_chosen)
            }
            _ => (StatusCode::SERVICE_UNAVAILABLE, t.err_unavailable),
        };
        self.message(v, status, t.title, text)
    }

    fn catalogue(&self) -> Vec<Right> {
        self.store.rights()
    }

    /// The one delegation `owner` has given `supplier`, if any.
    fn delegation(&self, owner: OrgNumber, supplier: OrgNumber) -> Option<DelegationView> {
        let mut found = None;
        let filter = ListFilter {
            owner: Some(owner),
            supplier: Some(supplier),
        };
        let _ = self
            .store
            .scan(crate::store::Reader::All, filter, None, |v| {
                found = Some(v);
                ControlFlow::Break(())
            });
        found
    }
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

async fn login_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let v = web.visit(&headers, "/login", q.lang.as_deref());
    let frame = web.frame(&v, false);
    let page = if web.config.dev_mode {
        views::login_dev(&frame, None, &[], "")
    } else {
        views::login_oidc(&frame, None)
    };
    web.html(&v, StatusCode::OK, page)
}

/// Development mode only: log in as whoever is typed, on a new session id.
async fn login_dev(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawForm(raw): RawForm,
) -> Response {
    let f = fields(&raw);
    let v = match web.posted(&headers, "/login", field(&f, "csrf")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let t = v.t();
    if !web.config.dev_mode {
        return web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_not_found);
    }
    let typed = field(&f, "person").unwrap_or_default().trim();
    let Ok(person) = PersonId::parse(typed) else {
        let errors = [FieldError {
            field: "person",
            message: t.err_person_id,
        }];
        let page = views::login_dev(&web.frame(&v, false), None, &errors, typed);
        return web.html(&v, StatusCode::UNPROCESSABLE_ENTITY, page);
    };
    log_in(
        &web,
        v,
        LoggedIn {
            person,
            name: None,
            verified: false,
            id_token: None,
        },
    )
}

/// Put `login` on a new session id and go where the person was going.
fn log_in(web: &Web, v: Visit, login: LoggedIn) -> Response {
    let now = Instant::now();
    let Some(sid) = web.sessions.rotate(&v.sid, now) else {
        let t = v.t();
        return web.to_login(&v, Some(t.err_session_expired), None);
    };
    let to = web
        .sessions
        .with(&sid, now, |s| {
            s.login = Some(login);
            s.acting_for = None;
            s.draft = None;
            s.login_refused = false;
            s.return_to.take()
        })
        .flatten()
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/overview".to_string());
    let v = Visit {
        set_cookie: Some(web.cookie(&sid)),
        sid,
        ..v
    };
    web.redirect(&v, &to)
}

async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawForm(raw): RawForm,
) -> Response {
    let f = fields(&raw);
    let v = match web.posted(&headers, "/logout", field(&f, "csrf")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let provider_logout = match (
        &web.config.oidc,
        v.login.as_ref().and_then(|l| l.id_token.as_ref()),
    ) {
        (Some(client), Some(token)) => {
            let back = format!("{}/login", web.config.public_url);
            match client.logout_request(token, &back) {
                Ok(Some(request)) => Some(request.url),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "web: no logout at the OpenID provider");
                    None
                }
            }
        }
        _ => None,
    };
    web.sessions.remove(&v.sid);
    let expired = format!(
        "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        web.cookie_name(),
        if web.config.secure() { "; Secure" } else { "" }
    );
    let v = Visit {
        set_cookie: Some(expired),
        ..v
    };
    web.redirect(&v, provider_logout.as_deref().unwrap_or("/login"))
}

/// "Logg inn med ID-porten": a new login under way in the session, and the
/// browser sent to the provider.
async fn oidc_login(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let v = web.visit(&headers, "/auth/login", q.lang.as_deref());
    let t = v.t();
    let Some(client) = &web.config.oidc else {
        return web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_not_found);
    };
    let locale = super::oidc::UiLocale::parse(v.lang.code());
    let fresh = web
        .sessions
        .with(&v.sid, Instant::now(), |s| s.login_refused)
        .unwrap_or(false);
    match client.login_request(locale, fresh) {
        Ok(request) => {
            web.sessions.with(&v.sid, Instant::now(), |s| {
                s.pending_login = Some(request.pending)
            });
            web.redirect(&v, &request.url)
        }
        Err(e) => {
            tracing::error!(error = %e, "web: cannot start a login");
            web.message(
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                t.title,
                t.err_unavailable,
            )
        }
    }
}

/// The provider's answer: the login under way is taken from the session
/// (whatever happens next, it is used once), the code exchanged and the ID
/// token checked, and the person logged in on a new session id.
async fn oidc_callback(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let v = web.visit(&headers, "/auth/callback", None);
    let t = v.t();
    let Some(client) = &web.config.oidc else {
        return web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_not_found);
    };
    let pending = web
        .sessions
        .with(&v.sid, Instant::now(), |s| s.pending_login.take())
        .flatten();
    let Some(pending) = pending else {
        // The session ended (or never was) between leaving and coming back.
        return web.to_login(&v, Some(t.err_session_expired), None);
    };
    let params = match super::oidc::CallbackParams::from_query(uri.query().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "web: a login callback was refused");
            return web.to_login(&v, Some(t.err_login_failed), None);
        }
    };
    match client.callback(&pending, &params).await {
        Ok(person) => log_in(
            &web,
            v,
            LoggedIn {
                person: person.pid,
                name: person.name,
                verified: true,
                id_token: Some(person.id_token),
            },
        ),
        Err(e) => {
            tracing::info!(kind = e.kind(), error = %e, "web: a login was refused");
            web.sessions
                .with(&v.sid, Instant::now(), |s| s.login_refused = true);
            let status = if e.is_login_problem() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_GATEWAY
            };
            let mut r = web.to_login(&v, Some(t.err_login_failed), None);
            *r.status_mut() = status;
            r
        }
    }
}

async fn choose_org_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let v = web.visit(&headers, "/org", q.lang.as_deref());
    let Some(login) = v.login.clone() else {
        return web.to_login(&v, None, Some("/org"));
    };
    let orgs = web.orgs_of(&login.person);
    if orgs.is_empty() {
        let t = v.t();
        return web.message(&v, StatusCode::FORBIDDEN, t.title, t.err_no_key_role);
    }
    let named: Vec<(OrgNumber, Option<String>)> =
        orgs.into_iter().map(|o| (o, web.name_of(&o))).collect();
    let page = views::choose_org(&web.frame(&v, named.len() > 1), &named);
    web.html(&v, StatusCode::OK, page)
}

async fn choose_org(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawForm(raw): RawForm,
) -> Response {
    let f = fields(&raw);
    let v = match web.posted(&headers, "/org", field(&f, "csrf")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(login) = v.login.clone() else {
        return web.to_login(&v, None, Some("/org"));
    };
    let chosen = field(&f, "org").and_then(|o| OrgNumber::parse(o).ok());
    match chosen.filter(|o| web.orgs_of(&login.person).contains(o)) {
        Some(org) => {
            web.sessions.with(&v.sid, Instant::now(), |s| {
                s.acting_for = Some(org);
                s.draft = None;
            });
            web.redirect(&v, "/overview")
        }
        None => {
            let t = v.t();
            web.message(&v, StatusCode::FORBIDDEN, t.title, t.err_no_key_role)
        }
    }
}

#[derive(Debug, Deserialize, Default)]
struct OverviewQuery {
    lang: Option<String>,
    #[serde(default)]
    q: String,
    after: Option<String>,
}

async fn overview(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let (v, login, owner) = match web.page_step(&headers, "/overview", q.lang.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let query = q.q.trim().to_string();
    let digits: String = query
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .collect();
    let by_number = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    // A number search starts at the first supplier with that prefix and
    // stops at the last (suppliers are in number order): O(log n + page),
    // not a walk of every supplier.
    let prefix_start = if by_number {
        before_prefix(&digits).map(|supplier| Position { owner, supplier })
    } else {
        None
    };
    let after = q
        .after
        .as_deref()
        .and_then(|a| OrgNumber::parse(a).ok())
        .map(|supplier| Position { owner, supplier })
        .max(prefix_start);
    // Names come from the Entity Register; without one, a name matches
    // nothing, and nothing is walked.
    let by_name = !query.is_empty() && !by_number;
    let mut views_found: Vec<DelegationView> = Vec::with_capacity(PAGE + 1);
    let filter = ListFilter {
        owner: Some(owner),
        supplier: None,
    };
    let scanned = web
        .store
        .scan(crate::store::Reader::All, filter, after, |view| {
            if by_name || (by_number && !view.supplier.as_str().starts_with(&digits)) {
                return ControlFlow::Break(());
            }
            views_found.push(view);
            if views_found.len() > PAGE {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
    if let Err(e) = scanned {
        return web.store_error(&v, &e);
    }
    // A name search: the register's best matches that this owner has
    // delegated to, one lookup each (no paging: the first page by rank).
    if by_name && let Some(registry) = &web.config.organizations {
        let register = registry.current();
        for hit in register.search(&query, crate::register::MAX_HITS) {
            if let Some(view) = web.delegation(owner, hit.number) {
                views_found.push(view);
                if views_found.len() == PAGE {
                    break;
                }
            }
        }
    }
    let next = (views_found.len() > PAGE).then(|| {
        views_found.truncate(PAGE);
        views_found
            .last()
            .map(|l| l.supplier.as_str().to_string())
            .unwrap_or_default()
    });
    let catalogue = web.catalogue();
    let rows: Vec<Row<'_>> = views_found
        .iter()
        .map(|view| Row {
            view,
            name: web.name_of(&view.supplier),
            rights: named(&catalogue, &view.rights)
                .into_iter()
                .map(|r| (r, true))
                .collect(),
        })
        .collect();
    let page = views::overview(
        &web.frame(&v, web.many_orgs(&login)),
        &views::Overview {
            rows,
            query: &query,
            next,
            first: after.is_none(),
            notice: None,
        },
    );
    web.html(&v, StatusCode::OK, page)
}

/// The largest valid organisation number below every number that starts
/// with `digits` (at most 9), to resume a listing strictly after; `None`
/// when there is none (the prefix starts at the lowest numbers).
fn before_prefix(digits: &str) -> Option<OrgNumber> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let low: u64 = format!("{digits:0<9}").parse().ok()?;
    // One number in about every eleven has a valid check digit.
    (low.saturating_sub(1_000)..low)
        .rev()
        .find_map(|n| OrgNumber::parse(&format!("{n:09}")).ok())
}

async fn add_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let (v, login, _) = match web.page_step(&headers, "/add", q.lang.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // Always empty: a draft left by "Avbryt" must not fill a new start.
    let page = views::add_supplier(&web.frame(&v, web.many_orgs(&login)), &[], "", None);
    web.html(&v, StatusCode::OK, page)
}

async fn add_submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawForm(raw): RawForm,
) -> Response {
    let (f, v, login, owner) = match web.form_step(&headers, "/add", &raw) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let t = v.t();
    let typed = field(&f, "org").unwrap_or_default();
    let register = web.config.organizations.as_ref().map(|r| r.current());
    let checked = typed_org(typed, t).and_then(|o| {
        if o == owner {
            return Err(t.err_org_own);
        }
        // With the Entity Register: only organisations it has, not deleted.
        match register
            .as_ref()
            .map(|r| r.get(&o).map(|found| found.deleted))
        {
            Some(None) => Err(t.err_org_unknown),
            Some(Some(true)) => Err(t.err_org_deleted),
            _ => Ok(o),
        }
    });
    let supplier = match checked {
        Ok(s) => s,
        Err(message) => {
            let errors = [FieldError {
                field: "org",
                message,
            }];
            let page =
                views::add_supplier(&web.frame(&v, web.many_orgs(&login)), &errors, typed, None);
            return web.html(&v, StatusCode::UNPROCESSABLE_ENTITY, page);
        }
    };
    web.sessions.with(&v.sid, Instant::now(), |s| {
        s.draft = Some(Draft {
            supplier,
            rights: Vec::new(),
            nonce: random_hex(16),
        });
    });
    web.redirect(&v, "/add/rights")
}

/// The draft of the add flow, or the redirect back to its first step.
fn draft(web: &Web, v: &Visit) -> Result<Draft, Early> {
    web.sessions
        .with(&v.sid, Instant::now(), |s| s.draft.clone())
        .flatten()
        .ok_or_else(|| Box::new(web.redirect(v, "/add")))
}

async fn rights_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let (v, login, _) = match web.page_step(&headers, "/add/rights", q.lang.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let d = match draft(&web, &v) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let catalogue = web.catalogue();
    let page = views::choose_rights(
        &web.frame(&v, web.many_orgs(&login)),
        &[],
        &web.labelled(&d.supplier),
        &marked(&catalogue, &d.rights),
    );
    web.html(&v, StatusCode::OK, page)
}

async fn rights_submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawForm(raw): RawForm,
) -> Response {
    let (f, v, login, _) = match web.form_step(&headers, "/add/rights", &raw) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let d = match draft(&web, &v) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let catalogue = web.catalogue();
    let chosen: Vec<RightId> = all(&f, "right")
        .into_iter()
        .filter_map(|r| {
            catalogue
                .iter()
                .find(|c| c.id.as_str() == r)
                .map(|c| c.id.clone())
        })
        .collect();
    if chosen.is_empty() {
        let t = v.t();
        let errors = [FieldError {
            field: "rights",
            message: t.err_nothing_chosen,
        }];
        let page = views::choose_rights(
            &web.frame(&v, web.many_orgs(&login)),
            &errors,
            &web.labelled(&d.supplier),
            &marked(&catalogue, &[]),
        );
        return web.html(&v, StatusCode::UNPROCESSABLE_ENTITY, page);
    }
    web.sessions.with(&v.sid, Instant::now(), |s| {
        if let Some(d) = s.draft.as_mut() {
            d.rights = chosen;
        }
    });
    web.redirect(&v, "/add/confirm")
}

async fn confirm_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let (v, login, _) = match web.page_step(&headers, "/add/confirm", q.lang.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let d = match draft(&web, &v) {
        Ok(d) if !d.rights.is_empty() => d,
        Ok(_) => return web.redirect(&v, "/add/rights"),
        Err(r) => return *r,
    };
    let catalogue = web.catalogue();
    let page = views::confirm(
        &web.frame(&v, web.many_orgs(&login)),
        &web.labelled(&d.supplier),
        &named(&catalogue, &d.rights),
        &d.nonce,
    );
    web.html(&v, StatusCode::OK, page)
}

/// "Bekreft": the one write of the add flow. The session's write lock and
/// the draft's nonce make a double submit one delegation: the second finds
/// the first one's receipt.
async fn confirm_submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawForm(raw): RawForm,
) -> Response {
    let (f, v, login, owner) = match web.form_step(&headers, "/add/confirm", &raw) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let nonce = field(&f, "nonce").unwrap_or_default().to_string();
    let Some(lock) = web
        .sessions
        .with(&v.sid, Instant::now(), |s| s.writing.clone())
    else {
        return web.redirect(&v, "/login");
    };
    let _writing = lock.lock().await;
    let (done, draft) = web
        .sessions
        .with(&v.sid, Instant::now(), |s| {
            (s.receipt(&nonce).is_some(), s.draft.clone())
        })
        .unwrap_or((false, None));
    if done {
        return web.redirect(&v, &format!("/receipt/{nonce}"));
    }
    let Some(d) = draft.filter(|d| same_secret(&d.nonce, &nonce) && !d.rights.is_empty()) else {
        return web.redirect(&v, "/add");
    };
    // Rights the catalogue no longer has are not given, and said so.
    let catalogue = web.catalogue();
    let (known, gone): (Vec<RightId>, Vec<RightId>) = d
        .rights
        .iter()
        .cloned()
        .partition(|r| catalogue.iter().any(|c| c.id == *r));
    if known.is_empty() {
        return web.redirect(&v, "/add/rights");
    }
    let supplier = d.supplier;
    let rights = known.clone();
    let asked = known.iter().map(|r| r.to_string()).collect();
    let result = web
        .write(
            AdminKind::Delegate,
            &login,
            owner,
            Some(supplier),
            asked,
            move |store, by| store.delegate(owner, supplier, &rights, by),
        )
        .await;
    match result {
        Ok(view) => {
            let receipt = Receipt {
                owner,
                supplier,
                kind: ReceiptKind::Given {
                    given: known,
                    now_held: view.rights,
                },
            };
            let gone: Vec<String> = gone.iter().map(|r| r.to_string()).collect();
            web.sessions.with(&v.sid, Instant::now(), |s| {
                s.keep_receipt(Some(nonce.clone()), receipt);
                s.draft = None;
                s.not_given = gone;
            });
            web.redirect(&v, &format!("/receipt/{nonce}"))
        }
        Err(e) => web.store_error(&v, &e),
    }
}

async fn receipt(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<Common>,
) -> Response {
    let (v, login, _) = match web.page_step(&headers, &format!("/receipt/{key}"), q.lang.as_deref())
    {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some((r, not_given)) = web
        .sessions
        .with(&v.sid, Instant::now(), |s| {
            (s.receipt(&key).cloned(), s.not_given.clone())
        })
        .and_then(|(r, n)| r.map(|r| (r, n)))
    else {
        let t = v.t();
        return web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_not_found);
    };
    let catalogue = web.catalogue();
    let frame = web.frame(&v, web.many_orgs(&login));
    let supplier = web.labelled(&r.supplier);
    let page = match &r.kind {
        ReceiptKind::Given { now_held, .. } => {
            views::given(&frame, &supplier, &named(&catalogue, now_held), &not_given)
        }
        ReceiptKind::Removed {
            removed,
            undo_until,
            ..
        } => views::removed(
            &frame,
            &supplier,
            &named(&catalogue, removed),
            Some((&key, undo_until)),
        ),
        ReceiptKind::Undone => {
            let t = v.t();
            views::message(
                &frame,
                t.undone_title,
                t.undone_intro,
                Some(("/overview", t.back_to_overview)),
            )
        }
    };
    web.html(&v, StatusCode::OK, page)
}

async fn edit_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(supplier): Path<String>,
    Query(q): Query<Common>,
) -> Response {
    let (v, login, owner) =
        match web.page_step(&headers, &format!("/edit/{supplier}"), q.lang.as_deref()) {
            Ok(x) => x,
            Err(r) => return *r,
        };
    let t = v.t();
    let Some(view) = OrgNumber::parse(&supplier)
        .ok()
        .and_then(|s| web.delegation(owner, s))
    else {
        return web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_nothing_delegated);
    };
    let catalogue = web.catalogue();
    let page = views::edit(
        &web.frame(&v, web.many_orgs(&login)),
        &[],
        &view.supplier,
        &web.labelled(&view.supplier),
        &marked(&catalogue, &view.rights),
        &version_of(&view),
    );
    web.html(&v, StatusCode::OK, page)
}

/// "Lagre": remove the unticked rights. If the delegation changed since the
/// form was shown, nothing is written and the current state is shown.
async fn edit_submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(supplier): Path<String>,
    RawForm(raw): RawForm,
) -> Response {
    let path = format!("/edit/{supplier}");
    let (f, v, login, owner) = match web.form_step(&headers, &path, &raw) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let t = v.t();
    let Some(lock) = web
        .sessions
        .with(&v.sid, Instant::now(), |s| s.writing.clone())
    else {
        return web.redirect(&v, "/login");
    };
    let _writing = lock.lock().await;
    let Some(view) = OrgNumber::parse(&supplier)
        .ok()
        .and_then(|s| web.delegation(owner, s))
    else {
        return web.message(&v, StatusCode::CONFLICT, t.title, t.err_changed_elsewhere);
    };
    let catalogue = web.catalogue();
    if field(&f, "version") != Some(version_of(&view).as_str()) {
        let errors = [FieldError {
            field: "rights",
            message: t.err_changed_elsewhere,
        }];
        let page = views::edit(
            &web.frame(&v, web.many_orgs(&login)),
            &errors,
            &view.supplier,
            &web.labelled(&view.supplier),
            &marked(&catalogue, &view.rights),
            &version_of(&view),
        );
        return web.html(&v, StatusCode::CONFLICT, page);
    }
    let keep = all(&f, "keep");
    let removed: Vec<RightId> = view
        .rights
        .iter()
        .filter(|r| !keep.contains(&r.as_str()))
        .cloned()
        .collect();
    if removed.is_empty() {
        return web.redirect(&v, "/overview");
    }
    let supplier = view.supplier;
    // All of them: revoke all, so the pair goes away (`revoke-last`).
    let asked: Vec<RightId> = if removed.len() == view.rights.len() {
        Vec::new()
    } else {
        removed.clone()
    };
    let recorded = removed.iter().map(|r| r.to_string()).collect();
    let result = web
        .write(
            AdminKind::Revoke,
            &login,
            owner,
            Some(supplier),
            recorded,
            move |store, by| store.revoke(owner, supplier, &asked, by),
        )
        .await;
    match result {
        Ok(revoked) => {
            let receipt = Receipt {
                owner,
                supplier,
                kind: ReceiptKind::Removed {
                    removed,
                    undo: revoked.undo_token,
                    undo_until: revoked.undo_expires_at,
                },
            };
            let key = web
                .sessions
                .with(&v.sid, Instant::now(), |s| s.keep_receipt(None, receipt))
                .unwrap_or_default();
            web.redirect(&v, &format!("/receipt/{key}"))
        }
        Err(e) => web.store_error(&v, &e),
    }
}

/// "Angre": undo the revocation a receipt names, with its undo token (kept
/// server-side: the form names the receipt only).
async fn undo(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    RawForm(raw): RawForm,
) -> Response {
    let (_, v, login, owner) = match web.form_step(&headers, &format!("/receipt/{key}"), &raw) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let t = v.t();
    let Some(lock) = web
        .sessions
        .with(&v.sid, Instant::now(), |s| s.writing.clone())
    else {
        return web.redirect(&v, "/login");
    };
    let _writing = lock.lock().await;
    let found = web
        .sessions
        .with(&v.sid, Instant::now(), |s| s.receipt(&key).cloned())
        .flatten();
    let (token, supplier) = match found {
        Some(Receipt {
            kind: ReceiptKind::Removed { undo, .. },
            supplier,
            ..
        }) => (undo, supplier),
        Some(Receipt {
            kind: ReceiptKind::Undone,
            ..
        }) => return web.redirect(&v, &format!("/receipt/{key}")),
        _ => return web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_undo_unknown),
    };
    let result = web
        .write(
            AdminKind::Undo,
            &login,
            owner,
            Some(supplier),
            Vec::new(),
            move |store, by| store.undo(&token, by),
        )
        .await;
    match result {
        Ok(_) => {
            web.sessions.with(&v.sid, Instant::now(), |s| {
                s.keep_receipt(
                    Some(key.clone()),
                    Receipt {
                        owner,
                        supplier,
                        kind: ReceiptKind::Undone,
                    },
                )
            });
            web.redirect(&v, &format!("/receipt/{key}"))
        }
        Err(e) => web.store_error(&v, &e),
    }
}

async fn received(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let (v, login, org) = match web.page_step(&headers, "/received", q.lang.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut found = Vec::new();
    let filter = ListFilter {
        owner: None,
        supplier: Some(org),
    };
    let _ = web
        .store
        .scan(crate::store::Reader::All, filter, None, |view| {
            found.push(view);
            if found.len() >= 1_000 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
    let catalogue = web.catalogue();
    let rows: Vec<(&DelegationView, Option<String>, Vec<&Right>)> = found
        .iter()
        .map(|view| {
            (
                view,
                web.name_of(&view.owner),
                named(&catalogue, &view.rights),
            )
        })
        .collect();
    let page = views::received(&web.frame(&v, web.many_orgs(&login)), &rows);
    web.html(&v, StatusCode::OK, page)
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
