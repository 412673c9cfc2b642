//! Schema migrations: numbered SQL files under `services/tracker/migrations/{sqlite,postgres}/`,
//! embedded in the binary, applied in order at open and recorded in `schema_migrations`.
//!
//! Each migration runs in its own transaction together with its `schema_migrations` row,
//! so a failed migration leaves the schema at the previous version. On PostgreSQL the
//! runner holds a transaction-level advisory lock, so replicas starting together apply
//! each migration once. A database whose schema is newer than this binary knows is
//! refused rather than used.

use rusqlite::Connection;

use crate::store::StoreError;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Applied in increasing order, starting at 1.
    pub(crate) version: i64,
    /// What it does, as in the file name.
    pub(crate) name: &'static str,
    /// The SQL, possibly several statements.
    pub(crate) sql: &'static str,
}

/// The SQLite migrations.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_log",
        sql: include_str!("../../migrations/sqlite/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "leaner_event_indexes",
        sql: include_str!("../../migrations/sqlite/0002_leaner_event_indexes.sql"),
    },
];

/// The PostgreSQL migrations.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_log",
        sql: include_str!("../../migrations/postgres/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "leaner_event_indexes",
        sql: include_str!("../../migrations/postgres/0002_leaner_event_indexes.sql"),
    },
];

/// The advisory lock key PostgreSQL migrations hold (an arbitrary constant: "trkmigr").
const POSTGRES_LOCK_KEY: i64 = 0x74726b_6d696772;

/// Applies the SQLite migrations that `connection`'s database lacks.
pub(crate) fn sqlite(connection: &mut Connection) -> Result<(), StoreError> {
    let open = |error: rusqlite::Error| StoreError::Open(format!("migrating SQLite: {error}"));
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_unix_seconds INTEGER NOT NULL
            )",
        )
        .map_err(open)?;
    for migration in SQLITE {
        // IMMEDIATE takes the write lock before reading the version, so two processes
        // opening one file cannot both apply a migration.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(open)?;
        let applied: i64 = transaction
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                [],
                |row| row.get(0),
            )
            .map_err(open)?;
        check_known(applied, SQLITE)?;
        if applied >= migration.version {
            continue;
        }
        transaction
            .execute_batch(migration.sql)
            .map_err(|error| failed_migration(migration, &error))?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_unix_seconds)
                 VALUES (?1, ?2, unixepoch())",
                rusqlite::params![migration.version, migration.name],
            )
            .map_err(open)?;
        transaction.commit().map_err(open)?;
    }
    Ok(())
}

/// Applies the PostgreSQL migrations that `client`'s database lacks.
pub(crate) async fn postgres(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let open = |error: tokio_postgres::Error| {
        StoreError::Open(format!(
            "migrating PostgreSQL: {}",
            describe_postgres(&error)
        ))
    };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version bigint PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(open)?;
    for migration in POSTGRES {
        let transaction = client.transaction().await.map_err(open)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&POSTGRES_LOCK_KEY])
            .await
            .map_err(open)?;
        let applied: i64 = transaction
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(open)?
            .get(0);
        check_known(applied, POSTGRES)?;
        if applied >= migration.version {
            continue;
        }
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(|error| failed_migration(migration, &describe_postgres(&error)))?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await
            .map_err(open)?;
        transaction.commit().await.map_err(open)?;
    }
    Ok(())
}

/// The newest version this binary knows.
pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |migration| migration.version)
}

fn check_known(applied: i64, migrations: &[Migration]) -> Result<(), StoreError> {
    let latest = latest(migrations);
    if applied > latest {
        return Err(StoreError::Open(format!(
            "the database schema is at version {applied}, newer than this binary knows \
             ({latest}); run a newer tracker"
        )));
    }
    Ok(())
}

fn failed_migration(migration: &Migration, error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Open(format!(
        "migration {:04}_{} failed: {error}",
        migration.version, migration.name
    ))
}

/// A PostgreSQL error with the server's message, which `Display` leaves out.
pub(crate) fn describe_postgres(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db_error) => format!("{error}: {db_error}"),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::store::migrate::{POSTGRES, SQLITE, latest};

    #[test]
    fn versions_are_consecutive_from_one_and_backends_agree() {
        for migrations in [SQLITE, POSTGRES] {
            for (index, migration) in migrations.iter().enumerate() {
                assert_eq!(migration.version, index as i64 + 1, "{}", migration.name);
            }
        }
        assert_eq!(latest(SQLITE), latest(POSTGRES));
        let names = |migrations: &[crate::store::migrate::Migration]| {
            migrations.iter().map(|m| m.name).collect::<Vec<_>>()
        };
        assert_eq!(names(SQLITE), names(POSTGRES));
    }
}
