//! What every handler shares: the visit (session, language, who is logged
//! in, who they act for), the CSRF and origin check of a form, the pages
//! answered early (login, refusals), and `Web::write`, the one way a write is
//! done.

use super::*;

impl Web {
    pub(super) fn cookie_name(&self) -> &'static str {
        if self.config.secure() {
            "__Host-tilgang"
        } else {
            "tilgang"
        }
    }

    pub(super) fn cookie(&self, sid: &SessionId) -> String {
        let secure = if self.config.secure() { "; Secure" } else { "" };
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name(),
            sid.as_str()
        )
    }

    pub(super) fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
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
    pub(super) fn visit(&self, headers: &HeaderMap, path: &str, lang: Option<&str>) -> Visit {
        let now = Instant::now();
        let chosen = lang.and_then(Lang::parse);
        let accepted = Lang::from_accept(
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        );
        let read = |s: &mut crate::web::session::Session| {
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
    pub(super) fn posted(
        &self,
        headers: &HeaderMap,
        path: &str,
        token: Option<&str>,
    ) -> Result<Visit, Early> {
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

    pub(super) fn frame<'a>(&'a self, v: &'a Visit, many_orgs: bool) -> Frame<'a> {
        let t = v.t();
        let user = v.login.as_ref().map(|l| {
            let who = l.name.clone().unwrap_or_else(|| l.person.to_string());
            let acting = v.acting_for.map(|o| {
                let org = match self.name_of(&o) {
                    Some(name) => format!("{name} ({})", views::spaced_unbroken(&o)),
                    None => views::spaced_unbroken(&o),
                };
                crate::web::i18n::fill(t.acting_for, &[("name", &who), ("org", &org)])
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

    pub(super) fn html(&self, v: &Visit, status: StatusCode, markup: Markup) -> Response {
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

    pub(super) fn message(
        &self,
        v: &Visit,
        status: StatusCode,
        title: &str,
        text: &str,
    ) -> Response {
        let t = v.t();
        let on = v.login.as_ref().map(|_| ("/overview", t.back_to_overview));
        let page = views::message(&self.frame(v, false), title, text, on);
        self.html(v, status, page)
    }

    pub(super) fn redirect(&self, v: &Visit, to: &str) -> Response {
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
        if let Some(c) = &v.set_cookie
            && let Ok(c) = HeaderValue::from_str(c)
        {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        r
    }

    /// The login page (with `notice`), remembering where to return.
    pub(super) fn to_login(
        &self,
        v: &Visit,
        notice: Option<&str>,
        return_to: Option<&str>,
    ) -> Response {
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
    pub(super) fn orgs_of(&self, person: &PersonId) -> Vec<OrgNumber> {
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
    pub(super) fn acting(&self, v: &mut Visit) -> Result<(LoggedIn, OrgNumber), Early> {
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
    pub(super) fn page_step(
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
    pub(super) fn form_step(
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

    pub(super) fn many_orgs(&self, login: &LoggedIn) -> bool {
        self.orgs_of(&login.person).len() > 1
    }

    /// Do a write as the admin API does: on the blocking pool, counted in
    /// the metrics, and a refusal (forbidden, unknown undo token, roles
    /// invalid) put on record in the audit log, marked `channel: web`.
    pub(super) async fn write<T: Send + 'static>(
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
                let failure = e.admin_failure();
                self.telemetry.admin_failed(kind, who, failure);
                if let Some(reason) = failure.refusal()
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
    pub(super) fn store_error(&self, v: &Visit, e: &StoreError) -> Response {
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
            // The change may be in effect: trying again blindly could
            // undo or repeat it.
            StoreError::CommitUnknown { .. } | StoreError::InEffect { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, t.err_maybe_saved)
            }
            _ => (StatusCode::SERVICE_UNAVAILABLE, t.err_unavailable),
        };
        self.message(v, status, t.title, text)
    }

    pub(super) fn catalogue(&self) -> Vec<Right> {
        self.store.rights()
    }

    /// The one delegation `owner` has given `supplier`, if any.
    pub(super) fn delegation(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
    ) -> Option<DelegationView> {
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
