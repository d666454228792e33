//! An IO wrapper that closes an HTTP/2 connection whose client preface, frame
//! header or header block does not arrive in time. hyper has no handshake or
//! header timeout for HTTP/2, so without this an idle TCP connection, or one
//! that sends half a HEADERS frame (slowloris), holds its connection slot for
//! ever.
//!
//! It watches the bytes as they are read, scanning only frame boundaries
//! (the 24-byte preface, then 9-byte frame headers: 24-bit length, type,
//! flags). It never changes, buffers or decodes what it reads (no HPACK, no
//! payloads), and does not validate the protocol: hyper does that.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// What the connection is part-way through, and so must finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The preface and the first frame (the client's SETTINGS).
    Handshake,
    /// A frame header, or a header block up to END_HEADERS.
    Header,
}

/// Frame boundaries of the read direction, fed incrementally: any split of
/// the input gives the same states.
#[derive(Debug)]
pub struct Scanner {
    /// Preface bytes still to come.
    preface_left: usize,
    /// The frame header read so far.
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u32,
    /// At least one whole frame has arrived after the preface.
    handshaken: bool,
    /// Inside a header block: a HEADERS frame arrived and no frame with
    /// END_HEADERS has ended yet.
    in_block: bool,
    /// The current frame carries END_HEADERS.
    ends_block: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            handshaken: false,
            in_block: false,
            ends_block: false,
        }
    }
}

impl Scanner {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                n
            } else if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                // `n` is at most `payload_left`, a u32.
                self.payload_left -= u32::try_from(n).unwrap_or(self.payload_left);
                if self.payload_left == 0 {
                    self.frame_done();
                }
                n
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    self.frame_header();
                }
                n
            };
            bytes = &bytes[n..];
        }
    }

    /// A whole frame header has arrived.
    fn frame_header(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        if kind == HEADERS || (kind == CONTINUATION && self.in_block) {
            self.in_block = true;
            self.ends_block = flags & END_HEADERS != 0;
        }
        self.payload_left = u32::from_be_bytes([0, l0, l1, l2]);
        if self.payload_left == 0 {
            self.frame_done();
        }
    }

    fn frame_done(&mut self) {
        self.handshaken = true;
        if self.ends_block {
            self.in_block = false;
            self.ends_block = false;
        }
    }

    pub fn waiting(&self) -> Option<Waiting> {
        if !self.handshaken {
            Some(Waiting::Handshake)
        } else if self.in_block || self.header_len > 0 {
            Some(Waiting::Header)
        } else {
            None
        }
    }
}

/// The socket of one connection, with the handshake and header deadlines.
/// When a deadline passes, every read and write fails with `TimedOut`, so
/// hyper ends the connection and the socket is closed.
pub struct H2Guard<T> {
    io: T,
    scanner: Scanner,
    /// What [`Self::deadline`] is running for; `None`: no deadline.
    waiting: Option<Waiting>,
    deadline: Pin<Box<Sleep>>,
    handshake_timeout: Duration,
    header_timeout: Duration,
}

impl<T> H2Guard<T> {
    pub fn new(io: T, handshake_timeout: Duration, header_timeout: Duration) -> Self {
        Self {
            io,
            scanner: Scanner::default(),
            waiting: Some(Waiting::Handshake),
            deadline: Box::pin(tokio::time::sleep(handshake_timeout)),
            handshake_timeout,
            header_timeout,
        }
    }

    /// Start a deadline when the scanner starts waiting for something (or
    /// for something else), keep it while it waits for the same thing, so a
    /// trickle of bytes does not extend it.
    fn track(&mut self) {
        let now = self.scanner.waiting();
        if now != self.waiting
            && let Some(w) = now
        {
            let timeout = match w {
                Waiting::Handshake => self.handshake_timeout,
                Waiting::Header => self.header_timeout,
            };
            self.deadline.as_mut().reset(Instant::now() + timeout);
        }
        self.waiting = now;
    }

