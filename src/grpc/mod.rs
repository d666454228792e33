//! The tonic services. Requests are decoded by [`codec`] and parsed here into the
//! engine's and store's types, and this is the one place errors become
//! `tonic::Status`. A malformed request, whether its bytes do not decode or a
//! field does not parse, is `INVALID_ARGUMENT` naming the field, and any value
//! it repeats is cut short ([`crate::ids::echo`]).

pub mod authorizer;
pub mod codec;
pub mod delegations;
pub mod ext_authz;
pub mod freshness;
pub mod page;
pub mod status;

use tonic::Status;

use crate::ids::IdError;

/// Parse one request field, naming it in the error (`INVALID_ARGUMENT`).
pub fn field<T>(
    name: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, IdError>,
) -> Result<T, Status> {
    parse(value).map_err(|e| Status::invalid_argument(format!("`{name}` {e}")))
}
