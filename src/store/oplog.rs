//! A record of the file-system steps the store takes, in order, so tests can
//! hold a write against the commit protocol (every rename preceded by the
//! temp file's fsync, every directory change followed by the directory's
//! fsync before the acknowledgement, ...). A SIGKILL test cannot catch a
//! missing fsync, since the page cache survives the process; this can.
//!
//! Recording is off unless a test turns it on ([`super::DelegationStore::record_ops`]);
//! off, it costs one atomic load per step and builds nothing. This module only
//! keeps the list: it does no I/O and checks nothing.

use std::sync::Mutex;

pub use super::files::Place;

/// One step, as the store took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new name in `dir`: a temp file, a new audit log, or a subdirectory
    /// (then `dir` is [`Place::Data`]).
    Create { dir: Place, name: String },
    /// Bytes written to a file: a temp file's contents, or an audit line.
    Write { dir: Place, name: String },
    /// `fsync`/`fdatasync` of a file.
    SyncFile { dir: Place, name: String },
    /// `renameat` of `from` over `to`, within `dir`.
    Rename {
        dir: Place,
        from: String,
        to: String,
    },
    /// `unlinkat` of `name` in `dir`.
    Unlink { dir: Place, name: String },
    /// `fsync` of the directory itself.
    SyncDir { dir: Place },
    /// The store returned `Ok` to its caller: what came before must be durable.
    Ack { what: &'static str },
}

/// The steps recorded so far, in the order they were taken.
#[derive(Debug, Default)]
pub struct OpLog {
    ops: Mutex<Vec<Op>>,
}

impl OpLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&self, op: Op) {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(op);
    }

    /// Everything recorded since the last call, leaving the log empty.
    pub fn take(&self) -> Vec<Op> {
        std::mem::take(
            &mut *self
                .ops
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}
