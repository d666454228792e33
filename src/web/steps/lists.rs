//! What the organisation has given (the overview: paged, searched by
//! number or name) and received.

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct OverviewQuery {
    lang: Option<String>,
    #[serde(default)]
    q: String,
    after: Option<String>,
}

pub(super) async fn overview(
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
pub(super) fn before_prefix(digits: &str) -> Option<OrgNumber> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let low: u64 = format!("{digits:0<9}").parse().ok()?;
    // One number in about every eleven has a valid check digit.
    (low.saturating_sub(1_000)..low)
        .rev()
        .find_map(|n| OrgNumber::parse(&format!("{n:09}")).ok())
}

pub(super) async fn received(
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
