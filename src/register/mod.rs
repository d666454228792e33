//! Organization names from Brønnøysundregistrene's Entity Register
//! (Enhetsregisteret), for showing and finding the organizations that org
//! numbers stand for. The source is the register's open bulk download (NLOD
//! licence): a gzip'd JSON array of main units (`enheter`) and/or sub-units
//! (`underenheter`), over a million entries.
//!
//! - `parse`: gzip → JSON, streamed: one element at a time, nothing holds the
//!   decompressed text. Unknown fields are ignored; an entry without a valid
//!   org number or a name is skipped and counted; bytes that are not gzip or
//!   not a JSON array fail the load, naming the offset.
//! - `store`: [`Register`], immutable and compact: org numbers, name offsets,
//!   form and flags in parallel arrays, names in one arena (and a folded copy
//!   for search). [`Organization`] is one entry, borrowed.
//! - `search`: [`Register::search`], a substring scan of the folded names.
//! - `watch`: [`Registry`], the file kept current: loaded once its content
//!   has settled (the rule of [`crate::snapshot::settle`]), reloaded on its
//!   own thread when it changes, the last good register kept when a new file
//!   does not load.
//!
//! Names are for people to read: nothing here takes part in a decision, and
//! the engine never sees this module.

mod error;
mod parse;
mod read;
mod search;
mod store;
mod watch;

use std::io::Read;
use std::path::Path;

pub use error::{FormatError, RegisterError};
pub use search::MAX_HITS;
pub use store::{MAX_NAME_BYTES, Organization, Register};
pub use watch::{DEFAULT_QUIET, DEFAULT_RESCAN, Registry, RegistryOptions, RegistryStatus};

impl Register {
    /// Load a register download from a file, once, as it is now (no settle
    /// wait: [`Registry::open`] waits for a file that may still be changing).
    pub fn load(path: &Path) -> Result<Register, RegisterError> {
        let file = watch::open_regular(path)?;
        Self::read(file, None).map_err(|problem| match problem {
            FormatError::Read(source) => RegisterError::Read {
                path: path.to_path_buf(),
                source,
            },
            problem => RegisterError::Invalid {
                path: path.to_path_buf(),
                problem,
            },
        })
    }

    /// Load a register download from gzip'd bytes.
    pub fn from_reader(r: impl Read) -> Result<Register, RegisterError> {
        Self::read(r, None).map_err(RegisterError::Format)
    }

