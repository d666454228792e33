//! Admin client subcommands: talk to a running sidecar's admin listener
//! (`connect`: address, TLS, bearer token). Errors print the gRPC status
//! message and exit non-zero; one that says a token is wanted says how to give
//! one. `delegations` walks every page of the overview and prints each as it
//! arrives (`print`: the table and JSON array it prints them as).

pub(crate) mod connect;
mod print;

use super::{Outcome, Output, note};
use serde::Serialize;

pub use connect::Target;
use print::{JsonArray, Table};

use crate::grpc::page::MAX_PAGE_SIZE;
use crate::proto::{
    DelegateRequest, Delegation, ListDelegationsRequest, ListRightsRequest, RevokeRequest,
    UndoRevokeRequest,
};

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
    /// The service owner giving the rights: org number (`991825827` or
    /// `0192:991825827`)
    #[arg(long)]
    pub owner: String,
    /// The supplier receiving them: org number
    #[arg(long)]
    pub supplier: String,
    /// Right id from the catalogue (repeat for more)
    #[arg(long = "right", required = true)]
    pub rights: Vec<String>,
    /// Person acting for the owner (must hold a key role or APIADM). With a
    /// token, leave it out: the call acts for the person the token names
    #[arg(long, default_value = "")]
    pub actor: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The service owner that gave the rights: org number (`991825827` or
    /// `0192:991825827`)
    #[arg(long)]
    pub owner: String,
    /// The supplier losing them: org number
    #[arg(long)]
    pub supplier: String,
    /// Right id to remove (repeat for more); none removes all
    #[arg(long = "right")]
    pub rights: Vec<String>,
    /// Person acting for the owner; with a token, leave it out
    #[arg(long, default_value = "")]
    pub actor: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
pub struct UndoArgs {
    /// The undo token `tilgang revoke` printed
    #[arg(value_name = "UNDO_TOKEN")]
    pub undo_token: String,
    /// Person acting for the owner; with a token, leave it out
    #[arg(long, default_value = "")]
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
    /// Delegations to ask for per request; the server returns at most its
    /// maximum (1000). Every page is printed as it arrives
    #[arg(long, value_name = "N", default_value_t = MAX_PAGE_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// The Entity Register's bulk download (gzip'd JSON, as `serve
    /// --organizations` reads it): adds the organisations' names
    #[arg(long, env = "TILGANG_ORGANIZATIONS", value_name = "FILE")]
    pub organizations: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Serialize)]
struct DelegationJson<'a> {
    owner: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_name: Option<String>,
    supplier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier_name: Option<String>,
    rights: &'a [String],
    scopes: &'a [String],
    delegated_by: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
}

impl<'a> DelegationJson<'a> {
    fn of(d: &'a Delegation, names: &Names) -> Self {
        Self {
            owner: &d.owner,
            owner_name: names.of(&d.owner),
            supplier: &d.supplier,
            supplier_name: names.of(&d.supplier),
            rights: &d.rights,
            scopes: &d.scopes,
            delegated_by: &d.delegated_by,
            created_at: &d.created_at,
            updated_at: &d.updated_at,
        }
    }
}

/// The store revision a write made, for `ask --min-revision`; empty for a
/// listing (which carries none).
fn revision_of(revision: u64) -> String {
    if revision > 0 {
        format!("; store revision {revision}")
    } else {
        String::new()
    }
}

fn describe(d: &Delegation) -> String {
    if d.rights.is_empty() {
        format!(
            "{} now holds no rights from {}{}",
            d.supplier,
            d.owner,
            revision_of(d.store_revision)
        )
    } else {
        format!(
            "{} holds {} from {} (scopes: {}; by {} at {}{})",
            d.supplier,
            d.rights.join(", "),
            d.owner,
            d.scopes.join(", "),
            d.delegated_by,
            d.updated_at,
            revision_of(d.store_revision)
        )
    }
}

pub async fn rights(args: &RightsArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let r = c
        .inner
        .list_rights(ListRightsRequest {})
        .await
        .map_err(|e| c.explain.status(e))?
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
        Table::new(&["RIGHT", "NAME", "SCOPES"]).rows(out, &rows)?;
    }
    Ok(Outcome::Success)
}

