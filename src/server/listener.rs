//! The accept loop of one listener and its connection limit. A connection is
//! admitted with a permit it holds for its whole life; over the limit, a
//! connection is accepted and closed at once, and counted. When accepting
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

/// A connection that got a place under the limit.
pub struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Returned when the connection ends.
    pub permit: OwnedSemaphorePermit,
}

pub struct Acceptor {
    tcp: TcpListener,
    /// For logs: which listener this is.
    name: &'static str,
    limit: usize,
    permits: Arc<Semaphore>,
    /// Connections refused over the limit, since start-up.
    refused_total: u64,
    refused: RateLimited,
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
            refused_total: 0,
            refused: RateLimited::new(WARN_EVERY),
            failures: RateLimited::new(WARN_EVERY),
            backoff: Backoff::default(),
        }
    }

    /// The next connection under the limit. Cancel-safe: dropping the future
    /// loses no admitted connection.
    pub async fn accept(&mut self) -> Admitted {
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    self.backoff.reset();
                    match self.permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            return Admitted {
                                stream,
                                peer,
                                permit,
                            };
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
