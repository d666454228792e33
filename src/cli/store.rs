//! The shared store's subcommands: `migrate` (apply the schema migrations),
//! `export` (the store's delegations as a data directory's files) and
//! `import` (a data directory's delegations into the store). The store flags
//! are the same as `serve`'s.

use std::path::PathBuf;

use anyhow::Context;

use super::{Outcome, Output, note};
use crate::store::pg::{StoreConfig, schema, transfer};

/// Where the shared store is; shared by `serve` and the store subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The shared PostgreSQL store, as a URL: `postgres://USER@HOST:5432/DB?sslmode=verify-full`
    /// (`sslmode=disable` for plain text; with TLS the server's certificate is
    /// always verified). Unset: delegations live in files in --data
    #[arg(long = "store", env = "TILGANG_STORE", value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the store's password (surrounding whitespace ignored;
    /// never logged). Else `TILGANG_STORE_PASSWORD`, else the URL's
    #[arg(
        long = "store-password-file",
        env = "TILGANG_STORE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// PEM bundle of the CAs the store's TLS certificate may come from (a
    /// private CA); unset: the public web roots
    #[arg(long = "store-ca", env = "TILGANG_STORE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl StoreArgs {
    /// The store configuration, when `--store` is given.
    pub fn config(&self) -> anyhow::Result<Option<StoreConfig>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let password = std::env::var("TILGANG_STORE_PASSWORD").ok();
        Ok(Some(StoreConfig::new(
            url,
            self.password_file.as_deref(),
            password,
            self.ca.as_deref(),
        )?))
    }

    fn required(&self) -> anyhow::Result<StoreConfig> {
        self.config()?
            .context("`--store` (or TILGANG_STORE) is required: the PostgreSQL store to use")
    }
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Policies directory the delegations are checked against (default
    /// `policies`, else the built-in policies)
    #[arg(long, env = "TILGANG_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The directory to write `delegations/` into (created; its
    /// `delegations/` must be empty or absent)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The data directory whose `delegations/` to import (every file must load)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Policies directory the delegations are checked against (default
    /// `policies`, else the built-in policies)
    #[arg(long, env = "TILGANG_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
}

/// `tilgang migrate`: apply every pending migration; prints what it did.
pub async fn migrate(args: &MigrateArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let config = args.store.required()?;
    let mut client = config.connect_spawned().await?;
    let m = schema::migrate(&mut client).await?;
    if m.applied.is_empty() {
        out.line(format_args!(
            "{config}: schema at version {}, nothing to do",
            m.to
        ))?;
    } else {
        for a in &m.applied {
            out.line(format_args!("applied {a}"))?;
        }
        out.line(format_args!("{config}: schema now at version {}", m.to))?;
    }
    Ok(Outcome::Success)
}

fn policies(dir: &Option<PathBuf>) -> anyhow::Result<crate::snapshot::load::PolicySource> {
    super::SourceArgs {
        policies: dir.clone(),
        data: PathBuf::from("data"),
    }
    .policy_source()
}

/// `tilgang export`: the store's delegations into `DIR/delegations/`.
pub async fn export(args: &ExportArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let config = args.store.required()?;
    let bundle = crate::snapshot::load::load_policies(&policies(&args.policies)?)
        .map_err(|e| anyhow::anyhow!("the policies do not load:\n{e}"))?;
    let mut client = config.connect_spawned().await?;
    schema::check(&client).await?;
    let e = transfer::export(&mut client, &bundle, &args.dir).await?;
    out.line(format_args!(
        "exported {} delegations of {} owners ({} files) at store revision {} into {}",
        e.delegations,
        e.owners,
        e.files,
        e.revision,
        args.dir.display()
    ))?;
    Ok(Outcome::Success)
}

/// `tilgang import`: a data directory's delegations into the store.
pub async fn import(args: &ImportArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let config = args.store.required()?;
    let bundle = crate::snapshot::load::load_policies(&policies(&args.policies)?)
        .map_err(|e| anyhow::anyhow!("the policies do not load:\n{e}"))?;
    let dir = super::existing_dir("data directory", &args.dir)?.to_path_buf();
    let owners = match transfer::read_dir(&dir, &bundle) {
        Ok(o) => o,
        Err(transfer::TransferError::Load(errors)) => {
            for e in &errors.0 {
                note(e);
            }
            note(format_args!(
                "{} error(s); nothing was imported",
                errors.0.len()
            ));
            return Ok(Outcome::Failure);
        }
        Err(e) => return Err(e.into()),
    };
    let mut client = config.connect_spawned().await?;
    schema::check(&client).await?;
    let i = transfer::import(&mut client, &owners).await?;
    match i.revision {
        Some(r) => out.line(format_args!(
            "imported {} delegations ({} new or changed) at store revision {r}",
            i.read, i.changed
        ))?,
        None => out.line(format_args!(
            "{} delegations read; the store already holds every one: nothing changed",
            i.read
        ))?,
    }
    Ok(Outcome::Success)
}
