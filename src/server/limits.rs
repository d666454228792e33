//! Every resource limit of the two listeners, with its default, in one place:
//! connections, streams, message and header sizes, timeouts, the shutdown
//! grace; and the open-file budget the connection limits are fitted into. The
//! only I/O here is reading and raising `RLIMIT_NOFILE`; this module serves
//! nothing and parses no command line.

use std::time::Duration;

/// The limits `serve` applies, per listener unless a field says otherwise.
/// [`Limits::DEFAULT`] holds the defaults; the `serve` flags and the README
/// show them from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most concurrent connections on the gateway listener. A cap: the
    /// effective limit is also fitted into the open-file limit
    /// ([`connection_limits`]), so a flood of connections runs into this
    /// limit, not into `EMFILE`.
    pub max_connections: usize,
    /// Most concurrent connections on the admin listener; its own budget, so a
    /// flooded gateway listener never locks an operator out, and the other
    /// way round.
    pub admin_max_connections: usize,
    /// Most concurrent connections one peer (source IP) may hold on the
    /// gateway listener; more from it are closed at once. When a listener is
    /// full, a connection with no ordinary call in flight (idle, or holding
    /// only `Health/Watch` streams) is closed to make room for a new one
    /// ([`crate::server`]'s roster); this share keeps one peer from holding
    /// them all with calls in flight. Behind a proxy every client is the
    /// proxy: raise it to the connection limit there.
    pub max_connections_per_peer: usize,
    /// The same on the admin listener.
    pub admin_max_connections_per_peer: usize,
    /// Most `Health/Watch` streams open at once on the gateway listener; more
    /// are answered `RESOURCE_EXHAUSTED`.
    pub max_watch_streams: usize,
    /// The same on the admin listener.
    pub admin_max_watch_streams: usize,
    /// A `Health/Watch` stream ends (status OK) after this long; its client
    /// watches again. Both listeners.
    pub watch_lifetime: Duration,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: requests one connection may have
    /// open at once. More are refused (`REFUSED_STREAM`), so one connection
    /// cannot hold unbounded request state.
    pub max_concurrent_streams: u32,
    /// A new connection must send the HTTP/2 client preface and its first
    /// frame within this, or it is closed: an idle TCP connection must not hold
    /// a connection slot.
    pub handshake_timeout: Duration,
    /// A frame header, or a header block (a HEADERS frame and its
    /// CONTINUATIONs up to END_HEADERS), must arrive in full within this once
    /// it has started, or the connection is closed (slowloris).
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// gracefully (GOAWAY). A `Health/Watch` stream is a request in flight
    /// (for at most [`Limits::watch_lifetime`]).
    pub idle_timeout: Duration,
    /// The server pings a connection that has been quiet this long...
    pub keepalive_interval: Duration,
    /// ...and closes it if the ping is not answered within this, so dead
    /// peers do not hold connection slots.
    pub keepalive_timeout: Duration,
    /// A call whose handler (including reading its request message) takes
    /// longer is answered `DEADLINE_EXCEEDED`, which frees a half-sent
    /// message's buffer. A shorter `grpc-timeout` from the client wins.
    /// Response streams (`Health/Watch`) are not cut here (see
    /// [`Limits::watch_lifetime`]).
    pub request_timeout: Duration,
    /// On shutdown, in-flight calls get this long to finish after GOAWAY;
    /// what remains (e.g. `Health/Watch` streams) is then closed. For the
    /// whole process, not per listener.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The defaults, the one place they are written down.
    pub const DEFAULT: Self = Self {
        max_connections: 4096,
        admin_max_connections: 64,
        max_connections_per_peer: 1024,
        admin_max_connections_per_peer: 32,
        max_watch_streams: 1024,
        admin_max_watch_streams: 16,
        watch_lifetime: Duration::from_secs(300),
        max_concurrent_streams: 100,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(10),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The largest `BatchIsAuthorized` request that can be valid is 1000 items of
/// `0192:` + 9 digits, the same, and a 256-character scope: 294,000 bytes
/// encoded (see the test below). 512 KiB leaves room for that and refuses
/// anything near tonic's default of 4 MiB.
pub const GATEWAY_MAX_MESSAGE: usize = 512 * 1024;
/// Admin requests carry an owner, a supplier, an actor (at most 64
/// characters) and right ids (at most 64 characters each, from a small
/// catalogue): 64 KiB would hold about 990 rights of the longest id. 256 KiB
/// lets a malformed value of up to about 250 KB be answered like any other
/// bad field (`INVALID_ARGUMENT`, cut to 64 characters) on both listeners.
pub const ADMIN_MAX_MESSAGE: usize = 256 * 1024;
/// The largest reply the admin listener sends. tonic sends replies of any
/// size unless told (its server default is `usize::MAX`), while its clients,
/// grpc-go's and grpcurl refuse replies over 4 MiB by default: a larger
/// reply would only fail at the client, after the server built and sent it.
/// Over this limit the server answers `OUT_OF_RANGE` (``Error, encoded
/// message length too large: ...``) instead. A `ListDelegations` page stays
/// at about a quarter of it ([`crate::grpc::page::MAX_PAGE_BYTES`], see the
/// test below); only a single delegation of more than 4 MiB (thousands of
/// long scopes, or a hand-edited file with megabytes in one field) meets it.
pub const ADMIN_MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// `HealthCheckRequest` is one service name.
pub const HEALTH_MAX_MESSAGE: usize = 4 * 1024;
/// Reflection requests name one file or symbol.
pub const REFLECTION_MAX_MESSAGE: usize = 16 * 1024;
/// `SETTINGS_MAX_HEADER_LIST_SIZE`: gRPC requests carry a handful of short
/// headers; a bigger list is refused.
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Descriptors kept back from the connection limits for everything else the
/// process opens: stdio, the runtime's epoll and wakers, the two listening
/// sockets, the file watcher, the data-directory lock and the audit log, and
/// the files reloads and admin writes open (a write holds up to four at once:
/// the owner file, its temp file, the directory and an undo record).
pub const FD_RESERVE: u64 = 128;
/// The admin listener's share of the descriptors left after [`FD_RESERVE`]
/// is at most 1/`ADMIN_SHARE` of them (and at most
/// [`Limits::admin_max_connections`]); the gateway gets the rest (at most
/// [`Limits::max_connections`]).
pub const ADMIN_SHARE: u64 = 8;
/// Below this many descriptors for connections, `serve` refuses to start:
/// it could not serve both listeners.
pub const MIN_CONNECTION_BUDGET: u64 = 16;

/// The connection limits in effect, per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub gateway: usize,
    pub admin: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error(
        "the open-file limit is {nofile}; tilgang needs at least {} (raise `ulimit -n`)",
        FD_RESERVE + MIN_CONNECTION_BUDGET
    )]
    TooFewDescriptors { nofile: u64 },
}

