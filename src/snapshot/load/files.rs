//! Reading one file as the loader and the settler need it: the bytes with
//! the file's metadata before and after, so a read during a write shows.

use std::path::Path;

#[allow(unused_imports)]
use super::*;
use crate::snapshot::{Digest, FileStamp};

/// Whether a directory entry is one tilgang reads (not hidden, not a temp file).
pub fn is_visible(name: &str) -> bool {
    !name.starts_with('.') && !name.ends_with('~')
}

/// Whether [`read_regular`] reads through a symlink at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Links {
    /// `roles.json`, which tilgang only reads (a mounted secret may be a link).
    Follow,
    /// Owner files, which tilgang also writes and never writes through a link.
    Refuse,
}

/// What one read of a file found.
#[derive(Debug, Clone)]
pub struct FileRead {
    /// The file's metadata before the read, from the open file: a write after
    /// it makes the next rescan read the file again.
    pub stamp: FileStamp,
    pub bytes: Vec<u8>,
    /// Whether the metadata was the same after the read: nothing wrote to the
    /// file while it was read.
    pub steady: bool,
}

impl FileRead {
    /// What identifies this version of the file, beyond its bytes (see
    /// [`version_of`]).
    pub fn version(&self) -> Digest {
        version_of([(self.stamp, self.steady)])
    }
}

/// A digest of files' metadata as read, for [`super::settle`]: two reads
/// whose bytes *and* versions match saw the file with no write in between.
/// Bytes alone cannot tell: an in-place save writes the same prefix every
/// time, so two reads far apart can both find it with other content between
/// them. A read during which the file changed matches nothing.
pub fn version_of(reads: impl IntoIterator<Item = (FileStamp, bool)>) -> Digest {
    static UNSTEADY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut text = String::new();
    for (stamp, steady) in reads {
        text.push_str(&format!("{stamp:?};"));
        if !steady {
            let n = UNSTEADY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            text.push_str(&format!("changed while read #{n};"));
        }
    }
    digest_of(&[("version", text.as_bytes())])
}

/// Read an open file with its metadata before and after.
pub(super) fn read_open(f: &mut std::fs::File) -> std::io::Result<FileRead> {
    let stamp = FileStamp::of(&f.metadata()?);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(f, &mut bytes)?;
    let steady = FileStamp::of(&f.metadata()?) == stamp;
    Ok(FileRead {
        stamp,
        bytes,
        steady,
    })
}

/// Read a regular file with the stamp of what was read. Anything else (a FIFO
/// would block the reader, and with it every writer) is refused before it is
/// opened.
pub(super) fn read_regular(path: &Path, links: Links) -> std::io::Result<FileRead> {
    let not_regular = || std::io::Error::other("not a regular file");
    let meta = match links {
        Links::Follow => std::fs::metadata(path)?,
        Links::Refuse => std::fs::symlink_metadata(path)?,
    };
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other(
            "is a symbolic link; tilgang writes this file and does not follow links here",
        ));
    }
    if !meta.is_file() {
        return Err(not_regular());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    if links == Links::Refuse {
        use std::os::unix::fs::OpenOptionsExt;
        // Replaced by a link since the check above: fail rather than follow.
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let mut f = options.open(path)?;
    if !f.metadata()?.is_file() {
        return Err(not_regular());
    }
    read_open(&mut f)
}
