//! How `ListDelegations` pages (Google AIP-158): the page size rules, the
//! byte budget of a page, and the page token. The store walks positions
//! ([`Position`]); this module says how many delegations a page may hold and
//! how a position travels to the client and back. No I/O.
//!
//! A page token is `base64url(version, filters, position)`, unpadded:
//! one version byte ([`TOKEN_VERSION`]), the first 8 bytes of a SHA-256 of
//! the filters the page was listed with, and the owner and supplier of the
//! last delegation returned as their 9 ASCII digits (27 bytes, 36
//! characters). It is opaque to clients, but it is not a secret and is not
//! signed, because it grants nothing: a position only says where in a list
//! the caller may read in full anyway to resume. Decoding accepts nothing but
//! two valid org numbers (the same parser as every request field), so a
//! crafted token can at most start a listing somewhere else. The filter
//! fingerprint catches a token sent with other filters than the request that
//! produced it (`INVALID_ARGUMENT`), rather than silently resuming a
//! different listing at a position from another.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;
use tonic::Status;

use crate::ids::{OrgNumber, echo};
use crate::store::{ListFilter, Position};

/// Delegations in a page when the request asks for none (`page_size` 0).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most delegations in a page; a larger `page_size` is lowered to it.
pub const MAX_PAGE_SIZE: usize = 1000;
/// A page stops before the delegation that would take its delegations past
/// this many encoded bytes (it always holds at least one). With the shipped
/// catalogue a full page of the longest fields is about a quarter of this (see
/// `server::limits`), so the budget only cuts pages when a catalogue gives a
/// delegation many long scopes, or a hand-edited file holds long strings;
/// it keeps such pages far below what clients accept (4 MiB by default).
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The format of the tokens this build writes; any other is refused.
pub const TOKEN_VERSION: u8 = 1;
const FINGERPRINT_LEN: usize = 8;
const ORG_LEN: usize = 9;
const TOKEN_BYTES: usize = 1 + FINGERPRINT_LEN + 2 * ORG_LEN;
/// The length of every token this build writes; a longer string is refused
/// before it is decoded.
pub const TOKEN_CHARS: usize = (TOKEN_BYTES * 4).div_ceil(3);

/// How many delegations a page may hold, from the request's `page_size`.
pub fn page_size(requested: i32) -> Result<usize, Status> {
    match usize::try_from(requested) {
        Err(_) => Err(Status::invalid_argument(format!(
            "`page_size` is {requested}: expected 0 (the default, {DEFAULT_PAGE_SIZE}) or more \
             (at most {MAX_PAGE_SIZE} are returned)"
        ))),
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) => Ok(n.min(MAX_PAGE_SIZE)),
    }
}

/// Why a `page_token` was refused. The `Display` follows the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this server writes: not base64url, another length or
    /// format version, or positions that are not org numbers.
    #[error("`{0}` is not a page token from `ListDelegations` of this server")]
    Garbled(String),
    /// The token was given for other filters than this request's.
    #[error(
        "was given for other filters: send the `owner` and `supplier` of the request that \
         returned it, or list from the start without a token"
    )]
    OtherFilters,
}

impl TokenError {
    pub fn status(self) -> Status {
        Status::invalid_argument(format!("`page_token` {self}"))
    }
}

