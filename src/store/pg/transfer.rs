//! Moving delegations between a data directory and the shared store.
//!
//! `tilgang export --store … DIR` writes the owner files the file store
//! writes (`delegations/<owner>.json`, or parts for an owner past
//! [`SPLIT_AT`] suppliers), in one canonical layout, from one consistent
//! read: `tilgang validate` accepts them, and `serve --data DIR` decides the
//! same. `tilgang import DIR --store …` loads a data directory's delegations
//! with the loader (every file checked; any problem and nothing is written)
//! and upserts them in one transaction at one new revision, after which
//! every follower reloads in full. Importing the same directory twice
//! changes nothing the second time (no new revision).

use std::collections::BTreeMap;
use std::path::Path;

use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{PgError, follow};
use crate::ids::OrgNumber;
use crate::snapshot::load::{
    self, DelegationOut, LoadErrors, PART_MIN_DIGITS, SPLIT_AT, part_file_name, plan,
    render_owner_file,
};
use crate::snapshot::{DelegationRecord, OwnerMap, PolicyBundle};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub revision: u64,
    pub owners: usize,
    pub delegations: usize,
    pub files: usize,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The revision it made; `None` when everything was already there.
    pub revision: Option<u64>,
    pub read: usize,
    pub changed: u64,
}

/// Why an export or import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] PgError),
    #[error("the data directory does not load; nothing was imported:\n{0}")]
    Load(LoadErrors),
    #[error("`{}` already holds delegations; export into an empty directory", .0.display())]
    NotEmpty(std::path::PathBuf),
    #[error("writing `{}`: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Write every delegation in the store into `dir/delegations/`.
pub async fn export(
    client: &mut Client,
    policies: &PolicyBundle,
    dir: &Path,
) -> Result<Exported, TransferError> {
    let target = dir.join(load::DELEGATIONS_DIR);
    if target.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(TransferError::NotEmpty(target));
    }
    let (revision, owners, problems) = super::records::load_all(client, policies).await?;
    if problems > 0 {
        return Err(TransferError::Store(PgError::Import(format!(
            "{problems} delegations in the store do not fit these policies (logged); nothing was exported"
        ))));
    }
    let write = |path: &Path, bytes: &[u8]| -> Result<(), TransferError> {
        let failed = |source| TransferError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        let mut tmp =
            tempfile::NamedTempFile::new_in(path.parent().unwrap_or(dir)).map_err(failed)?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(failed)?;
        tmp.as_file().sync_all().map_err(failed)?;
        tmp.persist(path).map_err(|e| failed(e.error))?;
        Ok(())
    };
    let mut sorted: Vec<_> = owners.iter().collect();
    sorted.sort_by_key(|(o, _)| **o);
    let (mut files, mut delegations) = (0, 0);
    for (owner, slice) in &sorted {
        let records: Vec<&DelegationRecord> =
            slice.by_supplier.values().map(|r| r.as_ref()).collect();
        delegations += records.len();
        if records.len() <= SPLIT_AT {
            write(&load::owner_file(dir, owner), &render(&records)?)?;
            files += 1;
            continue;
        }
        let suppliers: Vec<OrgNumber> = records.iter().map(|r| r.supplier).collect();
        let by_supplier: BTreeMap<OrgNumber, &DelegationRecord> =
            records.iter().map(|r| (r.supplier, *r)).collect();
        for (part, members) in plan(&suppliers, PART_MIN_DIGITS) {
            let part_records: Vec<&DelegationRecord> = members
                .iter()
                .filter_map(|s| by_supplier.get(s).copied())
                .collect();
            let path = load::owner_dir(dir, owner).join(part_file_name(&part));
            write(&path, &render(&part_records)?)?;
            files += 1;
        }
    }
    crate::store::files::sync_dir(&target).ok();
    Ok(Exported {
        revision,
        owners: sorted.len(),
        delegations,
        files,
    })
}

fn render(records: &[&DelegationRecord]) -> Result<Vec<u8>, TransferError> {
    render_owner_file(records.iter().map(|r| DelegationOut {
        owner: &r.owner,
        supplier: &r.supplier,
        rights: r.rights.iter().collect(),
        delegated_by: &r.delegated_by,
        created_at: &r.created_at,
        updated_at: &r.updated_at,
        extra: &r.extra_attrs,
    }))
    .map_err(|source| TransferError::Write {
        path: "delegations".into(),
        source,
    })
}

