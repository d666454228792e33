//! `tilgang dev-token`: Maskinporten-shaped tokens for trying tilgang behind
//! the shipped Envoy example (or `serve --jwks`) on a development machine.
//!
//! The first run writes an RSA signing key and its JWKS into a directory
//! (`./dev` by default); every run prints one RS256 token signed with that
//! key. Nothing here is part of `serve`, and nothing trusts the key unless
//! someone points Envoy's `local_jwks` or `--jwks` at the JWKS: it is for
//! development only, never for production.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::{Outcome, Output, note};
use crate::ids::{OrgNumber, Scope};

/// The key's id in the JWKS and in every token's header.
pub const KID: &str = "tilgang-dev";
/// The files the first run writes in `--dir`.
pub const KEY_FILE: &str = "signing-key.pem";
pub const JWKS_FILE: &str = "jwks.json";
/// The longest `--ttl`: a week.
const MAX_TTL: u64 = 7 * 24 * 3600;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service owner (the token's `consumer`): org number
    #[arg(long)]
    pub owner: String,
    /// The supplier calling for the owner (the token's `supplier`); leave it
    /// out for the owner acting for itself
    #[arg(long)]
    pub supplier: Option<String>,
    /// A scope the token carries (repeat for more); default both instances
    /// scopes
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// How long the token is valid, in seconds (at most a week)
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TTL))]
    pub ttl: u64,
    /// Where the signing key and its JWKS are kept (created on first use)
    #[arg(long, value_name = "DIR", default_value = "dev")]
    pub dir: PathBuf,
    /// The token's `iss`; the shipped Envoy example expects Maskinporten's
    #[arg(long, value_name = "URL", default_value = "https://maskinporten.no/")]
    pub issuer: String,
    /// The token's `aud`, when the gateway checks one
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,
}

/// Print one token; exit 2 on bad input or a key that cannot be read.
pub fn run(args: &Args, out: &mut Output) -> anyhow::Result<Outcome> {
    let owner = OrgNumber::parse(&args.owner).map_err(|e| anyhow::anyhow!("`--owner` {e}"))?;
    let supplier = args
        .supplier
        .as_deref()
        .map(OrgNumber::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("`--supplier` {e}"))?;
    let scopes = if args.scopes.is_empty() {
        vec![
            "altinn:serviceowner/instances.read".to_string(),
            "altinn:serviceowner/instances.write".to_string(),
        ]
    } else {
        args.scopes
            .iter()
            .map(|s| {
                Scope::parse(s)
                    .map(|s| s.as_str().to_string())
                    .map_err(|e| anyhow::anyhow!("`--scope` {e}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let key = DevKey::open_or_create(&args.dir)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut claims = json!({
        "iss": args.issuer,
        "scope": scopes.join(" "),
        "client_amr": "private_key_jwt",
        "token_type": "Bearer",
        "client_id": format!("tilgang-dev-{}", owner.as_str()),
        "jti": random_id()?,
        "iat": now,
        "exp": now + args.ttl,
        "consumer": org(&owner),
    });
    if let Some(s) = &supplier {
        claims["supplier"] = org(s);
        claims["delegation_source"] = json!("https://www.altinn.no");
    }
    if let Some(aud) = &args.audience {
        claims["aud"] = json!(aud);
    }
    out.line(key.sign(&claims)?)?;
    Ok(Outcome::Success)
}

fn org(o: &OrgNumber) -> Value {
    json!({ "authority": "iso6523-actorid-upis", "ID": format!("0192:{}", o.as_str()) })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b64(&bytes))
}

/// The development key, read from `DIR/signing-key.pem` or made there.
struct DevKey {
    private: rsa::RsaPrivateKey,
}

impl DevKey {
    /// Read the key, or generate it (once: a key another run wrote first
    /// wins) and write its JWKS beside it.
    fn open_or_create(dir: &Path) -> anyhow::Result<Self> {
        let key_path = dir.join(KEY_FILE);
        let private = match std::fs::read_to_string(&key_path) {
            Ok(pem) => rsa::RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "`{}` is not a PKCS#8 RSA private key ({e}); remove it to make a new one",
                    key_path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(dir, &key_path)?,
            Err(e) => {
                return Err(e).with_context(|| format!("reading `{}`", key_path.display()));
            }
        };
        let key = Self { private };
        let jwks_path = dir.join(JWKS_FILE);
        if !jwks_path.exists() {
            write_new(dir, &jwks_path, key.jwks().to_string().as_bytes(), 0o644)?;
        }
        Ok(key)
    }

    fn create(dir: &Path, key_path: &Path) -> anyhow::Result<rsa::RsaPrivateKey> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the directory `{}`", dir.display()))?;
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
            .map_err(|e| anyhow::anyhow!("generating an RSA key: {e}"))?;
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
        if !write_new(dir, key_path, pem.as_bytes(), 0o600)? {
            // Another run made one first: use that one.
            let pem = std::fs::read_to_string(key_path)
                .with_context(|| format!("reading `{}`", key_path.display()))?;
            return rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
                .map_err(|e| anyhow::anyhow!("`{}`: {e}", key_path.display()));
        }
        note(format_args!(
            "wrote a development signing key to `{}` and its JWKS to `{}`: trust that JWKS \
             only on a development machine (Envoy's `local_jwks`, or `serve --jwks`)",
            key_path.display(),
            dir.join(JWKS_FILE).display()
        ));
        Ok(private)
    }

    fn jwks(&self) -> Value {
        let public = self.private.to_public_key();
        json!({ "keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": KID,
            "n": b64(&public.n().to_bytes_be()),
            "e": b64(&public.e().to_bytes_be()),
        }]})
    }

    fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let der = self
            .private
            .to_pkcs1_der()
            .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
        let key = jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes());
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": KID });
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
                .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        Ok(format!("{signed}.{signature}"))
    }
}

/// Write `bytes` to `path` durably and atomically with `mode`, unless a file
/// is already there (then nothing is written and `false` returned).
fn write_new(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let shown = || format!("writing `{}`", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tilgang-dev-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(shown)?;
    tmp.write_all(bytes).with_context(shown)?;
    tmp.as_file().sync_all().with_context(shown)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error).with_context(shown),
    }
}
