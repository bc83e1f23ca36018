//! The witness's state: one SQLite file in its data folder (`witness.db`, mode 0600,
//! `synchronous=FULL`), holding its name and, per log origin, the latest checkpoint it cosigned.
//!
//! The check of a request and the save of its checkpoint run in one `BEGIN IMMEDIATE`
//! transaction (SQLite's write lock is taken before the row is read), and the server holds a
//! process-wide lock around it too, so no two requests are ever checked against the same state.
//! The answer is sent only after the commit returned, which with `synchronous=FULL` means the
//! new size is on disk.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

diesel::table! {
    witness_logs (origin) {
        origin -> Text,
        size -> BigInt,
        root -> Binary,
        note -> Text,
        updated -> BigInt,
    }
}

diesel::table! {
    witness_meta (k) {
        k -> Text,
        v -> Text,
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS witness_meta (k TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS witness_logs (
    origin TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note TEXT NOT NULL,
    updated INTEGER NOT NULL
);
";

/// The database file in a data folder.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("witness.db")
}

/// One log's latest cosigned checkpoint.
#[derive(Debug, Clone, Queryable)]
pub struct LogState {
    pub origin: String,
    pub size: i64,
    pub root: Vec<u8>,
    pub note: String,
    /// Unix seconds of the last cosignature.
    pub updated: i64,
}

/// Open the witness database in `dir`, creating it (0600) if `create`.
pub fn open(dir: &Path, create: bool) -> Result<SqliteConnection> {
    let path = db_path(dir);
    if !path.exists() {
        if !create {
            return Err(anyhow!(
                "{} does not exist: this is not a witness data folder; run 'kagi witness init --data {} --name NAME' first",
                path.display(),
                dir.display()
            ));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} readable by its owner only", path.display()))?;
    let url = path.to_str().ok_or_else(|| {
        anyhow!(
            "the path {} is not UTF-8: choose another --data folder",
            path.display()
        )
    })?;
    let mut c = SqliteConnection::establish(url)
        .with_context(|| format!("cannot open the witness database {}", path.display()))?;
    c.batch_execute(
        "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
    )
    .with_context(|| format!("cannot set up the witness database {}", path.display()))?;
    c.batch_execute(SCHEMA)
        .with_context(|| format!("cannot create the tables of {}", path.display()))?;
    Ok(c)
}

pub fn set_meta(c: &mut SqliteConnection, key: &str, value: &str) -> QueryResult<()> {
    diesel::insert_into(witness_meta::table)
        .values((witness_meta::k.eq(key), witness_meta::v.eq(value)))
        .on_conflict(witness_meta::k)
        .do_update()
        .set(witness_meta::v.eq(value))
        .execute(c)
        .map(|_| ())
}

pub fn meta(c: &mut SqliteConnection, key: &str) -> QueryResult<Option<String>> {
    witness_meta::table
        .filter(witness_meta::k.eq(key))
        .select(witness_meta::v)
        .first(c)
        .optional()
}

/// The latest checkpoint of `origin`, in the caller's transaction.
pub fn latest(c: &mut SqliteConnection, origin: &str) -> QueryResult<Option<LogState>> {
    witness_logs::table
        .filter(witness_logs::origin.eq(origin))
        .first(c)
        .optional()
}

/// Every log's latest checkpoint.
pub fn all(c: &mut SqliteConnection) -> QueryResult<Vec<LogState>> {
    witness_logs::table
        .order(witness_logs::origin.asc())
        .load(c)
}

/// Save `origin`'s new latest checkpoint, in the caller's transaction.
pub fn save(c: &mut SqliteConnection, s: &LogState) -> QueryResult<()> {
    diesel::insert_into(witness_logs::table)
        .values((
            witness_logs::origin.eq(&s.origin),
            witness_logs::size.eq(s.size),
            witness_logs::root.eq(&s.root),
            witness_logs::note.eq(&s.note),
            witness_logs::updated.eq(s.updated),
        ))
        .on_conflict(witness_logs::origin)
        .do_update()
        .set((
            witness_logs::size.eq(s.size),
            witness_logs::root.eq(&s.root),
            witness_logs::note.eq(&s.note),
            witness_logs::updated.eq(s.updated),
        ))
        .execute(c)
        .map(|_| ())
}

/// Delete `origin`'s saved checkpoint, returning it: the operator's deliberate reset of one log
/// (`kagi witness forget`). One write transaction, so it never interleaves with a check-and-save.
pub fn forget(c: &mut SqliteConnection, origin: &str) -> QueryResult<Option<LogState>> {
    c.immediate_transaction(|c| {
        let state = latest(c, origin)?;
        diesel::delete(witness_logs::table.filter(witness_logs::origin.eq(origin))).execute(c)?;
        Ok(state)
    })
}
