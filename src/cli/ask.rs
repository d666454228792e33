//! `tilgang ask`: one `IsAuthorized` call to a running sidecar's gateway
//! listener, printed like `tilgang check` prints its offline decision. The
//! server parses the request (one set of rules), so a bad org number is its
//! `INVALID_ARGUMENT`, shown as it says it.

use std::path::PathBuf;

use super::admin::connect::{Dial, url};
use super::{Outcome, Output, print_decision};
use crate::proto::IsAuthorizedRequest;
use crate::proto::authorizer_client::AuthorizerClient;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub question: super::Question,
    /// Gateway listener: `host:port`, `http://host:port` or `https://host:port`
    /// (`https` when --ca-file is given)
    #[arg(long, env = "TILGANG_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// Connect over TLS, trusting the CAs in this PEM file
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Present this PEM client certificate (mutual TLS); needs --client-key
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Answer only at this store revision or later (what an admin write
    /// printed): a replica behind waits, then refuses (UNAVAILABLE)
    #[arg(long, value_name = "REVISION", default_value_t = 0)]
    pub min_revision: u64,
}

/// Exit 0 on allow, 1 on deny, 2 when the call failed (bad input, no server).
pub async fn run(args: &Args, out: &mut Output) -> anyhow::Result<Outcome> {
    let url = url(&args.addr, args.ca_file.is_some());
    let channel = Dial {
        url: &url,
        listener: "gateway listener",
        ca_file: args.ca_file.as_deref(),
        client_cert: args.client_cert.as_deref(),
        client_key: args.client_key.as_deref(),
    }
    .connect()
    .await?;
    let r = AuthorizerClient::new(channel)
        .is_authorized(IsAuthorizedRequest {
            supplier: args.question.supplier.clone(),
            owner: args.question.owner.clone(),
            scope: args.question.scope.clone(),
            min_revision: args.min_revision,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{:?}: {}", e.code(), e.message()))?
        .into_inner();
    print_decision(out, r.allowed, &r.reasons, &r.errors, &r.revision)?;
    Ok(if r.allowed {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
