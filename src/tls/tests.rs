use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::*;

/// A CA and what it issues, generated for each test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A certificate for `localhost` and its key, as PEM.
    fn issue(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

struct Dir {
    dir: tempfile::TempDir,
    files: TlsFiles,
}

impl Dir {
    fn new(ca: &Ca, client_ca: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: client_ca.then(|| dir.path().join("ca.crt")),
        };
        let d = Self { dir, files };
        d.write(&ca.issue());
        if let Some(p) = &d.files.client_ca {
            std::fs::write(p, ca.0.pem()).unwrap();
        }
        d
    }

    fn write(&self, (cert, key): &(String, String)) {
        std::fs::write(&self.files.cert, cert).unwrap();
        std::fs::write(&self.files.key, key).unwrap();
    }

    /// The configuration a handshake would use now.
    fn served(tls: &ServerTls) -> *const ServerConfig {
        Arc::as_ptr(&tls.config.load_full())
    }
}

#[test]
fn files_load_and_a_key_that_does_not_fit_is_refused_naming_both() {
    let ca = Ca::new();
    let d = Dir::new(&ca, true);
    let tls = ServerTls::load(d.files.clone()).unwrap();
    assert!(tls.requires_client_certificates());
    assert_eq!(tls.config.load().alpn_protocols, [b"h2".to_vec()]);

    let other = ca.issue();
    std::fs::write(&d.files.key, &other.1).unwrap();
    let e = ServerTls::load(d.files.clone()).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    let m = e.to_string();
    assert!(m.contains("tls.key") && m.contains("tls.crt"), "{m}");

    std::fs::write(&d.files.cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    let e = ServerTls::load(d.files.clone()).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    std::fs::write(&d.files.cert, "").unwrap();
    assert!(matches!(
        ServerTls::load(d.files.clone()).unwrap_err(),
        TlsError::NoCertificate { .. }
    ));
    std::fs::remove_file(&d.files.key).unwrap();
    assert!(matches!(
        ServerTls::load(d.files.clone()).unwrap_err(),
        TlsError::Read { .. }
    ));
    drop(d.dir);
}

#[test]
fn new_files_are_used_once_two_looks_agree_and_a_half_rotation_never_is() {
    let ca = Ca::new();
    let d = Dir::new(&ca, false);
    let tls = ServerTls::load(d.files.clone()).unwrap();
    let first = Dir::served(&tls);

    // Rotation half-way: the new certificate beside the old key. Seen twice,
    // it is refused and reported; the old pair keeps serving.
    let next = ca.issue();
    std::fs::write(&d.files.cert, &next.0).unwrap();
    tls.look();
    assert_eq!(tls.status(), TlsStatus::default(), "acted on a first look");
    tls.look();
    let status = tls.status();
    assert_eq!(status.reloads, 0);
    assert!(
        status
            .problem
            .as_deref()
            .unwrap_or_default()
            .contains("does not fit"),
        "{status:?}"
    );
    assert_eq!(Dir::served(&tls), first);

    // The key follows: one look is not enough, the second puts it in force.
    std::fs::write(&d.files.key, &next.1).unwrap();
    tls.look();
    assert_eq!(Dir::served(&tls), first);
    tls.look();
    assert_eq!(
        tls.status(),
        TlsStatus {
            reloads: 1,
            problem: None
        }
    );
    let second = Dir::served(&tls);
    assert_ne!(second, first);

    // Files gone: the last good pair serves on, and the problem is told.
    std::fs::remove_file(&d.files.cert).unwrap();
    tls.look();
    tls.look();
    assert!(tls.status().problem.is_some());
    assert_eq!(Dir::served(&tls), second);
    // Put back as they were: nothing wrong any more, nothing reloaded.
    std::fs::write(&d.files.cert, &next.0).unwrap();
    tls.look();
    assert_eq!(
        tls.status(),
        TlsStatus {
            reloads: 1,
            problem: None
        }
    );
}
