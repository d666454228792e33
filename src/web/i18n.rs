//! Every string the owner's page shows, one catalogue per language: Norwegian
//! Bokmål (the default), Nynorsk and English. A catalogue is a [`Texts`]
//! value, so a key missing from one language does not compile; the tests
//! check that no text is empty and that each placeholder a text names is one
//! its caller fills. No I/O.

/// A language the page speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Nb,
    Nn,
    En,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Nb, Lang::Nn, Lang::En];

    /// The `lang` attribute and the `?lang=` value.
    pub fn code(self) -> &'static str {
        match self {
            Self::Nb => "nb",
            Self::Nn => "nn",
            Self::En => "en",
        }
    }

    /// The language's own name, for the switcher.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nb => "Bokmål",
            Self::Nn => "Nynorsk",
            Self::En => "English",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The first language of an `Accept-Language` header tilgang speaks
    /// (`no` and `nb` are Bokmål), else Bokmål.
    pub fn from_accept(header: Option<&str>) -> Self {
        header
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| part.split(';').next())
            .map(|tag| tag.trim().to_ascii_lowercase())
            .find_map(|tag| match tag.split('-').next().unwrap_or_default() {
                "nb" | "no" => Some(Self::Nb),
                "nn" => Some(Self::Nn),
                "en" => Some(Self::En),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Self::Nb => &NB,
            Self::Nn => &NN,
            Self::En => &EN,
        }
    }
}

/// `template` with each `{name}` replaced by its value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// One language's texts. Placeholders in braces are filled with [`fill`].
#[derive(Debug)]
pub struct Texts {
    pub title: &'static str,
    pub skip_to_main: &'static str,
    pub dev_banner: &'static str,
    pub language: &'static str,
    pub log_out: &'static str,
    /// `{name}` `{org}`.
    pub acting_for: &'static str,
    pub change_org: &'static str,
    pub error_summary: &'static str,
    /// Before a page's title while its form has errors.
    pub error_prefix: &'static str,
    pub no_access_title: &'static str,
    pub back_to_overview: &'static str,
    pub cancel: &'static str,
    pub next: &'static str,

    pub overview_intro: &'static str,
    pub overview_empty: &'static str,
    pub add_supplier: &'static str,
    pub edit_rights: &'static str,
    pub col_supplier: &'static str,
    pub col_rights: &'static str,
    pub col_given: &'static str,
    /// `{when}` `{who}`.
    pub given_by: &'static str,
    pub search_label: &'static str,
    pub search: &'static str,
    /// `{query}`.
    pub search_none: &'static str,
    pub page_next: &'static str,
    pub page_first: &'static str,
    /// The paging links' navigation landmark.
    pub pages: &'static str,
    pub gives_scopes: &'static str,
    pub received_link: &'static str,

    pub choose_org_title: &'static str,
    pub choose_org_intro: &'static str,
    pub choose: &'static str,

    pub add_title: &'static str,
    pub org_number: &'static str,
    pub org_number_hint: &'static str,
    /// `{name}`.
    pub org_found: &'static str,

    pub rights_title: &'static str,
    /// `{supplier}`.
    pub rights_legend: &'static str,

    pub confirm_title: &'static str,
    pub supplier: &'static str,
    pub rights: &'static str,
    pub valid_until_removed: &'static str,
    pub confirm: &'static str,

    pub given_title: &'static str,
    pub given_intro: &'static str,
    pub not_given: &'static str,

    pub edit_title: &'static str,
    pub edit_intro: &'static str,
    pub save: &'static str,
    pub removed_title: &'static str,
    pub removed_intro: &'static str,
    pub nothing_removed: &'static str,
    pub undo: &'static str,
    /// `{until}`.
    pub undo_until: &'static str,
    pub undone_title: &'static str,
    pub undone_intro: &'static str,

    pub received_title: &'static str,
    pub received_intro: &'static str,
    pub received_empty: &'static str,
    pub col_owner: &'static str,

    pub login_title: &'static str,
    pub login_intro: &'static str,
    pub login_dev_intro: &'static str,
    pub person_id: &'static str,
    pub person_id_hint: &'static str,
    pub log_in: &'static str,
    pub log_in_idporten: &'static str,