/// Fit the connection limits into `nofile` descriptors:
/// `budget = nofile - FD_RESERVE`,
/// `admin = min(admin_max_connections, max(1, budget / ADMIN_SHARE))`,
/// `gateway = min(max_connections, budget - admin)`.
/// Together they never exceed the budget, so accepting can only fail for lack
/// of descriptors when something else holds them.
pub fn connection_limits(nofile: u64, limits: &Limits) -> Result<ConnectionLimits, LimitsError> {
    let budget = nofile.saturating_sub(FD_RESERVE);
    if budget < MIN_CONNECTION_BUDGET {
        return Err(LimitsError::TooFewDescriptors { nofile });
    }
    let cap = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let fit = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let admin = cap(limits.admin_max_connections).min((budget / ADMIN_SHARE).max(1));
    let gateway = cap(limits.max_connections).min(budget - admin);
    Ok(ConnectionLimits {
        gateway: fit(gateway).max(1),
        admin: fit(admin).max(1),
    })
}

/// The open-file limit before and after [`raise_nofile`]; `None` is
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    pub before: Option<u64>,
    pub after: Option<u64>,
}

impl Nofile {
    /// The limit now in effect, for [`connection_limits`].
    pub fn current(&self) -> u64 {
        self.after.unwrap_or(u64::MAX)
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit: the soft default (often
/// 1024) is far below what a server under load needs, and the hard limit is
/// what the operator allowed. Failing to raise it is not fatal: the
/// connection limits are fitted into whatever limit is in effect.
pub fn raise_nofile() -> Nofile {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let old = getrlimit(Resource::Nofile);
        let raise = match (old.current, old.maximum) {
            (Some(soft), Some(hard)) => soft < hard,
            // An unlimited hard limit cannot be a soft one for files on
            // Linux; leave it to the operator.
            _ => false,
        };
        if raise {
            let new = Rlimit {
                current: old.maximum,
                maximum: old.maximum,
            };
            if let Err(e) = setrlimit(Resource::Nofile, new) {
                tracing::warn!(error = %e, "could not raise the open-file limit");
            }
        }
        Nofile {
            before: old.current,
            after: getrlimit(Resource::Nofile).current,
        }
    }
    #[cfg(not(unix))]
    {
        Nofile {
            before: None,
            after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_fit_the_descriptor_budget() {
        let l = Limits::DEFAULT;
        // 256: 128 for connections, an eighth of them for admin.
        assert_eq!(
            connection_limits(256, &l),
            Ok(ConnectionLimits {
                gateway: 112,
                admin: 16
            })
        );
        // The usual soft default.
        assert_eq!(
            connection_limits(1024, &l),
            Ok(ConnectionLimits {
                gateway: 832,
                admin: 64
            })
        );
        // Plenty: the flags cap.
        assert_eq!(
            connection_limits(1 << 20, &l),
            Ok(ConnectionLimits {
                gateway: 4096,
                admin: 64
            })
        );
        assert_eq!(
            connection_limits(u64::MAX, &l),
            Ok(ConnectionLimits {
                gateway: 4096,
                admin: 64
            })
        );
        for nofile in [144, 200, 256, 1000, 5000] {
            let c = connection_limits(nofile, &l).unwrap();
            let used = (c.gateway + c.admin) as u64 + FD_RESERVE;
            assert!(used <= nofile, "{nofile}: {c:?}");
        }
        assert_eq!(
            connection_limits(143, &l),
            Err(LimitsError::TooFewDescriptors { nofile: 143 })
        );
    }

    #[test]
    fn the_largest_valid_batch_fits_the_gateway_message_limit() {
        use crate::grpc::authorizer::MAX_BATCH;
        use crate::proto::{BatchIsAuthorizedRequest, IsAuthorizedRequest};
        use prost::Message;
        let item = IsAuthorizedRequest {
            supplier: "0192:810418672".into(),
            owner: "0192:991825827".into(),
            scope: "s".repeat(256),
            // The longest varint: a batch may ask for any revision.
            min_revision: u64::MAX,
        };
        let batch = BatchIsAuthorizedRequest {
            requests: vec![item; MAX_BATCH],
        };
        let len = batch.encoded_len();
        assert_eq!(len, 305_000);
        assert!(len < GATEWAY_MAX_MESSAGE * 6 / 10, "{len}");
    }

    /// The largest `ListDelegations` replies, computed with prost.
    #[test]
    fn the_largest_page_stays_far_below_the_admin_response_limits() {
        use crate::catalogue::Catalogue;
        use crate::grpc::page::{MAX_PAGE_BYTES, MAX_PAGE_SIZE, TOKEN_CHARS};
        use crate::proto::{Delegation, ListDelegationsResponse};
        use prost::Message;
        // The fixture copy of the shipped catalogue (two rights, two scopes),
        // so a policy author's new right does not break this test.
        let catalogue =
            Catalogue::from_json(include_str!("../../tests/fixtures/policies/rights.json"))
                .unwrap();
        let rights: Vec<String> = catalogue
            .rights()
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        let scopes = catalogue.scopes_of(catalogue.rights().iter().map(|r| &r.id));
        // The longest values the admin API writes or a file may plausibly
        // hold: a 64-character actor (`PersonId`'s most), RFC 3339 times with
        // nanoseconds and an offset (the writer's own are 20 characters).
        let delegation = |rights: &[String], scopes: &[String]| Delegation {
            owner: "991825827".into(),
            supplier: "810418672".into(),
            rights: rights.to_vec(),
            scopes: scopes.to_vec(),
            delegated_by: "p".repeat(64),
            updated_at: "2026-03-01T08:15:00.123456789+01:00".into(),
            created_at: "2026-03-01T08:15:00.123456789+01:00".into(),
            // Listings carry none (0 is not encoded); only a write's reply does.
            store_revision: 0,
        };
        let page = |d: Delegation, n: usize| ListDelegationsResponse {
            delegations: vec![d; n],
            next_page_token: "t".repeat(TOKEN_CHARS),
        };

        // Every right held: a full page of 1000.
        let shipped = page(delegation(&rights, &scopes), MAX_PAGE_SIZE).encoded_len();
        assert_eq!(shipped, 270_038);
        // The same with the ids and scopes as long as their parsers allow.
        let long_rights: Vec<String> = (0..rights.len()).map(|i| format!("{i:a<64}")).collect();
        let long_scopes: Vec<String> = (0..scopes.len()).map(|i| format!("{i:s<256}")).collect();
        let longest = page(delegation(&long_rights, &long_scopes), MAX_PAGE_SIZE).encoded_len();
        assert_eq!(longest, 815_038);
        // Both full pages fit the byte budget, so it never cuts them short.
        assert!(longest < MAX_PAGE_BYTES, "{longest}");

        // With a bigger catalogue the budget cuts a page: a page of two or
        // more delegations is at most the budget plus the token field, about
        // a quarter of what the server sends and default clients accept.
        const CLIENT_DEFAULT: usize = 4 * 1024 * 1024;
        let worst = MAX_PAGE_BYTES + 2 + TOKEN_CHARS;
        assert_eq!(worst, 1_048_614);
        const { assert!(ADMIN_MAX_RESPONSE <= CLIENT_DEFAULT) };
        assert!(worst < ADMIN_MAX_RESPONSE * 3 / 10, "{worst}");
        // A page of one delegation is as large as it is: even one holding a
        // thousand rights with the longest ids, each with its own longest
        // scope, is under a third of the budget.
        let many_rights: Vec<String> = (0..1000).map(|i| format!("{i:a<64}")).collect();
        let many_scopes: Vec<String> = (0..1000).map(|i| format!("{i:s<256}")).collect();
        let huge = page(delegation(&many_rights, &many_scopes), 1).encoded_len();
        assert_eq!(huge, 325_204);
        assert!(huge < MAX_PAGE_BYTES / 3, "{huge}");
    }

    #[test]
    fn raising_the_open_file_limit_never_lowers_it() {
        let n = raise_nofile();
        assert!(n.after >= n.before, "{n:?}");
        assert_eq!(raise_nofile().before, n.after);
    }
}
