//! The pages, as HTML (maud: checked when compiled, every value escaped).
//! Each view takes what it shows and the language's [`Texts`]; none reads
//! the store, the session or the request. Markup follows Designsystemet's
//! patterns: an error summary that takes focus and links to its fields,
//! fields marked `aria-invalid` with their message, one `h1` a page.

use maud::{DOCTYPE, Markup, html};

use super::i18n::{Lang, Texts, fill};
use super::when::shown;
use crate::catalogue::Right;
use crate::ids::OrgNumber;
use crate::store::DelegationView;

/// `974760673` as people write it: `974 760 673`.
pub fn spaced(org: &OrgNumber) -> String {
    let s = org.as_str();
    format!("{} {} {}", &s[0..3], &s[3..6], &s[6..9])
}

/// [`spaced`] with no-break spaces, for running text where the number must
/// not wrap.
pub fn spaced_unbroken(org: &OrgNumber) -> String {
    spaced(org).replace(' ', "\u{a0}")
}

/// Who made a change, as the overview shows it: a national identity number
/// (11 digits) only by its birth date, the rest hidden; other ids as they are.
pub fn who(actor: &str) -> String {
    if actor.len() == 11 && actor.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}*****", &actor[..6])
    } else {
        actor.to_string()
    }
}

/// A page's `<title>` text: `title`, after "Feil:" while its form has errors.
pub fn titled(t: &Texts, title: &str, errors: &[FieldError<'_>]) -> String {
    if errors.is_empty() {
        title.to_string()
    } else {
        format!("{}: {title}", t.error_prefix)
    }
}

/// What every page's frame shows.
pub struct Frame<'a> {
    pub t: &'static Texts,
    pub lang: Lang,
    /// The page's path, for the language links.
    pub path: &'a str,
    pub dev_mode: bool,
    pub stylesheet: &'a str,
    /// `(person, acting-for line)` when logged in, and the CSRF token for
    /// the logout form.
    pub user: Option<(String, Option<String>)>,
    pub csrf: &'a str,
    /// Whether the person may act for more than one organisation.
    pub many_orgs: bool,
}

/// One field's error, shown in the summary and at the field.
pub struct FieldError<'a> {
    pub field: &'a str,
    pub message: &'a str,
}

pub fn page(frame: &Frame<'_>, title: &str, main: Markup) -> Markup {
    let t = frame.t;
    html! {
        (DOCTYPE)
        html lang=(frame.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title {
                    @if title == t.title { (title) } @else { (title) " – " (t.title) }
                }
                link rel="stylesheet" href=(frame.stylesheet);
            }
            body {
                a.skip href="#main" { (t.skip_to_main) }
                @if frame.dev_mode {
                    div.banner.warning role="note" { strong { (t.dev_banner) } }
                }
                header.site {
                    div.wrap {
                        a.brand href="/overview" { (t.title) }
                        nav aria-label=(t.language) {
                            ul.langs {
                                @for l in Lang::ALL {
                                    li {
                                        @if l == frame.lang {
                                            span aria-current="true" lang=(l.code()) { (l.name()) }
                                        } @else {
                                            a href={ (frame.path) "?lang=" (l.code()) } lang=(l.code()) hreflang=(l.code()) { (l.name()) }
                                        }
                                    }
                                }
                            }
                        }
                        @if let Some((who, acting)) = &frame.user {
                            div.user {
                                @if let Some(acting) = acting { p { (acting) } } @else { p { (who) } }
                                @if frame.many_orgs { a href="/org" { (t.change_org) } }
                                form method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(frame.csrf);
                                    button.secondary type="submit" { (t.log_out) }
                                }
                            }
                        }
                    }
                }
                main #main.wrap tabindex="-1" { (main) }
            }
        }
    }
}

/// The error summary: a heading and one link per error to its field.
fn summary(t: &Texts, errors: &[FieldError<'_>]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.error-summary role="alert" tabindex="-1" autofocus aria-labelledby="error-summary-title" {
                h2 #error-summary-title { (t.error_summary) }
                ul {
                    @for e in errors {
                        li { a href={ "#" (e.field) } { (e.message) } }
                    }
                }
            }
        }
    }
}

