//! `tilgang serve`: parse the flags into a [`Config`], start the [`Sidecar`],
//! and shut it down on SIGINT/SIGTERM. What serving means lives in
//! [`crate::sidecar`] and [`crate::server`]; this module only parses. Every
//! flag can also be set by an environment variable, `TILGANG_<FLAG>` (shown in
//! `--help`); a flag on the command line wins.

use super::Outcome;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{DEFAULT_LEEWAY, MAX_LEEWAY, VerifierConfig};
use crate::grpc::ext_authz::DEFAULT_PAYLOAD_KEY;
use crate::server::limits::Limits;
use crate::sidecar::{BearerConfig, Config, MAX_UNDO_WINDOW, Sidecar};
use crate::snapshot::load::PolicySource;
use crate::telemetry::decision_log::{self, Target};

const DEFAULT: Limits = Limits::DEFAULT;

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
    /// Admin listener (`Delegations`, health, reflection). Keep it off the gateway network
    #[arg(
        long,
        env = "TILGANG_ADMIN_LISTEN",
        value_name = "ADDR",
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
    pub limits: LimitArgs,
}

/// How Envoy's ext_authz `Check` gets the caller's Maskinporten claims.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Gateway tokens (ext_authz Check)")]
pub struct TokenArgs {
    /// The key under `envoy.filters.http.jwt_authn` metadata holding the
    /// verified token payload (jwt_authn's `payload_in_metadata`)
    #[arg(long, env = "TILGANG_JWT_PAYLOAD_KEY", value_name = "KEY",
          default_value = DEFAULT_PAYLOAD_KEY, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub jwt_payload_key: String,
    /// Without jwt_authn: verify the `Authorization: Bearer` token against
    /// this JWKS file (hot-reloaded). Unset: a check without jwt_authn
    /// claims is answered 401
    #[arg(long, env = "TILGANG_JWKS", value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// With --jwks: the exact `iss` a token must carry (Maskinporten:
    /// `https://maskinporten.no/`)
    #[arg(
        long,
        env = "TILGANG_JWT_ISSUER",
        value_name = "ISS",
        requires = "jwks"
    )]
    pub jwt_issuer: Option<String>,
    /// With --jwks: an accepted `aud` (repeat, or comma-separated in the
    /// variable); a token must name one of them
    #[arg(
        long,
        env = "TILGANG_JWT_AUDIENCE",
        value_name = "AUD",
        requires = "jwks",
        value_delimiter = ','
    )]
    pub jwt_audience: Vec<String>,
    /// With --jwks: clock skew allowed on `exp` and `nbf`, whole seconds
    #[arg(long, env = "TILGANG_JWT_LEEWAY", value_name = "SECONDS", requires = "jwks",
          default_value_t = DEFAULT_LEEWAY.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=MAX_LEEWAY.as_secs()))]
    pub jwt_leeway: u64,
}

impl TokenArgs {
    fn bearer(&self) -> Option<BearerConfig> {
        let jwks = self.jwks.clone().filter(|p| !p.as_os_str().is_empty())?;
        Some(BearerConfig {
            jwks,
            verifier: VerifierConfig {
                issuer: self.jwt_issuer.clone().filter(|i| !i.is_empty()),
                audiences: self.jwt_audience.clone(),
                leeway: Duration::from_secs(self.jwt_leeway),
            },
        })
    }
}