    fn read(
        r: impl Read,
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Register, FormatError> {
        let mut builder = store::Builder::default();
        parse::read_into(&mut builder, r, stop)?;
        Ok(builder.finish())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::ids::OrgNumber;

    /// `n` valid org numbers from `start` (eight digits) on; the check digit
    /// is found by `OrgNumber::parse`, the one mod-11 rule.
    pub(crate) fn org_numbers(start: u32, n: usize) -> Vec<String> {
        (start..)
            .filter_map(|prefix| {
                (0..10)
                    .map(|d| format!("{prefix:08}{d}"))
                    .find(|s| OrgNumber::parse(s).is_ok())
            })
            .take(n)
            .collect()
    }

    pub(crate) fn gzip(json: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(json.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    /// Entries in the shape of the register's download.
    pub(crate) const SAMPLE: &str = r#"[
      {"organisasjonsnummer":"923609016","navn":"EQUINOR ASA",
       "organisasjonsform":{"kode":"ASA","beskrivelse":"Allmennaksjeselskap","_links":{"self":{"href":"https://data.brreg.no/enhetsregisteret/api/organisasjonsformer/ASA"}}},
       "registreringsdatoEnhetsregisteret":"1995-03-12","registrertIMvaregisteret":true,
       "naeringskode1":{"beskrivelse":"Utvinning av råolje","kode":"06.100"},"antallAnsatte":21000,
       "forretningsadresse":{"land":"Norge","landkode":"NO","postnummer":"4035","poststed":"STAVANGER","adresse":["Forusbeen 50"],"kommune":"STAVANGER","kommunenummer":"1103"},
       "konkurs":false,"underAvvikling":false,"underTvangsavviklingEllerTvangsopplosning":false,
       "maalform":"Bokmål","_links":{"self":{"href":"https://data.brreg.no/enhetsregisteret/api/enheter/923609016"}}},
      {"organisasjonsnummer":"810418672","navn":"GAMLE HANDEL AS",
       "organisasjonsform":{"kode":"AS","beskrivelse":"Aksjeselskap"},
       "slettedato":"2019-06-30","konkurs":true},
      {"organisasjonsnummer":"974760673","navn":"REGISTERENHETEN I BRØNNØYSUND",
       "organisasjonsform":{"kode":"BEDR","beskrivelse":"Underenhet til næringsdrivende og offentlig forvaltning"},
       "overordnetEnhet":"912660680","oppstartsdato":"1995-01-01",
       "beliggenhetsadresse":{"land":"Norge","postnummer":"8910","poststed":"BRØNNØYSUND","adresse":["Havnegata 48"]}},
      {"organisasjonsnummer":"12345","navn":"FEIL NUMMER AS"},
      {"organisasjonsnummer":"889640782"},
      {"organisasjonsnummer":"991825827","navn":42,"organisasjonsform":"AS"},
      "not an object",
      {"organisasjonsnummer":"983887457","navn":"  UNDER AVVIKLING SA ","organisasjonsform":null,
       "underAvvikling":true,"slettedato":null,"overordnetEnhet":"000000001"}
    ]"#;

    fn n(s: &str) -> OrgNumber {
        OrgNumber::parse(s).unwrap()
    }

    #[test]
    fn reads_the_download_shape() {
        let r = Register::from_reader(&gzip(SAMPLE)[..]).unwrap();
        assert_eq!(r.len(), 4);
        // Bad number, no name, a name that is not a string, not an object.
        assert_eq!(r.skipped(), 4);
        assert_eq!(
            r.get(&n("923609016")),
            Some(Organization {
                number: n("923609016"),
                name: "EQUINOR ASA",
                form: Some("ASA"),
                deleted: false,
                bankrupt: false,
                winding_up: false,
                parent: None,
            })
        );
        let deleted = r.get(&n("810418672")).unwrap();
        assert!(deleted.deleted && deleted.bankrupt);
        assert_eq!(deleted.form, Some("AS"));
        let sub = r.get(&n("974760673")).unwrap();
        assert_eq!(sub.form, Some("BEDR"));
        assert_eq!(sub.parent, Some(n("912660680")));
        let odd = r.get(&n("983887457")).unwrap();
        // Trimmed; `null` is absent; a parent that is not an org number is none.
        assert_eq!(odd.name, "UNDER AVVIKLING SA");
        assert!(odd.winding_up && !odd.deleted);
        assert_eq!((odd.form, odd.parent), (None, None));
        assert_eq!(r.get(&n("889640782")), None);
    }

    #[test]
    fn two_arrays_one_after_another_are_one_register() {
        // `cat enheter.json.gz underenheter.json.gz`: two gzip members.
        let mut bytes = gzip(r#"[{"organisasjonsnummer":"923609016","navn":"EQUINOR ASA"}]"#);
        bytes.extend(gzip(
            "\n[{\"organisasjonsnummer\":\"974760673\",\"navn\":\"B\"}]\n",
        ));
        let r = Register::from_reader(&bytes[..]).unwrap();
        assert_eq!(r.len(), 2);
        assert!(Register::from_reader(&gzip("[]")[..]).unwrap().is_empty());
    }

    fn problem(bytes: &[u8]) -> String {
        match Register::from_reader(bytes) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("loaded {} entries", r.len()),
        }
    }

    #[test]
    fn bytes_that_are_not_a_download_fail_naming_where() {
        assert_eq!(problem(b""), "the organization register is empty");
        assert!(problem(b"[{}]").contains("is not gzip"));
        let json = problem(&gzip(r#"{"organisasjonsnummer":"923609016"}"#));
        assert!(
            json.starts_with("the organization register is not a JSON array of organizations: invalid type: map, expected a JSON array of organizations at line 1 column 1"),
            "{json}"
        );
        let syntax = problem(&gzip("[\n{\"navn\": \"A\"},\n{\"navn\" \"B\"}]"));
        assert!(syntax.contains("at line 3 column 9"), "{syntax}");
        let trailing = problem(&gzip("[] x"));
        assert!(
            trailing.ends_with("expected value at line 1 column 4"),
            "{trailing}"
        );
        // Cut short: the gzip stream ends early.
        let whole = gzip(SAMPLE);
        let cut = problem(&whole[..whole.len() / 2]);
        assert!(cut.contains("is not valid gzip before byte"), "{cut}");
        // Corrupt in the middle.
        let mut corrupt = whole.clone();
        for b in &mut corrupt[20..60] {
            *b = !*b;
        }
        let corrupt = problem(&corrupt);
        assert!(
            corrupt.contains("gzip") || corrupt.contains("JSON"),
            "{corrupt}"
        );
    }

    #[test]
    fn a_read_error_is_not_blamed_on_the_content() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let head = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
                if self.0 < head.len() {
                    let n = (head.len() - self.0).min(buf.len());
                    buf[..n].copy_from_slice(&head[self.0..self.0 + n]);
                    self.0 += n;
                    return Ok(n);
                }
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let e = Register::from_reader(Failing(0)).unwrap_err();
        assert!(
            matches!(e, RegisterError::Format(FormatError::Read(_))),
            "{e:?}"
        );
    }
}
