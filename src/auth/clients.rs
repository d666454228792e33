//! Client certificates as admin identities (`--admin-client-identities`): a
//! file that maps a certificate, already verified against the admin
//! listener's client CA bundle, to a person or to a service.
//!
//! ```json
//! { "clients": [
//!   { "uri": "spiffe://cluster.local/ns/altinn/sa/portal", "service": "altinn-portal" },
//!   { "dns": "ops.tilgang.example", "person": "01017012345" },
//!   { "common_name": "batch-export", "service": "batch-export" },
//!   { "sha256": "<64 hex digits of the certificate's DER>", "person": "04048612345" }
//! ] }
//! ```
//!
//! Each entry names the certificate by exactly one of a URI or DNS subject
//! alternative name, the subject's common name, or the SHA-256 of the whole
//! certificate (which changes when it is renewed; the names survive), and maps
//! it to exactly one of:
//! - `person`: the certificate *is* that person; a call acts for them as for a
//!   bearer token naming them;
//! - `service`: a service trusted to say which person it acts for (a portal
//!   backend that has logged the person in itself); a call acts for the
//!   person its `actor` names, and the audit log names the service.
//!
//! A certificate that matches entries mapping it to different identities is
//! refused rather than guessed at. The file is read at start-up; a change
//! needs a restart.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;

use crate::ids::{IdError, PersonId};

/// More than this is a mistake, not a list of clients.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Who a client certificate stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    Person(PersonId),
    /// A service name, `[a-z0-9._-]`, at most 64 characters.
    Service(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error("reading `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("`{}`: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("`{}`: clients[{index}]: {detail}", path.display())]
    Entry {
        path: PathBuf,
        index: usize,
        detail: String,
    },
}

/// Why a client certificate names nobody.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnmappedClient {
    #[error("the client certificate does not parse")]
    Unparsable,
    #[error("the client certificate is not in the admin client identities")]
    Unknown,
    #[error("the client certificate matches admin client identities that disagree")]
    Ambiguous,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    clients: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    uri: Option<String>,
    dns: Option<String>,
    common_name: Option<String>,
    sha256: Option<String>,
    person: Option<String>,
    service: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Uri(String),
    /// Lowercase: DNS names compare without case.
    Dns(String),
    CommonName(String),
    Sha256([u8; 32]),
}

/// The loaded mapping.
#[derive(Debug, Clone)]
pub struct ClientIdentities {
    entries: Vec<(Matcher, ClientIdentity)>,
}

/// What a certificate says about itself, for matching.
struct Names {
    uris: Vec<String>,
    dns: Vec<String>,
    common_names: Vec<String>,
    sha256: [u8; 32],
}

