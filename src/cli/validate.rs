//! `tilgang validate`: load policies and data exactly as `serve` would, offline.

use super::Outcome;
use crate::snapshot::load::load_snapshot;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: super::SourceArgs,
}

/// Exit 0 when everything is valid, 1 with one `file:line: message` per problem.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let source = args.source.policy_source()?;
    match load_snapshot(&source, &args.source.data) {
        Ok(snap) => {
            let delegations: usize = snap.owners.values().map(|o| o.by_supplier.len()).sum();
            println!(
                "ok: {} policies from {source}, {} delegations from {} owners in {}, revision {}",
                snap.policies.origins.len(),
                delegations,
                snap.owners.len(),
                args.source.data.display(),
                snap.revision()
            );
            Ok(Outcome::Success)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s)", errors.0.len());
            Ok(Outcome::Failure)
        }
    }
}
