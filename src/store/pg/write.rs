//! The three writes against the shared store, each one transaction: bump
//! the store revision first (its row lock makes writers from every replica
//! commit one at a time, in revision order), read the pair, change it, write
//! the row, the change-feed entry, the undo record and the audit line,
//! notify the followers, commit (synchronously: acknowledged means on the
//! server's disk, and on its synchronous standby where one is configured).
//! A crash or a lost connection before the commit leaves nothing behind.
//!
//! Who may write is decided before, from this replica's snapshot (policies
//! and `roles.json` are files every admin replica has), exactly as for the
//! file store (`authorize`). After the commit the write waits, briefly, for
//! this replica's follower to apply it, so the caller reads its own write here.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::Transaction;

use super::{PgError, PgStore};
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::snapshot::load::{LoadError, record_from_parts};
use crate::store::audit::{Actor, AuditRecord, Change};
use crate::store::authorize::{authorize, roles_usable};
use crate::store::entries::{Entries, Entry, grant, ids};
use crate::store::undo::UndoRecord;
use crate::store::{DelegationView, Revoked, StoreError, Written, now, rfc3339};

/// How long a write waits for this replica to apply it before answering
/// anyway (it is committed either way).
const READ_YOUR_WRITE: Duration = Duration::from_secs(2);

