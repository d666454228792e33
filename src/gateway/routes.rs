//! The route table: which scope an HTTP request needs, from its method and
//! path (`policies/routes.json`, data a policy author owns, loaded and
//! hot-reloaded with the policies).
//!
//! A template is literal segments and `{name}` segments (one whole, non-empty
//! segment each). When several templates match, the one with more literal
//! segments wins, leftmost literal first; two templates with the same method
//! and the same shape are refused at load, so the winner is always unique.
//! Literal segments match exactly (case included): a case variant is denied,
//! as Envoy's own route matching would not send it upstream either. The query
//! string is ignored.
//!
//! A request path that could mean something else to the upstream than it
//! means here is refused rather than matched: empty segments (`//`), dot
//! segments (`.`, `..`) and encoded slashes, backslashes or dots
//! (`%2F`, `%5C`, `%2E`). This module does no I/O and decides nothing about
//! who may call: it only names the scope.

use std::fmt;

use serde::Deserialize;

use crate::ids::{Scope, echo};

/// The HTTP methods a route may name.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// The template as written, e.g. `/storage/api/v1/instances/{instanceOwnerPartyId}`.
    pub path: String,
    pub scope: Scope,
    /// Where the rule comes from (documentation; shown by `tilgang test`).
    pub source: String,
    segments: Vec<Segment>,
    /// [`Route::specificity`], computed once: a lookup compares it for
    /// every route that matches.
    specificity: (usize, Vec<bool>),
}

impl Route {
    /// How specific the template is: its literal positions, as a key where a
    /// larger key is more specific (more literals, then earlier ones).
    fn specificity(segments: &[Segment]) -> (usize, Vec<bool>) {
        let literals: Vec<bool> = segments
            .iter()
            .map(|s| matches!(s, Segment::Literal(_)))
            .collect();
        (literals.iter().filter(|l| **l).count(), literals)
    }

    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(t, s)| match t {
                Segment::Literal(l) => l == s,
                Segment::Param(_) => !s.is_empty(),
            })
    }
}

/// The loaded table. Empty when there is no `routes.json`: then every
/// request through `Check` is an unmapped route, denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Why `routes.json` was refused. The message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{0}")]
    Json(String),
    #[error("route #{index}: `method` `{method}` is not one of {}", METHODS.join(", "))]
    Method { index: usize, method: String },
    #[error("route #{index}: `path` `{path}` {why}")]
    Path {
        index: usize,
        path: String,
        why: &'static str,
    },
    #[error("route #{index}: `scope` {error}")]
    Scope {
        index: usize,
        error: crate::ids::IdError,
    },
    #[error("route #{index}: `source` is empty: say where the rule comes from")]
    NoSource { index: usize },
    #[error("route #{index}: {method} `{path}` has the same shape as route #{first} (`{other}`)")]
    Duplicate {
        index: usize,
        first: usize,
        method: String,
        path: String,
        other: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: String,
    path: String,
    scope: String,
    source: String,
}

/// Split and check a template.
fn template(path: &str) -> Result<Vec<Segment>, &'static str> {
    let rest = path.strip_prefix('/').ok_or("must start with `/`")?;
    if rest.is_empty() {
        return Err("must name at least one segment");
    }
    if path.contains('?') || path.contains('#') {
        return Err("must not hold a query string or fragment");
    }
    let mut out = Vec::new();
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err("has an empty segment (`//` or a trailing `/`)");
        }
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err("has a parameter that is not `{name}` of `A-Za-z0-9_`");
            }
            out.push(Segment::Param(name.to_string()));
        } else if seg.contains(['{', '}', '%', '*']) || seg == "." || seg == ".." {
            return Err("has a segment that is neither a literal nor a whole `{name}`");
        } else {
            out.push(Segment::Literal(seg.to_string()));
        }
    }
    Ok(out)
}

