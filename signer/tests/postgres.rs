//! `kagi serve --database-url postgres://...` against the machine's PostgreSQL, in a database of
//! its own that the test creates and drops. The admin connection defaults to the local trust
//! setup; set KAGI_TEST_POSTGRES_ADMIN_URL to point elsewhere.

mod common;

use common::Server;
use std::process::Command;

fn admin_url() -> String {
    std::env::var("KAGI_TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(admin_url())
        .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql must be installed to run the PostgreSQL tests");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Database(String);

impl Database {
    fn create() -> Database {
        let name = format!("kagi_signer_{}_{}", std::process::id(), rand_suffix());
        psql(&format!("CREATE DATABASE {name}"));
        Database(name)
    }

    fn url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        format!("{base}/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(admin_url())
            .args([
                "-tAc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
            ])
            .output();
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}")
}

#[test]
fn serve_on_postgres_limits_and_survives_restart() {
    let db = Database::create();
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir, &["--database-url", &url]);
    // PostgreSQL holds the store; the data folder holds only TLS material and dev secrets.
    assert!(!server.data().join("kagi.db").exists());
    std::fs::write(server.path("a.bin"), b"pg").unwrap();
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "pg",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "2",
    ]);
    server.kagi_ok(&["sign", "--key", "pg", "a.bin", "-o", "a.sig"]);

    let dir = server.stop();
    let server = Server::start_in(dir, &["--database-url", &url]);
    server.kagi_ok(&["sign", "--key", "pg", "a.bin", "-o", "a.sig"]);
    let out = server.kagi(&["sign", "--key", "pg", "a.bin", "-o", "a.sig"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("usage_limit_reached"));
    server.kagi_ok(&["audit", "verify"]);
}
