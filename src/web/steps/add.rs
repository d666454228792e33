//! Adding a supplier: organisation number → rights → confirm → receipt.

use super::*;

pub(super) async fn add_page(
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

pub(super) async fn add_submit(
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
pub(super) fn draft(web: &Web, v: &Visit) -> Result<Draft, Early> {
    web.sessions
        .with(&v.sid, Instant::now(), |s| s.draft.clone())
        .flatten()
        .ok_or_else(|| Box::new(web.redirect(v, "/add")))
}

pub(super) async fn rights_page(
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

pub(super) async fn rights_submit(
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

pub(super) async fn confirm_page(
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
pub(super) async fn confirm_submit(
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
                    now_held: view.value.rights,
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
