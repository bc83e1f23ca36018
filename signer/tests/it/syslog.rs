//! Audit forwarding (issue 17, acceptance 6): `kagi serve --syslog` against Debian's rsyslog
//! with its GnuTLS stream driver listening on loopback (scripts/install-test-tools.sh installs
//! it). rsyslog is killed, 100 signatures are made, rsyslog comes back, and every record must
//! arrive in sequence order, a duplicate only ever as the same record again; then kagi itself
//! restarts and nothing is lost either.

use crate::common;

use base64::Engine;
use common::{free_port, Server};
use kagi_testkit::openssl::openssl;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An rsyslogd of the test's own: its config, certificates, work folder and output file in a
/// temp folder, in the foreground, touching nothing of the system's rsyslog.
struct Rsyslog {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        Self::start_with("anon")
    }

    /// `auth`: the gtls driver's AuthMode for clients (`anon`, or `x509/certvalid` to require
    /// a client certificate the same CA issued).
    fn start_with(auth: &str) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A CA and a server certificate for 127.0.0.1, as a collector's operator makes them.
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=syslog test CA",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        // A client certificate from the same CA, for a collector that requires one.
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=kagi",
            ],
        );
        std::fs::write(
            d.join("client.cnf"),
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "2",
                "-extfile",
                "client.cnf",
            ],
        );
        std::fs::create_dir(d.join("work")).unwrap();
        let port = free_port();
        let p = |name: &str| d.join(name).display().to_string();
        // %rawmsg% keeps each message exactly as kagi sent it (without the octet count).
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{auth}")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="{out}" template="raw")
"#,
            work = p("work"),
            ca = p("ca.pem"),
            cert = p("server.pem"),
            key = p("server.key"),
            out = p("received.log"),
        );
        std::fs::write(d.join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir,
            port,
            child: None,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(d.join("rsyslogd.pid"));
        let bin = if std::path::Path::new("/usr/sbin/rsyslogd").is_file() {
            "/usr/sbin/rsyslogd"
        } else {
            "rsyslogd"
        };
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd is needed: run scripts/install-test-tools.sh");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "rsyslogd never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: what rsyslog held and had not written is gone, as in a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("received.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of `name="..."` in a message's structured data.
fn sd_param<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    let rest = &line[start..];
    Some(&rest[..rest.find('"')?])
}

fn seq_of(line: &str) -> i64 {
    sd_param(line, "seq")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seq in: {line}"))
}

/// Every audit record as `kagi audit export` shows it (one JSON object a line).
fn exported(server: &Server) -> Vec<serde_json::Value> {
    let out = server.kagi_ok(&["audit", "export"]);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sign(server: &Server, n: usize, tag: &str) {
    let http = server.http();
    let token = server.token();
    for i in 0..n {
        let digest = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{tag} {i}").as_bytes(),
        ));
        let body = format!(r#"{{"key":"fw","digest":"{digest}"}}"#);
        let r = http.request("POST", "/api/v1/sign", Some(&token), Some(body.as_bytes()));
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

/// `kagi_syslog_lag_records` from `/metrics`.
fn lag(server: &Server) -> i64 {
    let body = server
        .http()
        .get("/metrics")
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("kagi_syslog_lag_records "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no kagi_syslog_lag_records in:\n{body}"))
}

/// Waits (at most a minute) until the collector holds every record `kagi audit export` shows,
/// then checks what it holds: each seq from 0 to the last, in order of first arrival, any
/// repeat the very same message, and each record's MAC and content as the audit API has them.
fn all_arrive(server: &Server, rsyslog: &Rsyslog) -> usize {
    let records = exported(server);
    let last = records.last().unwrap()["seq"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let lines = rsyslog.received();
        let have: std::collections::BTreeSet<i64> = lines.iter().map(|l| seq_of(l)).collect();
        if (0..=last).all(|s| have.contains(&s)) {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "after a minute the collector lacks records of 0..={last} (it has {} lines, {} records)\nkagi's log:\n{}",
            lines.len(),
            have.len(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut first: BTreeMap<i64, &str> = BTreeMap::new();
    let mut order = Vec::new();
    for l in &lines {
        let seq = seq_of(l);
        match first.get(&seq) {
            // A duplicate: the same seq, and the same message, so the collector can drop it.
            Some(earlier) => assert_eq!(earlier, l, "record {seq} arrived twice, differently"),
            None => {
                first.insert(seq, l);
                order.push(seq);
            }
        }
    }
    let in_order: Vec<i64> = (0..order.len() as i64).collect();
    assert_eq!(
        order, in_order,
        "records did not first arrive in sequence order"
    );
    for r in &records {
        let seq = r["seq"].as_i64().unwrap();
        let line = first[&seq];
        let mac = base64::engine::general_purpose::STANDARD
            .decode(r["mac"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            sd_param(line, "mac"),
            Some(hex::encode(&mac).as_str()),
            "{line}"
        );
        assert_eq!(sd_param(line, "macValid"), Some("true"), "{line}");
        // RFC 5424 header: PRI, VERSION 1, then HOSTNAME, APP-NAME and MSGID = the action.
        let fields: Vec<&str> = line.splitn(7, ' ').collect();
        assert!(
            fields[0].starts_with('<') && fields[0].ends_with(">1"),
            "{line}"
        );
        assert_eq!(fields[2], "kagi-test", "{line}");
        assert_eq!(fields[3], "kagi", "{line}");
        assert_eq!(fields[5], r["action"].as_str().unwrap(), "{line}");
        // MSG is the record as the audit API shows it.
        let msg = &line[line.find("] {").unwrap() + 2..];
        let json: serde_json::Value = serde_json::from_str(msg).unwrap();
        assert_eq!(&json, r, "{line}");
    }
    lines.len() - order.len()
}

fn forwarding_survives_a_collector_outage_and_a_restart(store: &[String]) {
    let mut rsyslog = Rsyslog::start();
    let mut args: Vec<String> = vec![
        "--syslog".into(),
        format!("tls://127.0.0.1:{}", rsyslog.port),
        "--syslog-ca".into(),
        rsyslog.ca().display().to_string(),
        "--syslog-hostname".into(),
        "kagi-test".into(),
    ];
    args.extend(store.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &args);
    server.kagi_ok(&["key", "create", "--name", "fw", "--alg", "ec-p256"]);
    sign(&server, 5, "before");
    all_arrive(&server, &rsyslog);

    // The collector crashes; signing goes on, and its records wait.
    let uses = |server: &Server| {
        exported(server)
            .iter()
            .filter(|r| r["action"] == "key.use")
            .count()
    };
    let before = uses(&server);
    rsyslog.kill();
    sign(&server, 100, "during");
    assert_eq!(uses(&server), before + 100);
    // /metrics shows them waiting.
    assert!(lag(&server) >= 100, "lag {}", lag(&server));
    rsyslog.run();
    let dups = all_arrive(&server, &rsyslog);
    // Once the collector has held them a little while, the cursor catches up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lag(&server) > 0 {
        assert!(Instant::now() < deadline, "lag stays {}", lag(&server));
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("after the outage: {dups} duplicate(s)");
    // One warning when the collector went away, one when it came back: no flood.
    let warnings = server
        .log()
        .lines()
        .filter(|l| l.contains("syslog collector"))
        .count();
    assert_eq!(warnings, 2, "{}", server.log());

    // kagi itself stops while the collector is down, and picks up from its durable cursor.
    rsyslog.kill();
    let dir = server.stop();
    rsyslog.run();
    let server = Server::start_in(dir, &args);
    sign(&server, 3, "after");
    all_arrive(&server, &rsyslog);
}

#[test]
fn audit_records_reach_rsyslog_through_an_outage_sqlite() {
    forwarding_survives_a_collector_outage_and_a_restart(&[]);
}

#[test]
fn audit_records_reach_rsyslog_through_an_outage_postgres() {
    let db = common::Database::create();
    forwarding_survives_a_collector_outage_and_a_restart(&["--database-url".into(), db.url()]);
}

/// A listener whose certificate the configured CA did not issue (someone on the network path,
/// or a collector set up with another CA) gets no audit record: the handshake is refused and
/// kagi's log says why.
#[test]
fn a_collector_the_configured_ca_did_not_certify_receives_nothing() {
    let impostor = Rsyslog::start();
    let trusted = Rsyslog::start();
    let args = [
        "--syslog".to_string(),
        format!("tls://127.0.0.1:{}", impostor.port),
        "--syslog-ca".to_string(),
        trusted.ca().display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("syslog collector") {
        assert!(Instant::now() < deadline, "no warning:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.log();
    assert!(
        log.contains("TLS handshake") && log.contains("certificate"),
        "{log}"
    );
    eprintln!(
        "{}",
        log.lines()
            .find(|l| l.contains("syslog collector"))
            .unwrap_or("")
    );
    // The records exist and wait in the database for a collector kagi can trust.
    assert!(!exported(&server).is_empty());
    assert!(impostor.received().is_empty());
    assert!(trusted.received().is_empty());
}

/// Two kagi processes on one PostgreSQL database, both configured to forward to the same
/// collector: one holds the cursor's lease at a time, and when it is killed the other takes
/// over from the cursor; the collector still gets every record, in order, duplicates identical.
#[test]
fn two_processes_on_one_database_share_the_forwarding() {
    use std::os::unix::fs::PermissionsExt;
    let db = common::Database::create();
    let rsyslog = Rsyslog::start();
    let args = [
        "--syslog".to_string(),
        format!("tls://127.0.0.1:{}", rsyslog.port),
        "--syslog-ca".to_string(),
        rsyslog.ca().display().to_string(),
        "--syslog-hostname".to_string(),
        "kagi-test".to_string(),
        "--database-url".to_string(),
        db.url(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = Server::start_in(tempfile::tempdir().unwrap(), &args);
    first.kagi_ok(&["key", "create", "--name", "fw", "--alg", "ec-p256"]);
    // The second process unseals from the same development shares.
    let second_dir = tempfile::tempdir().unwrap();
    let data = second_dir.path().join("kagi-data");
    std::fs::create_dir_all(data.join("unseal-shares")).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(first.data().join("unseal-shares")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join("unseal-shares").join(e.file_name())).unwrap();
    }
    std::fs::copy(first.data().join("admin.token"), data.join("admin.token")).unwrap();
    let second = Server::start_in(second_dir, &args);
    sign(&first, 10, "first");
    sign(&second, 10, "second");
    // One process forwards: with the collector up all along, nothing arrives twice.
    assert_eq!(all_arrive(&second, &rsyslog), 0, "both processes forwarded");
    // Whichever forwards, it goes away; the other takes over once its lease lapses.
    drop(first);
    sign(&second, 10, "alone");
    all_arrive(&second, &rsyslog);
}

/// A collector that requires a client certificate (rsyslog `x509/certvalid`) takes records
/// only from a kagi that presents one its CA issued (`--syslog-cert`, `--syslog-key`); without
/// it nothing is accepted and the records wait.
#[test]
fn a_collector_that_requires_a_client_certificate_gets_records_from_kagi_with_one() {
    let rsyslog = Rsyslog::start_with("x509/certvalid");
    let mut args = vec![
        "--syslog".to_string(),
        format!("tls://127.0.0.1:{}", rsyslog.port),
        "--syslog-ca".to_string(),
        rsyslog.ca().display().to_string(),
        "--syslog-hostname".to_string(),
        "kagi-test".to_string(),
    ];
    let without: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &without);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("syslog collector") {
        assert!(Instant::now() < deadline, "no warning:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(rsyslog.received().is_empty());
    let dir = server.stop();
    let d = rsyslog.dir.path();
    args.extend([
        "--syslog-cert".to_string(),
        d.join("client.pem").display().to_string(),
        "--syslog-key".to_string(),
        d.join("client.key").display().to_string(),
    ]);
    let with: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(dir, &with);
    all_arrive(&server, &rsyslog);
}
