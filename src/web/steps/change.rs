//! A receipt, editing a supplier's rights, and undoing a removal.

use super::*;

pub(super) async fn receipt(
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

pub(super) async fn edit_page(
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
pub(super) async fn edit_submit(
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
                    undo: revoked.value.undo_token,
                    undo_until: revoked.value.undo_expires_at,
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
pub(super) async fn undo(
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