impl RouteTable {
    /// Parse and check `routes.json`.
    pub fn from_json(text: &str) -> Result<Self, Vec<RouteError>> {
        let raw: RawTable =
            serde_json::from_str(text).map_err(|e| vec![RouteError::Json(e.to_string())])?;
        let mut routes: Vec<Route> = Vec::new();
        let mut errors = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let index = i + 1;
            if !METHODS.contains(&r.method.as_str()) {
                errors.push(RouteError::Method {
                    index,
                    method: echo(&r.method),
                });
                continue;
            }
            let segments = match template(&r.path) {
                Ok(s) => s,
                Err(why) => {
                    errors.push(RouteError::Path {
                        index,
                        path: echo(&r.path),
                        why,
                    });
                    continue;
                }
            };
            let scope = match Scope::parse(&r.scope) {
                Ok(s) => s,
                Err(error) => {
                    errors.push(RouteError::Scope { index, error });
                    continue;
                }
            };
            if r.source.trim().is_empty() {
                errors.push(RouteError::NoSource { index });
                continue;
            }
            let route = Route {
                method: r.method,
                path: r.path,
                scope,
                source: r.source,
                specificity: Route::specificity(&segments),
                segments,
            };
            let shape = |x: &Route| {
                x.segments
                    .iter()
                    .map(|s| match s {
                        Segment::Literal(l) => Some(l.clone()),
                        Segment::Param(_) => None,
                    })
                    .collect::<Vec<_>>()
            };
            if let Some((j, other)) = routes
                .iter()
                .enumerate()
                .find(|(_, o)| o.method == route.method && shape(o) == shape(&route))
            {
                errors.push(RouteError::Duplicate {
                    index,
                    first: j + 1,
                    method: route.method.clone(),
                    path: route.path.clone(),
                    other: other.path.clone(),
                });
                continue;
            }
            routes.push(route);
        }
        if errors.is_empty() {
            Ok(Self { routes })
        } else {
            Err(errors)
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route a request falls under, or why it has none.
    ///
    /// A raw `#` anywhere is refused: a client never sends a fragment, so a
    /// `#` in what reached the gateway is something an upstream may read
    /// differently (as a fragment to cut, or as a character of the path), and
    /// cutting it here first would hide `/../` after it from the dot-segment
    /// check (`PUT …/readstatus#/../substatus`).
    pub fn lookup(&self, method: &str, path: &str) -> Result<&Route, NoRoute> {
        if path.as_bytes().contains(&b'#') {
            return Err(NoRoute::Ambiguous {
                path: echo(path),
                why: "a raw `#`",
            });
        }
        let path = without_query(path);
        let segments = request_segments(path)?;
        self.routes
            .iter()
            .filter(|r| r.method == method && r.matches(&segments))
            .max_by_key(|r| &r.specificity)
            .ok_or_else(|| {
                if self.routes.iter().any(|r| r.matches(&segments)) {
                    NoRoute::Method {
                        method: echo(method),
                        path: echo(path),
                    }
                } else {
                    NoRoute::Path { path: echo(path) }
                }
            })
    }
}

/// A request path without its query string: what is matched, and what
/// Cedar sees as `context.http.path`.
pub fn without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// Why a request has no route. Every variant is a deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    #[error("no route for `{path}`")]
    Path { path: String },
    #[error("no route for {method} `{path}` (the path is mapped for other methods)")]
    Method { method: String, path: String },
    #[error("the path `{path}` is ambiguous ({why}), so it is not matched")]
    Ambiguous { path: String, why: &'static str },
}

/// A request path's segments, or why it is refused.
/// Up to this many live on the stack: a lookup allocates nothing for a
/// path of ordinary depth.
type Segments<'a> = smallvec::SmallVec<[&'a str; 16]>;

fn request_segments(path: &str) -> Result<Segments<'_>, NoRoute> {
    let ambiguous = |why| NoRoute::Ambiguous {
        path: echo(path),
        why,
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ambiguous("it does not start with `/`"));
    };
    // One pass over the bytes (this runs for every check): split at `/`,
    // refusing a backslash or an encoded `/`, `\` or `.` on the way. Every
    // byte matched is ASCII, so each cut is at a character boundary.
    let bytes = rest.as_bytes();
    let mut segments = Segments::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => {
                segments.push(&rest[start..i]);
                start = i + 1;
            }
            b'\\' => return Err(ambiguous(ENCODED)),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
                if [b"2f", b"5c", b"2e"]
                    .iter()
                    .any(|e| hex.eq_ignore_ascii_case(*e))
                {
                    return Err(ambiguous(ENCODED));
                }
            }
            _ => {}
        }
    }
    segments.push(&rest[start..]);
    if segments.iter().any(|s| s.is_empty()) {
        return Err(ambiguous("an empty segment"));
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(ambiguous("a dot segment"));
    }
    Ok(segments)
}

