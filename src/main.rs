//! The `tilgang` binary: parse the command line, set up logging, dispatch, and
//! turn the result into the exit code (an error prints its whole cause chain).

use std::process::ExitCode;

use clap::Parser;
use tilgang::cli::{self, Cli, Command, Outcome, Output};
use tracing_subscriber::EnvFilter;

/// Logs go to stderr. `RUST_LOG` sets the filter (default `info`);
/// `TILGANG_LOG_FORMAT=json` switches to JSON lines.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("TILGANG_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let out = &mut Output::stdout();
    let outcome = match &cli.command {
        Command::Serve(a) => cli::serve::run(a).await,
        Command::Check(a) => cli::check::run(a, out),
        Command::Validate(a) => cli::validate::run(a, out),
        Command::Test(a) => cli::test::run(a, out),
        Command::Rights(a) => cli::admin::rights(a, out).await,
        Command::Delegate(a) => cli::admin::delegate(a, out).await,
        Command::Revoke(a) => cli::admin::revoke(a, out).await,
        Command::Undo(a) => cli::admin::undo(a, out).await,
        Command::Delegations(a) => cli::admin::delegations(a, out).await,
    }?;
    out.flush()?;
    Ok(outcome)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli).await {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            cli::note(format_args!("error: {e:#}"));
            Outcome::Error.into()
        }
    }
}
