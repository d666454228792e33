//! The three writes, step by step: what each checks, what it changes, and in
//! what order its files are written. Delegate: authorize, read, grant, commit,
//! audit. Revoke: authorize, read, remove, write the undo record durably,
//! commit, audit. Undo: find the record (answering "unknown" to anyone who may
//! not use it), authorize, mark the token used durably, grant, commit, audit.
//! The file work is in `commit`, `undo` and `files`; the actor check in `authorize`.
//! Each acknowledged write is logged at `info` (actor, owner, supplier, change,
//! rights before and after: the audit line's content, without the undo token);
//! refusals are logged where the call is answered (`telemetry`).

use std::collections::BTreeSet;

use super::audit::{Actor, Change};
use super::authorize::{authorize, roles_usable};
use super::entries::{grant, ids};
use super::files::WriteError;
use super::oplog::Op;
use super::undo::{self, RecordError, UndoRecord};
use super::{DelegationView, FileStore, Revoked, StoreError, Written, now, rfc3339};
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};

impl FileStore {
    /// Give `supplier` the `rights` (added to what it holds).
    pub(super) fn delegate(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<DelegationView>, StoreError> {
        let actor = by.person;
        let lock = self.owner_lock(&owner);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        authorize(&self.snapshots.load(), actor, &owner)?;

        let (mut entries, read) = self.read_owner(&owner, &supplier)?;
        let t = rfc3339(now());
        let (before, after) = grant(&mut entries, supplier, rights, actor, &t, &t);
        let committed = self.commit(&owner, &entries, read)?;
        let change = Change::Grant;
        let audit = self.audit_change(t, by, owner, supplier, change, &before, &after, None);
        let revision = committed.finish(audit, None)?;
        self.files.record(|| Op::Ack { what: "delegate" });
        logged(actor, owner, supplier, change, &before, &after);
        Ok(Written {
            value: self.view(&owner, &supplier),
            revision,
        })
    }

    /// Take `rights` (all, when empty) from `supplier`. Returns an undo token.
    pub(super) fn revoke(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        requested: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<Revoked>, StoreError> {
        let actor = by.person;
        let lock = self.owner_lock(&owner);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        authorize(&self.snapshots.load(), actor, &owner)?;

        let (mut entries, read) = self.read_owner(&owner, &supplier)?;
        let Some(entry) = entries.get_mut(&supplier) else {
            return Err(StoreError::NothingDelegated { owner, supplier });
        };
        let before = entry.rights.clone();
        let removed: BTreeSet<RightId> = if requested.is_empty() {
            before.clone()
        } else {
            let missing: BTreeSet<RightId> = requested.difference(&before).cloned().collect();
            if !missing.is_empty() {
                return Err(StoreError::NotDelegated {
                    owner,
                    supplier,
                    missing,
                    held: before,
                });
            }
            requested
        };
        let created_at = entry.created_at.clone();
        entry.rights.retain(|r| !removed.contains(r));
        let t = now();
        let after = entry.rights.clone();
        if after.is_empty() {
            entries.remove(&supplier);
        } else {
            entry.updated_at = rfc3339(t);
        }
        let token = UndoToken::generate()?;
        let expires = time::Duration::try_from(self.undo_window)
            .ok()
            .and_then(|w| t.checked_add(w))
            .ok_or_else(|| std::io::Error::other("the undo window is out of range"))?;
        // The undo record is durable before the revocation, so an acknowledged
        // revocation always has a working token.
        undo::save(
            &self.files,
            &token,
            &UndoRecord {
                owner: owner.to_string(),
                supplier: supplier.to_string(),
                rights: ids(&removed),
                created_at,
                revoked_by: actor.to_string(),
                revoked_at: rfc3339(t),
                expires_at: rfc3339(expires),
                used_at: None,
                used_by: None,
            },
        )
        .map_err(|e| StoreError::from(std::io::Error::from(e)))?;
        let committed = self.commit(&owner, &entries, read)?;
        let change = if after.is_empty() {
            Change::RevokeLast
        } else {
            Change::Revoke
        };
        let (time, tok) = (rfc3339(t), Some(&token));
        let audit = self.audit_change(time, by, owner, supplier, change, &before, &after, tok);
        let revision = committed.finish(audit, Some(&token))?;
        self.files.record(|| Op::Ack { what: "revoke" });
        logged(actor, owner, supplier, change, &before, &after);
        Ok(Written {
            value: Revoked {
                remaining: self.view(&owner, &supplier),
                undo_token: token,
                undo_expires_at: rfc3339(expires),
            },
            revision,
        })
    }

    /// The record behind `token`, or `None` when there is none this store can
    /// use (missing, or unreadable: logged, since a record tilgang wrote should
    /// always read back).
    fn undo_record(&self, token: &UndoToken) -> Option<UndoRecord> {
        match undo::load(&self.files, token) {
            Ok(record) => Some(record),
            Err(RecordError::Missing) => None,
            Err(e @ RecordError::Unreadable { .. }) => {
                tracing::error!(error = %e, "undo record unusable; answering that the token is unknown");
                None
            }
        }
    }

    /// Restore exactly what the revocation behind `token` removed, once.
    ///
    /// An actor who may not use the token (no such token, pruned, unreadable
    /// record, or another owner's) gets one and the same answer,
    /// [`StoreError::UnknownToken`], so nobody can probe which tokens exist;
    /// whether it was used or has expired is told only to an actor who may
    /// administer its owner.
    pub(super) fn undo(
        &self,
        token: &UndoToken,
        by: Actor<'_>,
    ) -> Result<Written<DelegationView>, StoreError> {
        let actor = by.person;
        let unknown = || StoreError::UnknownToken {
            token: token.clone(),
            actor: actor.clone(),
        };
        // Before the record is looked at, or the answer would say it exists.
        roles_usable(&self.snapshots.load())?;
        let peek = self.undo_record(token).ok_or_else(unknown)?;
        let (owner, supplier) = peek.pair().map_err(|e| {
            tracing::error!(%token, error = %e, "undo record names no valid pair; answering that the token is unknown");
            unknown()
        })?;
        let lock = self.owner_lock(&owner);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match authorize(&self.snapshots.load(), actor, &owner) {
            Err(e @ StoreError::Forbidden { .. }) => {
                // The operator may see what the caller may not (but not the
                // token: the log is no place for it).
                tracing::info!(%actor, %owner, reason = %e, "undo refused as an unknown token");
                return Err(unknown());
            }
            other => other?,
        }
        // Re-read under the lock: a concurrent undo of the same token may have won.
        let mut record = self.undo_record(token).ok_or_else(unknown)?;
        if record.pair().ok() != Some((owner, supplier)) {
            tracing::error!(%token, "undo record changed its pair during the undo; answering that the token is unknown");
            return Err(unknown());
        }
        if let Some(used) = &record.used_at {
            return Err(StoreError::TokenUsed {
                at: used.clone(),
                by: record.used_by.clone().unwrap_or_else(|| "?".to_string()),
            });
        }
        let t = now();
        if record.expiry().is_none_or(|e| e <= t) {
            return Err(StoreError::TokenExpired {
                at: record.expires_at.clone(),
            });
        }
        // Rights since removed from the catalogue cannot come back.
        let snap = self.snapshots.load();
        let restored: BTreeSet<RightId> = record
            .rights
            .iter()
            .filter_map(|r| RightId::parse(r).ok())
            .filter(|r| snap.policies.catalogue.get(r).is_some())
            .collect();
        if restored.is_empty() {
            return Err(StoreError::NothingToRestore {
                rights: record.rights.clone(),
            });
        }
        let (mut entries, read) = self.read_owner(&owner, &supplier)?;
        let stamp = rfc3339(t);
        let created_at = record.created_at.clone();
        let (before, after) = grant(&mut entries, supplier, restored, actor, &stamp, &created_at);
        // Mark the token used before restoring: a crash in between loses the undo
        // (the owner can delegate again) rather than allowing it twice.
        record.used_at = Some(stamp.clone());
        record.used_by = Some(actor.to_string());
        // Gives the token back when nothing was restored, so the undo can be retried.
        let release = |mut record: UndoRecord| {
            record.used_at = None;
            record.used_by = None;
            if let Err(e) = undo::save(&self.files, token, &record) {
                tracing::error!(error = %e, "could not release an undo token after a failed undo");
            }
        };
        match undo::save(&self.files, token, &record) {
            Ok(()) => {}
            Err(WriteError::NotApplied(e)) => return Err(e.into()),
            // The mark is visible but may not survive a crash: restoring now
            // could let the token work twice after one. Nothing restored yet.
            Err(e @ WriteError::NotDurable(_)) => {
                release(record);
                return Err(std::io::Error::from(e).into());
            }
        }
        // Only a commit that changed nothing on disk gives the token back.
        let committed = match self.commit(&owner, &entries, read) {
            Ok(c) => c,
            Err(e) => {
                release(record);
                return Err(e);
            }
        };
        let change = Change::Undo;
        let tok = Some(token);
        let audit = self.audit_change(stamp, by, owner, supplier, change, &before, &after, tok);
        let revision = committed.finish(audit, None)?;
        self.files.record(|| Op::Ack { what: "undo" });
        logged(actor, owner, supplier, change, &before, &after);
        Ok(Written {
            value: self.view(&owner, &supplier),
            revision,
        })
    }
}

/// The `info` line of an acknowledged write.
pub(super) fn logged(
    actor: &PersonId,
    owner: OrgNumber,
    supplier: OrgNumber,
    change: Change,
    before: &BTreeSet<RightId>,
    after: &BTreeSet<RightId>,
) {
    let change = match change {
        Change::Grant => "grant",
        Change::Revoke => "revoke",
        Change::RevokeLast => "revoke-last",
        Change::Undo => "undo",
    };
    tracing::info!(
        %actor,
        %owner,
        %supplier,
        change,
        rights_before = %ids(before).join(","),
        rights_after = %ids(after).join(","),
        "admin write"
    );
}