/// Read `dir`'s delegations (all must load) for an import.
pub fn read_dir(dir: &Path, policies: &PolicyBundle) -> Result<OwnerMap, TransferError> {
    let (owners, _roles, errors) = load::load_data(dir, policies);
    // A missing or broken `roles.json` is not the import's business.
    let errors: Vec<_> = errors
        .into_iter()
        .filter(|e| !e.location.contains(load::ROLES_FILE))
        .collect();
    if !errors.is_empty() {
        return Err(TransferError::Load(LoadErrors(errors)));
    }
    Ok(owners.into_iter().collect())
}

/// Upsert `owners` into the store in one transaction.
pub async fn import(client: &mut Client, owners: &OwnerMap) -> Result<Imported, TransferError> {
    let q = PgError::query;
    let tx = client
        .transaction()
        .await
        .map_err(q("starting the import"))?;
    tx.batch_execute(
        "SET LOCAL synchronous_commit = on;
         CREATE TEMP TABLE tilgang_import (
             owner text, supplier text, rights text[], delegated_by text,
             created_at text, updated_at text, extra text
         ) ON COMMIT DROP",
    )
    .await
    .map_err(q("preparing the import"))?;
    let sink = tx
        .copy_in(
            "COPY tilgang_import (owner, supplier, rights, delegated_by, created_at, updated_at, extra)
             FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(q("sending the delegations"))?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);
    let mut read = 0;
    for slice in owners.values() {
        for r in slice.by_supplier.values() {
            let rights: Vec<String> = r.rights.iter().map(|x| x.to_string()).collect();
            let extra = (!r.extra_attrs.is_empty())
                .then(|| serde_json::Value::Object(r.extra_attrs.clone()).to_string());
            let row: [&(dyn ToSql + Sync); 7] = [
                &r.owner.as_str(),
                &r.supplier.as_str(),
                &rights,
                &r.delegated_by,
                &r.created_at,
                &r.updated_at,
                &extra,
            ];
            writer
                .as_mut()
                .write(&row)
                .await
                .map_err(q("sending the delegations"))?;
            read += 1;
        }
    }
    writer
        .as_mut()
        .finish()
        .await
        .map_err(q("sending the delegations"))?;
    let revision: i64 = tx
        .query_one(
            "UPDATE tilgang_state SET revision = revision + 1 RETURNING revision",
            &[],
        )
        .await
        .map_err(q("taking the next revision"))?
        .get(0);
    let changed = tx
        .execute(
            "INSERT INTO tilgang_delegations
                 (owner, supplier, rights, delegated_by, created_at, updated_at, extra, revision)
             SELECT owner, supplier, rights, delegated_by, created_at, updated_at, extra, $1
             FROM tilgang_import
             ON CONFLICT (owner, supplier) DO UPDATE SET
                 rights = excluded.rights, delegated_by = excluded.delegated_by,
                 created_at = excluded.created_at, updated_at = excluded.updated_at,
                 extra = excluded.extra, revision = excluded.revision
             WHERE (tilgang_delegations.rights, tilgang_delegations.delegated_by,
                    tilgang_delegations.created_at, tilgang_delegations.updated_at,
                    tilgang_delegations.extra)
                   IS DISTINCT FROM
                   (excluded.rights, excluded.delegated_by, excluded.created_at,
                    excluded.updated_at, excluded.extra)",
            &[&revision],
        )
        .await
        .map_err(q("writing the delegations"))?;
    if changed == 0 {
        // Nothing new: no revision, nothing for followers to do.
        tx.rollback().await.map_err(q("ending the import"))?;
        return Ok(Imported {
            revision: None,
            read,
            changed,
        });
    }
    // One revision for the lot, with no feed entries: followers reload.
    tx.execute("UPDATE tilgang_state SET pruned_through = $1", &[&revision])
        .await
        .map_err(q("marking the import for followers"))?;
    let line = serde_json::json!({
        "time": crate::store::DelegationStore::now_rfc3339(),
        "import": {"delegations": read, "changed": changed, "revision": revision},
    });
    tx.execute(
        "INSERT INTO tilgang_audit (revision, line) VALUES ($1, $2)",
        &[&revision, &line.to_string()],
    )
    .await
    .map_err(q("writing the audit line"))?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&follow::CHANNEL, &revision.to_string()],
    )
    .await
    .map_err(q("notifying the followers"))?;
    tx.commit().await.map_err(q("committing the import"))?;
    Ok(Imported {
        revision: Some(revision.max(0) as u64),
        read,
        changed,
    })
}
