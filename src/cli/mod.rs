//! The `tilgang` command line: one module per subcommand. `main.rs` only parses
//! and dispatches; each `run` returns the process exit code.

pub mod admin;
pub mod check;
pub mod serve;
pub mod test;
pub mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::snapshot::load::PolicySource;

#[derive(Debug, Parser)]
#[command(
    name = "tilgang",
    version,
    about = "Authorization sidecar: may this supplier call this service owner's API with this scope?",
    long_about = "Authorization sidecar: may this supplier call this service owner's API with \
                  this scope? Decisions come from Cedar policies in the policies directory and \
                  delegations in the data directory; both are hot-reloaded."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: gateway gRPC API, admin gRPC API, hot reload
    Serve(serve::Args),
    /// Decide one request offline and print the decision with reasons
    Check(check::Args),
    /// Validate policies and data against the schema; exit 1 on any error
    Validate(validate::Args),
    /// Run decision tables (CSV) against policies and data
    Test(test::Args),
    /// List the rights catalogue (admin client)
    Rights(admin::RightsArgs),
    /// Delegate rights from a service owner to a supplier (admin client)
    Delegate(admin::DelegateArgs),
    /// Revoke some or all of a supplier's rights; prints the undo token (admin client)
    Revoke(admin::RevokeArgs),
    /// Undo a revocation by its token (admin client)
    Undo(admin::UndoArgs),
    /// Show the delegations overview (admin client)
    Delegations(admin::ListArgs),
}

/// How a subcommand ended; the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: done; the decision was allow; every row passed; the files are valid.
    Success,
    /// 1: the check ran and said no: a deny, a failing row, invalid files.
    Failure,
    /// 2: the command could not do its work: bad input, a bad table, an
    /// error talking to the server.
    Error,
}

impl From<Outcome> for std::process::ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => Self::SUCCESS,
            Outcome::Failure => Self::from(1),
            Outcome::Error => Self::from(2),
        }
    }
}

/// Where policies and data are read from; shared by every offline subcommand.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Policies directory (schema, `*.cedar`, `rights.json`). Default `policies`;
    /// when that does not exist, the policies built into the binary are used
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Data directory (`delegations/<owner>.json`, `roles.json`)
    #[arg(long, value_name = "DIR", default_value = "data")]
    pub data: PathBuf,
}

impl SourceArgs {
    /// Resolve `--policies`: an explicit directory must exist; the default falls
    /// back to the embedded copy.
    pub fn policy_source(&self) -> anyhow::Result<PolicySource> {
        match &self.policies {
            Some(dir) if dir.is_dir() => Ok(PolicySource::Dir(dir.clone())),
            Some(dir) => anyhow::bail!("policies directory `{}` does not exist", dir.display()),
            None if std::path::Path::new("policies").is_dir() => {
                Ok(PolicySource::Dir(PathBuf::from("policies")))
            }
            None => Ok(PolicySource::Embedded),
        }
    }
}
