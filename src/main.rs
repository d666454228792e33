//! The `tilgang` binary: parse the command line, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use tilgang::cli::{self, Cli, Command, Outcome};
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
    match &cli.command {
        Command::Serve(a) => cli::serve::run(a).await,
        Command::Check(a) => cli::check::run(a),
        Command::Validate(a) => cli::validate::run(a),
        Command::Test(a) => cli::test::run(a),
        Command::Rights(a) => cli::admin::rights(a).await,
        Command::Delegate(a) => cli::admin::delegate(a).await,
        Command::Revoke(a) => cli::admin::revoke(a).await,
        Command::Undo(a) => cli::admin::undo(a).await,
        Command::Delegations(a) => cli::admin::delegations(a).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli).await {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Outcome::Error.into()
        }
    }
}
