//! Reaching the admin listener: the address, TLS (a CA file to trust, and a
//! client certificate for mutual TLS) and the bearer token sent with every
//! call (`--token`, `TILGANG_TOKEN` or `--token-file`). An error that says a
//! token is wanted, or a connection that fails in a way TLS explains, is
//! turned into a message that says what to give.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::proto::delegations_client::DelegationsClient;

/// The admin listener to talk to, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Admin address: `host:port`, `http://host:port` or `https://host:port`
    /// (`https` when --ca-file is given)
    #[arg(long, env = "TILGANG_ADMIN_ADDR", default_value = "127.0.0.1:50052")]
    pub admin_addr: String,
    /// Bearer token (ID-porten) sent with every call, when the admin listener
    /// wants one. A flag shows in `ps`: prefer TILGANG_TOKEN or --token-file
    #[arg(
        long,
        env = "TILGANG_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the bearer token from FILE (surrounding whitespace ignored)
    #[arg(long, env = "TILGANG_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Connect over TLS, trusting the CAs in this PEM file
    #[arg(long, env = "TILGANG_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Present this PEM client certificate (mutual TLS); needs --client-key
    #[arg(
        long,
        env = "TILGANG_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert
    #[arg(
        long,
        env = "TILGANG_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Send the bearer token over plaintext to a host that is not loopback
    /// (only where something else, such as a service mesh, encrypts the
    /// connection)
    #[arg(long, env = "TILGANG_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
}

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connected client, and what it sent (to explain a refusal).
pub struct Client {
    pub inner: DelegationsClient<InterceptedService<Channel, Bearer>>,
    /// `c.inner.call(..).await.map_err(|e| c.explain.status(e))`.
    pub explain: Explain,
}

/// Turns a status into the error to print.
pub struct Explain {
    sent_token: bool,
    /// Over plaintext: a TLS listener answers with a transport error.
    plaintext: bool,
}

/// Said when a plaintext connection fails as it does against TLS.
const TLS_HINT: &str = " (if the admin listener serves TLS, give --ca-file)";

impl Explain {
    pub fn status(&self, e: tonic::Status) -> anyhow::Error {
        let message = e.message();
        match e.code() {
            tonic::Code::Unauthenticated if !self.sent_token => anyhow::anyhow!(
                "the admin listener wants a bearer token: give --token-file FILE, set TILGANG_TOKEN, \
                 or pass --token (server: {message})"
            ),
            tonic::Code::Unauthenticated => {
                anyhow::anyhow!("the admin listener refused the bearer token: {message}")
            }
            // What the client's own transport reports when TLS answers its
            // plaintext HTTP/2, not what a server says.
            code @ (tonic::Code::Unknown
            | tonic::Code::Unavailable
            | tonic::Code::Internal
            | tonic::Code::Cancelled)
                if self.plaintext
                    && ["transport error", "h2 protocol", "operation was canceled"]
                        .iter()
                        .any(|m| message.contains(m)) =>
            {
                anyhow::anyhow!("{code:?}: {message}{TLS_HINT}")
            }
            code => anyhow::anyhow!("{code:?}: {message}"),
        }
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} `{}`", path.display()))
}

impl Target {
    /// The token to send, from --token, TILGANG_TOKEN or --token-file.
    fn token(&self) -> anyhow::Result<Option<MetadataValue<Ascii>>> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) if !t.trim().is_empty() => t.trim().to_string(),
            (_, Some(f)) if !f.as_os_str().is_empty() => {
                let bytes = read(f, "the token file")?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| anyhow::anyhow!("the token file `{}` is not text", f.display()))?;
                let t = text.trim();
                if t.is_empty() {
                    anyhow::bail!("the token file `{}` is empty", f.display());
                }
                t.to_string()
            }
            _ => return Ok(None),
        };
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("the token has characters a header cannot carry"))?;
        Ok(Some(value))
    }

    fn url(&self) -> String {
        url(&self.admin_addr, self.ca_file.is_some())
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let url = self.url();
        let token = self.token()?;
        let plaintext = url.starts_with("http://");
        if plaintext && token.is_some() && !self.insecure_plaintext && !loopback(&url) {
            anyhow::bail!(
                "refusing to send the bearer token in the clear to `{url}`: give --ca-file to \
                 connect over TLS, or --insecure-plaintext if something else encrypts the connection"
            );
        }
        let channel = Dial {
            url: &url,
            listener: "admin listener",
            ca_file: self.ca_file.as_deref(),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
        }
        .connect()
        .await?;
        let explain = Explain {
            sent_token: token.is_some(),
            plaintext,
        };
        Ok(Client {
            inner: DelegationsClient::with_interceptor(channel, Bearer(token)),
            explain,
        })
    }
}