/// Why a path with a backslash or an encoded separator is refused.
const ENCODED: &str = "an encoded `/`, `\\` or `.`";

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: &str = "altinn:serviceowner/instances.read";
    const WRITE: &str = "altinn:serviceowner/instances.write";

    fn table(rows: &[(&str, &str, &str)]) -> Result<RouteTable, Vec<RouteError>> {
        let routes: Vec<serde_json::Value> = rows
            .iter()
            .map(|(m, p, s)| serde_json::json!({"method": m, "path": p, "scope": s, "source": "test"}))
            .collect();
        RouteTable::from_json(&serde_json::json!({ "routes": routes }).to_string())
    }

    fn storage() -> RouteTable {
        table(&[
            ("GET", "/storage/api/v1/instances", READ),
            ("POST", "/storage/api/v1/instances", WRITE),
            ("GET", "/storage/api/v1/instances/{party}/{guid}", READ),
            ("DELETE", "/storage/api/v1/instances/{party}/{guid}", WRITE),
            (
                "GET",
                "/storage/api/v1/instances/{party}/{guid}/data/{data}",
                READ,
            ),
            (
                "PUT",
                "/storage/api/v1/instances/{party}/{guid}/data/{data}",
                WRITE,
            ),
            (
                "PUT",
                "/storage/api/v1/instances/{party}/{guid}/{what}",
                READ,
            ),
            (
                "PUT",
                "/storage/api/v1/instances/{party}/{guid}/substatus",
                WRITE,
            ),
        ])
        .unwrap()
    }

    fn scope_of(t: &RouteTable, m: &str, p: &str) -> Result<String, NoRoute> {
        t.lookup(m, p).map(|r| r.scope.to_string())
    }

    #[test]
    fn lookup_by_method_and_template() {
        let t = storage();
        let g = "/storage/api/v1/instances/50001/1f7c0d4e-0000-4c3b-9b1e-7f1f1d1f1d1f";
        assert_eq!(scope_of(&t, "GET", g).unwrap(), READ);
        assert_eq!(scope_of(&t, "DELETE", g).unwrap(), WRITE);
        assert_eq!(
            scope_of(&t, "GET", "/storage/api/v1/instances?org=ttd").unwrap(),
            READ
        );
        assert_eq!(
            scope_of(&t, "POST", "/storage/api/v1/instances").unwrap(),
            WRITE
        );
        // Literals beat parameters, whatever the order in the file.
        assert_eq!(
            scope_of(&t, "PUT", &format!("{g}/substatus")).unwrap(),
            WRITE
        );
        assert_eq!(scope_of(&t, "PUT", &format!("{g}/other")).unwrap(), READ);
        // Literals match exactly: a case variant has no route.
        assert!(t.lookup("GET", "/Storage/api/v1/instances").is_err());
    }

    #[test]
    fn what_has_no_route_is_said() {
        let t = storage();
        let g = "/storage/api/v1/instances/50001/abc";
        assert!(matches!(t.lookup("PATCH", g), Err(NoRoute::Method { .. })));
        assert!(matches!(t.lookup("get", g), Err(NoRoute::Method { .. })));
        for p in [
            "/storage/api/v1/instance",
            "/storage/api/v1/instances/50001/abc/extra/more/x",
            "/",
            "",
        ] {
            assert!(t.lookup("GET", p).is_err(), "{p}");
        }
        for p in [
            "/storage/api/v1/instances/",
            "/storage//api/v1/instances",
            "/storage/api/v1/instances/50001/../abc",
            "/storage/api/v1/instances/50001%2Fabc",
            "/storage/api/v1/instances/50001/%2e%2e",
            "/storage/api/v1/instances/50001\\abc",
            "storage/api/v1/instances",
            "/storage/api/v1/instances#",
            "/storage/api/v1/instances?x=1#y",
        ] {
            assert!(
                matches!(t.lookup("GET", p), Err(NoRoute::Ambiguous { .. })),
                "{p}"
            );
        }
    }

    /// A raw `#` is not a fragment to cut before the dot-segment check: an
    /// upstream may read `#/../` as part of the path and land on a write.
    #[test]
    fn a_raw_hash_is_ambiguous_not_cut() {
        let t = storage();
        let p = "/storage/api/v1/instances/50001/abc/readstatus#/../substatus";
        assert_eq!(
            t.lookup("PUT", p).map(|r| r.scope.as_str().to_string()),
            Err(NoRoute::Ambiguous {
                path: echo(p),
                why: "a raw `#`"
            })
        );
    }

    #[test]
    fn bad_tables_name_the_entry() {
        let errors = table(&[
            ("GET", "/a/{b}", READ),
            ("FETCH", "/a", READ),
            ("GET", "a", READ),
            ("GET", "/a/", READ),
            ("GET", "/a/b{c}", READ),
            ("GET", "/a/{}", READ),
            ("GET", "/a/{x}", READ),
            ("GET", "/A/{y}", WRITE),
            ("GET", "/b", "has space"),
        ])
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 7, "{shown:#?}");
        assert!(
            shown[0].starts_with("route #2: `method` `FETCH`"),
            "{}",
            shown[0]
        );
        assert!(shown[5].contains("same shape as route #1"), "{}", shown[5]);
        assert!(shown[6].starts_with("route #9: `scope`"), "{}", shown[6]);
        assert!(RouteTable::from_json("{}").is_err());
        assert!(RouteTable::from_json(r#"{"routes":[],"x":1}"#).is_err());
        let no_source = r#"{"routes":[{"method":"GET","path":"/a","scope":"s:s","source":" "}]}"#;
        assert!(matches!(
            RouteTable::from_json(no_source).unwrap_err()[0],
            RouteError::NoSource { index: 1 }
        ));
    }
}
