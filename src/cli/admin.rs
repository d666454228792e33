//! Admin client subcommands: talk to a running sidecar's admin listener. Errors
//! print the gRPC status message and exit non-zero. `delegations` walks every
//! page of the overview and prints each as it arrives.

use super::{Outcome, Output, OutputError, note};
use serde::Serialize;
use tonic::transport::Channel;

use crate::grpc::page::MAX_PAGE_SIZE;
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
    /// Delegations to ask for per request; the server returns at most its
    /// maximum (1000). Every page is printed as it arrives
    #[arg(long, value_name = "N", default_value_t = MAX_PAGE_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
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

/// A left-aligned text table, printed as its rows arrive: the header with
/// the first rows, each column as wide as its widest cell so far. Rows that
/// arrive later widen a column for themselves and the rows after them.
struct Table {
    header: Vec<String>,
    widths: Vec<usize>,
    /// The header has been printed.
    started: bool,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            widths: header.iter().map(|h| h.len()).collect(),
            started: false,
        }
    }

    fn line(&self, cells: &[String]) -> String {
        let s: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.join("  ").trim_end().to_string()
    }

    /// Print `rows`, and the header first if it has not been.
    fn rows<W: std::io::Write>(
        &mut self,
        out: &mut Output<W>,
        rows: &[Vec<String>],
    ) -> Result<(), OutputError> {
        for r in rows {
            for (w, c) in self.widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        if !self.started {
            self.started = true;
            out.line(self.line(&self.header))?;
        }
        for r in rows {
            out.line(self.line(r))?;
        }
        Ok(())
    }
}

/// A JSON array printed as its items arrive, exactly as
/// `serde_json::to_string_pretty` prints the whole array.
struct JsonArray {
    /// The last line of the item before, held back until it is known whether
    /// a comma follows it.
    pending: Option<String>,
}

impl JsonArray {
    fn new() -> Self {
        Self { pending: None }
    }

    fn item<W: std::io::Write, T: Serialize>(
        &mut self,
        out: &mut Output<W>,
        item: &T,
    ) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(item)?;
        match self.pending.take() {
            None => out.line("[")?,
            Some(last) => out.line(format_args!("{last},"))?,
        }
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if lines.peek().is_none() {
                self.pending = Some(format!("  {line}"));
            } else {
                out.line(format_args!("  {line}"))?;
            }
        }
        Ok(())
    }

    fn finish<W: std::io::Write>(self, out: &mut Output<W>) -> Result<(), OutputError> {
        match self.pending {
            None => out.line("[]"),
            Some(last) => {
                out.line(last)?;
                out.line("]")
            }
        }
    }
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
        Table::new(&["RIGHT", "NAME", "SCOPES"]).rows(out, &rows)?;
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

/// Every page of the overview, each printed as it arrives: memory stays at
/// one page however many delegations there are. Stops asking when stdout's
/// reader has gone.
pub async fn delegations(args: &ListArgs, out: &mut Output) -> anyhow::Result<Outcome> {
    let mut c = args.target.connect().await?;
    let mut table = Table::new(&[
        "OWNER",
        "SUPPLIER",
        "RIGHTS",
        "DELEGATED_BY",
        "UPDATED_AT",
        "CREATED_AT",
    ]);
    let mut json = JsonArray::new();
    let mut page_token = String::new();
    loop {
        let r = c
            .list_delegations(ListDelegationsRequest {
                owner: args.owner.clone().unwrap_or_default(),
                supplier: args.supplier.clone().unwrap_or_default(),
                page_size: i32::try_from(args.page_size).unwrap_or(i32::MAX),
                page_token,
            })
            .await
            .map_err(status)?
            .into_inner();
        if args.json {
            for d in &r.delegations {
                json.item(out, &DelegationJson::from(d))?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delegation(i: usize) -> Delegation {
        Delegation {
            owner: "991825827".into(),
            supplier: format!("{i:09}"),
            rights: vec!["instances-read".into(); i % 3],
            scopes: vec![],
            delegated_by: "x".repeat(i),
            updated_at: "2026-01-05T09:00:00Z".into(),
            created_at: "2026-01-05T09:00:00Z".into(),
        }
    }

    fn printed(f: impl FnOnce(&mut Output<Vec<u8>>)) -> String {
        let mut out = Output::new(Vec::new());
        f(&mut out);
        String::from_utf8(out.into_inner()).unwrap()
    }

    #[test]
    fn a_streamed_json_array_is_the_pretty_printed_array() {
        for n in [0, 1, 2, 5] {
            let all: Vec<Delegation> = (0..n).map(delegation).collect();
            let whole: Vec<DelegationJson> = all.iter().map(Into::into).collect();
            let want = format!("{}\n", serde_json::to_string_pretty(&whole).unwrap());
            let got = printed(|out| {
                let mut json = JsonArray::new();
                for d in &all {
                    json.item(out, &DelegationJson::from(d)).unwrap();
                }
                json.finish(out).unwrap();
            });
            assert_eq!(got, want, "{n}");
        }
    }

    #[test]
    fn a_table_in_one_page_is_aligned_and_later_pages_widen_it() {
        let row = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        let got = printed(|out| {
            let mut t = Table::new(&["A", "BB"]);
            t.rows(out, &[row("xyz", "1"), row("x", "")]).unwrap();
            t.rows(out, &[]).unwrap();
            t.rows(out, &[row("wxyzw", "2")]).unwrap();
        });
        assert_eq!(got, "A    BB\nxyz  1\nx\nwxyzw  2\n");
        // No rows: the header alone.
        let got = printed(|out| Table::new(&["A", "BB"]).rows(out, &[]).unwrap());
        assert_eq!(got, "A  BB\n");
    }
}