impl ClientIdentities {
    pub fn load(path: &Path) -> Result<Self, ClientsError> {
        use std::io::Read as _;
        let read = |source| ClientsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(ClientsError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::parse(&bytes).map_err(|e| match e {
            (None, detail) => ClientsError::Parse {
                path: path.to_path_buf(),
                detail,
            },
            (Some(index), detail) => ClientsError::Entry {
                path: path.to_path_buf(),
                index,
                detail,
            },
        })
    }

    /// Parse the file's bytes; an error names the entry, when it is one.
    fn parse(bytes: &[u8]) -> Result<Self, (Option<usize>, String)> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| (None, e.to_string()))?;
        let mut entries = Vec::with_capacity(file.clients.len());
        for (i, e) in file.clients.into_iter().enumerate() {
            let at = |detail: String| (Some(i), detail);
            let matcher = match (e.uri, e.dns, e.common_name, e.sha256) {
                (Some(u), None, None, None) if !u.is_empty() => Matcher::Uri(u),
                (None, Some(d), None, None) if !d.is_empty() => {
                    Matcher::Dns(d.to_ascii_lowercase())
                }
                (None, None, Some(c), None) if !c.is_empty() => Matcher::CommonName(c),
                (None, None, None, Some(h)) => Matcher::Sha256(
                    hex32(&h).ok_or_else(|| at("`sha256` must be 64 hexadecimal digits".into()))?,
                ),
                _ => {
                    return Err(at(
                        "give exactly one non-empty `uri`, `dns`, `common_name` or `sha256`".into(),
                    ));
                }
            };
            let identity = match (e.person, e.service) {
                (Some(p), None) => ClientIdentity::Person(
                    PersonId::parse(&p).map_err(|e: IdError| at(format!("`person` {e}")))?,
                ),
                (None, Some(s)) if service_name(&s) => ClientIdentity::Service(s),
                (None, Some(_)) => {
                    return Err(at(
                        "`service` must be 1 to 64 characters of a-z, 0-9, `.`, `_` and `-`".into(),
                    ));
                }
                _ => return Err(at("give exactly one of `person` or `service`".into())),
            };
            if entries.iter().any(|(m, _)| *m == matcher) {
                return Err(at("the same certificate name is listed twice".into()));
            }
            entries.push((matcher, identity));
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who the DER certificate `der` stands for.
    pub fn identify(&self, der: &[u8]) -> Result<ClientIdentity, UnmappedClient> {
        let names = names(der).ok_or(UnmappedClient::Unparsable)?;
        let mut found: Option<&ClientIdentity> = None;
        for (matcher, identity) in &self.entries {
            let hit = match matcher {
                Matcher::Uri(u) => names.uris.iter().any(|n| n == u),
                Matcher::Dns(d) => names.dns.iter().any(|n| n.eq_ignore_ascii_case(d)),
                Matcher::CommonName(c) => names.common_names.iter().any(|n| n == c),
                Matcher::Sha256(h) => names.sha256 == *h,
            };
            if hit {
                match found {
                    Some(f) if f != identity => return Err(UnmappedClient::Ambiguous),
                    _ => found = Some(identity),
                }
            }
        }
        found.cloned().ok_or(UnmappedClient::Unknown)
    }
}

fn service_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().replace(':', "");
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn names(der: &[u8]) -> Option<Names> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut n = Names {
        uris: Vec::new(),
        dns: Vec::new(),
        common_names: cert
            .subject()
            .iter_common_name()
            .filter_map(|c| c.as_str().ok().map(str::to_string))
            .collect(),
        sha256: Sha256::digest(der).into(),
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => n.uris.push((*u).to_string()),
                GeneralName::DNSName(d) => n.dns.push((*d).to_string()),
                _ => {}
            }
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ClientIdentities, (Option<usize>, String)> {
        ClientIdentities::parse(json.as_bytes())
    }

    #[test]
    fn each_entry_names_one_certificate_and_one_identity() {
        let ok = parse(
            r#"{"clients": [
                {"uri": "spiffe://c/ns/a/sa/p", "service": "altinn-portal"},
                {"dns": "Ops.Example", "person": "01017012345"},
                {"common_name": "batch", "service": "batch"},
                {"sha256": "AB:CD:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01", "person": "04048612345"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(ok.len(), 4);
        for (json, index, says) in [
            (
                r#"{"clients": [{"person": "01017012345"}]}"#,
                Some(0),
                "exactly one non-empty",
            ),
            (
                r#"{"clients": [{"uri": "a", "dns": "b", "service": "s"}]}"#,
                Some(0),
                "exactly one non-empty",
            ),
            (
                r#"{"clients": [{"uri": "", "service": "s"}]}"#,
                Some(0),
                "exactly one non-empty",
            ),
            (
                r#"{"clients": [{"uri": "a"}]}"#,
                Some(0),
                "`person` or `service`",
            ),
            (
                r#"{"clients": [{"uri": "a", "person": "01017012345", "service": "s"}]}"#,
                Some(0),
                "`person` or `service`",
            ),
            (
                r#"{"clients": [{"uri": "a", "person": "../x"}]}"#,
                Some(0),
                "`person`",
            ),
            (
                r#"{"clients": [{"uri": "a", "service": "Not OK"}]}"#,
                Some(0),
                "`service`",
            ),
            (
                r#"{"clients": [{"sha256": "abc", "service": "s"}]}"#,
                Some(0),
                "64 hexadecimal",
            ),
            (
                r#"{"clients": [{"uri": "a", "service": "s"}, {"uri": "a", "service": "t"}]}"#,
                Some(1),
                "twice",
            ),
            (
                r#"{"clients": [{"url": "a", "service": "s"}]}"#,
                None,
                "unknown field",
            ),
            (r#"{"client": []}"#, None, "unknown field"),
        ] {
            let (i, m) = parse(json).unwrap_err();
            assert_eq!(i, index, "{json}: {m}");
            assert!(m.contains(says), "{json}: `{m}` lacks `{says}`");
        }
    }
}
