//! `serve`'s resource-limit flags, and [`Seconds`], how they are written.

use std::fmt;
use std::time::Duration;

use crate::server::limits::Limits;

const DEFAULT: Limits = Limits::DEFAULT;

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
    /// Most concurrent connections one client IP may hold on the gateway
    /// listener; more from it are closed at once. (When a listener is full,
    /// an idle or watch-only connection of the client holding the most is
    /// closed to make room)
    #[arg(long, env = "TILGANG_MAX_CONNECTIONS_PER_PEER", value_name = "N", default_value_t = DEFAULT.max_connections_per_peer,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections_per_peer: usize,
    /// Most concurrent connections one client IP may hold on the admin
    /// listener; more from it are closed at once
    #[arg(long, env = "TILGANG_ADMIN_MAX_CONNECTIONS_PER_PEER", value_name = "N", default_value_t = DEFAULT.admin_max_connections_per_peer,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub admin_max_connections_per_peer: usize,
    /// Most grpc.health.v1.Health/Watch streams open at once on the gateway
    /// listener; more are answered RESOURCE_EXHAUSTED
    #[arg(long, env = "TILGANG_MAX_WATCH_STREAMS", value_name = "N", default_value_t = DEFAULT.max_watch_streams,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_watch_streams: usize,
    /// Most grpc.health.v1.Health/Watch streams open at once on the admin
    /// listener; more are answered RESOURCE_EXHAUSTED
    #[arg(long, env = "TILGANG_ADMIN_MAX_WATCH_STREAMS", value_name = "N", default_value_t = DEFAULT.admin_max_watch_streams,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub admin_max_watch_streams: usize,
    /// Seconds a Health/Watch stream lasts; then it ends with status OK and
    /// its client watches again
    #[arg(long, env = "TILGANG_WATCH_LIFETIME", value_name = "SECONDS", default_value_t = Seconds(DEFAULT.watch_lifetime),
          value_parser = Seconds::positive)]
    pub watch_lifetime: Seconds,
    /// Streams (calls) one connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused
    #[arg(long, env = "TILGANG_MAX_CONCURRENT_STREAMS", value_name = "N", default_value_t = DEFAULT.max_concurrent_streams,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Seconds a new connection has to finish the TLS handshake (with TLS),
    /// and then to send the HTTP/2 preface and settings
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
    pub(super) fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            admin_max_connections: self.admin_max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            admin_max_connections_per_peer: self.admin_max_connections_per_peer,
            max_watch_streams: self.max_watch_streams,
            admin_max_watch_streams: self.admin_max_watch_streams,
            watch_lifetime: self.watch_lifetime.0,
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
}
