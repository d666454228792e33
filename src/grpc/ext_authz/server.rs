//! `envoy.service.auth.v3.Authorization` on the wire: what `envoy-types`
//! generates, except that a `CheckRequest` is read by [`CheckCall::decode`]
//! (only what tilgang reads, see [`super::wire`]), and bytes that do not
//! decode (a claim nested past prost's recursion limit, a header read that
//! is not UTF-8) are `INVALID_ARGUMENT` naming the field, like every other
//! request of ours, not the `INTERNAL` tonic's own codec answers; the
//! answer is a [`Verdict`], encoded by [`encode_reply`]. Only routing and
//! the codec here; the verdict is [`ExtAuthzService::verdict_at`].

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use futures_util::future::Either;
use http_body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

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
    B: Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
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
        let method = Check(self.inner.clone());
        let max = self.max_decoding_message_size;
        let codec = CheckCodec(self.inner.claims.payload_key.clone());
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// `Check` as tonic's unary service: decided at once, on the connection's
/// task; only a check naming a store revision this replica has not reached
/// waits (`x-tilgang-min-revision`).
struct Check(Arc<ExtAuthzService>);

type Answer = Result<Response<Verdict>, Status>;

impl UnaryService<CheckCall> for Check {
    type Response = Verdict;
    type Future = Either<Ready<Answer>, Pin<Box<dyn Future<Output = Answer> + Send + 'static>>>;

    fn call(&mut self, request: Request<CheckCall>) -> Self::Future {
        let inner = &self.0;
        let answer = |v| Ok(Response::new(v));
        let min = ExtAuthzService::min_revision(request.get_ref(), request.metadata());
        let call = request.into_inner();
        let snap = inner.snapshot();
        match min {
            Ok(min) if min > snap.store_revision() => {
                let inner = inner.clone();
                Either::Right(Box::pin(async move {
                    answer(inner.verdict_at_least(min, call).await)
                }))
            }
            Ok(_) => Either::Left(ready(answer(inner.verdict_at(&snap, call)))),
            Err(reason) => Either::Left(ready(answer(inner.unreadable(reason)))),
        }
    }
}

/// Encodes a [`Verdict`] as a `CheckResponse` ([`encode_reply`]); decodes
/// a `CheckRequest` into a [`CheckCall`], its token payload under this key
/// of `jwt_authn`'s metadata.
struct CheckCodec(Arc<str>);

impl Codec for CheckCodec {
    type Encode = Verdict;
    type Decode = CheckCall;
    type Encoder = CheckEncoder;
    type Decoder = CheckDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        CheckEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckDecoder(self.0.clone())
    }
}

struct CheckEncoder;

impl Encoder for CheckEncoder {
    type Item = Verdict;
    type Error = Status;

    fn encode(&mut self, item: Verdict, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // tonic's buffer grows as it is written: prost cannot run out of room.
        encode_reply(item, buf).map_err(|e| Status::internal(format!("encoding the reply: {e}")))
    }
}

struct CheckDecoder(Arc<str>);

impl Decoder for CheckDecoder {
    type Item = CheckCall;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<CheckCall>, Status> {
        // The message as one buffer (tonic's is contiguous: no copy), so
        // that what is read is sliced from it.
        let bytes = buf.copy_to_bytes(buf.remaining());
        CheckCall::decode(bytes, &self.0)
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}
