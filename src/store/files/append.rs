//! Appending to a file (the audit log): opened, or created and durably linked,
//! without following a symlink, and each append fdatasynced. Its identity
//! tells a rotated log from the one still in place.

use std::fs::File;
use std::io::Write;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{DataDir, FileId, Op, Place, SyncKind, with_path};

impl DataDir {
    /// Open `name` in `place` for appending, creating it (durably linked in
    /// its directory) when missing. A symlink is refused; so is anything but a
    /// regular file (`O_NONBLOCK`, so a FIFO there fails rather than blocks),
    /// and a file with more than one hard link.
    pub fn open_append(&self, place: Place, name: &str) -> std::io::Result<(File, FileId)> {
        let dir = self.dir(place)?;
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let flags = flags | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o666);
        let mut created = false;
        let mut fd = None;
        // Open what is there, or create it exclusively, so "created" is known
        // and only a new link costs a directory fsync.
        for _ in 0..8 {
            match rustix::fs::openat(&dir, name, flags, mode) {
                Ok(f) => {
                    fd = Some(f);
                    break;
                }
                Err(Errno::NOENT) => {}
                Err(Errno::LOOP) => return Err(self.refused(place, name, "regular file")),
                Err(e) => return Err(self.err(place, name, e)),
            }
            match rustix::fs::openat(&dir, name, flags | OFlags::CREATE | OFlags::EXCL, mode) {
                Ok(f) => {
                    self.record(|| Op::Create {
                        dir: place,
                        name: name.to_string(),
                    });
                    created = true;
                    fd = Some(f);
                    break;
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(self.err(place, name, e)),
            }
        }
        let Some(fd) = fd else {
            return Err(with_path(
                &self.shown(place, name),
                std::io::Error::other("appeared and vanished repeatedly while being opened"),
            ));
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err(place, name, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(with_path(
                &self.shown(place, name),
                std::io::Error::other("not a regular file"),
            ));
        }
        // A hard link makes the log another file too, perhaps one outside the
        // data directory that tilgang must not grow: append only to a file
        // with a single name.
        if st.st_nlink > 1 {
            return Err(with_path(
                &self.shown(place, name),
                std::io::Error::other(format!(
                    "has {} hard links, so it may be another file as well; tilgang appends \
                     only to a file with one name (copy it, then rename the copy over it)",
                    st.st_nlink
                )),
            ));
        }
        if created {
            self.sync(&dir, place)?;
        }
        Ok((File::from(fd), (st.st_dev, st.st_ino)))
    }

    /// The identity of what `name` in `place` is now (not following a
    /// symlink: one is refused); `None` if nothing is there.
    pub fn file_id(&self, place: Place, name: &str) -> std::io::Result<Option<FileId>> {
        let dir = self.dir(place)?;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                Err(self.refused(place, name, "regular file"))
            }
            Ok(st) => Ok(Some((st.st_dev, st.st_ino))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err(place, name, e)),
        }
    }

    /// Append `bytes` to `file` (opened by [`Self::open_append`] as `name` in
    /// `place`) and fdatasync it.
    pub fn append_durable(
        &self,
        file: &mut File,
        place: Place,
        name: &str,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let shown = || self.shown(place, name);
        file.write_all(bytes).map_err(|e| with_path(&shown(), e))?;
        self.record(|| Op::Write {
            dir: place,
            name: name.to_string(),
        });
        // Data only: an append changes no metadata a reader needs but the
        // size, which fdatasync covers.
        self.sync_file(file, place, name, SyncKind::Data)
    }
}
