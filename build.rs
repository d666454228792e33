//! Generates code at build time, in pure Rust (no `protoc`):
//!
//! - The gRPC contract, compiled from `proto/` with `protox`, into one
//!   `tilgang.v1.rs`: the messages and the servers in one pass, whose servers
//!   decode requests with `crate::grpc::codec::RequestCodec` (a request that does
//!   not decode is `INVALID_ARGUMENT`, not tonic's `INTERNAL`); the clients in a
//!   second pass with tonic's own prost codec, because a reply a client cannot
//!   decode is not its caller's fault. The second pass sees the services only, so
//!   the message types exist once and both sides share them.
//! - `repeated_fields.rs`: which request fields are repeated, so the codec can
//!   name a bad field `requests[].owner`, as the services name it `requests[3].owner`.
//! - `embedded_policies.rs`: the files of `policies/` that the loader reads,
//!   built into the binary, so a new file there needs no code change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use protox::prost_reflect::prost_types::field_descriptor_proto::Label;

type BoxError = Box<dyn std::error::Error>;

const PROTOS: [&str; 2] = [
    "proto/tilgang/v1/authorizer.proto",
    "proto/tilgang/v1/delegations.proto",
];
/// The package's file name as prost writes it, and as `tonic::include_proto!` reads it.
const PROTO_RS: &str = "tilgang.v1.rs";

fn main() -> Result<(), BoxError> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    protos(&out)?;
    embedded_policies(&out)?;
    rustc_version();
    Ok(())
}

/// The compiler's version for `tilgang_build_info` (`rustc 1.95.0 (...)` →
/// `1.95.0`); `unknown` if it cannot be asked.
fn rustc_version() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TILGANG_RUSTC_VERSION={version}");
}

fn protos(out: &Path) -> Result<(), BoxError> {
    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(
        out.join("tilgang_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let servers = out.join("servers");
    let clients = out.join("clients");
    std::fs::create_dir_all(&servers)?;
    std::fs::create_dir_all(&clients)?;
    // `Name` gives the codec each message's proto name for its errors.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(false)
        .codec_path("crate::grpc::codec::RequestCodec")
        .out_dir(&servers)
        .compile_fds_with_config(fds.clone(), config)?;
    let mut services_only = fds.clone();
    for file in &mut services_only.file {
        file.message_type.clear();
        file.enum_type.clear();
    }
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&clients)
        .compile_fds(services_only)?;
    let mut rs = std::fs::read_to_string(servers.join(PROTO_RS))?;
    rs.push('\n');
    rs.push_str(&std::fs::read_to_string(clients.join(PROTO_RS))?);
    std::fs::write(out.join(PROTO_RS), rs)?;

    let mut repeated = String::from("&[\n");
    for file in &fds.file {
        for message in &file.message_type {
            for field in &message.field {
                if field.label() == Label::Repeated {
                    writeln!(repeated, "    ({:?}, {:?}),", message.name(), field.name())?;
                }
            }
        }
    }
    repeated.push_str("]\n");
    std::fs::write(out.join("repeated_fields.rs"), repeated)?;

    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}

/// The same files `snapshot::load` reads from a policies directory: the top-level
/// `*.cedar`, `*.cedarschema`, `rights.json` and `routes.json`, not hidden,
/// sorted by name.
fn embedded_policies(out: &Path) -> Result<(), BoxError> {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("policies");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| format!("policies/{}: the name is not UTF-8", n.display()))?;
        let relevant = name.ends_with(".cedar")
            || name.ends_with(".cedarschema")
            || name == "rights.json"
            || name == "routes.json";
        if !relevant || name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let path = entry
            .path()
            .into_os_string()
            .into_string()
            .map_err(|p| format!("{}: the path is not UTF-8", p.display()))?;
        files.push((name, path));
    }
    files.sort();
    let mut rs = String::from("&[\n");
    for (name, path) in files {
        writeln!(rs, "    ({name:?}, include_str!({path:?})),")?;
    }
    rs.push_str("]\n");
    std::fs::write(out.join("embedded_policies.rs"), rs)?;
    Ok(())
}
