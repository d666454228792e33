//! Reading the register file: its content hashed while it is parsed (one
//! read), and the start-up load repeated until the content has settled.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::watch::open_regular;
use super::watch::{KEY, STARTUP_PATIENCE};
use super::{FormatError, Register, RegisterError};
use crate::snapshot::load::version_of;
use crate::snapshot::settle::{Settler, Verdict};
use crate::snapshot::{Digest, FileStamp};

/// What one read of the file saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    /// The file's stamp before the read.
    pub stamp: FileStamp,
    /// The stamp was the same after the read: no write landed during it.
    pub steady: bool,
    /// BLAKE3 of the bytes.
    pub content: Digest,
}

impl Seen {
    /// The bytes together with the version they were read at (what the
    /// settle rule compares). A read during which the file changed matches
    /// nothing, not even itself read again ([`version_of`]).
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(&self.content);
        h.update(&version_of([(self.stamp, self.steady)]));
        h.finalize().into()
    }
}

/// Everything read through it is hashed; `stop` makes it give up.
pub(super) struct Hashing<'a, R> {
    inner: R,
    hasher: blake3::Hasher,
    stop: Option<&'a AtomicBool>,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(std::io::Error::other("stopped"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Read the file to its end, through `use_bytes`, which reads what it
/// needs (the rest is read here, so the hash covers the whole file).
pub(super) fn read_file<T>(
    path: &Path,
    stop: Option<&AtomicBool>,
    use_bytes: impl FnOnce(&mut dyn Read) -> T,
) -> Result<(T, Seen), RegisterError> {
    let io = |source| RegisterError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = open_regular(path)?;
    let stamp = FileStamp::of(&f.metadata().map_err(io)?);
    let mut reader = Hashing {
        inner: std::io::BufReader::with_capacity(256 * 1024, &mut f),
        hasher: blake3::Hasher::new(),
        stop,
    };
    let used = use_bytes(&mut reader);
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io)?;
    let content = reader.hasher.finalize().into();
    let steady = FileStamp::of(&f.metadata().map_err(io)?) == stamp;
    Ok((
        used,
        Seen {
            stamp,
            steady,
            content,
        },
    ))
}

/// Hash the file.
pub(super) fn hash_file(path: &Path, stop: Option<&AtomicBool>) -> Result<Seen, RegisterError> {
    read_file(path, stop, |_| ()).map(|((), seen)| seen)
}

/// Parse the file, hashing what is read. A read error is the outer error;
/// what is wrong with the content is the inner one (with the hash of the
/// content that has it).
pub(super) fn parse_file(
    path: &Path,
    stop: Option<&AtomicBool>,
) -> Result<(Result<Register, FormatError>, Seen), RegisterError> {
    let (result, seen) = read_file(path, stop, |r| Register::read(r, stop))?;
    match result {
        Err(FormatError::Read(source)) => Err(RegisterError::Read {
            path: path.to_path_buf(),
            source,
        }),
        result => Ok((result, seen)),
    }
}

/// The start-up load: hash the file, then parse it once the quiet period
/// has passed, and keep the parse if its read agrees with the one before
/// (else go on until two agree). A read error fails at once: at start-up
/// there is no last good register.
pub(super) fn load_settled(
    path: &Path,
    settle: &Settler<()>,
) -> Result<(Register, Seen), RegisterError> {
    let began = Instant::now();
    let t0 = Instant::now();
    let first = hash_file(path, None)?;
    let mut verdict = settle.check(KEY, first.digest(), t0, Instant::now());
    loop {
        if let Verdict::Unsettled { retry_at } = verdict {
            if began.elapsed() > STARTUP_PATIENCE {
                return Err(RegisterError::Unsettled {
                    path: path.to_path_buf(),
                    waited: began.elapsed(),
                });
            }
            std::thread::sleep(retry_at.saturating_duration_since(Instant::now()));
        }
        let t0 = Instant::now();
        let (result, seen) = parse_file(path, None)?;
        verdict = settle.check(KEY, seen.digest(), t0, Instant::now());
        if verdict == Verdict::Settled {
            settle.forget(&KEY);
            return result.map(|register| (register, seen)).map_err(|problem| {
                RegisterError::Invalid {
                    path: path.to_path_buf(),
                    problem,
                }
            });
        }
    }
}