/// `addr` as a URL: as given when it has a scheme; else `https://` when a
/// CA file is given, `http://` without.
pub(crate) fn url(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// How to reach one of tilgang's listeners: its URL and the TLS material
/// to do it with. Shared by the admin subcommands and `tilgang ask`.
pub(crate) struct Dial<'a> {
    pub url: &'a str,
    /// For messages: "admin listener", "gateway listener".
    pub listener: &'static str,
    pub ca_file: Option<&'a Path>,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
}

impl Dial<'_> {
    fn tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        let Some(ca) = self.ca_file.filter(|p| !p.as_os_str().is_empty()) else {
            if self.client_cert.is_some() {
                anyhow::bail!(
                    "--client-cert needs --ca-file: a client certificate is only sent over TLS"
                );
            }
            return Ok(None);
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "--ca-file")?));
        if let (Some(cert), Some(key)) = (self.client_cert, self.client_key) {
            tls = tls.identity(Identity::from_pem(
                read(cert, "--client-cert")?,
                read(key, "--client-key")?,
            ));
        }
        Ok(Some(tls))
    }

    /// Connect, or say why not (with a hint when plaintext met TLS).
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        let url = self.url;
        let plaintext = url.starts_with("http://");
        if plaintext && (self.ca_file.is_some() || self.client_cert.is_some()) {
            anyhow::bail!(
                "`{url}` is plaintext, but --ca-file or --client-cert asks for TLS: use `https://` or `host:port`"
            );
        }
        let mut endpoint = Channel::from_shared(url.to_string())?;
        let tls = self.tls()?;
        if url.starts_with("https://") && tls.is_none() {
            anyhow::bail!("`{url}` is TLS: give --ca-file with the CA that issued its certificate");
        }
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .with_context(|| format!("TLS settings for {url}"))?;
        }
        endpoint.connect().await.map_err(|e| {
            let hint = if plaintext {
                format!(" (if the {} serves TLS, give --ca-file)", self.listener)
            } else {
                String::new()
            };
            anyhow::anyhow!(
                "cannot connect to the {} at {url}: {}{hint}",
                self.listener,
                crate::telemetry::logs::error_chain(&e)
            )
        })
    }
}

/// Whether the URL's host is this machine (`localhost` or a loopback
/// address), where plaintext crosses no network.
fn loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: &str, token: bool, ca: bool, insecure: bool) -> Target {
        Target {
            admin_addr: addr.into(),
            token: token.then(|| "abc.def.ghi".into()),
            token_file: None,
            ca_file: ca.then(|| PathBuf::from("/nonexistent/ca.pem")),
            client_cert: None,
            client_key: None,
            insecure_plaintext: insecure,
        }
    }

    #[test]
    fn loopback_hosts_are_this_machine() {
        for (url, want) in [
            ("http://127.0.0.1:50052", true),
            ("http://localhost:50052", true),
            ("http://[::1]:50052", true),
            ("http://10.0.0.7:50052", false),
            ("http://tilgang.example:50052", false),
            ("http://0.0.0.0:50052", false),
        ] {
            assert_eq!(loopback(url), want, "{url}");
        }
    }

    #[tokio::test]
    async fn a_token_never_goes_out_in_the_clear_unasked() {
        let e = target("10.0.0.7:50052", true, false, false)
            .connect()
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("in the clear") && e.contains("--ca-file"), "{e}");
        let e = target("http://10.0.0.7:50052", false, true, false)
            .connect()
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("reading --ca-file") || e.contains("is plaintext"),
            "{e}"
        );
        // Asked for: it gets as far as connecting (nothing listens there).
        let e = target("127.0.0.1:1", true, false, true)
            .connect()
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
