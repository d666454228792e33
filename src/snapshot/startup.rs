//! The start-up load: everything loaded from content that has settled, so
//! `serve` never starts on a file caught mid-save. After start-up the
//! [`super::reload`] module takes over, one unit at a time.

use std::path::Path;
use std::time::Duration;

use super::load::{self, LoadErrors, PolicySource};
use super::{Digest, Snapshot};
use crate::ids::OrgNumber;

/// Load everything for `serve`'s start, from content that has settled: the
/// policies and `roles.json` as loaded must be what a read more than `quiet`
/// later finds, and no owner file may have changed meanwhile (a half-written
/// owner file is not JSON, so it fails the load rather than loading wrong).
/// A load that fails while files are changing is tried again; one that fails
/// on files that stay the same is the answer.
pub fn load_settled(
    src: &PolicySource,
    data_dir: &Path,
    quiet: Duration,
) -> Result<Snapshot, LoadErrors> {
    const ATTEMPTS: usize = 20;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = Fingerprint::of(src, data_dir);
        let result = load::load_snapshot(src, data_dir);
        if quiet.is_zero() {
            return result;
        }
        std::thread::sleep(quiet + Duration::from_millis(10));
        let after = Fingerprint::of(src, data_dir);
        let loaded_as_now = match &result {
            Ok(snap) => {
                Some(snap.policies.digest) == after.policies && snap.roles.digest == after.roles
            }
            Err(_) => true,
        };
        if (before == after && loaded_as_now) || attempt >= ATTEMPTS {
            return result;
        }
        tracing::info!("files changed while loading; loading again");
    }
}

/// Enough of the files to tell whether they changed: the policies' and roles'
/// content, and the owner files' names and metadata.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    policies: Option<Digest>,
    roles: Digest,
    owners: Vec<(OrgNumber, Vec<(String, super::FileStamp)>)>,
}

impl Fingerprint {
    fn of(src: &PolicySource, data_dir: &Path) -> Self {
        let owners = load::list_owner_files(data_dir)
            .map(|(owners, _)| owners)
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o, load::owner_stamps(data_dir, &o)))
            .collect();
        Self {
            policies: load::read_policies(src).ok().map(|f| f.digest),
            // Unreadable counts as no file: the load reports it.
            roles: load::roles_digest(
                load::read_roles(data_dir)
                    .ok()
                    .flatten()
                    .as_ref()
                    .map(|r| r.bytes.as_slice()),
            ),
            owners,
        }
    }
}
