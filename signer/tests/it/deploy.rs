//! `kagi serve` as an operator deploys it: under a host name (the TLS certificate, the banner and
//! the URLs in issued certificates name it; real curl and openssl check), with the operator's
//! own TLS certificate, refusing wildcard public URLs before anything is made, and
//! `--print-config` showing where each setting came from without showing a password.

use crate::common::{self, Database, KAGI};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variables `kagi serve` reads, removed from every child so the test's own
/// environment cannot change what it checks.
const SERVE_ENV: &[&str] = &[
    "KAGI_DATA",
    "KAGI_DATABASE_URL",
    "KAGI_LISTEN",
    "KAGI_HOSTNAME",
    "KAGI_PUBLIC_LISTEN",
    "KAGI_PUBLIC_URL",
    "KAGI_TLS_CERT",
    "KAGI_TLS_KEY",
    "KAGI_CONFIG",
    "KAGI_SIGNING_CA",
    "KAGI_TSA_POLICY_OID",
    "KAGI_EST_CA",
    "KAGI_EST_PROFILE",
    "KAGI_MAX_FAILED_LOGINS",
    "KAGI_FAILED_LOGIN_WINDOW_SECS",
    "KAGI_LOG_ENTRIES_PUBLIC",
    "KAGI_OPEN_TSA",
];

fn kagi_cmd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(KAGI);
    cmd.args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for var in SERVE_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    kagi_cmd(dir, args, env).output().unwrap()
}

/// A port free on `ip` a moment ago.
fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `kagi serve`, killed on drop.
struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
    /// What the banner says clients should use.
    url: String,
}

