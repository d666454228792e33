//! Why the organization register did not load: [`RegisterError`] (the file)
//! and [`FormatError`] (its content, wherever the bytes came from).

use std::path::PathBuf;
use std::time::Duration;

/// What is wrong with the bytes of a register download. The message reads
/// after the file's name: "`orgs.json.gz` is not gzip: ...".
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("is empty")]
    Empty,
    #[error("is not gzip: it does not start with the gzip magic bytes 1f 8b")]
    NotGzip,
    /// The gzip stream is corrupt or cut short, somewhere before `offset`
    /// (bytes are read ahead, so not exactly there).
    #[error("is not valid gzip before byte {offset}: {message}")]
    Gzip { offset: u64, message: String },
    /// Not JSON, or JSON but not an array: serde_json's message, which names
    /// the line and column in the decompressed text.
    #[error("is not a JSON array of organizations: {message}")]
    Json { message: String },
    /// Offsets into the name arena are `u32`.
    #[error("holds more than 4 GiB of names")]
    TooLarge,
    /// The bytes could not be read (not a problem with their content).
    #[error("could not be read")]
    Read(#[source] std::io::Error),
    /// The watcher was told to stop while it loaded.
    #[error("was not loaded: stopping")]
    Stopped,
}

/// Why a register file did not load, or could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("cannot read the organization register `{}`", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the organization register `{}` is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// The file was read but its content is not a register download.
    #[error("the organization register `{}` {problem}", path.display())]
    Invalid { path: PathBuf, problem: FormatError },
    /// [`super::Register::from_reader`]: bytes from no file.
    #[error("the organization register {0}")]
    Format(FormatError),
    /// Start-up only: the file changed on every look, so no read of it can be
    /// trusted to be whole.
    #[error("the organization register `{}` kept changing for {waited:?}; refusing content that may be half-written", path.display())]
    Unsettled { path: PathBuf, waited: Duration },
    #[error("watching the organization register `{}`", path.display())]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}
