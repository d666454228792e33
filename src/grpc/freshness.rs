//! Read your writes: a decision request may name the store revision it must
//! be answered at or after (`min_revision` in `IsAuthorizedRequest`, the
//! `x-tilgang-min-revision` gRPC metadata, or for `Check` the same HTTP
//! header on the checked request). A replica that is behind asks its
//! follower to catch up and waits at most [`MIN_REVISION_WAIT`]; still
//! behind, it answers `UNAVAILABLE` with the reason, never from an older
//! snapshot (which could still hold a revoked delegation).

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::snapshot::{Behind, Snapshot, SnapshotStore};

/// The metadata key (gRPC) and HTTP header (Check) naming a minimum revision.
pub const MIN_REVISION_HEADER: &str = "x-tilgang-min-revision";

/// How long a request waits for this replica to reach its minimum revision.
/// A follower catches up within milliseconds of being asked while the store
/// answers; longer means the store is away, and the caller should hear so.
pub const MIN_REVISION_WAIT: Duration = Duration::from_secs(2);

/// The minimum revision `value` (a header's or metadata's text) names:
/// decimal digits, or `INVALID_ARGUMENT` naming `name`.
pub fn parse(name: &str, value: &str) -> Result<u64, String> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{name}` must be a store revision (decimal digits), not `{}`",
            crate::ids::echo(value)
        ));
    }
    v.parse()
        .map_err(|_| format!("`{name}` is out of range: `{}`", crate::ids::echo(value)))
}

/// The minimum revision in gRPC `metadata` (0: none), or `INVALID_ARGUMENT`.
pub fn from_metadata(metadata: &MetadataMap) -> Result<u64, Status> {
    let Some(value) = metadata.get(MIN_REVISION_HEADER) else {
        return Ok(0);
    };
    let text = value.to_str().map_err(|_| {
        Status::invalid_argument(format!("`{MIN_REVISION_HEADER}` must be ASCII digits"))
    })?;
    parse(MIN_REVISION_HEADER, text).map_err(Status::invalid_argument)
}

/// Why a request cannot be answered: this replica is behind.
pub fn behind_reason(b: &Behind, snap: &Snapshot) -> String {
    let mut reason = format!(
        "this replica is at store revision {}, behind the requested minimum {}, after waiting {} ms; \
         try again or ask another replica",
        b.have,
        b.wanted,
        b.waited.as_millis()
    );
    if let Some(why) = snap.withheld() {
        reason.push_str(&format!(" ({why})"));
    }
    reason
}

/// A snapshot at `min` or later, or `UNAVAILABLE` with the reason.
pub async fn snapshot_at(store: &SnapshotStore, min: u64) -> Result<Arc<Snapshot>, Status> {
    store
        .at_least(min, MIN_REVISION_WAIT)
        .await
        .map_err(|b| Status::unavailable(behind_reason(&b, &store.load())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_digits_only() {
        assert_eq!(parse("x", "42"), Ok(42));
        assert_eq!(parse("x", " 7 "), Ok(7));
        for bad in ["", "-1", "1e3", "0x10", "abc", "99999999999999999999999"] {
            let e = parse("x", bad).unwrap_err();
            assert!(e.contains("`x`"), "{bad}: {e}");
        }
    }
}
