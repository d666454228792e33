//! The `tilgang` command line: one module per subcommand. `main.rs` only parses
//! and dispatches; each `run` returns the process exit code.
//!
//! Subcommands print results through [`Output`], never `println!`: `println!`
//! panics when stdout is a closed pipe (`tilgang delegations | head -1` exited
//! 101), while [`Output`] stops printing quietly and the command keeps its exit
//! code.

pub mod admin;
pub mod ask;
pub mod check;
pub mod dev_token;
pub mod serve;
pub mod store;
pub mod test;
pub mod validate;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
    Serve(Box<serve::Args>),
    /// Decide one request offline and print the decision with reasons
    Check(check::Args),
    /// Ask a running sidecar (`IsAuthorized`) and print its decision like `check`
    Ask(ask::Args),
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
    /// Print a Maskinporten-shaped token signed by a development key (made
    /// in ./dev on first use) for trying the Envoy example; development only
    DevToken(dev_token::Args),
    /// Apply the shared PostgreSQL store's pending schema migrations
    Migrate(store::MigrateArgs),
    /// Write the shared store's delegations as a data directory's files
    /// (which `validate` and `serve --data` read)
    Export(store::ExportArgs),
    /// Load a data directory's delegations into the shared store (one
    /// transaction; importing the same files again changes nothing)
    Import(store::ImportArgs),
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

/// Where a subcommand prints its results: stdout in the binary.
///
/// When the reader has gone (`| head -1`, a broken pipe), further lines are
/// dropped and the command ends as it would have: a deny from `tilgang check` is
/// still exit 1, never a success because nobody read it. Any other failure to
/// write (a full disk, say) is an [`OutputError`].
pub struct Output<W: Write = io::Stdout> {
    out: W,
    /// The reader has gone; nothing more is written.
    closed: bool,
}

impl Output {
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }
}

impl<W: Write> Output<W> {
    pub fn new(out: W) -> Self {
        Self { out, closed: false }
    }

    /// Print one line of results.
    pub fn line(&mut self, line: impl fmt::Display) -> Result<(), OutputError> {
        self.write(|out| writeln!(out, "{line}"))
    }

    /// Whether the reader has gone, so there is no point producing more.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Write out anything buffered, so a failure is seen before the command ends.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.write(|out| out.flush())
    }

    fn write(&mut self, op: impl FnOnce(&mut W) -> io::Result<()>) -> Result<(), OutputError> {
        if self.closed {
            return Ok(());
        }
        match op(&mut self.out) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.map_err(OutputError),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Printing the results failed for another reason than a closed reader.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout: {0}")]
pub struct OutputError(#[source] pub io::Error);

/// A decision as `check` and `ask` print it: `allow` or `deny`, the
/// deciding policies, any evaluation errors, the snapshot's revision.
pub fn print_decision(
    out: &mut Output,
    allowed: bool,
    reasons: &[String],
    errors: &[String],
    revision: &str,
) -> Result<(), OutputError> {
    out.line(if allowed { "allow" } else { "deny" })?;
    out.line(format_args!(
        "reasons: {}",
        if reasons.is_empty() {
            "none".into()
        } else {
            reasons.join(", ")
        }
    ))?;
    for e in errors {
        out.line(format_args!("error: {e}"))?;
    }
    out.line(format_args!("revision: {revision}"))
}

/// A note for the person at the terminal (stderr). Unlike `eprintln!`, it never
/// panics: when stderr is gone there is nobody to tell.
pub fn note(line: impl fmt::Display) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// The question `check` answers from files and `ask` from a running sidecar.
#[derive(Debug, Clone, Args)]
pub struct Question {
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
}

/// Where policies and data are read from; shared by `serve` and every offline
/// subcommand, so `TILGANG_POLICIES` and `TILGANG_DATA` point them all at the
/// same files.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Policies directory (schema, `*.cedar`, `rights.json`). Default `policies`;
    /// when that does not exist, the policies built into the binary are used
    #[arg(long, env = "TILGANG_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Data directory (`delegations/<owner>.json` or, for owners past 1,000 suppliers, `delegations/<owner>/<prefix>.json`; `roles.json`)
    #[arg(long, env = "TILGANG_DATA", value_name = "DIR", default_value = "data")]
    pub data: PathBuf,
}

/// `path` if it is a directory. `kind` names it in the error ("data directory").
fn existing_dir<'a>(kind: &str, path: &'a Path) -> anyhow::Result<&'a Path> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => anyhow::bail!("{kind} `{}` is not a directory", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            anyhow::bail!("{kind} `{}` does not exist", path.display())
        }
        Err(e) => anyhow::bail!("{kind} `{}`: {e}", path.display()),
    }
}

impl SourceArgs {
    /// Resolve `--policies`: an explicit directory must exist; the default falls
    /// back to the embedded copy.
    pub fn policy_source(&self) -> anyhow::Result<PolicySource> {
        match &self.policies {
            Some(dir) => Ok(PolicySource::Dir(
                existing_dir("policies directory", dir)?.to_path_buf(),
            )),
            None if Path::new("policies").is_dir() => {
                Ok(PolicySource::Dir(PathBuf::from("policies")))
            }
            None => Ok(PolicySource::Embedded),
        }
    }

    /// Resolve `--data` for the offline subcommands: the directory must exist,
    /// explicit or default. The loader reads a missing directory as one with no
    /// delegations and no roles, so a typo (`--data tests/fixtures/dat`) would
    /// check against nothing and still say `ok`. Only `serve` creates it.
    pub fn data_dir(&self) -> anyhow::Result<&Path> {
        existing_dir("data directory", &self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `ok` writes, then fails every write with `error`.
    struct Failing {
        ok: usize,
        error: io::ErrorKind,
        attempts: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.attempts += 1;
            if self.ok == 0 {
                return Err(self.error.into());
            }
            self.ok -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_ends_the_output_quietly() {
        let mut out = Output::new(Failing {
            ok: 1,
            error: io::ErrorKind::BrokenPipe,
            attempts: 0,
        });
        for i in 0..5 {
            out.line(i).unwrap();
        }
        out.flush().unwrap();
        assert_eq!(
            out.into_inner().attempts,
            2,
            "no write after the pipe broke"
        );
    }

    #[test]
    fn other_write_errors_are_errors() {
        let mut out = Output::new(Failing {
            ok: 0,
            error: io::ErrorKind::StorageFull,
            attempts: 0,
        });
        let e = out.line("x").unwrap_err();
        assert!(e.to_string().starts_with("writing to stdout: "), "{e}");
    }

    /// clap's own checks of the whole command tree (unique names, valid
    /// `requires`), which otherwise run only when a subcommand is used.
    #[test]
    fn the_command_tree_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Every flag and argument of every subcommand says in `--help` what it
    /// is: a bare `--owner <OWNER>` leaves the reader guessing the format.
    #[test]
    fn every_argument_has_help_text() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{} {id}", sub.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }
}
