//! PostgreSQL databases for tests. Migrating a database costs more than copying one, so each
//! test's database is a `CREATE DATABASE … TEMPLATE` clone of one migrated once per set of
//! migrations (the template's name carries their fingerprint, so a changed migration gets a new
//! template instead of a stale one). Building the template is serialized across processes with
//! an advisory lock, so test binaries and whole suites running side by side share it safely.

use diesel::{Connection, PgConnection, RunQueryDsl};
use kagi_hsm_core::store::Store;
use kagi_hsm_core::StoreConfig;
use std::path::Path;
use std::sync::OnceLock;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Any constant works as long as nothing else takes the same advisory lock: "kagi".
const TEMPLATE_LOCK: i64 = 0x6b61_6769;

/// The administrative connection URL (`KAGI_TEST_PG_URL`, default the machine's PostgreSQL).
pub fn admin_url() -> String {
    std::env::var("KAGI_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_URL.into())
}

/// The URL of database `name` on the same server as [`admin_url`].
pub fn url_of(name: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

fn admin() -> PgConnection {
    let admin = admin_url();
    PgConnection::establish(&admin).unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin} is required for the store tests ({e}); scripts/test.sh starts it")
    })
}

fn exec(c: &mut PgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(c)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A database of a test's own, cloned from the migrated template; dropped on drop.
pub struct Database(String);

impl Database {
    pub fn create() -> Database {
        let template = template();
        let name = format!("kagi_t_{}", crate::hex_rand(6));
        exec(
            &mut admin(),
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        );
        Database(name)
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    pub fn url(&self) -> String {
        url_of(&self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&admin_url()) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
                .execute(&mut c);
        }
    }
}

/// The template's name, built by the first caller in this process that needs it.
pub fn template() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(build_template)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn build_template() -> String {
    let name = format!("kagi_tpl_{}", migrations_fingerprint());
    let mut c = admin();
    // Session-level: released when this connection closes, even if this process dies here.
    exec(&mut c, &format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"));
    let ready: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_database WHERE datname = '{name}' AND datistemplate"
    ))
    .get_result(&mut c)
    .unwrap();
    if ready.n == 0 {
        // A half-built one is left by a process killed while building: start over.
        exec(
            &mut c,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        exec(&mut c, &format!("CREATE DATABASE {name}"));
        // The product's own open path migrates it, so the template is what a first start makes.
        drop(
            Store::open(&StoreConfig::Postgres(url_of(&name)))
                .unwrap_or_else(|e| panic!("migrating the template {name}: {e}")),
        );
        // CREATE DATABASE … TEMPLATE refuses while anyone is connected to the template (the
        // closed pool's sessions may linger a moment): lock everyone out, then mark it ready.
        exec(
            &mut c,
            &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"),
        );
        exec(
            &mut c,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ),
        );
        exec(
            &mut c,
            &format!("ALTER DATABASE {name} WITH IS_TEMPLATE true"),
        );
    }
    exec(
        &mut c,
        &format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"),
    );
    name
}

/// SHA-256 over every migration file of the workspace (names and contents), shortened.
fn migrations_fingerprint() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&workspace).unwrap().flatten() {
        let dir = krate.path().join("migrations");
        if dir.is_dir() {
            collect(&dir, &mut files);
        }
    }
    assert!(
        !files.is_empty(),
        "no migrations found under {}",
        workspace.display()
    );
    files.sort();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for f in &files {
        let rel = f.strip_prefix(&workspace).unwrap();
        ctx.update(rel.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        ctx.update(&std::fs::read(f).unwrap());
        ctx.update(&[0]);
    }
    hex::encode(&ctx.finish().as_ref()[..8])
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
