//! The organization register: real-format downloads (gzip'd JSON arrays of
//! `enheter` and `underenheter`) written to files, loaded, searched, and
//! reloaded when the file is edited.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tilgang::ids::OrgNumber;
use tilgang::register::{Register, RegisterError, Registry, RegistryOptions};

use crate::util::eventually;

/// A main unit (AS), a deleted one, a sub-unit and malformed entries, as the
/// bulk download has them (fields tilgang does not read included).
const DOWNLOAD: &str = r#"[
{"organisasjonsnummer":"923609016","navn":"EQUINOR ASA","organisasjonsform":{"kode":"ASA","beskrivelse":"Allmennaksjeselskap","_links":{"self":{"href":"https://data.brreg.no/enhetsregisteret/api/organisasjonsformer/ASA"}}},"postadresse":{"land":"Norge","landkode":"NO","postnummer":"4035","poststed":"STAVANGER","adresse":["Postboks 8500 Forus"],"kommune":"STAVANGER","kommunenummer":"1103"},"registreringsdatoEnhetsregisteret":"1995-03-12","registrertIMvaregisteret":true,"naeringskode1":{"beskrivelse":"Utvinning av råolje","kode":"06.100"},"antallAnsatte":21000,"harRegistrertAntallAnsatte":true,"forretningsadresse":{"land":"Norge","landkode":"NO","postnummer":"4035","poststed":"STAVANGER","adresse":["Forusbeen 50"],"kommune":"STAVANGER","kommunenummer":"1103"},"stiftelsesdato":"1972-09-18","institusjonellSektorkode":{"kode":"1120","beskrivelse":"Statseide aksjeselskaper mv."},"registrertIForetaksregisteret":true,"registrertIStiftelsesregisteret":false,"registrertIFrivillighetsregisteret":false,"konkurs":false,"underAvvikling":false,"underTvangsavviklingEllerTvangsopplosning":false,"maalform":"Bokmål","_links":{"self":{"href":"https://data.brreg.no/enhetsregisteret/api/enheter/923609016"}}},
{"organisasjonsnummer":"810418672","navn":"GAMLE BRØNNØY HANDEL AS","organisasjonsform":{"kode":"AS","beskrivelse":"Aksjeselskap"},"slettedato":"2019-06-30","konkurs":true,"underAvvikling":false},
{"organisasjonsnummer":"974760673","navn":"REGISTERENHETEN I BRØNNØYSUND","organisasjonsform":{"kode":"BEDR","beskrivelse":"Underenhet til næringsdrivende og offentlig forvaltning"},"overordnetEnhet":"912660680","oppstartsdato":"1995-01-01","beliggenhetsadresse":{"land":"Norge","landkode":"NO","postnummer":"8910","poststed":"BRØNNØYSUND","adresse":["Havnegata 48"],"kommune":"BRØNNØY","kommunenummer":"1813"},"_links":{"self":{"href":"https://data.brreg.no/enhetsregisteret/api/underenheter/974760673"},"overordnetEnhet":{"href":"https://data.brreg.no/enhetsregisteret/api/enheter/912660680"}}},
{"organisasjonsnummer":"97476067","navn":"ÅTTE SIFFER AS","organisasjonsform":{"kode":"AS"}},
{"organisasjonsnummer":"991825827","organisasjonsform":{"kode":"AS"}}
]"#;

fn n(s: &str) -> OrgNumber {
    OrgNumber::parse(s).unwrap()
}

pub fn gzip(json: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(json.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// A download with one organization, `name`.
fn one(number: &str, name: &str) -> Vec<u8> {
    gzip(&format!(
        r#"[{{"organisasjonsnummer":"{number}","navn":"{name}","organisasjonsform":{{"kode":"AS","beskrivelse":"Aksjeselskap"}}}}]"#
    ))
}

/// Replace the file as a downloader should: a temp file beside it, renamed over.
fn save_by_rename(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_download_in_the_real_format_loads_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enheter_alle.json.gz");
    std::fs::write(&path, gzip(DOWNLOAD)).unwrap();
    let r = Register::load(&path).unwrap();
    assert_eq!((r.len(), r.skipped()), (3, 2));

    let equinor = r.get(&n("923609016")).unwrap();
    assert_eq!(
        (equinor.name, equinor.form, equinor.deleted, equinor.parent),
        ("EQUINOR ASA", Some("ASA"), false, None)
    );
    let gone = r.get(&n("810418672")).unwrap();
    assert!(gone.deleted && gone.bankrupt);
    let sub = r.get(&n("974760673")).unwrap();
    assert_eq!(sub.form, Some("BEDR"));
    assert_eq!(sub.parent, Some(n("912660680")));
    // The parent itself is not in this file.
    assert_eq!(r.get(&n("912660680")), None);

    let found: Vec<&str> = r.search("brønnøy", 10).iter().map(|o| o.name).collect();
    // A word starting with the query, existing before deleted.
    assert_eq!(
        found,
        ["REGISTERENHETEN I BRØNNØYSUND", "GAMLE BRØNNØY HANDEL AS"]
    );
    assert_eq!(r.search("Equinor", 10)[0].number, n("923609016"));
    assert_eq!(r.search("0192:923609016", 10)[0].name, "EQUINOR ASA");
    assert!(r.search("statoil", 10).is_empty());
}

#[test]
fn a_file_that_is_not_a_download_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("enheter.json");
    std::fs::write(&plain, DOWNLOAD).unwrap();
    let e = Register::load(&plain).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "the organization register `{}` is not gzip: it does not start with the gzip magic bytes 1f 8b",
            plain.display()
        )
    );

    let object = dir.path().join("enhet.json.gz");
    std::fs::write(
        &object,
        gzip("\n\n  {\"organisasjonsnummer\":\"923609016\"}"),
    )
    .unwrap();
    let e = Register::load(&object).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("the organization register `{}`", object.display()))
            && e.ends_with("expected a JSON array of organizations at line 3 column 3"),
        "{e}"
    );

    let missing = dir.path().join("missing.json.gz");
    assert!(matches!(
        Register::load(&missing),
        Err(RegisterError::Read { .. })
    ));
    assert!(matches!(
        Register::load(dir.path()),
        Err(RegisterError::NotAFile { .. })
    ));
}

