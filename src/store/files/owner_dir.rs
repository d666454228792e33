//! A split owner's directory, `delegations/<owner>/` ([`Place::Owner`]): opened
//! below the `delegations/` handle without following a symlink, created
//! (durably) for the first part written, removed once its last part is.

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{DataDir, DirFd, Op, Place, WriteError};
use crate::ids::OrgNumber;

impl DataDir {
    /// A handle on `delegations/<owner>/`, creating it (durably) if missing.
    pub(super) fn owner_dir(&self, owner: OrgNumber) -> std::io::Result<DirFd<'_>> {
        let parent = self.dir(Place::Delegations)?;
        let name = owner.as_str();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let open = || rustix::fs::openat(&parent, name, flags, Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        self.record(|| Op::Create {
                            dir: Place::Delegations,
                            name: name.to_string(),
                        });
                        self.sync(&parent, Place::Delegations)?;
                    }
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(self.err(Place::Delegations, name, e)),
                }
                open().map_err(|e| self.owner_dir_error(&parent, name, e))?
            }
            Err(e) => return Err(self.owner_dir_error(&parent, name, e)),
        };
        Ok(DirFd::Sub(fd))
    }

    fn owner_dir_error(&self, parent: impl AsFd, name: &str, e: Errno) -> std::io::Error {
        if matches!(e, Errno::LOOP | Errno::NOTDIR) && self.is_symlink(parent, name) {
            return self.refused(Place::Delegations, name, "directory");
        }
        self.err(Place::Delegations, name, e)
    }

    /// Remove `delegations/<owner>/` durably if it is empty (its last part
    /// went); anything left in it (a file someone put there) keeps it.
    pub fn remove_owner_dir_if_empty(&self, owner: OrgNumber) -> Result<(), WriteError> {
        let parent = self
            .dir(Place::Delegations)
            .map_err(WriteError::NotApplied)?;
        let name = owner.as_str();
        match rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR) {
            Ok(()) => {
                self.record(|| Op::Unlink {
                    dir: Place::Delegations,
                    name: name.to_string(),
                });
                self.sync(&parent, Place::Delegations)
                    .map_err(WriteError::NotDurable)
            }
            Err(Errno::NOENT | Errno::NOTEMPTY | Errno::EXIST | Errno::NOTDIR) => Ok(()),
            Err(e) => Err(WriteError::NotApplied(self.err(
                Place::Delegations,
                name,
                e,
            ))),
        }
    }
}