/// The first bytes of a SHA-256 over the filters, in their bare form (so
/// `0192:810418672` and `810418672` are the same filter).
fn fingerprint(filter: &ListFilter) -> [u8; FINGERPRINT_LEN] {
    let text = |o: Option<OrgNumber>| o.map(|o| o.to_string()).unwrap_or_default();
    let mut h = sha2::Sha256::new();
    h.update(b"tilgang.v1.Delegations/ListDelegations\0owner=");
    h.update(text(filter.owner).as_bytes());
    h.update(b"\0supplier=");
    h.update(text(filter.supplier).as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    out
}

/// The token for the page after `last`, listed with `filter`.
pub fn encode(filter: &ListFilter, last: Position) -> String {
    let mut bytes = Vec::with_capacity(TOKEN_BYTES);
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(&fingerprint(filter));
    bytes.extend_from_slice(last.owner.as_str().as_bytes());
    bytes.extend_from_slice(last.supplier.as_str().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Where a listing with `filter` resumes: `None` for an empty token (the
/// first page), or the position a token of this listing carries.
pub fn decode(token: &str, filter: &ListFilter) -> Result<Option<Position>, TokenError> {
    if token.is_empty() {
        return Ok(None);
    }
    let garbled = || TokenError::Garbled(echo(token));
    if token.len() > TOKEN_CHARS {
        return Err(garbled());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| garbled())?;
    // A later format would have another version byte, which this one refuses.
    if bytes.len() != TOKEN_BYTES || bytes[0] != TOKEN_VERSION {
        return Err(garbled());
    }
    let (fp, orgs) = bytes[1..].split_at(FINGERPRINT_LEN);
    let (owner, supplier) = orgs.split_at(ORG_LEN);
    let org = |digits: &[u8]| {
        std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| OrgNumber::parse(d).ok())
    };
    let (Some(owner), Some(supplier)) = (org(owner), org(supplier)) else {
        return Err(garbled());
    };
    let position = Position { owner, supplier };
    // A token this listing wrote names its filters, and its position is a
    // delegation they select.
    if fp != fingerprint(filter) || !filter.admits(position) {
        return Err(TokenError::OtherFilters);
    }
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgNumber {
        OrgNumber::parse(s).unwrap()
    }

    const A: &str = "991825827";
    const B: &str = "810418672";
    const C: &str = "974760673";

    fn at(owner: &str, supplier: &str) -> Position {
        Position {
            owner: org(owner),
            supplier: org(supplier),
        }
    }

    #[test]
    fn page_sizes_follow_aip_158() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1).unwrap(), 1);
        assert_eq!(page_size(1000).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(1001).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(i32::MAX).unwrap(), MAX_PAGE_SIZE);
        for bad in [-1, i32::MIN] {
            let e = page_size(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().starts_with("`page_size` is -"),
                "{}",
                e.message()
            );
        }
    }

    #[test]
    fn a_token_round_trips_with_its_filters() {
        let filters = [
            ListFilter::default(),
            ListFilter {
                owner: Some(org(A)),
                supplier: None,
            },
            ListFilter {
                owner: None,
                supplier: Some(org(B)),
            },
            ListFilter {
                owner: Some(org(A)),
                supplier: Some(org(B)),
            },
        ];
        for f in filters {
            let token = encode(&f, at(A, B));
            assert_eq!(token.len(), TOKEN_CHARS, "{token}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token}"
            );
            assert_eq!(decode(&token, &f), Ok(Some(at(A, B))));
            // Any other filter refuses it.
            for other in filters.iter().filter(|o| **o != f) {
                assert_eq!(decode(&token, other), Err(TokenError::OtherFilters));
            }
        }
        assert_eq!(decode("", &ListFilter::default()), Ok(None));
    }

    #[test]
    fn a_token_whose_position_its_filters_do_not_select_is_refused() {
        // As if crafted: the fingerprint of owner A, a position in owner C.
        let f = ListFilter {
            owner: Some(org(A)),
            supplier: None,
        };
        let token = encode(&f, at(C, B));
        assert_eq!(decode(&token, &f), Err(TokenError::OtherFilters));
    }

    #[test]
    fn anything_else_is_garbled_and_echoed_short() {
        let f = ListFilter::default();
        let good = encode(&f, at(A, B));
        let mut bytes = URL_SAFE_NO_PAD.decode(&good).unwrap();
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            edit(&mut b);
            URL_SAFE_NO_PAD.encode(b)
        };
        let bad_check_digit = with(&|b| b[TOKEN_BYTES - 1] = b'3');
        let not_digits = with(&|b| b[10] = b'a');
        let short = with(&|b| {
            b.pop();
        });
        let long = with(&|b| b.push(b'0'));
        let padded = format!("{good}=");
        let cases = [
            "x".to_string(),
            "!!!!".to_string(),
            format!("+{}", &good[1..]),
            good[..good.len() - 1].to_string(),
            format!("{good}A"),
            padded,
            good.replace('-', "+").replace('_', "/") + "+",
            bad_check_digit,
            not_digits,
            short,
            long,
            "9".repeat(250_000),
            format!(" {good}"),
            "\u{202e}x".to_string(),
        ];
        for token in cases {
            let e = decode(&token, &f).unwrap_err();
            assert!(matches!(e, TokenError::Garbled(_)), "{token:.80}: {e:?}");
            let message = e.status().message().to_string();
            assert!(message.starts_with("`page_token` `"), "{message}");
            assert!(message.len() < 300, "{message}");
        }
        // Another format version.
        bytes[0] = 2;
        let e = decode(&URL_SAFE_NO_PAD.encode(&bytes), &f).unwrap_err();
        assert!(matches!(e, TokenError::Garbled(_)), "{e:?}");
    }
}
