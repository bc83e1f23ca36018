//! Shared test setup: a fresh store on each backend, a development-style init, and child
//! processes that run this same test binary as workers.

use crate::pg;
use diesel::{Connection, PgConnection, RunQueryDsl};
use kagi_hsm_core::{Hsm, HsmConfig, Session, StoreConfig};
use std::path::PathBuf;

pub use crate::hex_rand;
pub use crate::pg::PG_ADMIN_URL;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A fresh, empty store. Keeps its temp dir (and drops its PostgreSQL database) on drop.
pub struct TestStore {
    pub config: StoreConfig,
    pub dir: tempfile::TempDir,
    pg: Option<pg::Database>,
}

impl TestStore {
    pub fn new(backend: Backend) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => TestStore {
                config: StoreConfig::sqlite_in(dir.path()),
                dir,
                pg: None,
            },
            Backend::Postgres => {
                let db = pg::Database::create();
                TestStore {
                    config: StoreConfig::Postgres(db.url()),
                    dir,
                    pg: Some(db),
                }
            }
        }
    }

    pub fn url(&self) -> String {
        match &self.config {
            StoreConfig::Sqlite(p) => p.to_string_lossy().into_owned(),
            StoreConfig::Postgres(u) => u.clone(),
        }
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.config {
            StoreConfig::Sqlite(p) => Some(p.clone()),
            _ => None,
        }
    }

    pub fn pg_db(&self) -> Option<&str> {
        self.pg.as_ref().map(|d| d.name())
    }

    /// Run raw SQL against the store, as someone with database access (an attacker) would.
    pub fn exec(&self, sql: &str) -> usize {
        use diesel::SqliteConnection;
        match &self.config {
            StoreConfig::Sqlite(p) => {
                let mut c = SqliteConnection::establish(&p.to_string_lossy()).unwrap();
                diesel::sql_query("PRAGMA busy_timeout = 30000")
                    .execute(&mut c)
                    .unwrap();
                diesel::sql_query(sql).execute(&mut c).unwrap()
            }
            StoreConfig::Postgres(u) => {
                let mut c = PgConnection::establish(u).unwrap();
                diesel::sql_query(sql).execute(&mut c).unwrap()
            }
        }
    }
}

pub struct Instance {
    pub hsm: Hsm,
    pub admin: Session,
    pub token: String,
    pub share: String,
}

/// Initialize a one-share instance and log in as its administrator.
pub fn init(store: &TestStore) -> Instance {
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    let out = hsm.init(1, 1).unwrap();
    let token = out.admin_token.to_string();
    let admin = hsm.login(&token).unwrap();
    Instance {
        hsm,
        admin,
        token,
        share: out.shares[0].to_string(),
    }
}

/// Open an existing instance the way a restarted process does.
pub fn reopen(store: &TestStore, share: &str, token: &str) -> (Hsm, Session) {
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    assert!(hsm.unseal(share).unwrap().unsealed);
    let s = hsm.login(token).unwrap();
    (hsm, s)
}

/// Run the named test of this binary as a child process with the given environment.
pub fn spawn_worker(test_name: &str, env: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads", "1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::inherit());
    cmd.spawn().unwrap()
}

pub fn digest_of(i: u64) -> Vec<u8> {
    kagi_hsm_core::DigestAlg::Sha256.hash(&i.to_be_bytes())
}

/// In a worker child process: open the store named by `KAGI_STORE_URL`, unseal it with
/// `KAGI_SHARE` and log in with `KAGI_TOKEN`, as [`sigkill_rounds`] passes them.
pub fn worker_login() -> (Hsm, Session) {
    let url = std::env::var("KAGI_STORE_URL").unwrap();
    let hsm = Hsm::open(HsmConfig::new(StoreConfig::from_url(&url).unwrap())).unwrap();
    assert!(
        hsm.unseal(&std::env::var("KAGI_SHARE").unwrap())
            .unwrap()
            .unsealed
    );
    let s = hsm.login(&std::env::var("KAGI_TOKEN").unwrap()).unwrap();
    (hsm, s)
}

/// Run the worker test `test_name` against `store` `rounds` times, SIGKILLing it a little later
/// each round once `released` reads a first result from its output file; returns what each
/// round's output file held after the kill (`released` must drop a line cut short).
pub fn sigkill_rounds<T>(
    store: &TestStore,
    i: &Instance,
    test_name: &str,
    rounds: u64,
    released: impl Fn(&std::path::Path) -> Vec<T>,
) -> Vec<T> {
    let mut all = Vec::new();
    for round in 0..rounds {
        let out = store.dir.path().join(format!("{test_name}-{round}"));
        let env = [
            ("KAGI_WORKER", "1".to_string()),
            ("KAGI_STORE_URL", store.url()),
            ("KAGI_SHARE", i.share.clone()),
            ("KAGI_TOKEN", i.token.clone()),
            ("KAGI_OUT", out.to_string_lossy().into_owned()),
        ];
        let mut child = spawn_worker(test_name, &env);
        let t0 = std::time::Instant::now();
        while released(&out).is_empty() && t0.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(5 + 17 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let got = released(&out);
        eprintln!("round {round} killed after {} results", got.len());
        all.extend(got);
    }
    all
}