    pub err_org_empty: &'static str,
    pub err_org_format: &'static str,
    pub err_org_checksum: &'static str,
    pub err_org_own: &'static str,
    pub err_org_unknown: &'static str,
    pub err_org_deleted: &'static str,
    pub err_nothing_chosen: &'static str,
    pub err_no_key_role: &'static str,
    pub err_changed_elsewhere: &'static str,
    pub err_session_expired: &'static str,
    pub err_undo_too_late: &'static str,
    pub err_undo_unknown: &'static str,
    pub err_form_expired: &'static str,
    pub err_person_id: &'static str,
    pub err_login_failed: &'static str,
    pub err_not_found: &'static str,
    pub err_unavailable: &'static str,
    /// The write may have been saved (the store did not confirm it).
    pub err_maybe_saved: &'static str,
    pub err_nothing_delegated: &'static str,
}

pub const NB: Texts = Texts {
    title: "Tilgang til programmeringsgrensesnitt – API",
    skip_to_main: "Hopp til hovedinnholdet",
    dev_banner: "Utviklingsmodus: ingen innlogging er verifisert. Bruk aldri dette med ekte data.",
    language: "Språk",
    log_out: "Logg ut",
    acting_for: "{name} handler på vegne av {org}",
    change_org: "Bytt organisasjon",
    error_summary: "Rett opp dette før du går videre",
    error_prefix: "Feil",
    no_access_title: "Du har ikke tilgang",
    back_to_overview: "Til oversikten",
    cancel: "Avbryt",
    next: "Gå videre",
    overview_intro: "Leverandører som kan bruke API-ene til organisasjonen på vegne av dere. Dere er ansvarlige for å fjerne tilganger som ikke lenger trengs.",
    overview_empty: "Dere har ikke gitt noen leverandør tilgang ennå.",
    add_supplier: "Legg til leverandør",
    edit_rights: "Rediger tilganger",
    col_supplier: "Leverandør",
    col_rights: "Tilganger",
    col_given: "Sist endret",
    given_by: "{when} av {who}",
    search_label: "Søk etter organisasjonsnummer eller navn",
    search: "Søk",
    search_none: "Ingen leverandør passer til «{query}».",
    page_next: "Neste side",
    pages: "Sider",
    page_first: "Første side",
    gives_scopes: "Gir",
    received_link: "Mottatte API-tilganger",
    choose_org_title: "Velg organisasjon",
    choose_org_intro: "Du har nøkkelroller for flere organisasjoner. Velg hvem du handler på vegne av.",
    choose: "Velg",
    add_title: "Legg til leverandør",
    org_number: "Organisasjonsnummer",
    org_number_hint: "9 siffer, for eksempel 974 760 673",
    org_found: "Funnet: {name}",
    rights_title: "Velg tilganger",
    rights_legend: "Tilganger {supplier} skal få",
    confirm_title: "Bekreft",
    supplier: "Leverandør",
    rights: "Tilganger",
    valid_until_removed: "Tilgangen gjelder til den fjernes aktivt.",
    confirm: "Bekreft",
    given_title: "Tilgangen er gitt",
    given_intro: "Leverandøren har nå disse tilgangene:",
    not_given: "Dette kunne ikke gis:",
    edit_title: "Rediger tilganger",
    edit_intro: "Fjern haken for tilganger som skal fjernes. Fjerner du alle, mister leverandøren tilgangen helt.",
    save: "Lagre",
    removed_title: "Tilgangene er fjernet",
    removed_intro: "Dette ble fjernet:",
    nothing_removed: "Du fjernet ingen tilganger.",
    undo: "Angre",
    undo_until: "Du kan angre til {until}.",
    undone_title: "Endringen er angret",
    undone_intro: "Leverandøren har fått tilbake tilgangene.",
    received_title: "Mottatte API-tilganger",
    received_intro: "Tilganger andre organisasjoner har gitt til dere.",
    received_empty: "Ingen organisasjon har gitt dere tilgang.",
    col_owner: "Gitt av (tjenesteeier)",
    login_title: "Logg inn",
    login_intro: "Logg inn for å gi leverandører tilgang til API-ene deres.",
    login_dev_intro: "Utviklingsmodus: skriv fødselsnummeret til personen du vil logge inn som. Ingen kontrollerer det.",
    person_id: "Fødselsnummer",
    person_id_hint: "11 siffer",
    log_in: "Logg inn",
    log_in_idporten: "Logg inn med ID-porten",
    err_org_empty: "Skriv inn organisasjonsnummeret.",
    err_org_format: "Organisasjonsnummeret må være 9 siffer.",
    err_org_checksum: "Organisasjonsnummeret er ikke gyldig. Sjekk at du har skrevet det riktig.",
    err_org_own: "Dette er deres eget organisasjonsnummer. Skriv inn leverandørens.",
    err_org_unknown: "Vi finner ingen organisasjon med dette nummeret i Enhetsregisteret.",
    err_org_deleted: "Organisasjonen er slettet i Enhetsregisteret.",
    err_nothing_chosen: "Velg minst én tilgang.",
    err_no_key_role: "Du har ikke rettighetene som trengs for å gi tilganger for denne organisasjonen. Daglig leder kan hjelpe deg.",
    err_changed_elsewhere: "Noen andre har endret tilgangene til denne leverandøren etter at du åpnet siden. Se over og prøv igjen.",
    err_session_expired: "Økten din er utløpt. Logg inn igjen for å fortsette.",
    err_undo_too_late: "Det er for sent å angre denne endringen.",
    err_undo_unknown: "Vi finner ikke endringen som skulle angres.",
    err_form_expired: "Skjemaet er utløpt eller ble sendt fra et annet sted. Last siden på nytt og prøv igjen.",
    err_person_id: "Skriv inn et fødselsnummer (bare tall og bokstaver, høyst 64 tegn).",
    err_login_failed: "Innloggingen mislyktes. Prøv igjen.",
    err_not_found: "Siden finnes ikke.",
    err_unavailable: "Tjenesten er ikke tilgjengelig akkurat nå. Prøv igjen om litt.",
    err_maybe_saved: "Vi fikk ikke bekreftet at endringen ble lagret. Sjekk oversikten før du prøver igjen.",
    err_nothing_delegated: "Denne leverandøren har ingen tilganger fra dere.",
};

