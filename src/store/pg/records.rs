//! The store's rows as the snapshot holds them: every delegation read at
//! one revision ([`load_all`], the follower's full load and `tilgang
//! export`), a batch of the change feed applied to a snapshot ([`apply`]),
//! and records checked again when the policies changed during a load
//! ([`recheck`]). Each row is checked as a delegation file's entry would be;
//! one that does not check is left out (a deny), and logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::TryStreamExt;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;

use super::PgError;
use crate::ids::OrgNumber;
use crate::snapshot::load::record_from_parts;
use crate::snapshot::{
    DelegationRecord, OwnerDelegations, OwnerMap, PolicyBundle, Snapshot, Suppliers,
};

/// One owner's rows while the ordered COPY streams them in.
type OwnerRows = (OrgNumber, Vec<(OrgNumber, Arc<DelegationRecord>)>);

/// Every delegation at one revision: `COPY` in binary, in (owner, supplier)
/// order, checked as they stream in. A row that does not check is left out
/// (and logged): a delegation nobody can read is no delegation, a deny.
pub async fn load_all(
    client: &mut Client,
    policies: &PolicyBundle,
) -> Result<(u64, OwnerMap, usize), PgError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(PgError::query("starting the full load"))?;
    let revision: i64 = tx
        .query_one("SELECT revision FROM tilgang_state", &[])
        .await
        .map_err(PgError::query("reading the store revision"))?
        .get(0);
    let copy = tx
        .copy_out(
            "COPY (SELECT owner, supplier, rights, delegated_by, created_at, updated_at, extra
                   FROM tilgang_delegations ORDER BY owner, supplier) TO STDOUT (FORMAT binary)",
        )
        .await
        .map_err(PgError::query("reading the delegations"))?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ];
    let rows = BinaryCopyOutStream::new(copy, &types);
    futures_util::pin_mut!(rows);
    let mut owners = OwnerMap::new();
    let mut current: Option<OwnerRows> = None;
    let mut problems = 0usize;
    let flush = |owners: &mut OwnerMap, slice: Option<OwnerRows>| {
        if let Some((owner, records)) = slice
            && !records.is_empty()
        {
            owners.insert(owner, slice_of(Suppliers::from_iter(records)));
        }
    };
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(PgError::query("reading the delegations"))?
    {
        let owner: &str = row.get(0);
        let supplier: &str = row.get(1);
        let rights: Vec<String> = row.get(2);
        let record = record_from_parts(
            &format!("store: {owner}/{supplier}"),
            owner,
            supplier,
            &rights,
            row.get::<&str>(3).to_string(),
            row.get::<&str>(4).to_string(),
            row.get::<&str>(5).to_string(),
            row.get::<Option<&str>>(6),
            policies,
        );
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems += 1;
                tracing::error!(error = %e, "a delegation in the store does not load; left out (denied)");
                continue;
            }
        };
        if current.as_ref().is_none_or(|(o, _)| *o != record.owner) {
            flush(&mut owners, current.take());
            current = Some((record.owner, Vec::new()));
        }
        if let Some((_, records)) = current.as_mut() {
            records.push((record.supplier, record));
        }
    }
    flush(&mut owners, current.take());
    tx.commit()
        .await
        .map_err(PgError::query("ending the full load"))?;
    Ok((revision.max(0) as u64, owners, problems))
}

/// An owner's slice from records: no files, so no file digest (the
/// snapshot's revision carries the store revision instead).
fn slice_of(by_supplier: Suppliers) -> Arc<OwnerDelegations> {
    Arc::new(OwnerDelegations {
        by_supplier,
        digest: [0; 32],
        files: Vec::new(),
    })
}

/// One change from the feed: the pair's state after it (`rights: None`:
/// removed).
#[derive(Debug, Clone)]
pub struct Change {
    pub owner: String,
    pub supplier: String,
    pub rights: Option<Vec<String>>,
    pub delegated_by: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub extra: Option<String>,
}

/// The snapshot with `changes` applied, in order, per owner.
pub(super) fn apply(cur: &Snapshot, changes: &[Change]) -> Snapshot {
    let mut by_owner: BTreeMap<OrgNumber, Suppliers> = BTreeMap::new();
    for c in changes {
        let Ok(owner) = OrgNumber::parse(&c.owner) else {
            tracing::error!(owner = %crate::ids::echo(&c.owner), "a change names no valid owner; ignored");
            continue;
        };
        let Ok(supplier) = OrgNumber::parse(&c.supplier) else {
            tracing::error!(supplier = %crate::ids::echo(&c.supplier), "a change names no valid supplier; ignored");
            continue;
        };
        let slice = by_owner.entry(owner).or_insert_with(|| {
            cur.owners
                .get(&owner)
                .map(|o| o.by_supplier.clone())
                .unwrap_or_default()
        });
        let record = c.rights.as_ref().and_then(|rights| {
            record_from_parts(
                &format!("store: {owner}/{supplier}"),
                &c.owner,
                &c.supplier,
                rights,
                c.delegated_by.clone().unwrap_or_default(),
                c.created_at.clone().unwrap_or_default(),
                c.updated_at.clone().unwrap_or_default(),
                c.extra.as_deref(),
                &cur.policies,
            )
            .inspect_err(|e| {
                tracing::error!(error = %e, "a changed delegation does not load; removed (denied)");
            })
            .ok()
        });
        match record {
            Some(r) => {
                slice.insert(supplier, r);
            }
            None => {
                slice.remove(&supplier);
            }
        }
    }
    let mut next = cur.clone();
    for (owner, by_supplier) in by_owner {
        let slice = (!by_supplier.is_empty()).then(|| slice_of(by_supplier));
        next = next.with_owner(owner, slice);
    }
    next
}

/// Every record checked again against `policies` (they changed during a
/// full load); one that no longer fits is left out.
pub(super) fn recheck(owners: OwnerMap, policies: &PolicyBundle) -> OwnerMap {
    owners
        .into_iter()
        .filter_map(|(owner, slice)| {
            let kept: Suppliers = slice
                .by_supplier
                .iter()
                .filter_map(|(s, r)| {
                    let rights: Vec<String> = r.rights.iter().map(|x| x.to_string()).collect();
                    let extra = (!r.extra_attrs.is_empty())
                        .then(|| serde_json::Value::Object(r.extra_attrs.clone()).to_string());
                    record_from_parts(
                        &format!("store: {owner}/{s}"),
                        owner.as_str(),
                        s.as_str(),
                        &rights,
                        r.delegated_by.clone(),
                        r.created_at.clone(),
                        r.updated_at.clone(),
                        extra.as_deref(),
                        policies,
                    )
                    .ok()
                    .map(|r| (*s, r))
                })
                .collect();
            (!kept.is_empty()).then(|| (owner, slice_of(kept)))
        })
        .collect()
}
