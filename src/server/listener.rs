//! The accept loop of one listener and its connection limits. A connection is
//! admitted with a permit it holds for its whole life, and a place on the
//! listener's [`Roster`]. A peer (source IP) over its share is closed at
//! once; over the listener's limit, the roster picks a connection with no
//! ordinary call in flight to close, and the new one waits for its permit
//! (at most [`EVICT_WAIT`]); with none to pick, the new connection is closed
//! at once. Both are counted. When accepting
//! fails for lack of descriptors or memory, the loop backs off instead of
//! spinning, while the connections already open keep being served (they run
//! on their own tasks). This module does not speak HTTP/2.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::roster::{Place, Roster};

/// A connection that got a place under the limit.
pub struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Returned when the connection ends.
    pub permit: OwnedSemaphorePermit,
    /// Its place on the roster (with one): its calls in flight, and whether
    /// it is told to close.
    pub place: Option<Place>,
}

/// A connection waiting for the permit of one the roster told to close.
struct Waiting {
    stream: TcpStream,
    peer: SocketAddr,
    place: Option<Place>,
    until: Instant,
}

/// How long a new connection waits for the place of one told to close (which
/// closes at once: this is only for its task to run).
pub const EVICT_WAIT: Duration = Duration::from_millis(500);

pub struct Acceptor {
    tcp: TcpListener,
    /// For logs: which listener this is.
    name: &'static str,
    limit: usize,
    permits: Arc<Semaphore>,
    /// `None`: no per-peer share, and no connection is closed to make room
    /// (the metrics listener).
    roster: Option<Arc<Roster>>,
    /// Kept here, not in `accept`'s future, so that `accept` stays
    /// cancel-safe.
    waiting: Option<Waiting>,
    /// Connections refused over the limit, since start-up.
    refused_total: u64,
    refused: RateLimited,
    /// Connections refused because their peer held its share, since start-up.
    peer_refused_total: u64,
    peer_refused: RateLimited,
    /// Connections closed to make room, since start-up.
    evicted_total: u64,
    evicted: RateLimited,
    failures: RateLimited,
    backoff: Backoff,
}

