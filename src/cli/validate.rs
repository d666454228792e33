//! `tilgang validate`: load policies and data exactly as `serve` would, offline.

use super::{Outcome, Output, note};
use crate::snapshot::load::load_snapshot;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: super::SourceArgs,
}

/// Exit 0 when everything is valid (warnings, such as a route scope no right
/// gives, are printed but do not fail), 1 with one `file:line: message` per
/// problem, 2 when a directory is missing.
pub fn run(args: &Args, out: &mut Output) -> anyhow::Result<Outcome> {
    let source = args.source.policy_source()?;
    let data = args.source.data_dir()?;
    match load_snapshot(&source, data) {
        Ok(snap) => {
            let delegations: usize = snap.owners.values().map(|o| o.by_supplier.len()).sum();
            out.line(format_args!(
                "ok: {} policies from {source}, {} delegations from {} owners in {}, revision {}",
                snap.policies.origins.len(),
                delegations,
                snap.owners.len(),
                data.display(),
                snap.revision()
            ))?;
            for w in &snap.policies.warnings {
                note(format_args!("warning: {w}"));
            }
            if !snap.policies.warnings.is_empty() {
                note(format_args!(
                    "{} warning(s): valid, but probably not what was meant",
                    snap.policies.warnings.len()
                ));
            }
            // A million delegations take a while to free, and the process
            // is about to exit: let it.
            std::mem::forget(snap);
            Ok(Outcome::Success)
        }
        Err(errors) => {
            for e in &errors.0 {
                note(e);
            }
            note(format_args!("{} error(s)", errors.0.len()));
            Ok(Outcome::Failure)
        }
    }
}
