//! `kagi serve --database-url postgres://...` against the machine's PostgreSQL, in a database of
//! its own that the test creates and drops. The admin connection defaults to the local trust
//! setup; set KAGI_TEST_PG_URL (as for the hsm-core tests) to point elsewhere.

use crate::common;

use common::{Database, Server};

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