impl PgStore {
    /// Give `supplier` the `rights` (added to what it holds).
    pub(super) fn delegate(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<DelegationView>, StoreError> {
        authorize(&self.snapshots.load(), by.person, &owner)?;
        self.runtime.block_on(async {
            let mut client = self.client().await?;
            let tx = begin(&mut client).await?;
            let revision = bump(&tx).await?;
            let mut entries = read_pair(&tx, &owner, &supplier).await?;
            let t = rfc3339(now());
            let (before, after) = grant(&mut entries, supplier, rights, by.person, &t, &t);
            self.put_pair(&tx, revision, &owner, &supplier, entries.get(&supplier))
                .await?;
            let audit = audit(t, by, owner, supplier, Change::Grant, &before, &after, None);
            append_audit(&tx, revision, &audit).await?;
            commit(tx, revision).await?;
            self.logged(by.person, owner, supplier, Change::Grant, &before, &after);
            self.settle(revision).await;
            Ok(Written {
                value: self.view(&owner, &supplier, entries.get(&supplier)),
                revision,
            })
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
        authorize(&self.snapshots.load(), by.person, &owner)?;
        let token = UndoToken::generate()?;
        self.runtime.block_on(async {
            let mut client = self.client().await?;
            let tx = begin(&mut client).await?;
            let revision = bump(&tx).await?;
            let mut entries = read_pair(&tx, &owner, &supplier).await?;
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
            } else if let Some(e) = entries.get_mut(&supplier) {
                e.updated_at = rfc3339(t);
            }
            let expires = time::Duration::try_from(self.undo_window)
                .ok()
                .and_then(|w| t.checked_add(w))
                .ok_or_else(|| std::io::Error::other("the undo window is out of range"))?;
            let record = UndoRecord {
                owner: owner.to_string(),
                supplier: supplier.to_string(),
                rights: ids(&removed),
                created_at,
                revoked_by: by.person.to_string(),
                revoked_at: rfc3339(t),
                expires_at: rfc3339(expires),
                used_at: None,
                used_by: None,
            };
            save_undo(&tx, &token, &record, expires).await?;
            self.put_pair(&tx, revision, &owner, &supplier, entries.get(&supplier))
                .await?;
            let change = if after.is_empty() {
                Change::RevokeLast
            } else {
                Change::Revoke
            };
            let a = audit(
                rfc3339(t),
                by,
                owner,
                supplier,
                change,
                &before,
                &after,
                Some(&token),
            );
            append_audit(&tx, revision, &a).await?;
            commit(tx, revision).await?;
            self.logged(by.person, owner, supplier, change, &before, &after);
            self.settle(revision).await;
            Ok(Written {
                value: Revoked {
                    remaining: self.view(&owner, &supplier, entries.get(&supplier)),
                    undo_token: token.clone(),
                    undo_expires_at: rfc3339(expires),
                },
                revision,
            })
        })
    }

    /// Restore exactly what the revocation behind `token` removed, once. The
    /// same answers as the file store's (`UnknownToken` to anyone who may
    /// not use the token, whatever the reason).
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
        roles_usable(&self.snapshots.load())?;
        self.runtime.block_on(async {
            let mut client = self.client().await?;
            let tx = begin(&mut client).await?;
            let revision = bump(&tx).await?;
            let Some(mut record) = load_undo(&tx, token).await? else {
                return Err(unknown());
            };
            let Ok((owner, supplier)) = record.pair() else {
                tracing::error!(%token, "undo record names no valid pair; answering that the token is unknown");
                return Err(unknown());
            };
            match authorize(&self.snapshots.load(), actor, &owner) {
                Err(e @ StoreError::Forbidden { .. }) => {
                    tracing::info!(%actor, %owner, reason = %e, "undo refused as an unknown token");
                    return Err(unknown());
                }
                other => other?,
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
            let mut entries = read_pair(&tx, &owner, &supplier).await?;
            let stamp = rfc3339(t);
            let created_at = record.created_at.clone();
            let (before, after) = grant(&mut entries, supplier, restored, actor, &stamp, &created_at);
            record.used_at = Some(stamp.clone());
            record.used_by = Some(actor.to_string());
            let expires = record.expiry().unwrap_or(t);
            save_undo(&tx, token, &record, expires).await?;
            self.put_pair(&tx, revision, &owner, &supplier, entries.get(&supplier))
                .await?;
            let a = audit(stamp, by, owner, supplier, Change::Undo, &before, &after, Some(token));
            append_audit(&tx, revision, &a).await?;
            commit(tx, revision).await?;
            self.logged(actor, owner, supplier, Change::Undo, &before, &after);
            self.settle(revision).await;
            Ok(Written {
                value: self.view(&owner, &supplier, entries.get(&supplier)),
                revision,
            })
        })
    }

    /// Write the pair's new state (`None`: removed), checked against the
    /// policies in force first (what is written must load), and its
    /// change-feed entry.
    async fn put_pair(
        &self,
        tx: &Transaction<'_>,
        revision: u64,
        owner: &OrgNumber,
        supplier: &OrgNumber,
        entry: Option<&Entry>,
    ) -> Result<(), StoreError> {
        let rev = revision as i64;
        let (o, s) = (owner.as_str(), supplier.as_str());
        let Some(e) = entry else {
            tx.execute(
                "DELETE FROM tilgang_delegations WHERE owner = $1 AND supplier = $2",
                &[&o, &s],
            )
            .await
            .map_err(failed("removing a delegation"))?;
            tx.execute(
                "INSERT INTO tilgang_changes (revision, owner, supplier) VALUES ($1, $2, $3)",
                &[&rev, &o, &s],
            )
            .await
            .map_err(failed("writing the change feed"))?;
            return Ok(());
        };
        let rights = ids(&e.rights);
        let extra =
            (!e.extra.is_empty()).then(|| serde_json::Value::Object(e.extra.clone()).to_string());
        let snap = self.snapshots.load();
        record_from_parts(
            &format!("{owner}/{supplier}"),
            o,
            s,
            &rights,
            e.delegated_by.clone(),
            e.created_at.clone(),
            e.updated_at.clone(),
            extra.as_deref(),
            &snap.policies,
        )
        .map_err(StoreError::DoesNotFitPolicies)?;
        tx.execute(
            "INSERT INTO tilgang_delegations
                 (owner, supplier, rights, delegated_by, created_at, updated_at, extra, revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (owner, supplier) DO UPDATE SET
                 rights = excluded.rights, delegated_by = excluded.delegated_by,
                 created_at = excluded.created_at, updated_at = excluded.updated_at,
                 extra = excluded.extra, revision = excluded.revision",
            &[
                &o,
                &s,
                &rights,
                &e.delegated_by,
                &e.created_at,
                &e.updated_at,
                &extra,
                &rev,
            ],
        )
        .await
        .map_err(failed("writing a delegation"))?;
        tx.execute(
            "INSERT INTO tilgang_changes
                 (revision, owner, supplier, rights, delegated_by, created_at, updated_at, extra)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &rev,
                &o,
                &s,
                &rights,
                &e.delegated_by,
                &e.created_at,
                &e.updated_at,
                &extra,
            ],
        )
        .await
        .map_err(failed("writing the change feed"))?;
        Ok(())
    }

    /// The pair as the write left it (the snapshot may not have it yet).
    fn view(
        &self,
        owner: &OrgNumber,
        supplier: &OrgNumber,
        entry: Option<&Entry>,
    ) -> DelegationView {
        let Some(e) = entry else {
            return DelegationView::empty(*owner, *supplier);
        };
        let snap = self.snapshots.load();
        let rights: crate::snapshot::RightSet = e.rights.iter().cloned().collect();
        DelegationView {
            owner: *owner,
            supplier: *supplier,
            rights: e.rights.iter().cloned().collect(),
            scopes: snap.policies.catalogue.scopes_of(&rights),
            delegated_by: e.delegated_by.clone(),
            created_at: e.created_at.clone(),
            updated_at: e.updated_at.clone(),
        }
    }

    /// Wait, briefly, for this replica to apply `revision`.
    async fn settle(&self, revision: u64) {
        if let Err(behind) = self.snapshots.at_least(revision, READ_YOUR_WRITE).await {
            tracing::warn!(
                wanted = behind.wanted,
                have = behind.have,
                "a committed write is not yet in this replica's snapshot"
            );
        }
    }

    fn logged(
        &self,
        actor: &PersonId,
        owner: OrgNumber,
        supplier: OrgNumber,
        change: Change,
        before: &BTreeSet<RightId>,
        after: &BTreeSet<RightId>,
    ) {
        crate::store::ops::logged(actor, owner, supplier, change, before, after);
    }
}

/// A server error as the store's: the connection gone is `Unavailable`
/// (nothing was acknowledged), anything else a storage error.
pub(super) fn failed(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| PgError::query(what)(e).into()
}

async fn begin<'a>(
    client: &'a mut deadpool_postgres::Object,
) -> Result<Transaction<'a>, StoreError> {
    let tx = client
        .transaction()
        .await
        .map_err(failed("starting a transaction"))?;
    // Acknowledged means durable, whatever the server's default.
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await
        .map_err(failed("setting synchronous_commit"))?;
    Ok(tx)
}

