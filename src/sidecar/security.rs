//! What `Sidecar::start` opens to know who is calling, before any port is
//! bound: the JWKS files (gateway `--jwks`, admin `--admin-jwks`), the admin
//! client identities, the listeners' TLS files, and the rule that the admin
//! listener in development mode serves only loopback.

use std::sync::Arc;

use super::{BearerConfig, Config, StartError, io};
use crate::auth::{AdminAuth, ClientIdentities, JwksFile, Tokens, Verifier};
use crate::tls::{ServerTls, TlsFiles};

/// Load the JWKS file (it waits for the content to settle, so off the
/// runtime's threads) and watch it; the verifier reads its current keys.
/// `flag` names the setting in errors.
pub(super) async fn open_verifier(
    bearer: &BearerConfig,
    flag: &str,
) -> Result<Verifier, StartError> {
    let path = bearer.jwks.clone();
    let jwks = tokio::task::spawn_blocking(move || JwksFile::open(path))
        .await
        .map_err(|e| StartError::Config(format!("loading {flag} failed: {e}")))??;
    Verifier::new(Arc::new(jwks), bearer.verifier.clone())
        .map_err(|e| StartError::Config(format!("{flag}: {e}")))
}

/// How the admin listener authenticates, checked against where it listens:
/// development mode (neither `--admin-jwks` nor `--admin-client-identities`)
/// only on loopback.
pub(super) async fn admin_auth(cfg: &Config) -> Result<AdminAuth, StartError> {
    let mut auth = AdminAuth::default();
    if let Some(admin) = &cfg.admin_auth {
        if admin.person_claim.is_empty() {
            return Err(StartError::Config(
                "--admin-person-claim may not be empty".into(),
            ));
        }
        if admin.tokens.verifier.audiences.is_empty() {
            return Err(StartError::Config(
                "--admin-jwks needs --admin-jwt-audience: ID-porten signs every service's \
                 tokens with the same keys, so without an audience a token issued to any \
                 other service would act here for its person"
                    .into(),
            ));
        }
        let verifier = open_verifier(&admin.tokens, "--admin-jwks").await?;
        tracing::info!(
            jwks = %admin.tokens.jwks.display(),
            issuer = admin.tokens.verifier.issuer.as_deref().unwrap_or("(any)"),
            audiences = ?admin.tokens.verifier.audiences,
            leeway_s = admin.tokens.verifier.leeway.as_secs(),
            person_claim = %admin.person_claim,
            "admin calls need a bearer token; each acts for the person it names"
        );
        auth.tokens = Some(Tokens {
            verifier: Arc::new(verifier),
            person_claim: admin.person_claim.as_str().into(),
        });
    }
    if let Some(path) = &cfg.admin_clients {
        if cfg.admin_tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
            return Err(StartError::Config(
                "--admin-client-identities needs --admin-tls-client-ca: client certificates \
                 are only asked for, and verified, with a client CA bundle"
                    .into(),
            ));
        }
        let clients = ClientIdentities::load(path)
            .map_err(|e| StartError::Config(format!("--admin-client-identities: {e}")))?;
        tracing::info!(
            file = %path.display(),
            clients = clients.len(),
            "admin calls may also be made with a client certificate listed there"
        );
        auth.clients = Some(Arc::new(clients));
    }
    if !auth.is_development() {
        if cfg.admin_tls.is_none() {
            tracing::warn!(
                "admin listener without TLS: bearer tokens cross the network in the clear unless \
                 something else (a mesh, a loopback address) protects them; see --admin-tls-cert"
            );
        }
        return Ok(auth);
    }
    let Some(listen) = &cfg.admin_listen else {
        return Ok(auth);
    };
    let addrs = tokio::net::lookup_host(listen)
        .await
        .map_err(io(format!("resolving `--admin-listen {listen}`")))?;
    if let Some(a) = addrs.into_iter().find(|a| !a.ip().is_loopback()) {
        return Err(StartError::Config(format!(
            "refusing to serve the admin listener on `{}` ({a}, not a loopback address) \
             without --admin-jwks: without it, the `actor` of every admin call is \
             trusted as written, which only a loopback address keeps to this host. \
             Give --admin-jwks FILE (the ID-porten keys) or --admin-client-identities \
             FILE to authenticate admin callers, or listen on 127.0.0.1",
            listen
        )));
    }
    tracing::warn!(
        admin_listen = %listen,
        "admin listener in development mode (no --admin-jwks): the `actor` of every admin \
         call is trusted as written, and the audit log marks it unverified"
    );
    Ok(auth)
}

/// Load one listener's TLS files; `flag` names them in errors.
pub(super) fn open_tls(
    files: &Option<TlsFiles>,
    flag: &str,
) -> Result<Option<Arc<ServerTls>>, StartError> {
    let Some(files) = files else {
        return Ok(None);
    };
    let tls =
        ServerTls::load(files.clone()).map_err(|e| StartError::Config(format!("{flag}: {e}")))?;
    tracing::info!(
        cert = %files.cert.display(),
        client_certificates = if files.client_ca.is_some() { "required" } else { "not asked for" },
        "{flag}: TLS"
    );
    Ok(Some(Arc::new(tls)))
}
