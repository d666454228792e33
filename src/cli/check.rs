//! `tilgang check`: one offline decision, printed with its reasons.

use super::{Outcome, Output, print_decision};
use crate::engine::{self, AccessRequest};
use crate::ids::{OrgNumber, Scope};
use crate::snapshot::load::load_snapshot;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub question: super::Question,
    #[command(flatten)]
    pub source: super::SourceArgs,
}

/// Exit 0 on allow, 1 on deny, 2 on bad input, bad files or a missing directory.
pub fn run(args: &Args, out: &mut Output) -> anyhow::Result<Outcome> {
    let request = AccessRequest {
        supplier: OrgNumber::parse(&args.question.supplier)
            .map_err(|e| anyhow::anyhow!("`--supplier` {e}"))?,
        owner: OrgNumber::parse(&args.question.owner)
            .map_err(|e| anyhow::anyhow!("`--owner` {e}"))?,
        scope: Scope::parse(&args.question.scope).map_err(|e| anyhow::anyhow!("`--scope` {e}"))?,
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
