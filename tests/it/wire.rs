//! HTTP/2 below tonic, for tests that must misbehave: raw frames written by
//! hand (a client that ignores limits, stalls mid-frame or never speaks), and
//! gRPC calls over the `h2` crate whose request bodies the test sends piece by
//! piece.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tilgang::proto::IsAuthorizedResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const REFUSED_STREAM: u32 = 0x7;

pub const IS_AUTHORIZED: &str = "/tilgang.v1.Authorizer/IsAuthorized";
pub const HEALTH_WATCH: &str = "/grpc.health.v1.Health/Watch";

/// Await `fut` for at most 10 s: against a server that misbehaves, a test
/// fails rather than hangs.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("no answer within 10 s: {what}"))
}

/// One frame as it goes on the wire.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A gRPC request's header block, HPACK-encoded as literals without
/// indexing (no Huffman, no table), which every decoder accepts.
pub fn request_headers(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        for s in [name, value] {
            assert!(s.len() < 127);
            block.push(u8::try_from(s.len()).unwrap());
            block.extend_from_slice(s.as_bytes());
        }
    }
    block
}

/// The 5-byte gRPC message prefix: not compressed, `len` bytes follow.
pub fn grpc_prefix(len: u32) -> Vec<u8> {
    let mut p = vec![0];
    p.extend_from_slice(&len.to_be_bytes());
    p
}

/// A whole gRPC message.
pub fn grpc_message(m: &impl prost::Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut out = grpc_prefix(u32::try_from(body.len()).unwrap());
    out.extend_from_slice(&body);
    out
}

#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// A client that writes whatever bytes the test gives it.
pub struct Raw {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// A connection from the source address `from`.
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        Self {
            tcp: socket.connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Preface and an empty SETTINGS frame: a complete handshake.
    pub async fn handshake(addr: SocketAddr) -> Self {
        let mut raw = Self::connect(addr).await;
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        raw.send(&hello).await.unwrap();
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// The next frame from the server; `None` when the connection ends.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9 + len).collect();
                    return Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                            & 0x7fff_ffff,
                        payload: head[9..].to_vec(),
                    });
                }
            }
            let mut chunk = [0; 16 * 1024];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The server's first SETTINGS frame, as (id, value) pairs.
    pub async fn server_settings(&mut self) -> Vec<(u16, u32)> {
        loop {
            let f = self.next_frame().await.expect("server SETTINGS");
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                return f
                    .payload
                    .chunks(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
            }
        }
    }

    /// Whether the server closes the connection within `within` (reading
    /// and dropping whatever it sends until then).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async { while self.next_frame().await.is_some() {} })
            .await
            .is_ok()
    }
}

/// An `h2` client connection from the source address `from` (any
/// `127.x.y.z` is loopback on Linux), or the error if the server closes it
/// at once.
pub async fn h2_connect_from(
    addr: SocketAddr,
    from: std::net::IpAddr,
) -> Result<h2::client::SendRequest<Bytes>, h2::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await
}

/// An `h2` client connection; the connection task runs in the background.
pub async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.unwrap()
}

/// Start a gRPC call and leave its request body open.
pub async fn start_call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let req = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await.unwrap();
    ready.send_request(req, false).unwrap()
}

/// An `IsAuthorized` call (`FULL_SUPPLIER`, `OWNER`, `WRITE`) on the
/// connection `client` already has.
pub async fn decide_on(client: &mut h2::client::SendRequest<Bytes>) -> IsAuthorizedResponse {
    let (response, mut body) = start_call(client, IS_AUTHORIZED).await;
    let m = grpc_message(&crate::util::req(
        crate::util::FULL_SUPPLIER,
        crate::util::OWNER,
        crate::util::WRITE,
    ));
    body.send_data(Bytes::from(m), true).unwrap();
    let a = answer(response).await;
    assert_eq!(a.status, 0, "{}", a.message);
    prost::Message::decode(a.messages[0].clone()).unwrap()
}

/// A gRPC response: its messages and its `grpc-status` (from a trailers-only
/// response or from the trailers).
pub struct Answer {
    pub status: i32,
    pub message: String,
    pub messages: Vec<Bytes>,
}

pub async fn answer(response: h2::client::ResponseFuture) -> Answer {
    let response = response.await.unwrap();
    let status_of = |h: &http::HeaderMap| {
        h.get("grpc-status").map(|s| {
            (
                s.to_str().unwrap().parse::<i32>().unwrap(),
                h.get("grpc-message")
                    .map(|m| m.to_str().unwrap().to_string())
                    .unwrap_or_default(),
            )
        })
    };
    if let Some((status, message)) = status_of(response.headers()) {
        return Answer {
            status,
            message,
            messages: Vec::new(),
        };
    }
    let mut body = response.into_body();
    let mut messages = Messages::default();
    let mut all = Vec::new();
    while let Some(m) = messages.next(&mut body).await {
        all.push(m);
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    let (status, message) = status_of(&trailers).expect("grpc-status");
    Answer {
        status,
        message,
        messages: all,
    }
}

/// Reads length-prefixed gRPC messages from a response body.
#[derive(Default)]
pub struct Messages {
    buf: Vec<u8>,
}

impl Messages {
    pub async fn next(&mut self, body: &mut h2::RecvStream) -> Option<Bytes> {
        loop {
            if self.buf.len() >= 5 {
                let len = (&self.buf[1..5]).get_u32() as usize;
                if self.buf.len() >= 5 + len {
                    let m: Vec<u8> = self.buf.drain(..5 + len).skip(5).collect();
                    return Some(Bytes::from(m));
                }
            }
            let chunk = body.data().await?.ok()?;
            let _ = body.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// A `Health/Watch` stream over `client`, with its first status read.
pub struct Watch {
    pub body: h2::RecvStream,
    messages: Messages,
    /// Kept so the request side stays as the client left it.
    _send: h2::SendStream<Bytes>,
}

impl Watch {
    pub async fn start(client: &mut h2::client::SendRequest<Bytes>, service: &str) -> Self {
        let (response, mut send) = start_call(client, HEALTH_WATCH).await;
        let req = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        send.send_data(Bytes::from(grpc_message(&req)), true)
            .unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        Self {
            body: response.into_body(),
            messages: Messages::default(),
            _send: send,
        }
    }

    /// Start a watch that the server may refuse: `Err(grpc-status)`.
    pub async fn try_start(
        client: &mut h2::client::SendRequest<Bytes>,
        service: &str,
    ) -> Result<Self, i32> {
        let (response, mut send) = start_call(client, HEALTH_WATCH).await;
        let req = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        // A refusal may come before the request is sent, and end the stream.
        let _ = send.send_data(Bytes::from(grpc_message(&req)), true);
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        if let Some(status) = response.headers().get("grpc-status") {
            return Err(status.to_str().unwrap().parse().unwrap());
        }
        Ok(Self {
            body: response.into_body(),
            messages: Messages::default(),
            _send: send,
        })
    }

    /// The stream's `grpc-status`, once it has ended (after [`Self::next`]
    /// said `None`).
    pub async fn status(&mut self) -> Option<i32> {
        let trailers = self.body.trailers().await.ok()??;
        trailers.get("grpc-status")?.to_str().ok()?.parse().ok()
    }

    /// The next status the server streams, `None` when the stream ends.
    pub async fn next(&mut self) -> Option<i32> {
        let m = self.messages.next(&mut self.body).await?;
        let r = <tonic_health::pb::HealthCheckResponse as prost::Message>::decode(m).unwrap();
        Some(r.status)
    }
}