pub const NN: Texts = Texts {
    title: "Tilgang til programmeringsgrensesnitt – API",
    skip_to_main: "Hopp til hovudinnhaldet",
    dev_banner: "Utviklingsmodus: inga innlogging er verifisert. Bruk aldri dette med ekte data.",
    language: "Språk",
    log_out: "Logg ut",
    acting_for: "{name} handlar på vegner av {org}",
    change_org: "Byt organisasjon",
    error_summary: "Rett opp dette før du går vidare",
    error_prefix: "Feil",
    no_access_title: "Du har ikkje tilgang",
    back_to_overview: "Til oversikta",
    cancel: "Avbryt",
    next: "Gå vidare",
    overview_intro: "Leverandørar som kan bruke API-a til organisasjonen på vegner av dykk. De er ansvarlege for å fjerne tilgangar som ikkje lenger trengst.",
    overview_empty: "De har ikkje gitt nokon leverandør tilgang enno.",
    add_supplier: "Legg til leverandør",
    edit_rights: "Rediger tilgangar",
    col_supplier: "Leverandør",
    col_rights: "Tilgangar",
    col_given: "Sist endra",
    given_by: "{when} av {who}",
    search_label: "Søk etter organisasjonsnummer eller namn",
    search: "Søk",
    search_none: "Ingen leverandør passar til «{query}».",
    page_next: "Neste side",
    pages: "Sider",
    page_first: "Første side",
    gives_scopes: "Gir",
    received_link: "Mottekne API-tilgangar",
    choose_org_title: "Vel organisasjon",
    choose_org_intro: "Du har nøkkelroller for fleire organisasjonar. Vel kven du handlar på vegner av.",
    choose: "Vel",
    add_title: "Legg til leverandør",
    org_number: "Organisasjonsnummer",
    org_number_hint: "9 siffer, til dømes 974 760 673",
    org_found: "Funne: {name}",
    rights_title: "Vel tilgangar",
    rights_legend: "Tilgangar {supplier} skal få",
    confirm_title: "Stadfest",
    supplier: "Leverandør",
    rights: "Tilgangar",
    valid_until_removed: "Tilgangen gjeld til han blir fjerna aktivt.",
    confirm: "Stadfest",
    given_title: "Tilgangen er gitt",
    given_intro: "Leverandøren har no desse tilgangane:",
    not_given: "Dette kunne ikkje bli gitt:",
    edit_title: "Rediger tilgangar",
    edit_intro: "Fjern haken for tilgangar som skal fjernast. Fjernar du alle, mistar leverandøren tilgangen heilt.",
    save: "Lagre",
    removed_title: "Tilgangane er fjerna",
    removed_intro: "Dette vart fjerna:",
    nothing_removed: "Du fjerna ingen tilgangar.",
    undo: "Angre",
    undo_until: "Du kan angre til {until}.",
    undone_title: "Endringa er angra",
    undone_intro: "Leverandøren har fått tilbake tilgangane.",
    received_title: "Mottekne API-tilgangar",
    received_intro: "Tilgangar andre organisasjonar har gitt til dykk.",
    received_empty: "Ingen organisasjon har gitt dykk tilgang.",
    col_owner: "Gitt av (tenesteeigar)",
    login_title: "Logg inn",
    login_intro: "Logg inn for å gi leverandørar tilgang til API-a dykkar.",
    login_dev_intro: "Utviklingsmodus: skriv fødselsnummeret til personen du vil logge inn som. Ingen kontrollerer det.",
    person_id: "Fødselsnummer",
    person_id_hint: "11 siffer",
    log_in: "Logg inn",
    log_in_idporten: "Logg inn med ID-porten",
    err_org_empty: "Skriv inn organisasjonsnummeret.",
    err_org_format: "Organisasjonsnummeret må vere 9 siffer.",
    err_org_checksum: "Organisasjonsnummeret er ikkje gyldig. Sjekk at du har skrive det rett.",
    err_org_own: "Dette er organisasjonsnummeret dykkar. Skriv inn nummeret til leverandøren.",
    err_org_unknown: "Vi finn ingen organisasjon med dette nummeret i Einingsregisteret.",
    err_org_deleted: "Organisasjonen er sletta i Einingsregisteret.",
    err_nothing_chosen: "Vel minst éin tilgang.",
    err_no_key_role: "Du har ikkje rettane som trengst for å gi tilgangar for denne organisasjonen. Dagleg leiar kan hjelpe deg.",
    err_changed_elsewhere: "Nokon andre har endra tilgangane til denne leverandøren etter at du opna sida. Sjå over og prøv igjen.",
    err_session_expired: "Økta di har gått ut. Logg inn igjen for å halde fram.",
    err_undo_too_late: "Det er for seint å angre denne endringa.",
    err_undo_unknown: "Vi finn ikkje endringa som skulle angrast.",
    err_form_expired: "Skjemaet har gått ut eller vart sendt frå ein annan stad. Last sida på nytt og prøv igjen.",
    err_person_id: "Skriv inn eit fødselsnummer (berre tal og bokstavar, høgst 64 teikn).",
    err_login_failed: "Innlogginga mislukkast. Prøv igjen.",
    err_not_found: "Sida finst ikkje.",
    err_unavailable: "Tenesta er ikkje tilgjengeleg akkurat no. Prøv igjen om litt.",
    err_maybe_saved: "Vi fekk ikkje stadfesta at endringa vart lagra. Sjekk oversikta før du prøver igjen.",
    err_nothing_delegated: "Denne leverandøren har ingen tilgangar frå dykk.",
};