/// The next store revision, taking the row lock that orders every write.
async fn bump(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let row = tx
        .query_one(
            "UPDATE tilgang_state SET revision = revision + 1 RETURNING revision",
            &[],
        )
        .await
        .map_err(failed("taking the next revision"))?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

async fn commit(tx: Transaction<'_>, revision: u64) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&super::follow::CHANNEL, &revision.to_string()],
    )
    .await
    .map_err(failed("notifying the followers"))?;
    tx.commit().await.map_err(|e| {
        StoreError::from(PgError::Commit {
            reason: crate::telemetry::logs::error_chain(&e),
        })
    })
}

/// The pair's entry as the store holds it now (under the write lock).
async fn read_pair(
    tx: &Transaction<'_>,
    owner: &OrgNumber,
    supplier: &OrgNumber,
) -> Result<Entries, StoreError> {
    let row = tx
        .query_opt(
            "SELECT rights, delegated_by, created_at, updated_at, extra
             FROM tilgang_delegations WHERE owner = $1 AND supplier = $2",
            &[&owner.as_str(), &supplier.as_str()],
        )
        .await
        .map_err(failed("reading a delegation"))?;
    let mut entries = Entries::new();
    let Some(row) = row else {
        return Ok(entries);
    };
    let bad = |msg: String| {
        StoreError::CorruptFile(LoadError::new(format!("store: {owner}/{supplier}"), msg))
    };
    let rights: Vec<String> = row.get(0);
    let rights = rights
        .iter()
        .map(|r| RightId::parse(r).map_err(|e| bad(format!("`rights`: {e}"))))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let extra = match row.get::<_, Option<String>>(4) {
        None => serde_json::Map::new(),
        Some(text) => serde_json::from_str(&text).map_err(|e| bad(format!("`extra`: {e}")))?,
    };
    entries.insert(
        *supplier,
        Entry {
            rights,
            delegated_by: row.get(1),
            created_at: row.get(2),
            updated_at: row.get(3),
            extra,
        },
    );
    Ok(entries)
}

async fn save_undo(
    tx: &Transaction<'_>,
    token: &UndoToken,
    record: &UndoRecord,
    expires: time::OffsetDateTime,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(record).map_err(std::io::Error::other)?;
    let expires = std::time::SystemTime::from(expires);
    tx.execute(
        "INSERT INTO tilgang_undo (token, record, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (token) DO UPDATE SET record = excluded.record",
        &[&token.as_str(), &json, &expires],
    )
    .await
    .map_err(failed("writing an undo record"))?;
    Ok(())
}

/// The token's record, locked until the transaction ends.
async fn load_undo(
    tx: &Transaction<'_>,
    token: &UndoToken,
) -> Result<Option<UndoRecord>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT record FROM tilgang_undo WHERE token = $1 FOR UPDATE",
            &[&token.as_str()],
        )
        .await
        .map_err(failed("reading an undo record"))?;
    Ok(row.and_then(|r| {
        let text: String = r.get(0);
        serde_json::from_str(&text)
            .inspect_err(|e| tracing::error!(error = %e, "undo record unusable; answering that the token is unknown"))
            .ok()
    }))
}

pub(super) async fn append_audit(
    tx: &Transaction<'_>,
    revision: u64,
    line: &impl serde::Serialize,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(line).map_err(std::io::Error::other)?;
    tx.execute(
        "INSERT INTO tilgang_audit (revision, line) VALUES ($1, $2)",
        &[&(revision as i64), &json],
    )
    .await
    .map_err(failed("writing the audit line"))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn audit(
    time: String,
    by: Actor<'_>,
    owner: OrgNumber,
    supplier: OrgNumber,
    change: Change,
    before: &BTreeSet<RightId>,
    after: &BTreeSet<RightId>,
    token: Option<&UndoToken>,
) -> AuditRecord {
    AuditRecord::of_change(time, by, owner, supplier, change, before, after, token)
}
