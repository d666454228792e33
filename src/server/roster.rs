//! The connections one listener holds, by peer: a peer (a source IP) may hold
//! at most a few of them, and when the listener is full the roster picks one
//! to close to make room for the new one. Only a connection with no ordinary
//! call in flight is picked (idle, still in its handshake, or holding nothing
//! but `Health/Watch` streams): first one that never made an ordinary call,
//! then from the peer holding the most connections, then the oldest. A client
//! that holds connections it does not use cannot lock out one that has a call
//! to make. This module decides; the connection
//! closes itself when told ([`Place::evicted`]). No I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::activity::InFlight;

/// The connections of one listener.
#[derive(Debug)]
pub struct Roster {
    /// Most connections one peer may hold.
    per_peer: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Admission order: a larger id came later.
    next: u64,
    members: HashMap<u64, Arc<Member>>,
    peers: HashMap<IpAddr, usize>,
}

/// One connection on the roster.
#[derive(Debug)]
pub struct Member {
    id: u64,
    ip: IpAddr,
    /// Its calls in flight, which say whether it may be closed.
    pub in_flight: Arc<InFlight>,
    evicted: AtomicBool,
    close: Notify,
}

/// A connection's place on the roster; dropping it leaves the roster.
#[derive(Debug)]
pub struct Place {
    roster: Arc<Roster>,
    member: Arc<Member>,
}

/// The peer already holds its share of connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFull;

impl Roster {
    pub fn new(per_peer: usize) -> Self {
        Self {
            per_peer: per_peer.max(1),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Put a connection from `ip` on the roster, unless `ip` holds its share.
    pub fn join(self: &Arc<Self>, ip: IpAddr) -> Result<Place, PeerFull> {
        let mut inner = self.lock();
        let held = inner.peers.entry(ip).or_insert(0);
        if *held >= self.per_peer {
            return Err(PeerFull);
        }
        *held += 1;
        let id = inner.next;
        inner.next += 1;
        let member = Arc::new(Member {
            id,
            ip,
            in_flight: Arc::new(InFlight::new()),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        });
        inner.members.insert(id, member.clone());
        Ok(Place {
            roster: self.clone(),
            member,
        })
    }

    /// Tell one connection with no ordinary call in flight to close, to make
    /// room: one that never made an ordinary call before one that did, then
    /// from the peer holding the most connections, then the oldest. Whether
    /// one was told.
    pub fn evict_one(&self) -> bool {
        let inner = self.lock();
        let candidates = inner.members.values().filter_map(|m| {
            let free = !m.evicted.load(Ordering::Acquire) && m.in_flight.busy() == 0;
            let held = inner.peers.get(&m.ip).copied().unwrap_or(0);
            free.then(|| {
                (
                    (!m.in_flight.ever_called(), held, std::cmp::Reverse(m.id)),
                    m,
                )
            })
        });
        let victim = candidates
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, m)| m.clone());
        drop(inner);
        let Some(victim) = victim else { return false };
        victim.evicted.store(true, Ordering::Release);
        victim.close.notify_one();
        true
    }

    /// How many connections `ip` holds.
    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> usize {
        self.lock().peers.get(&ip).copied().unwrap_or(0)
    }
}

impl Place {
    pub fn in_flight(&self) -> &Arc<InFlight> {
        &self.member.in_flight
    }

    /// Completes when the roster picked this connection to close.
    pub async fn evicted(&self) {
        self.member.close.notified().await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut inner = self.roster.lock();
        inner.members.remove(&self.member.id);
        if let Some(held) = inner.peers.get_mut(&self.member.ip) {
            *held -= 1;
            if *held == 0 {
                inner.peers.remove(&self.member.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_peer_holds_at_most_its_share() {
        let roster = Arc::new(Roster::new(2));
        let a = roster.join(ip(2)).unwrap();
        let _b = roster.join(ip(2)).unwrap();
        assert_eq!(roster.join(ip(2)).unwrap_err(), PeerFull);
        // Another peer is not held back.
        let _c = roster.join(ip(3)).unwrap();
        drop(a);
        assert_eq!(roster.held(ip(2)), 1);
        let _d = roster.join(ip(2)).unwrap();
    }

    #[tokio::test]
    async fn unused_connections_of_the_busiest_peer_are_closed_first() {
        let roster = Arc::new(Roster::new(10));
        let used = roster.join(ip(1)).unwrap();
        let lone = roster.join(ip(1)).unwrap();
        let busy = roster.join(ip(2)).unwrap();
        let old = roster.join(ip(2)).unwrap();
        let new = roster.join(ip(2)).unwrap();
        // A unary call in flight: never picked.
        let _call = busy.in_flight().counted(false);
        // A Watch stream is no ordinary call.
        let _watch = old.in_flight().counted(true);
        // A connection that made a call and is idle now.
        drop(used.in_flight().counted(false));

        let told = |p: &Place| p.member.evicted.load(Ordering::Acquire);
        assert!(roster.evict_one());
        assert!(told(&old), "the oldest of the peer with most connections");
        assert!(roster.evict_one());
        assert!(told(&new));
        // Then `lone` (ip 1, fewer connections, but never used), then the one
        // that was used; `busy` never.
        assert!(roster.evict_one());
        assert!(told(&lone));
        assert!(!told(&used));
        assert!(roster.evict_one());
        assert!(told(&used));
        assert!(!roster.evict_one(), "nothing left to close");
        assert!(!told(&busy));
        // The connection hears it.
        tokio::time::timeout(std::time::Duration::from_secs(1), old.evicted())
            .await
            .unwrap();
    }
}
