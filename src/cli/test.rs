//! `tilgang test`: run decision tables against policies and data.

use super::{Outcome, Output, note};
use std::path::PathBuf;

use crate::snapshot::load::load_snapshot;
use crate::table;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// CSV tables (`supplier,owner,scope,expect`), or directories of `*.csv`
    #[arg(required = true, value_name = "TABLE")]
    pub tables: Vec<PathBuf>,
}

/// Exit 0 when every row passes, 1 when any fails, 2 on a bad table, bad files or
/// a missing directory.
pub fn run(args: &Args, out: &mut Output) -> anyhow::Result<Outcome> {
    let snap = match load_snapshot(&args.source.policy_source()?, args.source.data_dir()?) {
        Ok(s) => s,
        Err(errors) => {
            note(errors);
            return Ok(Outcome::Error);
        }
    };
    let mut rows = Vec::new();
    let loaded = table::expand(&args.tables).and_then(|files| {
        for f in files {
            rows.extend(table::read(&f)?);
        }
        Ok(())
    });
    if let Err(e) = loaded {
        note(format_args!("bad table: {e}"));
        return Ok(Outcome::Error);
    }
    let outcome = table::run(&snap, &rows);
    for f in &outcome.failures {
        out.line(f)?;
    }
    out.line(outcome.summary())?;
    Ok(if outcome.failures.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
