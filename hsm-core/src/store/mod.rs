//! Durable storage: one diesel schema and one set of migrations for SQLite (the embedded
//! default) and PostgreSQL (several kagi processes sharing one database).

pub mod backup;
pub mod schema;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{HsmError, Result};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Either backend behind one connection type, so every query is written once.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreConfig {
    /// `postgres://…` / `postgresql://…`, `sqlite://PATH`, or a plain file path (SQLite).
    pub fn from_url(url: &str) -> Result<StoreConfig> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreConfig::Postgres(url.to_string()))
        } else if let Some(p) = url.strip_prefix("sqlite://") {
            Ok(StoreConfig::Sqlite(PathBuf::from(p)))
        } else if url.contains("://") {
            Err(HsmError::BadInput(format!(
                "unsupported database URL scheme in '{}': use postgres://… or sqlite://PATH",
                url.split("://").next().unwrap_or("")
            )))
        } else if url.is_empty() {
            Err(HsmError::BadInput("empty database URL".into()))
        } else {
            Ok(StoreConfig::Sqlite(PathBuf::from(url)))
        }
    }

    /// The default embedded database in a data directory.
    pub fn sqlite_in(dir: &Path) -> StoreConfig {
        StoreConfig::Sqlite(dir.join("kagi.db"))
    }

    fn url(&self) -> String {
        match self {
            StoreConfig::Sqlite(p) => p.to_string_lossy().into_owned(),
            StoreConfig::Postgres(u) => u.clone(),
        }
    }
}

