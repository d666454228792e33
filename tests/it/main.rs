//! One integration test binary: the real server on ephemeral ports, called with
//! the generated tonic clients; the real binary for the CLI; real files for reload.

// Test helpers outside `#[test]` functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod admin_auth;
mod authoring;
mod authorizer;
mod bearer;
mod check_log;
mod check_wire;
mod cli;
mod crash;
mod durability;
mod ext_authz;
mod flood;
mod hygiene;
mod jwt;
mod log_gate;
mod log_injection;
mod oidc;
mod paging;
mod pg;
mod pki;
mod races;
mod register;
mod reload;
mod shutdown;
mod split;
mod store;
mod tables;
mod telemetry;
mod tls;
mod tryit;
mod util;
mod watches;
mod web;
mod web_oidc;
mod wire;