fn error_for<'a>(errors: &'a [FieldError<'a>], field: &str) -> Option<&'a str> {
    errors.iter().find(|e| e.field == field).map(|e| e.message)
}

fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A message page (an error without a form): heading, text, a way on.
pub fn message(frame: &Frame<'_>, title: &str, text: &str, on: Option<(&str, &str)>) -> Markup {
    page(
        frame,
        title,
        html! {
            h1 { (title) }
            p.lead { (text) }
            @if let Some((href, label)) = on { p { a.button href=(href) { (label) } } }
        },
    )
}

pub fn login_dev(
    frame: &Frame<'_>,
    notice: Option<&str>,
    errors: &[FieldError<'_>],
    typed: &str,
) -> Markup {
    let t = frame.t;
    let err = error_for(errors, "person");
    page(
        frame,
        &titled(t, t.login_title, errors),
        html! {
            (summary(t, errors))
            h1 { (t.login_title) }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            p { (t.login_dev_intro) }
            form method="post" action="/login" novalidate {
                (csrf(frame.csrf))
                div.field.(if err.is_some() { "invalid" } else { "" }) {
                    label for="person" { (t.person_id) }
                    p.hint #person-hint { (t.person_id_hint) }
                    @if let Some(e) = err { p.error-message #person-error { (e) } }
                    input #person name="person" type="text" inputmode="numeric" autocomplete="off"
                        value=(typed)
                        aria-describedby={ "person-hint" @if err.is_some() { " person-error" } }
                        aria-invalid=[err.map(|_| "true")];
                }
                button type="submit" { (t.log_in) }
            }
        },
    )
}

pub fn login_oidc(frame: &Frame<'_>, notice: Option<&str>) -> Markup {
    let t = frame.t;
    page(
        frame,
        t.login_title,
        html! {
            h1 { (t.login_title) }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            p { (t.login_intro) }
            p { a.button href="/auth/login" { (t.log_in_idporten) } }
        },
    )
}

pub fn choose_org(frame: &Frame<'_>, orgs: &[(OrgNumber, Option<String>)]) -> Markup {
    let t = frame.t;
    page(
        frame,
        t.choose_org_title,
        html! {
            h1 { (t.choose_org_title) }
            p { (t.choose_org_intro) }
            ul.choices {
                @for (org, name) in orgs {
                    li {
                        form method="post" action="/org" {
                            (csrf(frame.csrf))
                            input type="hidden" name="org" value=(org.as_str());
                            button.secondary type="submit" {
                                @if let Some(n) = name { (n) " (" (spaced(org)) ")" } @else { (spaced(org)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One row of the overview.
pub struct Row<'a> {
    pub view: &'a DelegationView,
    pub name: Option<String>,
    pub rights: Vec<(&'a Right, bool)>,
}

pub struct Overview<'a> {
    pub rows: Vec<Row<'a>>,
    pub query: &'a str,
    pub next: Option<String>,
    pub first: bool,
    pub notice: Option<&'a str>,
}

pub fn overview(frame: &Frame<'_>, o: &Overview<'_>) -> Markup {
    let t = frame.t;
    page(
        frame,
        t.title,
        html! {
            h1 { (t.title) }
            @if let Some(n) = o.notice { p.notice role="status" { (n) } }
            p.lead { (t.overview_intro) }
            p.actions {
                a.button href="/add" { (t.add_supplier) }
                " "
                a href="/received" { (t.received_link) }
            }
            form.search method="get" action="/overview" role="search" {
                label for="q" { (t.search_label) }
                div.inline {
                    input #q name="q" type="search" value=(o.query);
                    button.secondary type="submit" { (t.search) }
                }
            }
            @if o.rows.is_empty() {
                @if o.query.is_empty() { p.empty { (t.overview_empty) } }
                @else { p.empty { (fill(t.search_none, &[("query", o.query)])) } }
            } @else {
                div.table-scroll { table {
                    thead { tr {
                        th scope="col" { (t.col_supplier) }
                        th scope="col" { (t.col_rights) }
                        th scope="col" { (t.col_given) }
                        th scope="col" { span.visually-hidden { (t.edit_rights) } }
                    } }
                    tbody {
                        @for r in &o.rows {
                            tr {
                                th scope="row" {
                                    @if let Some(n) = &r.name { (n) br; }
                                    span.orgnr { (spaced(&r.view.supplier)) }
                                }
                                td {
                                    ul.rights {
                                        @for (right, _) in &r.rights {
                                            li {
                                                (right.name)
                                                br;
                                                small { (t.gives_scopes) ": "
                                                    @for (i, s) in right.scopes.iter().enumerate() {
                                                        @if i > 0 { ", " } code { (s.as_str()) }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                                td { (fill(t.given_by, &[("when", &shown(&r.view.updated_at, frame.lang)), ("who", &who(&r.view.delegated_by))])) }
                                td {
                                    a href={ "/edit/" (r.view.supplier.as_str()) } {
                                        (t.edit_rights)
                                        span.visually-hidden { " " (spaced(&r.view.supplier)) }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            nav.pages aria-label=(t.pages) {
                @if !o.first { a href={ "/overview?q=" (urlencode(o.query)) } { (t.page_first) } " " }
                @if let Some(next) = &o.next {
                    a href={ "/overview?q=" (urlencode(o.query)) "&after=" (next) } { (t.page_next) }
                }
            }
        },
    )
}

/// Percent-encode a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn add_supplier(
    frame: &Frame<'_>,
    errors: &[FieldError<'_>],
    typed: &str,
    found: Option<&str>,
) -> Markup {
    let t = frame.t;
    let err = error_for(errors, "org");
    page(
        frame,
        &titled(t, t.add_title, errors),
        html! {
            (summary(t, errors))
            h1 { (t.add_title) }
            form method="post" action="/add" novalidate {
                (csrf(frame.csrf))
                div.field.(if err.is_some() { "invalid" } else { "" }) {
                    label for="org" { (t.org_number) }
                    p.hint #org-hint { (t.org_number_hint) }
                    @if let Some(e) = err { p.error-message #org-error { (e) } }
                    input #org name="org" type="text" inputmode="numeric" autocomplete="off"
                        value=(typed)
                        aria-describedby={ "org-hint" @if err.is_some() { " org-error" } }
                        aria-invalid=[err.map(|_| "true")];
                    @if let Some(name) = found { p.found role="status" { (fill(t.org_found, &[("name", name)])) } }
                }
                div.buttons {
                    button type="submit" { (t.next) }
                    a.button.secondary href="/overview" { (t.cancel) }
                }
            }
        },
    )
}

fn right_label(t: &Texts, r: &Right) -> Markup {
    html! {
        (r.name)
        span.hint { " " (t.gives_scopes) ": "
            @for (i, s) in r.scopes.iter().enumerate() { @if i > 0 { ", " } code { (s.as_str()) } }
        }
    }
}

pub fn choose_rights(
    frame: &Frame<'_>,
    errors: &[FieldError<'_>],
    supplier: &str,
    rights: &[(&Right, bool)],
) -> Markup {
    let t = frame.t;
    let err = error_for(errors, "rights");
    page(
        frame,
        &titled(t, t.rights_title, errors),
        html! {
            (summary(t, errors))
            h1 { (t.rights_title) }
            form method="post" action="/add/rights" novalidate {
                (csrf(frame.csrf))
                fieldset #rights.(if err.is_some() { "invalid" } else { "" })
                    aria-describedby=[err.map(|_| "rights-error")] aria-invalid=[err.map(|_| "true")] {
                    legend { (fill(t.rights_legend, &[("supplier", supplier)])) }
                    @if let Some(e) = err { p.error-message #rights-error { (e) } }
                    @for (i, (r, checked)) in rights.iter().enumerate() {
                        div.checkbox {
                            input type="checkbox" name="right" value=(r.id.as_str()) id={ "right-" (i) } checked[*checked];
                            label for={ "right-" (i) } { (right_label(t, r)) }
                        }
                    }
                }
                div.buttons {
                    button type="submit" { (t.next) }
                    a.button.secondary href="/overview" { (t.cancel) }
                }
            }
        },
    )
}

pub fn confirm(frame: &Frame<'_>, supplier: &str, rights: &[&Right], nonce: &str) -> Markup {
    let t = frame.t;
    page(
        frame,
        t.confirm_title,
        html! {
            h1 { (t.confirm_title) }
            dl.summary {
                dt { (t.supplier) } dd { (supplier) }
                dt { (t.rights) }
                dd { ul { @for r in rights { li { (right_label(t, r)) } } } }
            }
            p { (t.valid_until_removed) }
            form method="post" action="/add/confirm" {
                (csrf(frame.csrf))
                input type="hidden" name="nonce" value=(nonce);
                div.buttons {
                    button type="submit" { (t.confirm) }
                    a.button.secondary href="/overview" { (t.cancel) }
                }
            }
        },
    )
}

pub fn given(frame: &Frame<'_>, supplier: &str, held: &[&Right], not_given: &[String]) -> Markup {
    let t = frame.t;
    page(
        frame,
        t.given_title,
        html! {
            div.success role="status" { h1 { (t.given_title) } }
            p { (t.supplier) ": " (supplier) }
            p { (t.given_intro) }
            ul { @for r in held { li { (right_label(t, r)) } } }
            @if !not_given.is_empty() {
                p { (t.not_given) }
                ul { @for n in not_given { li { (n) } } }
            }
            p { a.button href="/overview" { (t.back_to_overview) } }
        },
    )
}

pub fn edit(
    frame: &Frame<'_>,
    errors: &[FieldError<'_>],
    supplier_org: &OrgNumber,
    supplier: &str,
    rights: &[(&Right, bool)],
    version: &str,
) -> Markup {
    let t = frame.t;
    page(
        frame,
        &titled(t, t.edit_title, errors),
        html! {
            (summary(t, errors))
            h1 { (t.edit_title) }
            p { (t.supplier) ": " (supplier) }
            form method="post" action={ "/edit/" (supplier_org.as_str()) } novalidate {
                (csrf(frame.csrf))
                input type="hidden" name="version" value=(version);
                fieldset #rights {
                    legend { (t.edit_intro) }
                    @for (i, (r, held)) in rights.iter().enumerate() {
                        div.checkbox {
                            input type="checkbox" name="keep" value=(r.id.as_str()) id={ "keep-" (i) } checked[*held];
                            label for={ "keep-" (i) } { (right_label(t, r)) }
                        }
                    }
                }
                div.buttons {
                    button type="submit" { (t.save) }
                    a.button.secondary href="/overview" { (t.cancel) }
                }
            }
        },
    )
}

pub fn removed(
    frame: &Frame<'_>,
    supplier: &str,
    removed: &[&Right],
    undo: Option<(&str, &str)>,
) -> Markup {
    let t = frame.t;
    page(
        frame,
        t.removed_title,
        html! {
            div.success role="status" { h1 { (t.removed_title) } }
            p { (t.supplier) ": " (supplier) }
            @if removed.is_empty() { p { (t.nothing_removed) } } @else {
                p { (t.removed_intro) }
                ul { @for r in removed { li { (right_label(t, r)) } } }
            }
            @if let Some((key, until)) = undo {
                form method="post" action={ "/undo/" (key) } {
                    (csrf(frame.csrf))
                    p { (fill(t.undo_until, &[("until", &shown(until, frame.lang))])) }
                    button.secondary type="submit" { (t.undo) }
                }
            }
            p { a.button href="/overview" { (t.back_to_overview) } }
        },
    )
}

pub fn received(
    frame: &Frame<'_>,
    rows: &[(&DelegationView, Option<String>, Vec<&Right>)],
) -> Markup {
    let t = frame.t;
    page(
        frame,
        t.received_title,
        html! {
            h1 { (t.received_title) }
            p.lead { (t.received_intro) }
            @if rows.is_empty() { p.empty { (t.received_empty) } } @else {
                div.table-scroll { table {
                    thead { tr { th scope="col" { (t.col_owner) } th scope="col" { (t.col_rights) } th scope="col" { (t.col_given) } } }
                    tbody {
                        @for (v, name, rights) in rows {
                            tr {
                                th scope="row" { @if let Some(n) = name { (n) br; } span.orgnr { (spaced(&v.owner)) } }
                                td { ul.rights { @for r in rights { li { (right_label(t, r)) } } } }
                                td { (fill(t.given_by, &[("when", &shown(&v.updated_at, frame.lang)), ("who", &who(&v.delegated_by))])) }
                            }
                        }
                    }
                } }
            }
            p { a href="/overview" { (t.back_to_overview) } }
        },
    )
}