/// SQLite settings every connection needs. synchronous=FULL: a commit that reached the disk
/// is the only thing that lets a signature out, so losing one would hand back spent uses.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut AnyConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        if let AnyConnection::Sqlite(c) = conn {
            c.batch_execute(
                "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

pub type Conn = PooledConnection<ConnectionManager<AnyConnection>>;

#[derive(Clone)]
pub struct Store {
    pool: Pool<ConnectionManager<AnyConnection>>,
    pub(crate) config: StoreConfig,
}

impl Store {
    pub fn open(config: &StoreConfig) -> Result<Store> {
        if let StoreConfig::Sqlite(p) = config {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    HsmError::Store(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        if let StoreConfig::Sqlite(p) = config {
            restrict_sqlite_files(p)?;
        }
        let url = config.url();
        // Migrate on a plain connection first; the pool then only sees a current schema.
        // PostgreSQL is connected to directly: through the multi-backend connection libpq's
        // reason is lost ("Invalid connection url for multiconnection").
        let mut conn = match config {
            StoreConfig::Postgres(u) => AnyConnection::Postgresql(
                PgConnection::establish(u).map_err(|e| postgres_unreachable(u, &e))?,
            ),
            StoreConfig::Sqlite(_) => AnyConnection::establish(&url).map_err(|e| {
                HsmError::Store(format!(
                    "cannot open the database ({}): {e}",
                    redact_url(&url)
                ))
            })?,
        };
        if let AnyConnection::Sqlite(c) = &mut conn {
            c.batch_execute("PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL;")?;
        }
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| HsmError::Store(format!("database migration failed: {e}")))?;
        if let StoreConfig::Sqlite(p) = config {
            // WAL mode has made the -wal and -shm files by now.
            restrict_sqlite_files(p)?;
        }
        drop(conn);
        // Up to 8 connections, opened as load needs them: r2d2's default opens all 8 at once
        // for every process and every reopened HSM, which alone exhausted PostgreSQL's 100
        // client slots while several test binaries ran beside each other.
        let pool = Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(ConnectionManager::<AnyConnection>::new(url.clone()))
            .map_err(|e| {
                HsmError::Store(format!(
                    "cannot open a connection pool ({}): {e}",
                    redact_url(&url)
                ))
            })?;
        Ok(Store {
            pool,
            config: config.clone(),
        })
    }

    /// Whether the database answers within `timeout`: a pooled connection (checked out as
    /// usual, so a dead one is replaced) runs `SELECT 1`.
    pub fn ping(&self, timeout: Duration) -> Result<()> {
        let mut c = self
            .pool
            .get_timeout(timeout)
            .map_err(|e| HsmError::Store(format!("no database connection: {e}")))?;
        c.batch_execute("SELECT 1")?;
        Ok(())
    }

    pub fn conn(&self) -> Result<Conn> {
        self.pool
            .get()
            .map_err(|e| HsmError::Store(format!("no database connection: {e}")))
    }
}

/// Where a `postgres://user[:password]@host[:port]/database` URL points, as "host:port as
/// user" (libpq's defaults where parts are left out), without the password.
fn postgres_target(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or(""), host),
        None => ("", authority),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let host = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    let user = if user.is_empty() {
        "the default user"
    } else {
        user
    };
    format!("{host} as {user}")
}

/// A PostgreSQL connection that failed, said so that the operator can act: where, as whom, and
/// libpq's reason (with any password in the URL blanked out of it).
fn postgres_unreachable(url: &str, err: &diesel::ConnectionError) -> HsmError {
    // libpq's message spans lines and tabs; one line reads better after "error:".
    let mut reason = err
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(password) = url
        .split_once("://")
        .and_then(|(_, r)| r.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
    {
        reason = reason.replace(password, "…");
    }
    HsmError::Store(format!(
        "cannot connect to PostgreSQL at {}: {reason} (check the URL's form, postgres://user[:password]@host[:port]/database, and that the server runs and accepts this user)",
        postgres_target(url)
    ))
}

/// Never print a password that may sit in a PostgreSQL URL.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The database holds sealed keys, token hashes and the audit log: only its owner reads it.
/// The file is created 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
/// database's mode), and files an older kagi left wider are narrowed.
#[cfg(unix)]
fn restrict_sqlite_files(db: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let denied = |p: &std::path::Path, e: std::io::Error| {
        HsmError::Store(format!(
            "cannot make {} readable by its owner only: {e}",
            p.display()
        ))
    };
    if !db.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)
            .map_err(|e| denied(db, e))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| denied(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_sqlite_files(_db: &std::path::Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_target_names_host_port_and_user_without_the_password() {
        assert_eq!(
            postgres_target("postgres://nobody:s3cret@db.example:6000/kagi"),
            "db.example:6000 as nobody"
        );
        assert_eq!(
            postgres_target("postgresql://127.0.0.1/x"),
            "127.0.0.1:5432 as the default user"
        );
    }

    #[derive(diesel::QueryableByName)]
    struct Pragma {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        synchronous: i64,
    }

    #[derive(diesel::QueryableByName)]
    struct Journal {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }

    /// A lost commit would hand back spent uses: every pooled SQLite connection must run WAL
    /// with synchronous=FULL (2).
    #[test]
    fn sqlite_connections_are_wal_and_fully_synchronous() {
        use diesel::RunQueryDsl;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::sqlite_in(dir.path())).unwrap();
        for _ in 0..3 {
            let mut c = store.conn().unwrap();
            let p: Pragma = diesel::sql_query("PRAGMA synchronous")
                .get_result(&mut *c)
                .unwrap();
            assert_eq!(p.synchronous, 2);
            let j: Journal = diesel::sql_query("PRAGMA journal_mode")
                .get_result(&mut *c)
                .unwrap();
            assert_eq!(j.journal_mode, "wal");
        }
    }

    #[test]
    fn urls() {
        assert!(matches!(
            StoreConfig::from_url("postgres://x/y").unwrap(),
            StoreConfig::Postgres(_)
        ));
        assert_eq!(
            StoreConfig::from_url("sqlite:///tmp/a.db").unwrap(),
            StoreConfig::Sqlite("/tmp/a.db".into())
        );
        assert!(StoreConfig::from_url("mysql://x").is_err());
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://…@h/db");
    }

    #[cfg(unix)]
    #[test]
    fn sqlite_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kagi.db");
        let _store = Store::open(&StoreConfig::Sqlite(db.clone())).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", db.display());
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{path}: {mode:o}");
        }
        // An older instance's wider files are narrowed when kagi opens them.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _again = Store::open(&StoreConfig::Sqlite(db.clone())).unwrap();
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
