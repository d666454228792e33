//! How the process logs: the filter from `RUST_LOG` and the format from
//! `TILGANG_LOG_FORMAT`, both checked before anything runs. A value that does
//! not parse is an error for `main` to report (exit 2), never a silent
//! fallback: `RUST_LOG=debgu` used to log at `info` and nobody noticed.
//! Logs go to stderr, through the [`LogGate`] (no callsite writes more than
//! a burst of 200 lines and then 50 a second), in either format. This module
//! only reads the two variables and installs the subscriber.

use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::log_gate::{self, LogGate};

use super::log_escape::Escaping;

/// An error and its causes on one line, `: `-separated (a transport
/// error alone often says only "transport error").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The filter when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines (`TILGANG_LOG_FORMAT` unset, empty or `text`).
    Text,
    /// One JSON object per line (`TILGANG_LOG_FORMAT=json`).
    Json,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogSetupError {
    #[error("`RUST_LOG` `{value}` is not a valid log filter: {reason}")]
    Filter { value: String, reason: String },
    #[error("`TILGANG_LOG_FORMAT` `{0}` is not a log format: use `json` or `text`")]
    Format(String),
    #[error("cannot start the log gate's reporter thread: {0}")]
    Reporter(String),
}

/// The levels a bare directive may name.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The filter `value` of `RUST_LOG` asks for (`None`, or empty: [`DEFAULT_FILTER`]).
///
/// Stricter than `tracing-subscriber`, which reads a bare word that is no
/// level (`debgu`) as a target to log at every level: here a directive
/// without `=` must be a level, and a target is written `target=level`.
pub fn filter(value: Option<&str>) -> Result<EnvFilter, LogSetupError> {
    let value = value.map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Ok(EnvFilter::new(DEFAULT_FILTER));
    };
    let bad = |reason: String| LogSetupError::Filter {
        value: crate::ids::echo(value),
        reason,
    };
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(bad(format!(
                "`{}` is not a level (one of {}); to name a target write `{0}=LEVEL`",
                crate::ids::echo(directive),
                LEVELS.join(", ")
            )));
        }
    }
    EnvFilter::builder()
        .parse(value)
        .map_err(|e| bad(e.to_string()))
}

/// The format `value` of `TILGANG_LOG_FORMAT` asks for.
pub fn format(value: Option<&str>) -> Result<Format, LogSetupError> {
    match value.map(str::trim) {
        None | Some("" | "text") => Ok(Format::Text),
        Some("json") => Ok(Format::Json),
        Some(other) => Err(LogSetupError::Format(crate::ids::echo(other))),
    }
}

/// The installed logging, for the end of `main`.
#[derive(Debug)]
pub struct Logs {
    gate: LogGate,
}

impl Logs {
    /// Write a summary of every line the gate dropped and has not reported
    /// yet: the process is ending.
    pub fn finish(&self) {
        self.gate.report(Instant::now(), Duration::ZERO);
    }
}

/// Read `RUST_LOG` and `TILGANG_LOG_FORMAT` and install the subscriber
/// (stderr, every line escaped by [`Escaping`], so no colours) behind the
/// [`LogGate`].
pub fn init_from_env() -> Result<Logs, LogSetupError> {
    let var = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let filter = filter(var("RUST_LOG").as_deref())?;
    let format = format(var("TILGANG_LOG_FORMAT").as_deref())?;
    let gate = LogGate::new(log_gate::BURST, log_gate::PER_SECOND);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(Escaping(std::io::stderr))
        .with_ansi(false);
    // The filter first, so the gate counts only lines that would be written.
    let base = tracing_subscriber::registry()
        .with(filter)
        .with(gate.clone());
    match format {
        Format::Json => base.with(fmt.json()).init(),
        Format::Text => base.with(fmt).init(),
    }
    gate.spawn_reporter()
        .map_err(|e| LogSetupError::Reporter(e.to_string()))?;
    Ok(Logs { gate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_that_parse_are_taken() {
        for ok in [
            None,
            Some(""),
            Some("  "),
            Some("debug"),
            Some("WARN"),
            Some("info,tilgang=debug"),
            Some("tilgang::server=trace,h2=off"),
            Some("info,[serve]=debug"),
        ] {
            assert!(filter(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn filters_that_do_not_are_errors_naming_the_value() {
        let e = filter(Some("debgu")).unwrap_err();
        assert!(e.to_string().contains("`debgu` is not a level"), "{e}");
        let e = filter(Some("tilgang=verbose")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`RUST_LOG` `tilgang=verbose` is not a valid log filter"),
            "{e}"
        );
        assert!(filter(Some("info,tilgang")).is_err());
    }

    #[test]
    fn only_json_and_text_are_formats() {
        assert_eq!(format(None), Ok(Format::Text));
        assert_eq!(format(Some("")), Ok(Format::Text));
        assert_eq!(format(Some("text")), Ok(Format::Text));
        assert_eq!(format(Some("json")), Ok(Format::Json));
        assert_eq!(
            format(Some("JSON")),
            Err(LogSetupError::Format("JSON".into()))
        );
        assert!(format(Some("xml")).is_err());
    }
}
