//! Decision tables: CSV files of questions and the expected answer (`expect`
//! is `allow` or `deny`; `#` starts a comment line). Two kinds, told apart by
//! the header:
//! - `supplier,owner,scope,expect`: the `IsAuthorized` question;
//! - `method,path,supplier,owner,token_scopes,expect`: an HTTP call through
//!   the route table and the policies, as Envoy's `Check` decides it
//!   (`supplier` empty for an owner calling for itself, `token_scopes`
//!   space-separated).
//!
//! One runner serves `tilgang test` and `cargo test`. A failing row prints
//! the question itself, not only its line.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::engine::{self, AccessRequest};
use crate::gateway::{self, claims::Claims};
use crate::ids::{OrgNumber, Scope, echo};
use crate::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Bad { location: String, message: String },
}

/// What a row asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// May `supplier` use `scope` on `owner`'s API?
    Scope(AccessRequest),
    /// May a call `method path` with a token of these claims go through?
    Route {
        method: String,
        path: String,
        claims: Claims,
    },
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scope(r) => write!(
                f,
                "supplier {} owner {} scope `{}`",
                r.supplier, r.owner, r.scope
            ),
            Self::Route {
                method,
                path,
                claims,
            } => {
                write!(f, "{method} {path} ")?;
                match &claims.supplier {
                    Some(s) => write!(f, "supplier {s} ")?,
                    None => f.write_str("(the owner itself) ")?,
                }
                let scopes: Vec<&str> = claims.scopes.iter().map(Scope::as_str).collect();
                write!(
                    f,
                    "owner {} token scopes `{}`",
                    claims.consumer,
                    scopes.join(" ")
                )
            }
        }
    }
}

/// One row, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub location: String,
    pub question: Question,
    pub expect_allow: bool,
}

const SCOPE_HEADER: [&str; 4] = ["supplier", "owner", "scope", "expect"];
const ROUTE_HEADER: [&str; 6] = [
    "method",
    "path",
    "supplier",
    "owner",
    "token_scopes",
    "expect",
];

/// Expand directories into their `*.csv` files (sorted).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TableError> {
    let mut out = Vec::new();
    for p in paths {
        let io = |source| TableError::Io {
            path: p.display().to_string(),
            source,
        };
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(io)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|e| e == "csv") && f.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(TableError::Bad {
                    location: p.display().to_string(),
                    message: "directory holds no `*.csv` tables".into(),
                });
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Parse one table.
pub fn read(path: &Path) -> Result<Vec<Row>, TableError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TableError::Io {
        path: name.clone(),
        source,
    })?;
    parse(&name, &text)
}

pub fn parse(name: &str, text: &str) -> Result<Vec<Row>, TableError> {
    let bad = |line: u64, message: String| TableError::Bad {
        location: format!("{name}:{line}"),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .has_headers(true)
        .from_reader(text.as_bytes());
    // The csv crate's positions do not count comment lines, and a record's
    // position is where the reader stood before skipping comments and blank lines;
    // find the record's own line from the byte offset.
    let line_at = |byte: u64| -> u64 {
        let mut at = usize::try_from(byte).unwrap_or(usize::MAX).min(text.len());
        while at < text.len() {
            let rest = &text[at..];
            let skip = rest.starts_with('#') || rest.starts_with('\n') || rest.starts_with("\r\n");
            if !skip {
                break;
            }
            at += rest.find('\n').map_or(rest.len(), |i| i + 1);
        }
        text.as_bytes()[..at]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64
            + 1
    };
    let header_line = text
        .lines()
        .position(|l| !l.trim_start().starts_with('#'))
        .map_or(1, |i| i as u64 + 1);
    let header = reader
        .headers()
        .map_err(|e| bad(header_line, e.to_string()))?
        .clone();
    let got: Vec<&str> = header.iter().collect();
    let routes = if got == ROUTE_HEADER {
        true
    } else if got == SCOPE_HEADER {
        false
    } else {
        return Err(bad(
            header_line,
            format!(
                "header must be `{}` or `{}`, found `{}`",
                SCOPE_HEADER.join(","),
                ROUTE_HEADER.join(","),
                echo(&got.join(","))
            ),
        ));
    };
    let names: &[&str] = if routes { &ROUTE_HEADER } else { &SCOPE_HEADER };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| line_at(p.byte()));
            bad(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| line_at(p.byte()));
        let get = |i: usize| record.get(i).unwrap_or("");
        let field = |i: usize, e: crate::ids::IdError| bad(line, format!("`{}` {e}", names[i]));
        let question = if routes {
            let method = get(0);
            if method.is_empty() {
                return Err(bad(line, "`method` is empty".into()));
            }
            let path = get(1);
            if !path.starts_with('/') {
                return Err(bad(
                    line,
                    format!("`path` `{}` must start with `/`", echo(path)),
                ));
            }
            let supplier = match get(2) {
                "" => None,
                s => Some(OrgNumber::parse(s).map_err(|e| field(2, e))?),
            };
            let scopes = get(4)
                .split_ascii_whitespace()
                .map(|s| Scope::parse(s).map_err(|e| field(4, e)))
                .collect::<Result<Vec<_>, _>>()?;
            Question::Route {
                method: method.to_string(),
                path: path.to_string(),
                claims: Claims {
                    consumer: OrgNumber::parse(get(3)).map_err(|e| field(3, e))?,
                    supplier,
                    scopes,
                    delegation_source: None,
                    client_id: None,
                },
            }
        } else {
            Question::Scope(AccessRequest {
                supplier: OrgNumber::parse(get(0)).map_err(|e| field(0, e))?,
                owner: OrgNumber::parse(get(1)).map_err(|e| field(1, e))?,
                scope: Scope::parse(get(2)).map_err(|e| field(2, e))?,
            })
        };
        let expect_allow = match get(names.len() - 1) {
            "allow" => true,
            "deny" => false,
            other => {
                return Err(bad(
                    line,
                    format!(
                        "`expect` must be `allow` or `deny`, found `{}`",
                        crate::ids::echo(other)
                    ),
                ));
            }
        };
        rows.push(Row {
            location: format!("{name}:{line}"),
            question,
            expect_allow,
        });
    }
    Ok(rows)
}