impl Running {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = kagi_cmd(dir, args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("kagi is listening on ") {
                        let _ = tx.send(url.trim().to_string());
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        // The channel closes when kagi exits without a banner: that fails at once.
        let Ok(url) = rx.recv_timeout(Duration::from_secs(180)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kagi serve did not start:\n{}", log.lock().unwrap());
        };
        Running { child, log, url }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` over HTTPS to `https://NAME:PORT/healthz`, resolving NAME to `ip` and trusting only
/// `ca`: the HTTP status once connected (retrying only while nothing accepts the connection;
/// a certificate the name does not match fails at once).
fn curl_status(name: &str, port: u16, ip: &str, ca: &Path, server: &Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
            .arg(format!("{name}:{port}:{ip}"))
            .arg("--cacert")
            .arg(ca)
            .arg(format!("https://{name}:{port}/healthz"))
            .output()
            .expect("the curl CLI is needed");
        let code = out.status.code();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        // 7: could not connect.
        assert!(
            code == Some(7) && Instant::now() < deadline,
            "curl https://{name}:{port} failed ({code:?}): {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    common::run_ok(Command::new("openssl").args(args).current_dir(dir))
}

/// The subjectAltName lines of a PEM certificate, as openssl prints them.
fn sans(dir: &Path, cert: &str) -> String {
    openssl(
        dir,
        &["x509", "-in", cert, "-noout", "-ext", "subjectAltName"],
    )
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Test 1: a host name reaches the TLS certificate (curl accepts it under that name), the
/// banner, and the CRL and OCSP URLs of an issued device certificate; the TSA names the policy
/// OID the environment set.
fn hostname_reaches_tls_banner_and_issued_certificates(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ip = "127.0.0.2";
    let (port, public_port) = (free_port_on(ip), free_port_on(ip));
    let listen = format!("{ip}:{port}");
    let public = format!("{ip}:{public_port}");
    let mut args = vec![
        "serve",
        "--data",
        "kagi-data",
        "--listen",
        &listen,
        "--public-listen",
        &public,
        "--hostname",
        "kagi.test",
        // An IP address as a second name: an IP SAN, and what the CLI connects to.
        "--hostname",
        ip,
    ];
    if let Some(url) = database_url {
        args.extend(["--database-url", url]);
    }
    let env = [("KAGI_TSA_POLICY_OID", "1.3.6.1.4.1.32473.77")];
    let server = Running::start(root, &args, &env);
    assert_eq!(server.url, format!("https://kagi.test:{port}"));
    let data = root.join("kagi-data");
    let tls_ca = data.join("tls-ca.pem");
    assert_eq!(curl_status("kagi.test", port, ip, &tls_ca, &server), "200");
    let names = sans(&data, "tls/server.pem");
    for want in ["DNS:kagi.test", "IP Address:127.0.0.2", "DNS:localhost"] {
        assert!(names.contains(want), "{want} not in {names}");
    }

    // A device certificate through the CLI: its CRL and OCSP URLs name the host.
    std::fs::write(root.join("dev.der"), crate::ca::device_csr("DEPLOY-1")).unwrap();
    let client_env = [("KAGI_URL", format!("https://{ip}:{port}"))];
    let client_env: Vec<(&str, &str)> = client_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(&run(
        root,
        &[
            "ca",
            "issue",
            "dev.der",
            "--profile",
            "device",
            "-o",
            "dev.pem",
        ],
        &client_env,
    ));
    let text = openssl(root, &["x509", "-in", "dev.pem", "-noout", "-text"]);
    let base = format!("http://kagi.test:{public_port}");
    assert!(
        text.contains(&format!("URI:{base}/crl/devices.crl")),
        "{text}"
    );
    assert!(text.contains(&format!("OCSP - URI:{base}/ocsp")), "{text}");
    // And the URL works for a relying party that resolves the name.
    let crl = Command::new("curl")
        .args(["-sS", "-f", "-o", "devices.crl", "--resolve"])
        .arg(format!("kagi.test:{public_port}:{ip}"))
        .arg(format!("{base}/crl/devices.crl"))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        crl.status.success(),
        "{}",
        String::from_utf8_lossy(&crl.stderr)
    );
    openssl(
        root,
        &["crl", "-inform", "DER", "-in", "devices.crl", "-noout"],
    );

    // The TSA policy OID came from the environment.
    std::fs::write(root.join("payload"), b"deploy").unwrap();
    openssl(
        root,
        &[
            "ts", "-query", "-data", "payload", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let tsa = Command::new("curl")
        .args(["-sS", "-f", "--resolve"])
        .arg(format!("kagi.test:{port}:{ip}"))
        .arg("--cacert")
        .arg(&tls_ca)
        .args(["-H", "Content-Type: application/timestamp-query", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .args(["--data-binary", "@req.tsq", "-o", "resp.tsr"])
        .arg(format!("https://kagi.test:{port}/tsa"))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        tsa.status.success(),
        "{}",
        String::from_utf8_lossy(&tsa.stderr)
    );
    let reply = openssl(root, &["ts", "-reply", "-in", "resp.tsr", "-text"]);
    assert!(
        reply.contains("Policy OID: 1.3.6.1.4.1.32473.77"),
        "{reply}"
    );
}

#[test]
fn hostname_reaches_tls_banner_and_issued_certificates_sqlite() {
    hostname_reaches_tls_banner_and_issued_certificates(None);
}

#[test]
fn hostname_reaches_tls_banner_and_issued_certificates_postgres() {
    let db = Database::create();
    hostname_reaches_tls_banner_and_issued_certificates(Some(&db.url()));
}

/// Another host name on the next start gets a certificate for it, on both TLS paths: kagi's
/// own CA (development instance: same root) and the local TLS CA of a sealed instance (made
/// anew, since its key is never kept).
#[test]
fn a_changed_hostname_gets_a_new_certificate_on_both_tls_paths() {
    let ip = "127.0.0.1";
    for sealed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let data = root.join("kagi-data");
        if sealed {
            ok(&run(
                root,
                &[
                    "init",
                    "--shares",
                    "1",
                    "--threshold",
                    "1",
                    "--data",
                    "kagi-data",
                ],
                &[],
            ));
        }
        let mut roots = Vec::new();
        for name in ["first.test", "second.test"] {
            let port = free_port_on(ip);
            let listen = format!("{ip}:{port}");
            let public = format!("{ip}:{}", free_port_on(ip));
            let server = Running::start(
                root,
                &[
                    "serve",
                    "--listen",
                    &listen,
                    "--public-listen",
                    &public,
                    "--hostname",
                    name,
                ],
                &[],
            );
            let status = curl_status(name, port, ip, &data.join("tls-ca.pem"), &server);
            assert!(!status.is_empty(), "{status}");
            let names = sans(&data, "tls/server.pem");
            assert!(names.contains(&format!("DNS:{name}")), "{names}");
            assert!(
                !names.contains("first.test") || name == "first.test",
                "{names}"
            );
            roots.push(std::fs::read(data.join("tls-ca.pem")).unwrap());
        }
        // kagi's own CA keeps its root; the local TLS CA is made again.
        assert_eq!(roots[0] == roots[1], !sealed, "sealed: {sealed}");
    }
}

/// Test 2: a wildcard listen address with no name to give clients refuses to start, says
/// which settings fix it, and makes no data folder.
#[test]
fn a_wildcard_address_is_never_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let port = free_port_on("127.0.0.1").to_string();
    let cases: [Vec<String>; 4] = [
        vec!["--listen".into(), format!("0.0.0.0:{port}")],
        vec!["--public-listen".into(), format!("0.0.0.0:{port}")],
        vec!["--listen".into(), format!("[::]:{port}")],
        vec![
            "--hostname".into(),
            "kagi.test".into(),
            "--public-url".into(),
            "http://0.0.0.0:8080".into(),
        ],
    ];
    for case in cases {
        let mut args = vec!["serve", "--data", "kagi-data"];
        args.extend(case.iter().map(String::as_str));
        let out = run(root, &args, &[]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{args:?} started: {err}");
        assert!(
            err.contains("--hostname") && err.contains("--public-url"),
            "{args:?}: {err}"
        );
        assert!(
            !root.join("kagi-data").exists(),
            "{args:?} made the data folder"
        );
    }
}

/// Test 3: the operator's own certificate and key: curl trusts it under its name, and kagi
/// writes no TLS material; files that cannot work are named before anything is made.
#[test]
fn own_tls_certificate_and_key_are_served_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (name, key) in [("byo", "byo.key"), ("other", "other.key")] {
        openssl(
            root,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                key,
                "-out",
                &format!("{name}.pem"),
                "-days",
                "30",
                "-subj",
                "/CN=byo.test",
                "-addext",
                "subjectAltName=DNS:byo.test",
            ],
        );
    }
    // The key in SEC1 form ("EC PRIVATE KEY"), as many tools write it.
    openssl(root, &["ec", "-in", "byo.key", "-out", "byo-sec1.key"]);

    // Refusals first: none may leave a data folder.
    for (args, says) in [
        (
            vec!["--tls-cert", "byo.pem", "--tls-key", "other.key"],
            "does not belong",
        ),
        (
            vec!["--tls-cert", "byo.pem", "--tls-key", "nope.key"],
            "nope.key",
        ),
        (
            vec!["--tls-cert", "byo.key", "--tls-key", "byo.key"],
            "no PEM certificate",
        ),
        (vec!["--tls-cert", "byo.pem"], "--tls-key"),
    ] {
        let mut all = vec!["serve", "--data", "kagi-data"];
        all.extend(args.iter().copied());
        let out = run(root, &all, &[]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            !root.join("kagi-data").exists(),
            "{args:?} made the data folder"
        );
    }

    let ip = "127.0.0.1";
    let port = free_port_on(ip);
    let listen = format!("{ip}:{port}");
    let public = format!("{ip}:{}", free_port_on(ip));
    // The pair from the environment, as a container would pass it.
    let server = Running::start(
        root,
        &[
            "serve",
            "--data",
            "kagi-data",
            "--listen",
            &listen,
            "--public-listen",
            &public,
        ],
        &[
            ("KAGI_TLS_CERT", "byo.pem"),
            ("KAGI_TLS_KEY", "byo-sec1.key"),
        ],
    );
    assert_eq!(
        curl_status("byo.test", port, ip, &root.join("byo.pem"), &server),
        "200"
    );
    let data = root.join("kagi-data");
    assert!(!data.join("tls").exists(), "kagi wrote tls/");
    assert!(!data.join("tls-ca.pem").exists(), "kagi wrote tls-ca.pem");
    let log = server.log();
    let cert = std::path::absolute(root.join("byo.pem")).unwrap();
    assert!(
        log.contains(&format!("your certificate {}", cert.display())),
        "the banner does not name the certificate:\n{log}"
    );
}

/// Test 4: `--print-config` shows values from the environment and the config file with their
/// origin, masks the database password, and creates nothing.
#[test]
fn print_config_shows_origins_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config: PathBuf = root.join("kagi.json");
    std::fs::write(
        &config,
        r#"{"signing_ca": "release-ca", "hostnames": ["cfg.test"], "public_listen": "0.0.0.0:8081"}"#,
    )
    .unwrap();
    let out = run(
        root,
        &[
            "serve",
            "--data",
            "kagi-data",
            "--config",
            "kagi.json",
            "--print-config",
        ],
        &[
            ("KAGI_LISTEN", "0.0.0.0:9443"),
            (
                "KAGI_DATABASE_URL",
                "postgres://kagi:hunter2@db.example:5432/kagi",
            ),
            ("KAGI_OPEN_TSA", "true"),
        ],
    );
    let text = ok(&out);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!common::stderr(&out).contains("hunter2"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = &v["settings"];
    let from = |k: &str| v["sources"][k].as_str().unwrap().to_string();
    assert_eq!(
        s["database_url"],
        "postgres://kagi:***@db.example:5432/kagi"
    );
    assert!(from("database_url").contains("KAGI_DATABASE_URL"));
    assert_eq!(s["listen"], "0.0.0.0:9443");
    assert!(from("listen").contains("KAGI_LISTEN"));
    assert_eq!(s["open_tsa"], true);
    assert_eq!(s["signing_ca"], "release-ca");
    assert!(
        from("signing_ca").contains("kagi.json"),
        "{}",
        from("signing_ca")
    );
    assert_eq!(s["hostnames"], serde_json::json!(["cfg.test"]));
    // The public URL defaults to the first host name and the public port.
    assert_eq!(s["public_url"], "http://cfg.test:8081");
    assert_eq!(from("public_url"), "default");
    assert_eq!(s["data"], "kagi-data");
    assert_eq!(from("data"), "flag --data");
    assert_eq!(s["tsa_policy_oid"], "1.3.6.1.4.1.32473.1");
    for key in [
        "est_ca",
        "est_profile",
        "max_failed_logins",
        "failed_login_window_secs",
        "log_entries_public",
        "tls_cert",
        "tls_key",
    ] {
        assert!(s.get(key).is_some(), "{key} missing: {text}");
    }
    assert!(!root.join("kagi-data").exists());
}

/// Issue 16: a client that sends an IP address as SNI (RFC 6066 forbids it, some clients do)
/// completes its handshake, and the service's log gets no warning line per handshake.
#[test]
fn an_ip_address_as_sni_is_accepted_quietly() {
    let server = common::Server::start();
    let hostport = server
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/');
    for _ in 0..3 {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                hostport,
                "-servername",
                "127.0.0.1",
                "-brief",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("CONNECTION ESTABLISHED"), "{text}");
    }
    // The server is still answering, and said nothing about the SNI.
    let r = server.http().request("GET", "/healthz", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let log = server.log();
    assert!(!log.contains("SNI"), "{log}");
}