pub async fn delegate(args: &DelegateArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let d = c
        .inner
        .delegate(DelegateRequest {
            owner: args.owner.clone(),
            supplier: args.supplier.clone(),
            rights: args.rights.clone(),
            actor: args.actor.clone(),
        })
        .await
        .map_err(|e| c.explain.status(e))?
        .into_inner();
    out.line(describe(&d))?;
    Ok(Outcome::Success)
}

pub async fn revoke(args: &RevokeArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let r = c
        .inner
        .revoke(RevokeRequest {
            owner: args.owner.clone(),
            supplier: args.supplier.clone(),
            rights: args.rights.clone(),
            actor: args.actor.clone(),
        })
        .await
        .map_err(|e| c.explain.status(e))?
        .into_inner();
    if let Some(d) = &r.remaining {
        note(describe(d));
    }
    let actor = if args.actor.is_empty() {
        String::new()
    } else {
        format!(" --actor {}", args.actor)
    };
    note(format_args!(
        "undo with `tilgang undo {}{actor}` before {}{}",
        r.undo_token,
        r.undo_expires_at,
        revision_of(r.store_revision)
    ));
    // The token alone on stdout, for scripts.
    out.line(&r.undo_token)?;
    Ok(Outcome::Success)
}

pub async fn undo(args: &UndoArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let d = c
        .inner
        .undo_revoke(UndoRevokeRequest {
            undo_token: args.undo_token.clone(),
            actor: args.actor.clone(),
        })
        .await
        .map_err(|e| c.explain.status(e))?
        .into_inner();
    out.line(describe(&d))?;
    Ok(Outcome::Success)
}

/// Every page of the overview, each printed as it arrives: memory stays at
/// one page however many delegations there are. Stops asking when stdout's
/// reader has gone.
/// Organisation names from `--organizations`, when given.
struct Names(Option<crate::register::Register>);

impl Names {
    fn of(&self, org: &str) -> Option<String> {
        let register = self.0.as_ref()?;
        let org = crate::ids::OrgNumber::parse(org).ok()?;
        register.get(&org).map(|o| o.name.to_string())
    }
}

pub async fn delegations(args: &ListArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let names = Names(match &args.organizations {
        Some(path) => Some(crate::register::Register::load(path)?),
        None => None,
    });
    let with_names = names.0.is_some();
    let mut c = args.target.connect().await?;
    let mut columns = vec!["OWNER"];
    if with_names {
        columns.push("OWNER_NAME");
    }
    columns.push("SUPPLIER");
    if with_names {
        columns.push("SUPPLIER_NAME");
    }
    columns.extend(["RIGHTS", "DELEGATED_BY", "UPDATED_AT", "CREATED_AT"]);
    let mut table = Table::new(&columns);
    let mut json = JsonArray::new();
    let mut page_token = String::new();
    loop {
        let r = c
            .inner
            .list_delegations(ListDelegationsRequest {
                owner: args.owner.clone().unwrap_or_default(),
                supplier: args.supplier.clone().unwrap_or_default(),
                page_size: i32::try_from(args.page_size).unwrap_or(i32::MAX),
                page_token,
            })
            .await
            .map_err(|e| c.explain.status(e))?
            .into_inner();
        if args.json {
            for d in &r.delegations {
                json.item(out, &DelegationJson::of(d, &names))?;
            }
        } else {
            let rows: Vec<Vec<String>> = r
                .delegations
                .iter()
                .map(|d| {
                    let name = |org: &str| names.of(org).unwrap_or_else(|| "-".into());
                    let mut row = vec![d.owner.clone()];
                    if with_names {
                        row.push(name(&d.owner));
                    }
                    row.push(d.supplier.clone());
                    if with_names {
                        row.push(name(&d.supplier));
                    }
                    row.extend([
                        d.rights.join(","),
                        d.delegated_by.clone(),
                        d.updated_at.clone(),
                        d.created_at.clone(),
                    ]);
                    row
                })
                .collect();
            table.rows(out, &rows)?;
        }
        if r.next_page_token.is_empty() || out.is_closed() {
            break;
        }
        page_token = r.next_page_token;
    }
    if args.json {
        json.finish(out)?;
    }
    Ok(Outcome::Success)
}
