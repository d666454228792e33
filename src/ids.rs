//! Identifiers that cross the trust boundary: org numbers, person ids, scopes, right
//! ids and undo tokens.
//!
//! Parse, don't validate: each type can only be built by its parser, so code that
//! holds one never re-checks it, and no identifier reaches a file path without
//! passing through here. This module does no I/O.

use std::fmt;

/// Why an identifier was rejected. The message is shown to callers as is, so the
/// rejected value it carries is [`echo`]ed (cut short), never the whole input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("`{0}` is not an org number: expected 9 digits, optionally prefixed `0192:`")]
    OrgFormat(String),
    #[error("`{0}` is not an org number: the mod-11 check digit is wrong")]
    OrgChecksum(String),
    #[error("`{0}` is not a person id: expected 1 to 64 characters from `A-Za-z0-9._@-`")]
    Person(String),
    #[error("`{0}` is not a scope: expected 1 to 256 printable characters without spaces")]
    Scope(String),
    #[error("`{0}` is not a right id: expected 1 to 64 characters from `a-z0-9._-`")]
    Right(String),
    #[error("`{0}` is not an undo token: expected 32 hex digits")]
    UndoToken(String),
}

/// How many characters of a rejected value a message repeats. Enough to recognise
/// the value; a longer one would let one bad request fill the `grpc-message`
/// trailer (a 3 MB value made a 2.6 MB trailer, which the client refused with
/// `RESOURCE_EXHAUSTED` instead of showing the `INVALID_ARGUMENT`).
pub const ECHO_CHARS: usize = 64;

/// A user value as error messages show it: its first [`ECHO_CHARS`] characters,
/// then `…` when there was more (at most 8 bytes per character once escaped, so
/// an echo is never more than about 500 bytes). Cut at a character boundary (a multi-byte character
/// is kept whole or dropped). Control characters and the invisible ones that
/// reorder or hide text (bidi overrides, zero-width) are escaped (`\n`,
/// `\u{202e}`), so a value cannot break a log line, drive a terminal or show
/// as something else.
pub fn echo(value: &str) -> String {
    echo_within(value, ECHO_CHARS)
}

/// [`echo`] with another limit: the first `max_chars` characters, escaped,
/// then `…` when there was more. For values a log line shows at more length
/// than an error message, such as a request path.
pub fn echo_within(value: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max_chars * 4) + 3);
    let mut chars = value.chars();
    for c in chars.by_ref().take(max_chars) {
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// Format characters that change how the text around them shows: zero-width
/// spaces and joiners, directional marks, embeddings, overrides and isolates, and
/// the byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// The ISO 6523 ICD for Norwegian organisation numbers.
const ICD_PREFIX: &str = "0192:";
const ORG_WEIGHTS: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];

/// A Norwegian organisation number: 9 digits whose last is a valid mod-11 check
/// digit. Stored bare; `0192:810418672` and `810418672` parse to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrgNumber([u8; 9]);

