//! The store's file-system layer: every file and directory tilgang writes in
//! the data directory is reached through directory handles opened without
//! following symlinks (`openat` with `O_NOFOLLOW`), so a symlink where tilgang
//! writes is refused with [`SymlinkRefused`] and nothing is written through it.
//! The data directory itself may be a symlink: `--data` is the operator's
//! choice, and `serve` resolves it once.
//!
//! Durable replacement is: a temp file in the same directory, fsync it, rename
//! it over the old file, fsync the directory. A crash at any moment leaves the
//! old file or the new one, never a torn one; a write is durable when these
//! functions return `Ok`. An error says whether the change is already in place
//! ([`WriteError::NotDurable`]), so callers never report "nothing happened" for
//! a change readers can see.
//!
//! Each step is reported to an [`OpLog`] when one is attached, for the protocol
//! tests. This module knows nothing of delegations, undo records or policies.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::oplog::{Op, OpLog};
use crate::ids::OrgNumber;

mod append;
mod owner_dir;

/// The start of every temp file tilgang creates; followed by
/// [`TEMP_RANDOM_LEN`] ASCII letters and digits. Distinctive, so the start-up
/// sweep can never mistake someone else's file for one of ours.
pub const TEMP_PREFIX: &str = ".tilgang-tmp-";
pub const TEMP_RANDOM_LEN: usize = 12;
/// What temp files were called before [`TEMP_PREFIX`] (the `tempfile` crate's
/// default shape): `.tmp-` and six ASCII letters and digits.
const LEGACY_TEMP_PREFIX: &str = ".tmp-";
const LEGACY_TEMP_RANDOM_LEN: usize = 6;

/// Whether `name` is exactly the name of a temp file tilgang creates (or
/// created before [`TEMP_PREFIX`]); nothing else is ever swept.
pub fn is_temp_name(name: &str) -> bool {
    let random = |rest: &str, len: usize| {
        rest.len() == len && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    name.strip_prefix(TEMP_PREFIX)
        .is_some_and(|r| random(r, TEMP_RANDOM_LEN))
        || name
            .strip_prefix(LEGACY_TEMP_PREFIX)
            .is_some_and(|r| random(r, LEGACY_TEMP_RANDOM_LEN))
}

/// Why a durable write failed, and whether the change is already on disk.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Nothing changed on disk.
    #[error("{0}")]
    NotApplied(std::io::Error),
    /// The change is in place (visible to readers), but the directory could not
    /// be fsynced, so it may not survive a crash.
    #[error("the change is in place but could not be made durable: {0}")]
    NotDurable(std::io::Error),
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotApplied(e) => e,
            e @ WriteError::NotDurable(_) => std::io::Error::other(e.to_string()),
        }
    }
}

/// A symlink where tilgang would write. Carried inside an `io::Error`
/// (`ErrorKind::Other`) so callers can tell it from a storage failure: it is
/// the operator's to fix, and retrying will not help.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{}` is a symbolic link, and tilgang writes nothing through one; replace it with a {}",
    path.display(),
    wanted
)]
pub struct SymlinkRefused {
    pub path: PathBuf,
    /// What belongs there: "directory" or "regular file".
    pub wanted: &'static str,
}

impl SymlinkRefused {
    /// The refusal inside `e`, if that is what `e` is.
    pub fn find(e: &std::io::Error) -> Option<&SymlinkRefused> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }
}

/// A directory tilgang writes in: the data directory or one of the two below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// The data directory itself (`audit.jsonl`, and the subdirectories' links).
    Data,
    /// `delegations/`: the owner files.
    Delegations,
    /// `undo/`: the undo records.
    Undo,
    /// `delegations/<owner>/`: a split owner's parts (see `owner_dir`).
    Owner(OrgNumber),
}

impl Place {
    /// The directory's path inside the data directory.
    pub fn dir_name(self) -> String {
        match self {
            Place::Data => ".".into(),
            Place::Delegations => crate::snapshot::load::DELEGATIONS_DIR.into(),
            Place::Undo => super::undo::UNDO_DIR.into(),
            Place::Owner(owner) => format!("{}/{owner}", crate::snapshot::load::DELEGATIONS_DIR),
        }
    }
}

