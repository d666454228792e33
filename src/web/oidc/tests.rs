//! The relying party's unit tests: URLs, ID-token claims, key refresh.

use super::*;

#[test]
fn higher_levels_satisfy_lower_requirements() {
    assert!(Acr::High.satisfies(Acr::Substantial));
    assert!(Acr::Substantial.satisfies(Acr::Substantial));
    assert!(!Acr::Low.satisfies(Acr::Substantial));
    assert!(!Acr::Substantial.satisfies(Acr::High));
    assert!(Acr::Low < Acr::Substantial && Acr::Substantial < Acr::High);
    for acr in [Acr::Low, Acr::Substantial, Acr::High] {
        assert_eq!(Acr::parse(acr.as_str()), Some(acr));
        assert_eq!(acr.as_str().parse::<Acr>().unwrap(), acr);
    }
    assert_eq!(Acr::parse("Idporten-loa-high"), None);
    assert_eq!(
        "level4".parse::<Acr>().unwrap_err().to_string(),
        "the ID token's acr `level4` is not a known level"
    );
}

#[test]
fn secrets_and_tokens_stay_out_of_debug() {
    let config = OidcConfig::new(
        "https://idporten.no",
        "client",
        ClientSecret::new("hunter2\n"),
        "https://tilgang.example/auth/callback",
    );
    assert_eq!(config.client_secret.expose(), "hunter2");
    assert!(!format!("{config:?}").contains("hunter2"));
    let pending = PendingLogin {
        state: "st4te".into(),
        nonce: "n0nce".into(),
        code_verifier: "v3rifier".into(),
        created_at: SystemTime::now(),
    };
    let shown = format!("{pending:?}");
    assert!(!shown.contains("st4te") && !shown.contains("n0nce") && !shown.contains("v3rifier"));
    let person = Person {
        pid: PersonId::parse("01017012345").unwrap(),
        name: Some("Dagny".into()),
        acr: Acr::High,
        sid: Some("sid".into()),
        id_token: IdToken("eyJ.x.y".into()),
    };
    let shown = format!("{person:?}");
    assert!(
        !shown.contains("01017012345") && !shown.contains("eyJ"),
        "{shown}"
    );
    let params = CallbackParams::from_query("code=c0de&state=st4te").unwrap();
    let shown = format!("{params:?}");
    assert!(
        !shown.contains("c0de") && !shown.contains("st4te"),
        "{shown}"
    );
}

#[test]
fn config_refuses_http_unless_loopback_and_allowed() {
    let config = |issuer: &str, allow_http| {
        let mut c = OidcConfig::new(
            issuer,
            "client",
            ClientSecret::new("s"),
            "http://127.0.0.1:8080/auth/callback",
        );
        c.allow_http = allow_http;
        c.validate()
    };
    assert!(config("http://127.0.0.1:9000", true).is_ok());
    assert_eq!(
        config("http://op.example", true).unwrap_err().to_string(),
        "the issuer `http://op.example` is refused: http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost); use https"
    );
    assert!(matches!(
        config("http://127.0.0.1:9000", false),
        Err(OidcError::Url {
            problem: UrlProblem::HttpNotAllowed,
            ..
        })
    ));
    let mut c = OidcConfig::new(
        "https://idporten.no",
        "",
        ClientSecret::new("s"),
        "https://x/cb",
    );
    assert!(matches!(c.validate(), Err(OidcError::EmptyClientId)));
    c.client_id = "id".into();
    c.client_secret = ClientSecret::new("\n");
    assert!(matches!(c.validate(), Err(OidcError::EmptyClientSecret)));
}

#[test]
fn callback_params_refuse_a_repeated_parameter() {
    let p = CallbackParams::from_query(
        "code=abc&state=xyz&iss=https%3A%2F%2Fidporten.no&other=1&other=2",
    )
    .unwrap();
    assert_eq!(p.code.as_deref(), Some("abc"));
    assert_eq!(p.state.as_deref(), Some("xyz"));
    assert_eq!(p.iss.as_deref(), Some("https://idporten.no"));
    let e = CallbackParams::from_query("error=access_denied&error_description=avbrutt+av+bruker")
        .unwrap();
    assert_eq!(e.error_description.as_deref(), Some("avbrutt av bruker"));
    assert!(matches!(
        CallbackParams::from_query("state=a&state=b"),
        Err(OidcError::DuplicateParameter { .. })
    ));
}
