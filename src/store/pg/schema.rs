//! The shared store's tables, as numbered migrations. Each is applied once,
//! in order, in its own transaction, under an advisory lock (two replicas
//! started with `--migrate` at once apply each migration once), and
//! recorded in `tilgang_migrations`. Nothing else ever changes the schema: a
//! server whose schema is older than this binary's refuses to start until
//! `tilgang migrate` (or `serve --migrate`) has run; one newer than it
//! (a later tilgang migrated it) is refused too.
//!
//! Tables (migration 1):
//! - `tilgang_state`: one row, the store `revision`. Every write transaction
//!   bumps it first and holds that row's lock until it commits, so writes
//!   commit one at a time, in revision order, with no gaps: a follower that
//!   has seen revision `n` committed has seen every revision before it.
//!   `pruned_through`: changes up to it may be gone from the feed.
//! - `tilgang_delegations`: one row per (owner, supplier): what the owner
//!   files hold, by attribute.
//! - `tilgang_changes`: the change feed, one row per write: the pair's new
//!   state (no `rights`: removed) at its revision.
//! - `tilgang_undo`: undo records by token (the file store's JSON).
//! - `tilgang_audit`: the audit log's lines (the file store's JSON).

use tokio_postgres::Client;

use super::PgError;

/// Advisory lock key held while migrating ("tilgang" in ASCII).
const MIGRATION_LOCK: i64 = 0x0074_696c_6761_6e67;

/// One schema change: its number, what it does, and its SQL.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "delegations, change feed, undo records, audit log",
    sql: "
        CREATE TABLE tilgang_state (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            revision bigint NOT NULL DEFAULT 0,
            pruned_through bigint NOT NULL DEFAULT 0
        );
        INSERT INTO tilgang_state DEFAULT VALUES;
        CREATE TABLE tilgang_delegations (
            owner text NOT NULL,
            supplier text NOT NULL,
            rights text[] NOT NULL,
            delegated_by text NOT NULL,
            created_at text NOT NULL,
            updated_at text NOT NULL,
            extra text,
            revision bigint NOT NULL,
            PRIMARY KEY (owner, supplier)
        );
        CREATE INDEX tilgang_delegations_supplier ON tilgang_delegations (supplier);
        CREATE TABLE tilgang_changes (
            revision bigint PRIMARY KEY,
            owner text NOT NULL,
            supplier text NOT NULL,
            rights text[],
            delegated_by text,
            created_at text,
            updated_at text,
            extra text,
            at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE tilgang_undo (
            token text PRIMARY KEY,
            record text NOT NULL,
            expires_at timestamptz NOT NULL
        );
        CREATE TABLE tilgang_audit (
            seq bigserial PRIMARY KEY,
            revision bigint,
            line text NOT NULL
        );
    ",
}];

/// The schema version this binary reads and writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
    pub applied: Vec<String>,
}

/// The version the store is at (0: nothing applied yet).
pub async fn version(client: &Client) -> Result<i32, PgError> {
    let exists = client
        .query_one("SELECT to_regclass('tilgang_migrations') IS NOT NULL", &[])
        .await
        .map_err(PgError::query("reading the schema version"))?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM tilgang_migrations",
            &[],
        )
        .await
        .map_err(PgError::query("reading the schema version"))?;
    Ok(row.get(0))
}

/// Apply every migration the store lacks, each in its own transaction.
pub async fn migrate(client: &mut Client) -> Result<Migrated, PgError> {
    let tx = client
        .transaction()
        .await
        .map_err(PgError::query("starting a migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(PgError::query("taking the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tilgang_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(PgError::query("creating tilgang_migrations"))?;
    let from: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM tilgang_migrations",
            &[],
        )
        .await
        .map_err(PgError::query("reading the schema version"))?
        .get(0);
    if from > latest() {
        return Err(PgError::SchemaTooNew {
            found: from,
            known: latest(),
        });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        tx.batch_execute(m.sql)
            .await
            .map_err(PgError::query("applying a migration"))?;
        tx.execute(
            "INSERT INTO tilgang_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(PgError::query("recording a migration"))?;
        applied.push(format!("{}: {}", m.version, m.name));
    }
    tx.commit()
        .await
        .map_err(PgError::query("committing the migrations"))?;
    Ok(Migrated {
        from,
        to: latest(),
        applied,
    })
}

/// Refuse a store whose schema is not this binary's.
pub async fn check(client: &Client) -> Result<(), PgError> {
    let found = version(client).await?;
    match found.cmp(&latest()) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(PgError::SchemaTooOld {
            found,
            want: latest(),
        }),
        std::cmp::Ordering::Greater => Err(PgError::SchemaTooNew {
            found,
            known: latest(),
        }),
    }
}