impl OrgNumber {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        if input.is_empty() {
            return Err(IdError::Empty);
        }
        let bare = input.strip_prefix(ICD_PREFIX).unwrap_or(input);
        let bytes = bare.as_bytes();
        if bytes.len() != 9 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(IdError::OrgFormat(echo(input)));
        }
        let mut digits = [0u8; 9];
        digits.copy_from_slice(bytes);
        let sum: u32 = ORG_WEIGHTS
            .iter()
            .zip(&digits)
            .map(|(w, d)| w * u32::from(d - b'0'))
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(IdError::OrgChecksum(echo(input))),
            c => c,
        };
        if u32::from(digits[8] - b'0') != check {
            return Err(IdError::OrgChecksum(echo(input)));
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        // The array only ever holds ASCII digits (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// The digits as ASCII bytes, ordered as the org numbers are: lets a map keyed
/// by org number be ranged over by a prefix (`snapshot::load::owners::in_part`)
/// without making an org number that is not one.
impl std::borrow::Borrow<[u8; 9]> for OrgNumber {
    fn borrow(&self) -> &[u8; 9] {
        &self.0
    }
}

impl fmt::Display for OrgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn charset_ok(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(allowed)
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $allowed:expr, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(input: &str) -> Result<Self, IdError> {
                if input.is_empty() {
                    return Err(IdError::Empty);
                }
                if charset_ok(input, $max, $allowed) {
                    Ok(Self(input.to_string()))
                } else {
                    Err(IdError::$err(echo(input)))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A person who acts on behalf of an organisation, typically an 11-digit national
    /// identity number. Kept permissive on form (systems use other ids too) but
    /// strict on characters, since it is written to the audit log and files.
    PersonId,
    64,
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'),
    Person
);

string_id!(
    /// An OAuth2 scope as Maskinporten issues it, e.g. `altinn:serviceowner/instances.read`.
    Scope,
    256,
    |c: char| c.is_ascii_graphic(),
    Scope
);

string_id!(
    /// A right id from the catalogue, e.g. `instances-full`.
    RightId,
    64,
    |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
    Right
);

string_id!(
    /// The handle a revocation returns for undoing it: 128 random bits in hex. Safe
    /// to use as a file name once parsed.
    UndoToken,
    32,
    |c: char| c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
    UndoToken
);

impl UndoToken {
    /// A fresh token from the operating system's random source.
    pub fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Like `parse`, but also insists on the full length.
    pub fn parse_exact(input: &str) -> Result<Self, IdError> {
        let token = Self::parse(input)?;
        if token.0.len() == 32 {
            Ok(token)
        } else {
            Err(IdError::UndoToken(echo(input)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_numbers_accept_bare_and_prefixed() {
        let bare = OrgNumber::parse("810418672").unwrap();
        let prefixed = OrgNumber::parse("0192:810418672").unwrap();
        assert_eq!(bare, prefixed);
        assert_eq!(bare.as_str(), "810418672");
        assert!(OrgNumber::parse("991825827").is_ok());
    }

    #[test]
    fn org_numbers_reject_bad_check_digit_and_form() {
        assert_eq!(
            OrgNumber::parse("810418673"),
            Err(IdError::OrgChecksum("810418673".into()))
        );
        assert!(matches!(
            OrgNumber::parse("81041867"),
            Err(IdError::OrgFormat(_))
        ));
        assert!(matches!(
            OrgNumber::parse("0193:810418672"),
            Err(IdError::OrgFormat(_))
        ));
        assert!(matches!(
            OrgNumber::parse("81041867x"),
            Err(IdError::OrgFormat(_))
        ));
        assert!(matches!(
            OrgNumber::parse("../../etc"),
            Err(IdError::OrgFormat(_))
        ));
        assert_eq!(OrgNumber::parse(""), Err(IdError::Empty));
    }

    #[test]
    fn org_numbers_with_remainder_one_are_invalid() {
        // 4 * 3 = 12 and 12 % 11 == 1: the check digit would be 10, so no last
        // digit makes `40000000x` valid.
        for d in 0..=9 {
            assert!(matches!(
                OrgNumber::parse(&format!("40000000{d}")),
                Err(IdError::OrgChecksum(_))
            ));
        }
    }

    #[test]
    fn other_ids() {
        assert!(PersonId::parse("01017012345").is_ok());
        assert!(PersonId::parse("../x").is_err());
        assert!(PersonId::parse("a b").is_err());
        assert!(Scope::parse("altinn:serviceowner/instances.read").is_ok());
        assert!(Scope::parse("with space").is_err());
        assert!(RightId::parse("instances-full").is_ok());
        assert!(RightId::parse("Instances").is_err());
        let t = UndoToken::generate().unwrap();
        assert_eq!(UndoToken::parse_exact(t.as_str()).unwrap(), t);
        assert!(UndoToken::parse_exact("abc").is_err());
        assert!(UndoToken::parse_exact("../../../../../../../../../../etc").is_err());
    }

    #[test]
    fn echo_cuts_long_values_at_a_character_boundary() {
        assert_eq!(echo(""), "");
        let exact = "a".repeat(ECHO_CHARS);
        assert_eq!(echo(&exact), exact, "a value of exactly the limit is whole");
        assert_eq!(
            echo(&"a".repeat(ECHO_CHARS + 1)),
            format!("{exact}…"),
            "one more is cut"
        );
        // Multi-byte characters straddling the byte offset 64 stay whole: the
        // cut counts characters, not bytes.
        for wide in ["æ", "€", "😀"] {
            let long = wide.repeat(ECHO_CHARS + 5);
            let shown = echo(&long);
            assert_eq!(shown, format!("{}…", wide.repeat(ECHO_CHARS)));
            let odd = format!("a{long}");
            let shown = echo(&odd);
            assert!(shown.starts_with('a') && shown.ends_with('…'), "{shown}");
            assert_eq!(shown.chars().count(), ECHO_CHARS + 1);
        }
        assert_eq!(echo("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(echo("\u{202e}gpj.exe"), "\\u{202e}gpj.exe");
        assert_eq!(echo("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        // Escaping does not change what counts: 64 input characters are shown.
        let controls = "\0".repeat(ECHO_CHARS + 1);
        assert_eq!(echo(&controls), format!("{}…", "\\u{0}".repeat(ECHO_CHARS)));
    }

    #[test]
    fn rejected_values_are_echoed_cut() {
        let huge = "9".repeat(3 << 20);
        for e in [
            OrgNumber::parse(&huge).unwrap_err(),
            OrgNumber::parse(&format!("0192:{huge}")).unwrap_err(),
            PersonId::parse(&huge).unwrap_err(),
            Scope::parse(&huge).unwrap_err(),
            RightId::parse(&huge).unwrap_err(),
            UndoToken::parse_exact(&huge).unwrap_err(),
        ] {
            let m = e.to_string();
            assert!(m.len() < 200, "{} bytes", m.len());
            assert!(m.contains("…`"), "{m}");
        }
        // Short values are shown as given.
        assert_eq!(
            OrgNumber::parse("810418673").unwrap_err().to_string(),
            "`810418673` is not an org number: the mod-11 check digit is wrong"
        );
    }
}