    /// Ready with an error once the running deadline has passed; registers
    /// the task to be woken when it does.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(w) = self.waiting else {
            return Poll::Pending;
        };
        match self.deadline.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                match w {
                    Waiting::Handshake => format!(
                        "no HTTP/2 preface and settings within {:?}",
                        self.handshake_timeout
                    ),
                    Waiting::Header => format!(
                        "a frame header or header block took longer than {:?}",
                        self.header_timeout
                    ),
                },
            )),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for H2Guard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if let Poll::Ready(e) = me.poll_deadline(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut me.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                me.scanner.feed(&buf.filled()[before..]);
                me.track();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => me.poll_deadline(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for H2Guard<T> {
    // Writes check the deadline too: hyper stops reading while its writes are
    // blocked, and a peer that neither reads nor finishes its headers must
    // still be closed.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_write(cx, buf) {
            Poll::Pending => me.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => me.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_flush(cx) {
            Poll::Pending => me.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, payload_len: usize) -> Vec<u8> {
        let l = u32::try_from(payload_len).unwrap().to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, flags, 0, 0, 0, 1];
        f.resize(9 + payload_len, 0xAB);
        f
    }

    /// Preface, SETTINGS, a DATA frame, a HEADERS without END_HEADERS, two
    /// CONTINUATIONs (the last ends the block), a HEADERS with END_HEADERS
    /// (and END_STREAM); each with what the scanner waits for after it.
    fn parts() -> Vec<(Vec<u8>, Option<Waiting>)> {
        use Waiting::*;
        vec![
            (PREFACE.to_vec(), Some(Handshake)),
            (frame(0x4, 0, 12), None),
            (frame(0x0, 0, 30), None),
            (frame(HEADERS, 0, 20), Some(Header)),
            (frame(CONTINUATION, 0, 0), Some(Header)),
            (frame(CONTINUATION, END_HEADERS, 7), None),
            (frame(HEADERS, END_HEADERS | 0x1, 5), None),
        ]
    }

    fn stream() -> Vec<u8> {
        parts().into_iter().flat_map(|(b, _)| b).collect()
    }

    #[test]
    fn scans_byte_at_a_time() {
        let mut s = Scanner::default();
        for (bytes, after) in parts() {
            for (i, b) in bytes.iter().enumerate() {
                s.feed(std::slice::from_ref(b));
                if i + 1 < bytes.len() && i + 1 < FRAME_HEADER_LEN && bytes != PREFACE {
                    // Inside a frame header: waiting for the rest of it (or
                    // still for the handshake).
                    assert!(s.waiting().is_some(), "{bytes:?} byte {i}");
                }
            }
            assert_eq!(s.waiting(), after, "after {bytes:?}");
        }
    }

    #[test]
    fn waits_in_headers_but_not_in_data_payloads() {
        let mut s = Scanner::default();
        s.feed(PREFACE);
        assert_eq!(s.waiting(), Some(Waiting::Handshake));
        let settings = frame(0x4, 0, 12);
        s.feed(&settings[..5]);
        assert_eq!(s.waiting(), Some(Waiting::Handshake));
        s.feed(&settings[5..]);
        assert_eq!(s.waiting(), None);
        let data = frame(0x0, 0, 30);
        s.feed(&data[..4]);
        assert_eq!(s.waiting(), Some(Waiting::Header), "a partial frame header");
        s.feed(&data[4..20]);
        assert_eq!(s.waiting(), None, "inside a DATA payload");
        s.feed(&data[20..]);
        let headers = frame(HEADERS, END_HEADERS, 10);
        s.feed(&headers[..15]);
        assert_eq!(
            s.waiting(),
            Some(Waiting::Header),
            "inside a HEADERS payload"
        );
        s.feed(&headers[15..]);
        assert_eq!(s.waiting(), None);
    }

    #[test]
    fn every_split_gives_the_same_states() {
        let bytes = stream();
        let mut one = Scanner::default();
        let mut per_byte = Vec::new();
        for b in &bytes {
            one.feed(std::slice::from_ref(b));
            per_byte.push(one.waiting());
        }
        for cut in 1..=bytes.len() {
            for cut2 in cut..=bytes.len() {
                let mut s = Scanner::default();
                s.feed(&bytes[..cut]);
                assert_eq!(s.waiting(), per_byte[cut - 1], "cut {cut}");
                s.feed(&bytes[cut..cut2]);
                assert_eq!(s.waiting(), per_byte[cut2 - 1], "cut {cut}..{cut2}");
                s.feed(&bytes[cut2..]);
                assert_eq!(s.waiting(), None);
            }
        }
    }

    #[test]
    fn a_continuation_outside_a_block_does_not_start_one() {
        let mut s = Scanner::default();
        s.feed(PREFACE);
        s.feed(&frame(0x4, 0, 0));
        s.feed(&frame(CONTINUATION, 0, 3));
        assert_eq!(s.waiting(), None);
    }

    async fn pair(
        handshake: Duration,
        header: Duration,
    ) -> (H2Guard<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (H2Guard::new(a, handshake, header), b)
    }

    #[tokio::test(start_paused = true)]
    async fn no_preface_times_out() {
        let (mut guard, _peer) = pair(Duration::from_secs(5), Duration::from_secs(1)).await;
        let mut buf = [0; 64];
        let start = Instant::now();
        let e = guard.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_header_block_times_out_from_its_first_byte() {
        let (mut guard, mut peer) = pair(Duration::from_secs(5), Duration::from_secs(2)).await;
        peer.write_all(PREFACE).await.unwrap();
        peer.write_all(&frame(0x4, 0, 0)).await.unwrap();
        let mut buf = [0; 64];
        let n = guard.read(&mut buf).await.unwrap();
        assert_eq!(n, 33);
        // Handshaken: nothing pending, no deadline.
        assert_eq!(guard.waiting, None);
        let headers = frame(HEADERS, END_HEADERS, 40);
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            loop {
                if let Err(e) = guard.read(&mut buf).await {
                    return e;
                }
            }
        });
        // A byte every 500 ms: progress, but the block never completes in time.
        for b in headers.iter().take(10) {
            peer.write_all(std::slice::from_ref(b)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            if reader.is_finished() {
                break;
            }
        }
        let e = reader.await.unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took <= Duration::from_millis(2500),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_exchange_has_no_deadline() {
        let (mut guard, mut peer) = pair(Duration::from_secs(1), Duration::from_secs(1)).await;
        let bytes = stream();
        peer.write_all(&bytes).await.unwrap();
        let mut got = vec![0; bytes.len()];
        guard.read_exact(&mut got).await.unwrap();
        assert_eq!(got, bytes);
        // Long after every deadline, reading and writing still work.
        tokio::time::sleep(Duration::from_secs(60)).await;
        guard.write_all(b"pong").await.unwrap();
        peer.write_all(b"x").await.unwrap();
        let mut one = [0; 1];
        guard.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }
}