/// How often a flood may produce a warning.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Acceptor {
    pub fn new(tcp: TcpListener, name: &'static str, limit: usize) -> Self {
        Self {
            tcp,
            name,
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            roster: None,
            waiting: None,
            refused_total: 0,
            refused: RateLimited::new(WARN_EVERY),
            peer_refused_total: 0,
            peer_refused: RateLimited::new(WARN_EVERY),
            evicted_total: 0,
            evicted: RateLimited::new(WARN_EVERY),
            failures: RateLimited::new(WARN_EVERY),
            backoff: Backoff::default(),
        }
    }

    /// Give each peer at most its share of connections, and close idle ones
    /// to make room when full: `roster` decides.
    pub fn with_roster(mut self, roster: Arc<Roster>) -> Self {
        self.roster = Some(roster);
        self
    }

    /// The next connection under the limit. Cancel-safe: dropping the future
    /// loses no admitted connection.
    pub async fn accept(&mut self) -> Admitted {
        loop {
            if let Some(until) = self.waiting.as_ref().map(|w| w.until) {
                let permit =
                    tokio::time::timeout_at(until, self.permits.clone().acquire_owned()).await;
                let Some(w) = self.waiting.take() else {
                    continue;
                };
                match permit {
                    Ok(Ok(permit)) => {
                        return Admitted {
                            stream: w.stream,
                            peer: w.peer,
                            permit,
                            place: w.place,
                        };
                    }
                    _ => self.refuse(w.stream),
                }
            }
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    self.backoff.reset();
                    let place = match self.roster.as_ref().map(|r| r.join(peer.ip())) {
                        None => None,
                        Some(Ok(place)) => Some(place),
                        Some(Err(_)) => {
                            self.refuse_peer(stream, peer);
                            continue;
                        }
                    };
                    match self.permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            return Admitted {
                                stream,
                                peer,
                                permit,
                                place,
                            };
                        }
                        Err(_) if self.roster.as_ref().is_some_and(|r| r.evict_one()) => {
                            self.note_eviction();
                            self.waiting = Some(Waiting {
                                stream,
                                peer,
                                place,
                                until: Instant::now() + EVICT_WAIT,
                            });
                        }
                        Err(_) => self.refuse(stream),
                    }
                }
                Err(e) => {
                    let kind = classify(&e);
                    if kind == AcceptError::PeerGone {
                        tracing::debug!(listener = self.name, error = %e, "accept: peer gone");
                        continue;
                    }
                    let pause = self.backoff.next();
                    if let Some(times) = self.failures.hit() {
                        tracing::warn!(
                            listener = self.name,
                            error = %e,
                            times,
                            pause_ms = pause.as_millis(),
                            "cannot accept connections ({}); backing off, open connections are still served",
                            kind.describe(),
                        );
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Close a connection whose peer holds its share at once.
    fn refuse_peer(&mut self, stream: TcpStream, peer: SocketAddr) {
        drop(stream);
        self.peer_refused_total += 1;
        if let Some(refused) = self.peer_refused.hit() {
            tracing::warn!(
                listener = self.name,
                peer = %peer.ip(),
                refused,
                refused_total = self.peer_refused_total,
                "a peer reached its share of connections (--max-connections-per-peer, --admin-max-connections-per-peer); closed its new connections at once"
            );
        }
    }

    /// The listener was full: the roster told a connection with no ordinary
    /// call in flight to close.
    fn note_eviction(&mut self) {
        self.evicted_total += 1;
        if let Some(closed) = self.evicted.hit() {
            tracing::info!(
                listener = self.name,
                limit = self.limit,
                closed,
                closed_total = self.evicted_total,
                "connection limit reached; closed idle or watch-only connections to make room"
            );
        }
    }

    /// Close a connection over the limit at once: it holds a descriptor only
    /// for this moment, and its client sees the connection end rather than
    /// hang.
    fn refuse(&mut self, stream: TcpStream) {
        drop(stream);
        self.refused_total += 1;
        if let Some(refused) = self.refused.hit() {
            tracing::warn!(
                listener = self.name,
                limit = self.limit,
                refused,
                refused_total = self.refused_total,
                "connection limit reached; closed new connections at once"
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptError {
    /// Out of descriptors or kernel memory: retrying at once would spin.
    Exhausted,
    /// The pending connection failed before it was accepted; the next one
    /// may be fine.
    PeerGone,
    /// Anything else: back off too, so an unexpected persistent error cannot
    /// spin.
    Other,
}

impl AcceptError {
    fn describe(self) -> &'static str {
        match self {
            Self::Exhausted => "out of file descriptors or memory",
            Self::PeerGone => "peer gone",
            Self::Other => "unexpected error",
        }
    }
}

fn classify(e: &io::Error) -> AcceptError {
    use rustix::io::Errno;
    match Errno::from_io_error(e) {
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => {
            return AcceptError::Exhausted;
        }
        // accept(2): errors already pending on the new socket, to be
        // treated like EAGAIN.
        Some(
            Errno::CONNABORTED
            | Errno::CONNRESET
            | Errno::PROTO
            | Errno::PERM
            | Errno::NETDOWN
            | Errno::NOPROTOOPT
            | Errno::HOSTDOWN
            | Errno::NONET
            | Errno::HOSTUNREACH
            | Errno::OPNOTSUPP
            | Errno::NETUNREACH
            | Errno::TIMEDOUT
            | Errno::INTR
            | Errno::AGAIN,
        ) => return AcceptError::PeerGone,
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock => AcceptError::PeerGone,
        io::ErrorKind::OutOfMemory => AcceptError::Exhausted,
        _ => AcceptError::Other,
    }
}

/// Exponential back-off for accept failures: 50 ms, doubling, at most 1 s;
/// reset by the next successful accept.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(1);

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

/// Lets an event through to the log at most once per period, and says how
/// many times it happened since the last time it was let through.
#[derive(Debug)]
struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    count: u64,
}

impl RateLimited {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            count: 0,
        }
    }

    /// Count one event; `Some(n)` when it is time to log `n` events.
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self.last.is_some_and(|t| now < t + self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_told_apart_from_a_gone_peer() {
        let os = io::Error::from_raw_os_error;
        for errno in [24, 23, 105, 12] {
            // EMFILE, ENFILE, ENOBUFS, ENOMEM
            assert_eq!(classify(&os(errno)), AcceptError::Exhausted, "{errno}");
        }
        for errno in [103, 104, 71, 1, 110, 4, 11] {
            // ECONNABORTED, ECONNRESET, EPROTO, EPERM, ETIMEDOUT, EINTR, EAGAIN
            assert_eq!(classify(&os(errno)), AcceptError::PeerGone, "{errno}");
        }
        assert_eq!(classify(&os(9)), AcceptError::Other); // EBADF
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::ConnectionAborted)),
            AcceptError::PeerGone
        );
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let ms: Vec<u128> = (0..8).map(|_| b.next().as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_are_rate_limited_and_count_what_they_skipped() {
        let mut r = RateLimited::new(Duration::from_secs(10));
        assert_eq!(r.hit(), Some(1));
        for _ in 0..99 {
            assert_eq!(r.hit(), None);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(r.hit(), Some(100));
    }

    #[tokio::test]
    async fn over_the_limit_connections_are_closed_at_once() {
        use tokio::io::AsyncReadExt;
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut acceptor = Acceptor::new(tcp, "test", 2);
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let first = acceptor.accept().await;
        let second = acceptor.accept().await;
        // The next two are over the limit: closed while accept waits for a
        // third that may come in.
        let mut buf = [0; 1];
        let refused = async {
            for c in &mut clients[2..] {
                assert_eq!(c.read(&mut buf).await.unwrap(), 0, "closed");
            }
        };
        tokio::select! {
            a = acceptor.accept() => panic!("{} admitted over the limit", a.peer),
            () = refused => {}
        }
        assert_eq!(acceptor.refused_total, 2);
        // A permit comes back when its connection ends.
        drop(first);
        let late = TcpStream::connect(addr).await.unwrap();
        let again = acceptor.accept().await;
        assert_eq!(again.peer, late.local_addr().unwrap());
        drop((second, again));
    }
}