/// Resource limits; the defaults come from [`Limits::DEFAULT`].
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Most concurrent connections on the gateway listener; lowered to fit the
    /// open-file limit (see README). More are closed at once
    #[arg(long, env = "TILGANG_MAX_CONNECTIONS", value_name = "N", default_value_t = DEFAULT.max_connections,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Most concurrent connections on the admin listener; lowered to fit the
    /// open-file limit (see README). More are closed at once
    #[arg(long, env = "TILGANG_ADMIN_MAX_CONNECTIONS", value_name = "N", default_value_t = DEFAULT.admin_max_connections,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub admin_max_connections: usize,
    /// Streams (calls) one connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused
    #[arg(long, env = "TILGANG_MAX_CONCURRENT_STREAMS", value_name = "N", default_value_t = DEFAULT.max_concurrent_streams,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Seconds a new connection has to send the HTTP/2 preface and settings
    #[arg(long, env = "TILGANG_HANDSHAKE_TIMEOUT", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.handshake_timeout),
          value_parser = Seconds::positive)]
    pub handshake_timeout: Seconds,
    /// Seconds a started frame header or header block has to arrive in full
    #[arg(long, env = "TILGANG_HEADER_TIMEOUT", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.header_timeout),
          value_parser = Seconds::positive)]
    pub header_timeout: Seconds,
    /// Seconds a connection with no call in flight stays open
    #[arg(long, env = "TILGANG_IDLE_TIMEOUT", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.idle_timeout),
          value_parser = Seconds::positive)]
    pub idle_timeout: Seconds,
    /// Seconds of silence before the server pings a connection
    #[arg(long, env = "TILGANG_KEEPALIVE_INTERVAL", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.keepalive_interval),
          value_parser = Seconds::positive)]
    pub keepalive_interval: Seconds,
    /// Seconds a ping may go unanswered before the connection is closed
    #[arg(long, env = "TILGANG_KEEPALIVE_TIMEOUT", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.keepalive_timeout),
          value_parser = Seconds::positive)]
    pub keepalive_timeout: Seconds,
    /// Seconds a call may take to answer (including receiving its request)
    /// before it is answered DEADLINE_EXCEEDED; streams are not cut
    #[arg(long, env = "TILGANG_REQUEST_TIMEOUT", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.request_timeout),
          value_parser = Seconds::positive)]
    pub request_timeout: Seconds,
    /// Seconds in-flight calls get to finish on SIGTERM/Ctrl-C before the
    /// remaining connections (e.g. Health/Watch streams) are closed
    #[arg(long, env = "TILGANG_SHUTDOWN_GRACE", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.shutdown_grace))]
    pub shutdown_grace: Seconds,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            admin_max_connections: self.admin_max_connections,
            max_concurrent_streams: self.max_concurrent_streams,
            handshake_timeout: self.handshake_timeout.0,
            header_timeout: self.header_timeout.0,
            idle_timeout: self.idle_timeout.0,
            keepalive_interval: self.keepalive_interval.0,
            keepalive_timeout: self.keepalive_timeout.0,
            request_timeout: self.request_timeout.0,
            shutdown_grace: self.shutdown_grace.0,
        }
    }
}

/// A duration given in seconds, fractions allowed (`0.5`), at most a day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let secs: f64 = s
            .parse()
            .map_err(|_| format!("`{s}` is not a number of seconds"))?;
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(format!("`{s}` is not between 0 and 86400 seconds"));
        }
        Ok(Self(Duration::from_secs_f64(secs)))
    }
}

impl Seconds {
    /// More than zero: a zero timeout would end every connection or call.
    fn positive(s: &str) -> Result<Self, String> {
        let v: Self = s.parse()?;
        if v.0.is_zero() {
            return Err("must be more than 0 seconds".into());
        }
        Ok(v)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
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
    cfg.admin_listen = args.admin_listen.clone();
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
    cfg.claims.payload_key = args.tokens.jwt_payload_key.clone();
    cfg.bearer = args.tokens.bearer();
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
    fn seconds_take_fractions_and_show_the_defaults_plainly() {
        assert_eq!(
            "0.5".parse::<Seconds>(),
            Ok(Seconds(Duration::from_millis(500)))
        );
        assert_eq!(
            "10".parse::<Seconds>(),
            Ok(Seconds(Duration::from_secs(10)))
        );
        assert!("-1".parse::<Seconds>().is_err());
        assert!("ten".parse::<Seconds>().is_err());
        assert!("NaN".parse::<Seconds>().is_err());
        assert!("86401".parse::<Seconds>().is_err());
        assert_eq!("0".parse::<Seconds>(), Ok(Seconds(Duration::ZERO)));
        assert!(Seconds::positive("0").is_err());
        assert!(Seconds::positive("0.001").is_ok());
        assert_eq!(Seconds(DEFAULT.idle_timeout).to_string(), "300");
        assert_eq!(Seconds(Duration::from_millis(250)).to_string(), "0.25");
    }

    #[test]
    fn the_flag_defaults_are_the_limits_defaults() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(["tilgang", "serve"]);
        let crate::cli::Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.limits.limits(), Limits::DEFAULT);
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
        assert!(flags >= 19, "{flags}");
        let help = serve.render_long_help().to_string();
        assert!(help.contains("[env: TILGANG_METRICS_LISTEN="), "{help}");
        assert!(help.contains("[env: TILGANG_SHUTDOWN_GRACE="), "{help}");
    }
}
