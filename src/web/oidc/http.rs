//! The relying party's HTTP client: one HTTP/1.1 request per connection
//! (discovery, keys and token exchanges are rare), over rustls with `ring`
//! and Mozilla's CA roots for `https`. Every exchange has one deadline for
//! connecting, TLS, sending and reading, and a response body is read up to a
//! limit, so a slow or hostile provider costs a bounded time and memory.
//! Redirects are not followed: a provider's endpoints answer directly.
//!
//! It knows nothing of OpenID; it never logs request or response bodies
//! (they carry codes, secrets and tokens).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::url::Target;

/// The largest response body read: discovery documents and key sets are a
/// few KiB, token responses less.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Why an exchange failed. Messages name no body, header value or secret.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to `{host}:{port}`")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("`{host}` is not a valid TLS server name")]
    ServerName { host: String },
    #[error("TLS handshake with `{host}` failed")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot set up TLS")]
    TlsSetup(#[source] rustls::Error),
    #[error("cannot build the request")]
    Request(#[source] http::Error),
    #[error("HTTP exchange failed")]
    Exchange(#[source] hyper::Error),
    #[error("no complete answer within {0:?}")]
    TimedOut(Duration),
    #[error("the response body is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("reading the response body failed: {0}")]
    Body(String),
}

/// A response, its body read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Whether the content type is JSON (`application/json`, or a
    /// `+json` type such as `application/jwk-set+json`), parameters aside.
    pub fn is_json(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"))
    }
}

/// Sends requests; cheap to clone.
#[derive(Clone)]
pub(crate) struct HttpClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(timeout: Duration) -> Result<Self, HttpError> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(HttpError::TlsSetup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            max_body: MAX_RESPONSE_BYTES,
        })
    }

    /// `GET` with `Accept: application/json`.
    pub async fn get_json(&self, target: &Target) -> Result<Reply, HttpError> {
        self.send(Method::GET, target, None, None).await
    }

    /// `POST` an `application/x-www-form-urlencoded` body, with an
    /// `Authorization` header when given.
    pub async fn post_form(
        &self,
        target: &Target,
        body: String,
        authorization: Option<HeaderValue>,
    ) -> Result<Reply, HttpError> {
        self.send(Method::POST, target, Some(body), authorization)
            .await
    }

    async fn send(
        &self,
        method: Method,
        target: &Target,
        form: Option<String>,
        authorization: Option<HeaderValue>,
    ) -> Result<Reply, HttpError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(target.path_and_query.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("tilgang/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::CONNECTION, "close");
        if form.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(HttpError::Request)?;
        tokio::time::timeout(self.timeout, self.exchange(target, request))
            .await
            .map_err(|_| HttpError::TimedOut(self.timeout))?
    }

    async fn exchange(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<Reply, HttpError> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| HttpError::Connect {
                host: target.host.clone(),
                port: target.port,
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        if target.https {
            let name =
                ServerName::try_from(target.host.clone()).map_err(|_| HttpError::ServerName {
                    host: target.host.clone(),
                })?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|source| HttpError::Tls {
                    host: target.host.clone(),
                    source,
                })?;
            self.over(TokioIo::new(tls), request).await
        } else {
            self.over(TokioIo::new(tcp), request).await
        }
    }

    async fn over<T>(&self, io: T, request: Request<Full<Bytes>>) -> Result<Reply, HttpError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(HttpError::Exchange)?;
        // The connection is driven beside the request and ended with it.
        let driver = AbortOnDrop(tokio::spawn(conn));
        let response = sender
            .send_request(request)
            .await
            .map_err(HttpError::Exchange)?;
        let (parts, body) = response.into_parts();
        let too_large = HttpError::TooLarge { max: self.max_body };
        if parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > self.max_body as u64)
        {
            return Err(too_large);
        }
        let body = Limited::new(body, self.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::TooLarge { max: self.max_body }
                } else {
                    HttpError::Body(e.to_string())
                }
            })?
            .to_bytes();
        drop(driver);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::oidc::url::{Http, check};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// A server that answers each connection with `reply` (after reading
    /// the request head), or never answers when `reply` is `None`.
    async fn serve(reply: Option<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    match reply {
                        Some(bytes) => {
                            let _ = conn.write_all(&bytes).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        format!("http://{addr}/x")
    }

    fn target(url: &str) -> Target {
        check(url, Http::LoopbackOnly, true).unwrap()
    }

    #[tokio::test]
    async fn reads_a_json_reply() {
        let body = br#"{"a":1}"#;
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(body);
        let url = serve(Some(reply)).await;
        let client = HttpClient::new(Duration::from_secs(5)).unwrap();
        let got = client.get_json(&target(&url)).await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert!(got.is_json());
        assert_eq!(&got.body[..], body);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let big = vec![b'x'; MAX_RESPONSE_BYTES + 1];
        // Announced by its length, and streamed without one.
        let mut announced =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", big.len()).into_bytes();
        announced.extend_from_slice(&big);
        let mut streamed = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        streamed.extend_from_slice(&big);
        let client = HttpClient::new(Duration::from_secs(5)).unwrap();
        for reply in [announced, streamed] {
            let url = serve(Some(reply)).await;
            let err = client.get_json(&target(&url)).await.unwrap_err();
            assert!(matches!(err, HttpError::TooLarge { .. }), "{err:?}");
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let url = serve(None).await;
        let client = HttpClient::new(Duration::from_millis(200)).unwrap();
        let err = client.get_json(&target(&url)).await.unwrap_err();
        assert!(matches!(err, HttpError::TimedOut(_)), "{err:?}");
    }
}
