//! `envoy.service.auth.v3.Authorization` on the wire: a unary gRPC call
//! read and answered here rather than through `tonic::server::Grpc`, which
//! spent a tenth of a check's CPU on machinery a unary call of one
//! uncompressed message does not use (a decoding stream, compression
//! negotiation, a boxed encoding stream). The gRPC framing is the small
//! part of the protocol that is: a body holding one message behind a
//! five-byte prefix (a compression flag, then the length), answered with
//! one message and `grpc-status` in the trailers; an error is tonic's own
//! trailers-only answer ([`Status::into_http`]). The message is read by
//! [`CheckCall::decode`] (only what tilgang reads, see [`super::wire`]),
//! and bytes that do not decode are `INVALID_ARGUMENT` naming the field, as
//! for every other request of ours. The answer is a [`Verdict`], encoded by
//! [`encode_reply`]; deciding it is [`ExtAuthzService::verdict_at`].

use std::convert::Infallible;
use std::future::ready;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response};
use http_body::Body;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;

use super::{CheckCall, ExtAuthzService, Verdict, encode_reply};

/// The one method this service has.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The `Authorization` service around an [`ExtAuthzService`].
#[derive(Clone)]
pub struct CheckServer {
    inner: Arc<ExtAuthzService>,
    /// Requests larger than this are `RESOURCE_EXHAUSTED`, before decoding.
    max_decoding_message_size: usize,
}

impl CheckServer {
    pub fn new(inner: ExtAuthzService, max_decoding_message_size: usize) -> Self {
        Self {
            inner: Arc::new(inner),
            max_decoding_message_size,
        }
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send + 'static>>;

impl<B> tower::Service<http::Request<B>> for CheckServer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CHECK_PATH {
            return Box::pin(ready(Ok(Status::unimplemented(
                "`envoy.service.auth.v3.Authorization` has one method, `Check`",
            )
            .into_http())));
        }
        let inner = self.inner.clone();
        let max = self.max_decoding_message_size;
        Box::pin(async move {
            Ok(check(&inner, max, req)
                .await
                .unwrap_or_else(Status::into_http))
        })
    }
}

/// One `Check` call: its message read and decoded, decided at once on the
/// connection's task (only a check naming a store revision this replica
/// has not reached waits: `x-tilgang-min-revision`), and answered.
async fn check<B>(
    inner: &ExtAuthzService,
    max: usize,
    req: http::Request<B>,
) -> Result<Response<tonic::body::Body>, Status>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let message = read_message(body, max).await?;
    let call = CheckCall::decode(message, &inner.claims.payload_key)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let metadata = MetadataMap::from_headers(parts.headers);
    let verdict = match ExtAuthzService::min_revision(&call, &metadata) {
        Err(reason) => inner.unreadable(reason),
        Ok(min) => {
            let snap = inner.snapshot();
            if min > snap.store_revision() {
                inner.verdict_at_least(min, call).await
            } else {
                inner.verdict_at(&snap, call)
            }
        }
    };
    reply(verdict)
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The length of the prefix before each gRPC message.
const PREFIX: usize = 5;

/// The one message of a unary call's body, without its prefix. A message
/// declared longer than `max` is refused as soon as its prefix is in, so a
/// client cannot make the server hold more than that.
async fn read_message<B>(body: B, max: usize) -> Result<Bytes, Status>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    // The first chunk is kept as it came (no copy) while it is the only one.
    let mut only: Option<Bytes> = None;
    let mut held = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::from_error(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match only.take() {
            None if held.is_empty() => only = Some(data),
            first => {
                if let Some(first) = first {
                    held.extend_from_slice(&first);
                }
                held.extend_from_slice(&data);
            }
        }
        let received = only.as_deref().unwrap_or(&held);
        if let Some(len) = declared(received) {
            if len > max {
                return Err(Status::resource_exhausted(format!(
                    "the `CheckRequest` message is {len} bytes; at most {max} are read"
                )));
            }
            if received.len() > PREFIX + len {
                return Err(Status::invalid_argument(
                    "the call carries more than one `CheckRequest` message",
                ));
            }
        }
    }
    let bytes = only.unwrap_or_else(|| held.freeze());
    let Some(len) = declared(&bytes) else {
        return Err(Status::invalid_argument(
            "the call carries no `CheckRequest` message",
        ));
    };
    match bytes[0] {
        0 => {}
        1 => {
            return Err(Status::unimplemented(
                "compressed messages are not read; send `CheckRequest` uncompressed",
            ));
        }
        flag => {
            return Err(Status::invalid_argument(format!(
                "the message's compression flag is {flag}, not 0 or 1"
            )));
        }
    }
    if bytes.len() < PREFIX + len {
        return Err(Status::invalid_argument(format!(
            "the `CheckRequest` message is cut short: {len} bytes declared, {} sent",
            bytes.len() - PREFIX
        )));
    }
    Ok(bytes.slice(PREFIX..))
}

/// The message length a body's prefix declares, once the prefix is in.
fn declared(bytes: &[u8]) -> Option<usize> {
    let prefix: [u8; PREFIX] = bytes.get(..PREFIX)?.try_into().ok()?;
    let [_, len @ ..] = prefix;
    usize::try_from(u32::from_be_bytes(len)).ok()
}

/// The verdict as a gRPC answer: `CheckResponse` behind its prefix, and
/// `grpc-status: 0` in the trailers.
fn reply(verdict: Verdict) -> Result<Response<tonic::body::Body>, Status> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_bytes(0, PREFIX);
    encode_reply(verdict, &mut buf)
        .map_err(|e| Status::internal(format!("encoding the reply: {e}")))?;
    let len = u32::try_from(buf.len() - PREFIX)
        .map_err(|_| Status::internal("the reply is too large to send"))?;
    buf[1..PREFIX].copy_from_slice(&len.to_be_bytes());
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
    // A stream of two frames, so that its size is not known ahead: an exact
    // size would make hyper send a `content-length`, after which clients
    // such as curl stop reading before the trailers.
    let frames = [Frame::data(buf.freeze()), Frame::trailers(trailers)];
    let body = StreamBody::new(futures_util::stream::iter(frames.map(Ok::<_, Infallible>)));
    let mut response = Response::new(tonic::body::Body::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    Ok(response)
}
