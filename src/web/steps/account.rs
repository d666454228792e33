//! Who is logged in: the login page, the development login, ID-porten's
//! login and callback, logout, and choosing the organisation to act for.

use super::*;

pub(super) async fn login_page(
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
pub(super) async fn login_dev(
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
pub(super) fn log_in(web: &Web, v: Visit, login: LoggedIn) -> Response {
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

pub(super) async fn logout(
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
pub(super) async fn oidc_login(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Common>,
) -> Response {
    let v = web.visit(&headers, "/auth/login", q.lang.as_deref());
    let t = v.t();
    let Some(client) = &web.config.oidc else {
        return web.message(&v, StatusCode::NOT_FOUND, t.title, t.err_not_found);
    };
    let locale = crate::web::oidc::UiLocale::parse(v.lang.code());
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
pub(super) async fn oidc_callback(
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
    let params = match crate::web::oidc::CallbackParams::from_query(uri.query().unwrap_or_default())
    {
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

pub(super) async fn choose_org_page(
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

pub(super) async fn choose_org(
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