/// The result of running rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: usize,
    /// One line per failing row: `file:line: expected allow, got deny (reasons: ...)`.
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failures.len())
    }
}

fn word(allow: bool) -> &'static str {
    if allow { "allow" } else { "deny" }
}

/// Decide one question as the gateway listener would.
pub fn decide(snap: &Snapshot, question: &Question) -> engine::Decision {
    match question {
        Question::Scope(r) => engine::decide(snap, r),
        Question::Route {
            method,
            path,
            claims,
        } => match gateway::prepare(&snap.policies.routes, method, path, claims.clone()) {
            Ok((request, call)) => engine::decide_call(snap, &request, Some(&call)),
            // No route is a deny, with the reason where the policies' ids go.
            Err(no_route) => engine::Decision {
                allowed: false,
                reasons: vec![no_route.to_string()],
                errors: Vec::new(),
            },
        },
    }
}

/// Decide every row against `snap`.
pub fn run(snap: &Snapshot, rows: &[Row]) -> Outcome {
    let mut out = Outcome::default();
    for row in rows {
        let d = decide(snap, &row.question);
        if d.allowed == row.expect_allow {
            out.passed += 1;
        } else {
            let mut line = format!(
                "{}: {}: expected {}, got {} (reasons: {})",
                row.location,
                row.question,
                word(row.expect_allow),
                word(d.allowed),
                if d.reasons.is_empty() {
                    "none".to_string()
                } else {
                    d.reasons.join(", ")
                }
            );
            if !d.errors.is_empty() {
                line.push_str(&format!(" (errors: {})", d.errors.join("; ")));
            }
            out.failures.push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decision tables mangled at random (bytes dropped, inserted, flipped,
    /// cut short) are parse errors or rows, never a panic.
    #[test]
    fn mutated_tables_are_errors_not_panics() {
        let table = b"supplier,owner,scope,expect\n# c\n0192:810418672,991825827,a:b,allow\n";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let mut bytes = table.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len().max(1);
                match next() % 4 {
                    0 if !bytes.is_empty() => {
                        bytes.remove(at.min(bytes.len() - 1));
                    }
                    1 => bytes.insert(
                        at.min(bytes.len()),
                        b",\n\"#:0192\xff"[(next() % 9) as usize],
                    ),
                    2 if !bytes.is_empty() => {
                        let at = at.min(bytes.len() - 1);
                        bytes[at] = next() as u8;
                    }
                    _ => bytes.truncate(at),
                }
            }
            let _ = parse("t.csv", &String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn parses_comments_and_prefixes() {
        let rows = parse(
            "t.csv",
            "supplier,owner,scope,expect\n# a comment\n0192:810418672,991825827,a:b,allow\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].location, "t.csv:3");
        assert!(rows[0].expect_allow);
    }

    #[test]
    fn parses_route_tables() {
        let rows = parse(
            "r.csv",
            "method,path,supplier,owner,token_scopes,expect\n\
             GET,/a?b=1,810418672,991825827,a:b c:d,allow\n\
             POST,/a,,991825827,,deny\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        let Question::Route { claims, .. } = &rows[1].question else {
            panic!("a route question")
        };
        assert!(claims.supplier.is_none() && claims.scopes.is_empty());
        assert_eq!(
            rows[0].question.to_string(),
            "GET /a?b=1 supplier 810418672 owner 991825827 token scopes `a:b c:d`"
        );
        let e = parse(
            "r.csv",
            "method,path,supplier,owner,token_scopes,expect\nGET,a,,991825827,,deny\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("r.csv:2") && e.contains("`path`"), "{e}");
    }

    #[test]
    fn rejects_bad_tables_with_a_location() {
        let e = parse("t.csv", "a,b\n").unwrap_err().to_string();
        assert!(e.starts_with("t.csv:1: header must be"), "{e}");
        let e = parse(
            "t.csv",
            "supplier,owner,scope,expect\n810418672,991825827,s,maybe\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.csv:2") && e.contains("`expect`"), "{e}");
        let e = parse(
            "t.csv",
            "supplier,owner,scope,expect\n123,991825827,s,deny\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.csv:2") && e.contains("`supplier`"), "{e}");
    }
}