/// The identity of a file: device and inode. A file renamed away (a rotated
/// log) keeps it; a new file at the same path has another.
pub type FileId = (u64, u64);

/// How much of a file to sync.
#[derive(Clone, Copy)]
enum SyncKind {
    /// Data and metadata (`fsync`): a new file.
    All,
    /// Data and the size (`fdatasync`): an append.
    Data,
}

/// A directory handle: the data directory itself, or one opened below it.
enum DirFd<'a> {
    Root(BorrowedFd<'a>),
    Sub(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Root(fd) => *fd,
            DirFd::Sub(fd) => fd.as_fd(),
        }
    }
}

/// The data directory, open. Subdirectories are opened anew for each
/// operation (so a `delegations/` replaced by hand is the one written), never
/// through a symlink, and created when missing.
#[derive(Debug)]
pub struct DataDir {
    root: OwnedFd,
    /// For messages only: every operation goes through `root`.
    path: PathBuf,
    /// Where steps are reported, once a test attaches a log.
    oplog: OnceLock<Arc<OpLog>>,
}

impl DataDir {
    /// Open the data directory `path` (following a symlink: that one is the
    /// operator's choice).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| with_path(path, e.into()))?;
        Ok(Self {
            root,
            path: path.to_path_buf(),
            oplog: OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Report every step from now on to `log`. Only the first log attached is used.
    pub fn record_into(&self, log: Arc<OpLog>) {
        let _ = self.oplog.set(log);
    }

    /// Report a step, building it only when a log is attached.
    pub(crate) fn record(&self, op: impl FnOnce() -> Op) {
        if let Some(log) = self.oplog.get() {
            log.push(op());
        }
    }

    /// The path of `place`, for messages.
    pub fn dir_shown(&self, place: Place) -> PathBuf {
        match place {
            Place::Data => self.path.clone(),
            _ => self.path.join(place.dir_name()),
        }
    }

    /// The path of `name` in `place`, for messages.
    pub fn shown(&self, place: Place, name: &str) -> PathBuf {
        self.dir_shown(place).join(name)
    }

    fn err(&self, place: Place, name: &str, e: Errno) -> std::io::Error {
        with_path(&self.shown(place, name), e.into())
    }

    fn refused(&self, place: Place, name: &str, wanted: &'static str) -> std::io::Error {
        std::io::Error::other(SymlinkRefused {
            path: self.shown(place, name),
            wanted,
        })
    }

    /// A handle on `place`, creating the subdirectory (durably) if it is missing.
    fn dir(&self, place: Place) -> std::io::Result<DirFd<'_>> {
        let name = match place {
            Place::Data => return Ok(DirFd::Root(self.root.as_fd())),
            Place::Owner(owner) => return self.owner_dir(owner),
            _ => place.dir_name(),
        };
        let name = name.as_str();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let open = || rustix::fs::openat(&self.root, name, flags, Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&self.root, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        self.record(|| Op::Create {
                            dir: Place::Data,
                            name: name.to_string(),
                        });
                        self.sync(&self.root, Place::Data)?;
                    }
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(self.err(Place::Data, name, e)),
                }
                open().map_err(|e| self.dir_error(name, e))?
            }
            Err(e) => return Err(self.dir_error(name, e)),
        };
        Ok(DirFd::Sub(fd))
    }

    /// Why a subdirectory did not open: a symlink is named as such.
    fn dir_error(&self, name: &str, e: Errno) -> std::io::Error {
        if matches!(e, Errno::LOOP | Errno::NOTDIR) && self.is_symlink(&self.root, name) {
            return self.refused(Place::Data, name, "directory");
        }
        self.err(Place::Data, name, e)
    }

    fn is_symlink(&self, dir: impl AsFd, name: &str) -> bool {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    }

    /// fsync a directory, and report it. The only place a directory is
    /// fsynced, and the report is made here, so no caller can skip the one
    /// without the other.
    fn sync(&self, dir: impl AsFd, place: Place) -> std::io::Result<()> {
        rustix::fs::fsync(dir).map_err(|e| with_path(&self.dir_shown(place), e.into()))?;
        self.record(|| Op::SyncDir { dir: place });
        Ok(())
    }

    /// fsync (or fdatasync) a file, and report it; like [`Self::sync`], the
    /// only place a file is synced.
    fn sync_file(
        &self,
        file: &File,
        place: Place,
        name: &str,
        how: SyncKind,
    ) -> std::io::Result<()> {
        match how {
            SyncKind::All => file.sync_all(),
            SyncKind::Data => file.sync_data(),
        }
        .map_err(|e| with_path(&self.shown(place, name), e))?;
        self.record(|| Op::SyncFile {
            dir: place,
            name: name.to_string(),
        });
        Ok(())
    }

    /// Replace `name` in `place` with `bytes` atomically and durably. Returns
    /// the new file's metadata, taken from the written file itself once it is
    /// in place. A symlink at `name` is refused, not replaced.
    pub fn write_atomic(
        &self,
        place: Place,
        name: &str,
        bytes: &[u8],
    ) -> Result<std::fs::Metadata, WriteError> {
        let dir = self.dir(place).map_err(WriteError::NotApplied)?;
        let mode = self
            .mode_to_keep(&dir, place, name)
            .map_err(WriteError::NotApplied)?;
        let (tmp, mut file) = self
            .create_temp(&dir, place, mode)
            .map_err(WriteError::NotApplied)?;
        let replaced = (|| {
            file.write_all(bytes)
                .map_err(|e| with_path(&self.shown(place, &tmp), e))?;
            self.record(|| Op::Write {
                dir: place,
                name: tmp.clone(),
            });
            self.sync_file(&file, place, &tmp, SyncKind::All)?;
            let before = file.metadata()?;
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)
                .map_err(|e| self.err(place, name, e))?;
            self.record(|| Op::Rename {
                dir: place,
                from: tmp.clone(),
                to: name.to_string(),
            });
            // From the open file, so it is ours whatever is at `name` now; after
            // the rename, which moves the inode change time a stamp includes.
            Ok(file.metadata().unwrap_or(before))
        })();
        let meta = match replaced {
            Ok(meta) => meta,
            Err(e) => {
                self.unlink_quietly(&dir, place, &tmp);
                return Err(WriteError::NotApplied(e));
            }
        };
        self.sync(&dir, place).map_err(WriteError::NotDurable)?;
        Ok(meta)
    }

    /// The permission bits the replacement gets: those of the file it replaces
    /// (people may have made it readable to others), or 0644 for a new one.
    /// Refuses to replace a symlink or anything but a regular file.
    fn mode_to_keep(&self, dir: impl AsFd, place: Place, name: &str) -> std::io::Result<u32> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Ok(st.st_mode & 0o777),
                FileType::Symlink => Err(self.refused(place, name, "regular file")),
                _ => Err(with_path(
                    &self.shown(place, name),
                    std::io::Error::other("not a regular file"),
                )),
            },
            Err(Errno::NOENT) => Ok(0o644),
            Err(e) => Err(self.err(place, name, e)),
        }
    }

    /// A new temp file in `dir` with a fresh name: created with `O_EXCL` and
    /// `O_NOFOLLOW`, so it is never an existing file or a link someone placed.
    fn create_temp(
        &self,
        dir: impl AsFd,
        place: Place,
        mode: u32,
    ) -> std::io::Result<(String, File)> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for _ in 0..8 {
            let name = temp_name()?;
            match rustix::fs::openat(&dir, name.as_str(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    self.record(|| Op::Create {
                        dir: place,
                        name: name.clone(),
                    });
                    // Created private; the data files are for people to read too.
                    if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)) {
                        self.unlink_quietly(&dir, place, &name);
                        return Err(self.err(place, &name, e));
                    }
                    return Ok((name, File::from(fd)));
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(self.err(place, &name, e)),
            }
        }
        Err(with_path(
            &self.shown(place, TEMP_PREFIX),
            std::io::Error::other("could not find a free temp file name"),
        ))
    }

    /// Remove a temp file after a failed write; the start-up sweep gets any
    /// this misses.
    fn unlink_quietly(&self, dir: impl AsFd, place: Place, name: &str) {
        if rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok() {
            self.record(|| Op::Unlink {
                dir: place,
                name: name.to_string(),
            });
        }
    }

    /// Remove `name` from `place` durably; a missing file is not an error. A
    /// symlink there is refused, not removed.
    pub fn remove_durable(&self, place: Place, name: &str) -> Result<(), WriteError> {
        let dir = self.dir(place).map_err(WriteError::NotApplied)?;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {}
                FileType::Symlink => {
                    return Err(WriteError::NotApplied(self.refused(
                        place,
                        name,
                        "regular file",
                    )));
                }
                _ => {
                    return Err(WriteError::NotApplied(with_path(
                        &self.shown(place, name),
                        std::io::Error::other("not a regular file"),
                    )));
                }
            },
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(WriteError::NotApplied(self.err(place, name, e))),
        }
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => self.record(|| Op::Unlink {
                dir: place,
                name: name.to_string(),
            }),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(WriteError::NotApplied(self.err(place, name, e))),
        }
        self.sync(&dir, place).map_err(WriteError::NotDurable)
    }

    /// Read a regular file; `None` if there is none. A symlink is refused, and
    /// anything but a regular file (a FIFO would block) is an error.
    pub fn read(&self, place: Place, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        let dir = self.dir(place)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(self.refused(place, name, "regular file")),
            Err(e) => return Err(self.err(place, name, e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err(place, name, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(with_path(
                &self.shown(place, name),
                std::io::Error::other("not a regular file"),
            ));
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(|e| with_path(&self.shown(place, name), e))?;
        Ok(Some(bytes))
    }

    /// The names of the regular files in `place` (not following symlinks),
    /// skipping names that are not UTF-8 (tilgang creates none).
    pub fn regular_files(&self, place: Place) -> std::io::Result<Vec<String>> {
        let dir = self.dir(place)?;
        let mut entries = rustix::fs::Dir::read_from(&dir).map_err(|e| self.err(place, ".", e))?;
        let mut names = Vec::new();
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(|e| self.err(place, ".", e))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            let regular = match entry.file_type() {
                FileType::RegularFile => true,
                // Some file systems do not say in the entry.
                FileType::Unknown => rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile),
                _ => false,
            };
            if regular {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    /// Unlink `name` from `place` without fsyncing the directory: for
    /// housekeeping (pruning, sweeping temp files), which is simply done again
    /// if a crash undoes it. Returns whether there was a file to remove.
    pub fn unlink(&self, place: Place, name: &str) -> std::io::Result<bool> {
        let dir = self.dir(place)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => {
                self.record(|| Op::Unlink {
                    dir: place,
                    name: name.to_string(),
                });
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.err(place, name, e)),
        }
    }

    /// Remove the temp files of writes that never finished (a crash between
    /// creating a temp file and renaming it) from `place`. Only names
    /// [`is_temp_name`] accepts, and only regular files. Call it only while no
    /// write can run (`serve` holds the data directory lock and has not
    /// started serving). Returns how many went.
    pub fn sweep_temp_files(&self, place: Place) -> std::io::Result<usize> {
        let mut removed = 0;
        for name in self.regular_files(place)? {
            if is_temp_name(&name) && self.unlink(place, &name)? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A fresh temp file name: [`TEMP_PREFIX`] and random letters and digits.
fn temp_name() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; TEMP_RANDOM_LEN];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    let random: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    Ok(format!("{TEMP_PREFIX}{random}"))
}

/// `e`, with the path it is about in front (an OS error alone names none).
fn with_path(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display()))
}

/// fsync a directory by path so a rename or unlink in it survives a crash
/// (for `serve`, which creates the data directory before the store opens it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
