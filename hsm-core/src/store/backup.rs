//! A consistent copy of the embedded SQLite database while kagi runs on it (`kagi backup`).
//!
//! `VACUUM INTO` writes the database as one read transaction sees it: under WAL, a reader's
//! snapshot is fixed when it starts, and writers (the committer) go on committing meanwhile,
//! so the copy is a state the database was in, with every committed batch before it and none
//! after. SQLite's online backup API (`sqlite3_backup_*`) would do the same page by page, but
//! diesel reaches it only through the raw connection handle, which needs `unsafe`, and every
//! crate here forbids that. `VACUUM INTO` is plain SQL on a normal connection.
//!
//! PostgreSQL has its own tool for this (`pg_dump`); see the README.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use std::path::Path;

use crate::error::{HsmError, Result};

/// What a snapshot holds, read back from the copy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The audit log's size in the copy.
    pub audit_records: i64,
    /// The transparency log's size in the copy.
    pub log_entries: i64,
}

#[derive(QueryableByName)]
struct Check {
    #[diesel(sql_type = Text)]
    integrity_check: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A `file:` URI for `path` that opens an existing database read-write and never creates one
/// (a mistyped data folder must not leave an empty database behind).
fn existing_db_uri(path: &Path) -> Result<String> {
    let s = path.to_str().ok_or_else(|| {
        HsmError::BadInput(format!(
            "the database path {} is not valid UTF-8",
            path.display()
        ))
    })?;
    let mut uri = String::from("file:");
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=rw");
    Ok(uri)
}

fn store_err(what: &str, path: &Path) -> impl Fn(diesel::result::Error) -> HsmError {
    let what = format!("{what} {}", path.display());
    move |e| HsmError::Store(format!("{what}: {e}"))
}

/// Copy the SQLite database `db` into `out`, which must not exist or be an empty file (the
/// caller creates it with the mode it wants; SQLite keeps an existing file's mode), then open
/// the copy and check it: `PRAGMA integrity_check`, and the sizes of its audit and
/// transparency logs. On any error `out` may hold a partial copy: the caller removes it.
pub fn sqlite_snapshot(db: &Path, out: &Path) -> Result<SnapshotInfo> {
    if !db.is_file() {
        return Err(HsmError::BadInput(format!(
            "there is no SQLite database at {}: point --data at the folder 'kagi serve' uses (the one holding kagi.db)",
            db.display()
        )));
    }
    let out_str = out.to_str().ok_or_else(|| {
        HsmError::BadInput(format!(
            "the backup path {} is not valid UTF-8",
            out.display()
        ))
    })?;
    let mut conn = SqliteConnection::establish(&existing_db_uri(db)?)
        .map_err(|e| HsmError::Store(format!("cannot open {}: {e}", db.display())))?;
    // A running kagi holds write locks only for a batch's commit; wait those out.
    conn.batch_execute("PRAGMA busy_timeout = 30000;")
        .map_err(store_err("cannot set up the connection to", db))?;
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(out_str)
        .execute(&mut conn)
        .map_err(store_err("cannot copy", db))?;
    drop(conn);

    let mut copy = SqliteConnection::establish(&existing_db_uri(out)?)
        .map_err(|e| HsmError::Store(format!("cannot open the copy {}: {e}", out.display())))?;
    let checks: Vec<Check> = diesel::sql_query("PRAGMA integrity_check")
        .load(&mut copy)
        .map_err(store_err("cannot check the copy", out))?;
    let problems: Vec<&str> = checks
        .iter()
        .map(|c| c.integrity_check.as_str())
        .filter(|c| *c != "ok")
        .collect();
    if problems.is_empty() && !checks.is_empty() {
        let mut count = |sql: &str| -> Result<i64> {
            let rows: Vec<Count> = diesel::sql_query(sql)
                .load(&mut copy)
                .map_err(store_err("cannot read the copy", out))?;
            Ok(rows.first().map_or(0, |r| r.n))
        };
        return Ok(SnapshotInfo {
            audit_records: count("SELECT COUNT(*) AS n FROM audit_records")?,
            log_entries: count("SELECT COALESCE(MAX(size), 0) AS n FROM tlog_head")?,
        });
    }
    Err(HsmError::Store(format!(
        "the copy {} fails SQLite's integrity check ({}): the source database may be damaged; run 'kagi audit verify' against the running service",
        out.display(),
        problems.join("; ")
    )))
}
