//! `envoy.service.auth.v3.Authorization` on the wire: what `envoy-types`
//! generates, except that a `CheckRequest` decodes with
//! [`RequestCodec`], so bytes that do not decode (metadata nested past
//! prost's recursion limit, a string that is not UTF-8) are
//! `INVALID_ARGUMENT` naming the field, like every other request of ours, not
//! the `INTERNAL` tonic's own codec answers. Only routing and decoding here;
//! the verdict is [`ExtAuthzService::verdict`].

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use futures_util::future::Either;
use http_body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::{ExtAuthzService, respond};
use crate::grpc::codec::RequestCodec;

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
        Box::pin(async move {
            let codec = RequestCodec::<CheckResponse, CheckRequest>::default();
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

type Answer = Result<Response<CheckResponse>, Status>;

impl UnaryService<CheckRequest> for Check {
    type Response = CheckResponse;
    type Future = Either<Ready<Answer>, Pin<Box<dyn Future<Output = Answer> + Send + 'static>>>;

    fn call(&mut self, request: Request<CheckRequest>) -> Self::Future {
        let inner = &self.0;
        let answer = |v| Ok(Response::new(respond(v)));
        match ExtAuthzService::min_revision(request.get_ref(), request.metadata()) {
            Ok(min) if min > inner.store_revision() => {
                let inner = inner.clone();
                Either::Right(Box::pin(async move {
                    answer(inner.verdict_at_least(min, request.get_ref()).await)
                }))
            }
            Ok(_) => Either::Left(ready(answer(inner.verdict(request.get_ref())))),
            Err(reason) => Either::Left(ready(answer(inner.unreadable(reason)))),
        }
    }
}
