//! URLs as the relying party needs them: checking the issuer's and the
//! endpoints' (scheme, host, no fragment or user info; `http://` only for a
//! loopback host, and only when allowed), and query strings both ways. No I/O.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is percent-encoded, in
/// query strings and form bodies alike (a space is `%20`, which both read).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded for a query or form component.
pub(crate) fn encode(value: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(value, COMPONENT)
}

/// `name=value&...`, each part encoded: a query string or a form body.
pub(crate) fn form(params: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&format!("{}={}", encode(name), encode(value)));
    }
    out
}

/// `base` with `params` added to its query (an endpoint may carry a query
/// of its own, RFC 6749 §3.1).
pub(crate) fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", form(params))
}

/// A query string (without `?`) as name/value pairs, in order: `+` is a
/// space, percent escapes are decoded (invalid UTF-8 replaced), empty
/// parts are skipped.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(part: &str) -> String {
    let spaced = part.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("not an absolute http(s) URL")]
    NotAUrl,
    #[error("the scheme must be https")]
    Scheme,
    #[error("http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost); use https")]
    HttpNotLoopback,
    #[error("http:// is not allowed (allow it only for a loopback issuer in development)")]
    HttpNotAllowed,
    #[error("a URL with a fragment (`#`) is not allowed here")]
    Fragment,
    #[error("a URL with a query (`?`) is not allowed here")]
    Query,
    #[error("a URL with user info (`user@`) is not allowed")]
    UserInfo,
}

/// Whether plain `http://` may be used: never, or for loopback hosts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Http {
    Refused,
    LoopbackOnly,
}

/// A checked absolute URL, as the HTTP client reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub https: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// For the `Host` header: host and, when not the default, port.
    pub authority: String,
    pub path_and_query: String,
}

/// Check `text` as an https URL (or `http://` to a loopback host, when
/// `http` allows it). A query is allowed unless `query` is false.
pub(crate) fn check(text: &str, http: Http, query: bool) -> Result<Target, UrlProblem> {
    if text.contains('#') {
        return Err(UrlProblem::Fragment);
    }
    let uri: http::Uri = text.parse().map_err(|_| UrlProblem::NotAUrl)?;
    let authority = uri.authority().ok_or(UrlProblem::NotAUrl)?;
    if authority.as_str().contains('@') {
        return Err(UrlProblem::UserInfo);
    }
    if !query && uri.query().is_some() {
        return Err(UrlProblem::Query);
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(UrlProblem::NotAUrl);
    }
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => {
            if !is_loopback(&bare_host) {
                return Err(UrlProblem::HttpNotLoopback);
            }
            if http == Http::Refused {
                return Err(UrlProblem::HttpNotAllowed);
            }
            false
        }
        Some(_) => return Err(UrlProblem::Scheme),
        None => return Err(UrlProblem::NotAUrl),
    };
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(Target {
        https,
        host: bare_host,
        port,
        authority: authority.as_str().to_owned(),
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    })
}

/// `localhost` or a loopback address (127.0.0.0/8, `::1`).
pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parts_are_encoded_except_unreserved_characters() {
        assert_eq!(
            with_query(
                "https://idporten.no/authorize",
                &[
                    ("scope", "openid profile"),
                    ("redirect_uri", "https://a.example/auth/callback?x=1&y=ø"),
                    ("state", "AZaz09-._~"),
                ]
            ),
            "https://idporten.no/authorize?scope=openid%20profile\
             &redirect_uri=https%3A%2F%2Fa.example%2Fauth%2Fcallback%3Fx%3D1%26y%3D%C3%B8\
             &state=AZaz09-._~"
        );
        assert_eq!(
            with_query("https://op.example/auth?tenant=a", &[("a", "+")]),
            "https://op.example/auth?tenant=a&a=%2B"
        );
    }

    #[test]
    fn queries_decode_plus_and_percent_escapes() {
        assert_eq!(
            parse_query("code=a%2Bb&state=x+y&&error_description=ugyldig%20%C3%B8&flag"),
            vec![
                ("code".to_owned(), "a+b".to_owned()),
                ("state".to_owned(), "x y".to_owned()),
                ("error_description".to_owned(), "ugyldig ø".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        let round = form(&[("v", "a b&c=d+é/?")]);
        assert_eq!(
            parse_query(&round),
            vec![("v".to_owned(), "a b&c=d+é/?".to_owned())]
        );
    }

    #[test]
    fn http_is_for_loopback_hosts_only_and_only_when_allowed() {
        let ok = check("http://127.0.0.1:8080/op", Http::LoopbackOnly, false).unwrap();
        assert_eq!(
            (ok.https, ok.port, ok.host.as_str()),
            (false, 8080, "127.0.0.1")
        );
        assert_eq!(ok.path_and_query, "/op");
        assert!(check("http://[::1]:1/", Http::LoopbackOnly, false).is_ok());
        assert!(check("http://localhost/", Http::LoopbackOnly, false).is_ok());
        for refused in [
            "http://idporten.no",
            "http://10.0.0.1/",
            "http://127.0.0.1.example.com/",
        ] {
            assert_eq!(
                check(refused, Http::LoopbackOnly, false),
                Err(UrlProblem::HttpNotLoopback),
                "{refused}"
            );
        }
        assert_eq!(
            check("http://127.0.0.1/", Http::Refused, false),
            Err(UrlProblem::HttpNotAllowed)
        );
        let https = check("https://idporten.no", Http::Refused, false).unwrap();
        assert_eq!((https.https, https.port), (true, 443));
        assert_eq!(https.path_and_query, "/");
        assert_eq!(https.authority, "idporten.no");
    }

    #[test]
    fn other_shapes_are_refused() {
        for (url, want) in [
            ("ftp://idporten.no/", UrlProblem::Scheme),
            ("idporten.no", UrlProblem::NotAUrl),
            ("/relative", UrlProblem::NotAUrl),
            ("https://idporten.no/#x", UrlProblem::Fragment),
            ("https://u:p@idporten.no/", UrlProblem::UserInfo),
            ("https://idporten.no/?a=b", UrlProblem::Query),
        ] {
            assert_eq!(check(url, Http::Refused, false), Err(want), "{url}");
        }
        assert!(check("https://idporten.no/x?a=b", Http::Refused, true).is_ok());
    }
}