pub const EN: Texts = Texts {
    title: "Access to application programming interfaces – API",
    skip_to_main: "Skip to main content",
    dev_banner: "Development mode: no login is verified. Never use this with real data.",
    language: "Language",
    log_out: "Log out",
    acting_for: "{name} acting for {org}",
    change_org: "Change organisation",
    error_summary: "Correct this before you continue",
    error_prefix: "Error",
    no_access_title: "You do not have access",
    back_to_overview: "Back to the overview",
    cancel: "Cancel",
    next: "Continue",
    overview_intro: "Suppliers that may use your organisation's APIs on your behalf. You are responsible for removing access that is no longer needed.",
    overview_empty: "You have not given any supplier access yet.",
    add_supplier: "Add supplier",
    edit_rights: "Edit access",
    col_supplier: "Supplier",
    col_rights: "Access",
    col_given: "Last changed",
    given_by: "{when} by {who}",
    search_label: "Search by organisation number or name",
    search: "Search",
    search_none: "No supplier matches “{query}”.",
    page_next: "Next page",
    pages: "Pages",
    page_first: "First page",
    gives_scopes: "Gives",
    received_link: "Received API access",
    choose_org_title: "Choose organisation",
    choose_org_intro: "You hold key roles for several organisations. Choose the one you act for.",
    choose: "Choose",
    add_title: "Add supplier",
    org_number: "Organisation number",
    org_number_hint: "9 digits, for example 974 760 673",
    org_found: "Found: {name}",
    rights_title: "Choose access",
    rights_legend: "Access {supplier} gets",
    confirm_title: "Confirm",
    supplier: "Supplier",
    rights: "Access",
    valid_until_removed: "The access is valid until it is actively removed.",
    confirm: "Confirm",
    given_title: "Access given",
    given_intro: "The supplier now has this access:",
    not_given: "This could not be given:",
    edit_title: "Edit access",
    edit_intro: "Untick the access to remove. If you remove all of it, the supplier loses access entirely.",
    save: "Save",
    removed_title: "Access removed",
    removed_intro: "This was removed:",
    nothing_removed: "You removed no access.",
    undo: "Undo",
    undo_until: "You can undo until {until}.",
    undone_title: "The change is undone",
    undone_intro: "The supplier has its access back.",
    received_title: "Received API access",
    received_intro: "Access other organisations have given to you.",
    received_empty: "No organisation has given you access.",
    col_owner: "Given by (service owner)",
    login_title: "Log in",
    login_intro: "Log in to give suppliers access to your APIs.",
    login_dev_intro: "Development mode: type the national identity number of the person to log in as. Nobody checks it.",
    person_id: "National identity number",
    person_id_hint: "11 digits",
    log_in: "Log in",
    log_in_idporten: "Log in with ID-porten",
    err_org_empty: "Enter the organisation number.",
    err_org_format: "The organisation number must be 9 digits.",
    err_org_checksum: "The organisation number is not valid. Check that it is typed correctly.",
    err_org_own: "This is your own organisation number. Enter the supplier's.",
    err_org_unknown: "No organisation has this number in the Entity Register.",
    err_org_deleted: "The organisation is deleted in the Entity Register.",
    err_nothing_chosen: "Choose at least one access.",
    err_no_key_role: "You do not have the rights needed to give access for this organisation. The general manager can help you.",
    err_changed_elsewhere: "Someone else changed this supplier's access after you opened the page. Review it and try again.",
    err_session_expired: "Your session has expired. Log in again to continue.",
    err_undo_too_late: "It is too late to undo this change.",
    err_undo_unknown: "The change to undo cannot be found.",
    err_form_expired: "The form has expired or was sent from elsewhere. Reload the page and try again.",
    err_person_id: "Enter a national identity number (letters and digits only, at most 64 characters).",
    err_login_failed: "The login failed. Try again.",
    err_not_found: "The page does not exist.",
    err_unavailable: "The service is unavailable right now. Try again shortly.",
    err_maybe_saved: "We could not confirm that the change was saved. Check the overview before trying again.",
    err_nothing_delegated: "This supplier has no access from you.",
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text of a catalogue, by key, through its `Debug` form (a
    /// struct's fields in order), so a new key is checked without listing it.
    fn entries(t: &Texts) -> Vec<(String, String)> {
        let debug = format!("{t:#?}");
        debug
            .lines()
            .filter_map(|l| {
                let (key, value) = l.trim().split_once(": ")?;
                let value: String = serde_json::from_str(value.trim_end_matches(',')).ok()?;
                Some((key.to_string(), value))
            })
            .collect()
    }

    #[test]
    fn every_key_has_a_text_in_every_language_with_the_same_placeholders() {
        let nb = entries(&NB);
        assert!(nb.len() > 80, "{}", nb.len());
        for lang in Lang::ALL {
            let other = entries(lang.texts());
            assert_eq!(other.len(), nb.len(), "{lang:?}");
            for ((key, text), (okey, otext)) in nb.iter().zip(&other) {
                assert_eq!(key, okey);
                assert!(!otext.trim().is_empty(), "{lang:?} {key} is empty");
                let holes = |s: &str| {
                    let mut v: Vec<String> = s
                        .split('{')
                        .skip(1)
                        .filter_map(|p| p.split_once('}').map(|(h, _)| h.to_string()))
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(holes(text), holes(otext), "{lang:?} {key}");
            }
        }
    }

    #[test]
    fn languages_from_accept_language() {
        assert_eq!(Lang::from_accept(None), Lang::Nb);
        assert_eq!(Lang::from_accept(Some("en-GB,en;q=0.9")), Lang::En);
        assert_eq!(Lang::from_accept(Some("nn-NO, nb;q=0.8")), Lang::Nn);
        assert_eq!(Lang::from_accept(Some("no")), Lang::Nb);
        assert_eq!(Lang::from_accept(Some("de, fr")), Lang::Nb);
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("xx"), None);
    }

    #[test]
    fn fill_replaces_named_holes() {
        assert_eq!(
            fill(NB.given_by, &[("when", "i dag"), ("who", "Kari")]),
            "i dag av Kari"
        );
    }
}
