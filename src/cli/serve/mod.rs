//! `tilgang serve`: parse the flags into a [`Config`], start the [`Sidecar`],
//! and shut it down on SIGINT/SIGTERM. What serving means lives in
//! [`crate::sidecar`] and [`crate::server`]; this module only parses. Every
//! flag can also be set by an environment variable, `TILGANG_<FLAG>` (shown in
//! `--help`); a flag on the command line wins.

mod limits;
mod security;
mod web;

use super::Outcome;
#[cfg(test)]
use std::path::PathBuf;
use std::time::Duration;

use crate::sidecar::{Config, DEFAULT_MAX_STALENESS, MAX_UNDO_WINDOW, SharedStore, Sidecar};
use crate::snapshot::load::PolicySource;
use crate::telemetry::decision_log::{self, Target};
pub use limits::{LimitArgs, Seconds};
pub use security::{AdminAuthArgs, TlsArgs, TokenArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Gateway listener (`Authorizer`, health, reflection). Port 0 picks a free port
    #[arg(
        long,
        env = "TILGANG_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: String,
    /// Admin listener (`Delegations`, health, reflection); `off` serves none
    /// (a gateway replica on the shared store). Keep it off the gateway
    /// network; without --admin-jwks or --admin-client-identities, only a
    /// loopback address is allowed
    #[arg(
        long,
        env = "TILGANG_ADMIN_LISTEN",
        value_name = "ADDR|off",
        default_value = "127.0.0.1:50052"
    )]
    pub admin_listen: String,
    /// Prometheus metrics listener (HTTP/1.1, `GET /metrics`); `off` serves none
    #[arg(
        long,
        env = "TILGANG_METRICS_LISTEN",
        value_name = "ADDR|off",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,
    /// Log every decision as a JSON line to FILE (appended to), or `-` for
    /// stdout; empty logs none
    #[arg(long, env = "TILGANG_DECISION_LOG", value_name = "FILE|-")]
    pub decision_log: Option<String>,
    /// Decision-log lines that may wait to be written; when full, lines are
    /// dropped and counted (`tilgang_decision_log_dropped_total`), never waited for
    #[arg(long, env = "TILGANG_DECISION_LOG_QUEUE", value_name = "LINES",
          default_value_t = decision_log::DEFAULT_QUEUE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_048_576))]
    pub decision_log_queue: usize,
    /// How long a revocation can be undone, in seconds (at most ten years)
    #[arg(long, env = "TILGANG_UNDO_WINDOW", value_name = "SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=MAX_UNDO_WINDOW.as_secs()))]
    pub undo_window: u64,
    /// Period of the fallback rescan for file systems that drop events, in seconds
    #[arg(
        long,
        env = "TILGANG_RESCAN",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub rescan: u64,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub admin: AdminAuthArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub web: web::WebArgs,
    #[command(flatten)]
    pub store: super::store::StoreArgs,
    /// With --store: apply pending schema migrations when connecting (else a
    /// store whose schema is older than this tilgang is waited for until
    /// `tilgang migrate` has run)
    #[arg(long, env = "TILGANG_MIGRATE", requires = "url")]
    pub migrate: bool,
    /// With --store: seconds without a successful sync after which decisions
    /// use no delegations (deny, saying why), so a replica cut off from
    /// revocations cannot allow forever; 0 = never
    #[arg(long, env = "TILGANG_MAX_STALENESS", value_name = "SECONDS",
          default_value_t = DEFAULT_MAX_STALENESS.as_secs())]
    pub max_staleness: u64,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: &Args) -> anyhow::Result<Outcome> {
    let mut cfg = Config::new(args.source.policy_source()?, args.source.data.clone());
    if cfg.policies == PolicySource::Embedded {
        tracing::warn!(
            "no `policies` directory here; using the policies built into the binary (not hot-reloaded)"
        );
    }
    cfg.listen = args.listen.clone();
    cfg.admin_listen = (args.admin_listen != "off").then(|| args.admin_listen.clone());
    cfg.metrics_listen = (args.metrics_listen != "off").then(|| args.metrics_listen.clone());
    // Empty is unset: a templated `TILGANG_DECISION_LOG=` turns the log off.
    cfg.decision_log = args
        .decision_log
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(Target::parse);
    cfg.decision_log_queue = args.decision_log_queue;
    cfg.undo_window = Duration::from_secs(args.undo_window);
    cfg.rescan = Duration::from_secs(args.rescan.max(1));
    cfg.limits = args.limits.limits();
    cfg.claims.payload_key = args.tokens.jwt_payload_key.as_str().into();
    cfg.bearer = args.tokens.bearer();
    cfg.token_cache = args.tokens.jwt_cache;
    cfg.admin_auth = args.admin.config();
    cfg.admin_clients = args.admin.clients();
    cfg.tls = args.tls.gateway();
    cfg.admin_tls = args.tls.admin();
    cfg.web = args.web.settings();
    cfg.store = args.store.config()?.map(|config| SharedStore {
        config,
        migrate: args.migrate,
        max_staleness: (args.max_staleness > 0).then(|| Duration::from_secs(args.max_staleness)),
    });
    let sidecar = Sidecar::start(cfg).await?;
    terminated().await;
    tracing::info!("shutting down");
    sidecar.shutdown().await?;
    tracing::info!("stopped");
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_defaults_are_the_limits_defaults() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(["tilgang", "serve"]);
        let crate::cli::Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.limits.limits(), crate::server::limits::Limits::DEFAULT);
    }

    #[test]
    fn token_checks_need_a_jwks_file() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            crate::cli::Cli::try_parse_from(["tilgang", "serve"].iter().chain(args)).map(|cli| {
                match cli.command {
                    crate::cli::Command::Serve(a) => a.tokens.bearer(),
                    _ => panic!("not serve"),
                }
            })
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert!(parse(&["--jwt-issuer", "https://maskinporten.no/"]).is_err());
        assert!(parse(&["--jwt-audience", "a"]).is_err());
        assert!(parse(&["--jwks", "k.json", "--jwt-leeway", "301"]).is_err());
        let b = parse(&[
            "--jwks",
            "k.json",
            "--jwt-audience",
            "a,b",
            "--jwt-audience",
            "c",
            "--jwt-leeway",
            "5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(b.jwks, PathBuf::from("k.json"));
        assert_eq!(b.verifier.audiences, ["a", "b", "c"]);
        assert_eq!(b.verifier.leeway, Duration::from_secs(5));
        assert_eq!(b.verifier.issuer, None);
    }

    /// Every flag of `serve` has its variable, named after it, and `--help`
    /// shows it.
    #[test]
    fn every_flag_has_a_tilgang_variable() {
        use clap::CommandFactory;
        let mut cli = crate::cli::Cli::command();
        let serve = cli.find_subcommand_mut("serve").unwrap();
        let mut flags = 0;
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            flags += 1;
            let expected = format!("TILGANG_{}", long.replace('-', "_").to_uppercase());
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(expected.as_str()),
                "--{long}"
            );
        }
        assert!(flags >= 30, "{flags}");
        let help = serve.render_long_help().to_string();
        assert!(help.contains("[env: TILGANG_METRICS_LISTEN="), "{help}");
        assert!(help.contains("[env: TILGANG_SHUTDOWN_GRACE="), "{help}");
    }
}
