//! The `tilgang` binary: parse the command line, set up logging, dispatch, and
//! turn the result into the exit code (an error prints its whole cause chain).

use std::process::ExitCode;

use clap::Parser;
use tilgang::cli::{self, Cli, Command, Outcome, Output};

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let out = &mut Output::stdout();
    let outcome = match &cli.command {
        Command::Serve(a) => cli::serve::run(a).await,
        Command::Check(a) => cli::check::run(a, out),
        Command::Ask(a) => cli::ask::run(a, out).await,
        Command::DevToken(a) => cli::dev_token::run(a, out),
        Command::Validate(a) => cli::validate::run(a, out),
        Command::Test(a) => cli::test::run(a, out),
        Command::Rights(a) => cli::admin::rights(a, out).await,
        Command::Delegate(a) => cli::admin::delegate(a, out).await,
        Command::Revoke(a) => cli::admin::revoke(a, out).await,
        Command::Undo(a) => cli::admin::undo(a, out).await,
        Command::Delegations(a) => cli::admin::delegations(a, out).await,
        Command::Migrate(a) => cli::store::migrate(a, out).await,
        Command::Export(a) => cli::store::export(a, out).await,
        Command::Import(a) => cli::store::import(a, out).await,
    }?;
    out.flush()?;
    Ok(outcome)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; `RUST_LOG` (default `info`) and `TILGANG_LOG_FORMAT`
    // (`text` or `json`) that do not parse refuse to run.
    let logs = match tilgang::telemetry::logs::init_from_env() {
        Ok(logs) => logs,
        Err(e) => {
            cli::note(format_args!("error: {e}"));
            return Outcome::Error.into();
        }
    };
    let code = match run(cli).await {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            cli::note(format_args!("error: {e:#}"));
            Outcome::Error.into()
        }
    };
    // What the log gate dropped and has not said yet.
    logs.finish();
    code
}