async fn open(path: &Path) -> Result<Arc<Registry>, RegisterError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Registry::open_with(
            path,
            RegistryOptions {
                quiet: Duration::from_millis(50),
                rescan: Duration::from_millis(200),
            },
        )
    })
    .await
    .unwrap()
}

fn name_of(registry: &Registry, number: &str) -> Option<String> {
    registry
        .current()
        .get(&n(number))
        .map(|o| o.name.to_string())
}

#[tokio::test]
async fn an_edited_file_is_reloaded_and_a_bad_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("organizations.json.gz");
    std::fs::write(&path, gzip(DOWNLOAD)).unwrap();
    let registry = open(&path).await.unwrap();
    assert_eq!(registry.status().generation, 1);
    assert_eq!(registry.current().len(), 3);
    let held = registry.current();

    // Replaced by rename: the new content is loaded.
    save_by_rename(&path, &one("923609016", "EQUINOR ENERGY ASA"));
    eventually("the renamed file is loaded", || async {
        registry.status().generation == 2
    })
    .await;
    assert_eq!(
        name_of(&registry, "923609016").as_deref(),
        Some("EQUINOR ENERGY ASA")
    );
    assert_eq!(registry.current().len(), 1);
    // A register already handed out is not changed under its holder.
    assert_eq!(held.len(), 3);

    // Written in place with something that is not a download: refused once,
    // the register loaded before serves on.
    std::fs::write(&path, b"<html>503 Service Unavailable</html>").unwrap();
    eventually("the bad file is refused", || async {
        registry.status().rejected == 1
    })
    .await;
    let status = registry.status();
    assert_eq!(status.generation, 2);
    let problem = status.problem.unwrap();
    assert!(problem.contains("is not gzip"), "{problem}");
    assert!(problem.contains("organizations.json.gz"), "{problem}");
    assert_eq!(
        name_of(&registry, "923609016").as_deref(),
        Some("EQUINOR ENERGY ASA")
    );

    // Written in place again, now whole and good: loaded, the problem gone.
    std::fs::write(&path, one("974760673", "REGISTERENHETEN I BRØNNØYSUND")).unwrap();
    eventually("the fixed file is loaded", || async {
        registry.status().generation == 3
    })
    .await;
    let status = registry.status();
    assert_eq!((status.rejected, status.problem), (1, None));
    assert_eq!(name_of(&registry, "923609016"), None);
    assert_eq!(
        registry.current().search("brønnøysund", 5)[0].number,
        n("974760673")
    );

    // Deleted: refused (the last good register serves on), then back.
    std::fs::remove_file(&path).unwrap();
    eventually("the missing file is reported", || async {
        registry.status().rejected == 2
    })
    .await;
    assert!(
        registry
            .status()
            .problem
            .is_some_and(|p| p.starts_with("cannot read the organization register"))
    );
    assert_eq!(registry.current().len(), 1);
    save_by_rename(&path, &gzip(DOWNLOAD));
    eventually("the restored file is loaded", || async {
        registry.status().generation == 4
    })
    .await;
    assert_eq!(registry.current().len(), 3);
    assert_eq!(registry.status().problem, None);
}

#[tokio::test]
async fn start_up_refuses_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("organizations.json.gz");
    std::fs::write(&path, gzip("[1, 2,")).unwrap();
    let e = open(&path).await.unwrap_err();
    assert!(matches!(e, RegisterError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("EOF while parsing"), "{e}");
    assert!(matches!(
        open(&dir.path().join("missing.json.gz")).await,
        Err(RegisterError::Read { .. })
    ));
}
