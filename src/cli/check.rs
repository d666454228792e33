//! `tilgang check`: one offline decision, printed with its reasons.

use super::{Outcome, Output, print_decision};
use crate::engine::{self, AccessRequest};
use crate::ids::{OrgNumber, Scope};
use crate::snapshot::load::load_snapshot;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Supplier org number (`810418672` or `0192:810418672`; the token's
    /// `supplier`)
    #[arg(long)]
    pub supplier: String,
    /// Service owner org number (the token's `consumer`)
    #[arg(long)]
    pub owner: String,
    /// Scope, e.g. `altinn:serviceowner/instances.read`
    #[arg(long)]
    pub scope: String,
    #[command(flatten)]
    pub source: super::SourceArgs,
}

/// Exit 0 on allow, 1 on deny, 2 on bad input, bad files or a missing directory.
pub fn run(args: &Args, out: &mut Output) -> anyhow::Result<Outcome> {
    let request = AccessRequest {
        supplier: OrgNumber::parse(&args.supplier)
            .map_err(|e| anyhow::anyhow!("`--supplier` {e}"))?,
        owner: OrgNumber::parse(&args.owner).map_err(|e| anyhow::anyhow!("`--owner` {e}"))?,
        scope: Scope::parse(&args.scope).map_err(|e| anyhow::anyhow!("`--scope` {e}"))?,
    };
    let snap = load_snapshot(&args.source.policy_source()?, args.source.data_dir()?)?;
    let d = engine::decide(&snap, &request);
    print_decision(out, d.allowed, &d.reasons, &d.errors, snap.revision())?;
    Ok(if d.allowed {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
