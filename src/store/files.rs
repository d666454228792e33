//! Durable file writes: temp file in the same directory, fsync, rename, fsync the
//! directory. A crash at any moment leaves the old file or the new one, never a
//! torn one; a write is durable when these functions return `Ok`. An error says
//! whether the change is already in place ([`WriteError::NotDurable`]), so
//! callers never report "nothing happened" for a change readers can see.

use std::fs::File;
use std::io::Write;
use std::path::Path;

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

/// Replace `path` with `bytes` atomically and durably. Returns the new file's
/// metadata, taken from the written file itself before it was renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<std::fs::Metadata, WriteError> {
    let dir = parent(path).map_err(WriteError::NotApplied)?;
    let meta = replace(dir, path, bytes).map_err(WriteError::NotApplied)?;
    sync_dir(dir).map_err(WriteError::NotDurable)?;
    Ok(meta)
}

/// Everything up to and including the rename.
fn replace(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<std::fs::Metadata> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    // Temp files are private (0600); the data files are for people to read too.
    // Keep the mode of the file being replaced, or use 0644 for a new one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    let meta = tmp.as_file().metadata()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(meta)
}

/// Remove `path` durably; a missing file is not an error.
pub fn remove_durable(path: &Path) -> Result<(), WriteError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            let dir = parent(path).map_err(WriteError::NotDurable)?;
            sync_dir(dir).map_err(WriteError::NotDurable)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WriteError::NotApplied(e)),
    }
}

fn parent(path: &Path) -> std::io::Result<&Path> {
    path.parent()
        .ok_or_else(|| std::io::Error::other(format!("`{}` has no parent", path.display())))
}

/// fsync a directory so a rename or unlink in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
        remove_durable(&p).unwrap();
        remove_durable(&p).unwrap();
        assert!(!p.exists());
    }
}
