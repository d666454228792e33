//! Admin client subcommands: talk to a running sidecar's admin listener. Errors
//! print the gRPC status message and exit non-zero.

use super::{Outcome, Output, OutputError, note};
use serde::Serialize;
use tonic::transport::Channel;

use crate::proto::delegations_client::DelegationsClient;
use crate::proto::{
    DelegateRequest, Delegation, ListDelegationsRequest, ListRightsRequest, RevokeRequest,
    UndoRevokeRequest,
};

/// The admin listener to talk to.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Admin address: `host:port` or `http://host:port`
    #[arg(long, env = "TILGANG_ADMIN_ADDR", default_value = "127.0.0.1:50052")]
    pub admin_addr: String,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<DelegationsClient<Channel>> {
        let url = if self.admin_addr.contains("://") {
            self.admin_addr.clone()
        } else {
            format!("http://{}", self.admin_addr)
        };
        let channel = Channel::from_shared(url.clone())?
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the admin listener at {url}: {e}"))?;
        Ok(DelegationsClient::new(channel))
    }
}

#[derive(Debug, clap::Args)]
pub struct RightsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DelegateArgs {
    #[arg(long)]
    pub owner: String,
    #[arg(long)]
    pub supplier: String,
    /// Right id from the catalogue (repeat for more)
    #[arg(long = "right", required = true)]
    pub rights: Vec<String>,
    /// Person acting for the owner (must hold a key role or APIADM)
    #[arg(long)]
    pub actor: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    #[arg(long)]
    pub owner: String,
    #[arg(long)]
    pub supplier: String,
    /// Right id to remove (repeat for more); none removes all
    #[arg(long = "right")]
    pub rights: Vec<String>,
    #[arg(long)]
    pub actor: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
pub struct UndoArgs {
    /// The token `tilgang revoke` printed
    pub token: String,
    #[arg(long)]
    pub actor: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Delegations this owner has given
    #[arg(long)]
    pub owner: Option<String>,
    /// Delegations this supplier has received
    #[arg(long)]
    pub supplier: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Serialize)]
struct DelegationJson<'a> {
    owner: &'a str,
    supplier: &'a str,
    rights: &'a [String],
    scopes: &'a [String],
    delegated_by: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
}

impl<'a> From<&'a Delegation> for DelegationJson<'a> {
    fn from(d: &'a Delegation) -> Self {
        Self {
            owner: &d.owner,
            supplier: &d.supplier,
            rights: &d.rights,
            scopes: &d.scopes,
            delegated_by: &d.delegated_by,
            created_at: &d.created_at,
            updated_at: &d.updated_at,
        }
    }
}

/// A left-aligned text table.
fn print_table<W: std::io::Write>(
    out: &mut Output<W>,
    header: &[&str],
    rows: &[Vec<String>],
) -> Result<(), OutputError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.join("  ").trim_end().to_string()
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    out.line(line(&header))?;
    for r in rows {
        out.line(line(r))?;
    }
    Ok(())
}

fn describe(d: &Delegation) -> String {
    if d.rights.is_empty() {
        format!("{} now holds no rights from {}", d.supplier, d.owner)
    } else {
        format!(
            "{} holds {} from {} (scopes: {}; by {} at {})",
            d.supplier,
            d.rights.join(", "),
            d.owner,
            d.scopes.join(", "),
            d.delegated_by,
            d.updated_at
        )
    }
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

pub async fn rights(args: &RightsArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let r = c
        .list_rights(ListRightsRequest {})
        .await
        .map_err(status)?
        .into_inner();
    if args.json {
        let v: Vec<_> = r
            .rights
            .iter()
            .map(|r| serde_json::json!({"id": r.id, "name": r.name, "scopes": r.scopes}))
            .collect();
        out.line(serde_json::to_string_pretty(&v)?)?;
    } else {
        let rows: Vec<Vec<String>> = r
            .rights
            .iter()
            .map(|r| vec![r.id.clone(), r.name.clone(), r.scopes.join(" ")])
            .collect();
        print_table(out, &["RIGHT", "NAME", "SCOPES"], &rows)?;
    }
    Ok(Outcome::Success)
}

pub async fn delegate(args: &DelegateArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let d = c
        .delegate(DelegateRequest {
            owner: args.owner.clone(),
            supplier: args.supplier.clone(),
            rights: args.rights.clone(),
            actor: args.actor.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    out.line(describe(&d))?;
    Ok(Outcome::Success)
}

pub async fn revoke(args: &RevokeArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let r = c
        .revoke(RevokeRequest {
            owner: args.owner.clone(),
            supplier: args.supplier.clone(),
            rights: args.rights.clone(),
            actor: args.actor.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    if let Some(d) = &r.remaining {
        note(describe(d));
    }
    note(format_args!(
        "undo with `tilgang undo {} --actor ...` before {}",
        r.undo_token, r.undo_expires_at
    ));
    // The token alone on stdout, for scripts.
    out.line(&r.undo_token)?;
    Ok(Outcome::Success)
}

pub async fn undo(args: &UndoArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let d = c
        .undo_revoke(UndoRevokeRequest {
            undo_token: args.token.clone(),
            actor: args.actor.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    out.line(describe(&d))?;
    Ok(Outcome::Success)
}

pub async fn delegations(args: &ListArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let r = c
        .list_delegations(ListDelegationsRequest {
            owner: args.owner.clone().unwrap_or_default(),
            supplier: args.supplier.clone().unwrap_or_default(),
        })
        .await
        .map_err(status)?
        .into_inner();
    if args.json {
        let v: Vec<DelegationJson> = r.delegations.iter().map(Into::into).collect();
        out.line(serde_json::to_string_pretty(&v)?)?;
    } else {
        let rows: Vec<Vec<String>> = r
            .delegations
            .iter()
            .map(|d| {
                vec![
                    d.owner.clone(),
                    d.supplier.clone(),
                    d.rights.join(","),
                    d.delegated_by.clone(),
                    d.updated_at.clone(),
                    d.created_at.clone(),
                ]
            })
            .collect();
        print_table(
            out,
            &[
                "OWNER",
                "SUPPLIER",
                "RIGHTS",
                "DELEGATED_BY",
                "UPDATED_AT",
                "CREATED_AT",
            ],
            &rows,
        )?;
    }
    Ok(Outcome::Success)
}
