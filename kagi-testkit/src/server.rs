//! Runs the real `kagi` binary: a server in its own temp folder on a port the OS picks, and
//! client commands from that folder, as a user would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The `kagi` binary of the test executable's build: Cargo puts integration-test executables
/// in `<target>/<profile>/deps` and the package's binaries one folder up (where
/// `CARGO_BIN_EXE_kagi` points; the signer's tests check that this agrees with it).
pub fn kagi_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("kagi"))
            .unwrap();
        assert!(
            bin.is_file(),
            "{} is not built (cargo test -p signer builds it)",
            bin.display()
        );
        bin
    })
}

pub struct Server {
    /// `None` for a [`Server::shared`] folder: the process belongs to the shared instance.
    child: Option<Child>,
    /// Always `Some` until `stop` hands the folder back for a restart.
    dir: Option<tempfile::TempDir>,
    pub url: String,
    /// The plain-HTTP listener (CRLs, CA certificates, OCSP): http://127.0.0.1:PORT.
    pub public_url: String,
    stderr: Arc<Mutex<String>>,
    /// A [`Server::shared`] folder's turn on the instance, given back when the test drops it.
    _turn: Option<Turn>,
}

/// Tests take turns on the shared instance: `kagi audit verify` reads the audit head and the
/// records in separate queries, so a batch another test commits in between makes it report a
/// mismatch ("the audit head says 54 records but 53 are stored").
struct Turns {
    busy: Mutex<bool>,
    free: Condvar,
}

static TURNS: Turns = Turns {
    busy: Mutex::new(false),
    free: Condvar::new(),
};

struct Turn;

impl Turn {
    fn take() -> Turn {
        // A test that panicked during its turn has given it back (Drop): poisoning means nothing.
        let mut busy = TURNS.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            busy = TURNS
                .free
                .wait(busy)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *busy = true;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *TURNS.busy.lock().unwrap_or_else(PoisonError::into_inner) = false;
        TURNS.free.notify_one();
    }
}

/// A port that was free a moment ago (the plain-HTTP listener needs its URL before it binds,
/// since certificates name it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// `kagi serve` in a fresh folder, on 127.0.0.1 and an OS-chosen port; returns once
    /// /healthz answers over HTTPS.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, &[])
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::spawn(dir, extra, false)
    }

    /// A folder of the calling test's own on the one development instance this test binary
    /// shares (started by the first caller), for tests that only need a healthy instance and
    /// leave nothing another test counts: `kagi` runs from the folder, which reaches the
    /// instance's `kagi-data` through a symlink, so the defaults of a new user still apply.
    /// One test at a time has the instance (until it drops the folder); such a server cannot
    /// be stopped.
    pub fn shared() -> Server {
        static SHARED: OnceLock<Server> = OnceLock::new();
        let turn = Turn::take();
        let shared = SHARED.get_or_init(|| Self::spawn(tempfile::tempdir().unwrap(), &[], true));
        let dir = tempfile::Builder::new()
            .prefix("test-")
            .tempdir_in(shared.root())
            .unwrap();
        std::os::unix::fs::symlink(shared.data(), dir.path().join("kagi-data")).unwrap();
        Server {
            child: None,
            dir: Some(dir),
            url: shared.url.clone(),
            public_url: shared.public_url.clone(),
            stderr: shared.stderr.clone(),
            _turn: Some(turn),
        }
    }

    /// `watched`: the server outlives every test (it sits in a static, never dropped), so a
    /// shell between it and this process kills it and removes its folder when this process's
    /// end of the shell's stdin closes, i.e. when this process exits, however it exits.
    fn spawn(dir: tempfile::TempDir, extra: &[&str], watched: bool) -> Server {
        let public = format!("127.0.0.1:{}", free_port());
        let mut cmd = if watched {
            let mut sh = Command::new("sh");
            sh.args([
                "-c",
                r#""$0" "$@" </dev/null & pid=$!; read -r _line; kill -KILL "$pid"; wait "$pid"; rm -rf "$KAGI_TESTKIT_DIR""#,
            ])
            .arg(kagi_bin())
            .env("KAGI_TESTKIT_DIR", dir.path())
            .stdin(Stdio::piped());
            sh
        } else {
            let mut kagi = Command::new(kagi_bin());
            kagi.stdin(Stdio::null());
            kagi
        };
        cmd.args(["serve", "--data"])
            .arg(dir.path().join("kagi-data"))
            .args(["--listen", "127.0.0.1:0"]);
        if !extra.contains(&"--public-listen") {
            cmd.args(["--public-listen", &public]);
        }
        let mut child = cmd
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            // Keeps draining stderr for the server's whole life so it never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("kagi is listening on ") {
                        let _ = tx.send(url.trim().to_string());
                    }
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                // Closing a watched server's stdin makes its shell kill it (see `kill`).
                if child.stdin.take().is_none() {
                    let _ = child.kill();
                }
                let _ = child.wait();
                panic!("kagi serve did not start:\n{}", log.lock().unwrap());
            }
        };
        let server = Server {
            child: Some(child),
            dir: Some(dir),
            url,
            public_url: format!("http://{public}"),
            stderr: log,
            _turn: None,
        };
        server.wait_healthy();
        server
    }

    pub fn root(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn data(&self) -> PathBuf {
        self.root().join("kagi-data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.http().get("/healthz").call() {
                Ok(r) if r.status() == 200 => return,
                _ if Instant::now() > deadline => {
                    panic!("/healthz never answered:\n{}", self.log())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A raw HTTPS client trusting only this server's CA, for probing the API directly.
    /// The service's base URL (https://127.0.0.1:PORT).
    pub fn http_base(&self) -> &str {
        &self.url
    }

    pub fn http(&self) -> Http {
        Http::new(&self.url, &self.data().join("tls-ca.pem"))
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data().join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Runs `kagi ARGS` from the server's folder with only KAGI_URL set: the CA and token come
    /// from the defaults, as for a new user.
    pub fn kagi(&self, args: &[&str]) -> Output {
        Command::new(kagi_bin())
            .args(args)
            .current_dir(self.root())
            .env("KAGI_URL", &self.url)
            .env_remove("KAGI_CA")
            .env_remove("KAGI_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `kagi ARGS` as another credential (KAGI_TOKEN set).
    pub fn kagi_as(&self, token: &str, args: &[&str]) -> Output {
        Command::new(kagi_bin())
            .args(args)
            .current_dir(self.root())
            .env("KAGI_URL", &self.url)
            .env_remove("KAGI_CA")
            .env("KAGI_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `kagi ARGS` and fails the test with both outputs if it does not succeed.
    pub fn kagi_ok(&self, args: &[&str]) -> String {
        let out = self.kagi(args);
        assert!(
            out.status.success(),
            "kagi {args:?} failed\nstdout: {}\nstderr: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Submits and activates a policy document as the admin would (`kagi policy submit`, then
    /// `kagi policy activate`); returns its version. A fresh instance denies pipelines and lines
    /// until a policy allows them.
    pub fn activate_policy(&self, toml: &str) -> i64 {
        let file = format!("policy-{}.toml", crate::hex_rand(4));
        std::fs::write(self.path(&file), toml).unwrap();
        let out = self.kagi_ok(&["policy", "submit", &file]);
        let version: i64 = out
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no version in: {out}"));
        let done = self.kagi_ok(&["policy", "activate", &version.to_string()]);
        assert!(done.contains("is active"), "{done}");
        version
    }

    /// Activates [`allow_policy`] for `identities`; returns its version.
    pub fn allow(&self, identities: &[(&str, &str)]) -> i64 {
        self.activate_policy(&allow_policy(identities))
    }

    /// Stops the server and hands back its folder, e.g. to start it again.
    pub fn stop(mut self) -> tempfile::TempDir {
        assert!(
            self.child.is_some(),
            "a shared server cannot be stopped: use Server::start"
        );
        self.kill();
        self.dir.take().unwrap()
    }

    fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            // A watched server (the only kind with a stdin) is killed by its shell once the
            // shell's stdin closes; killing the shell would leave the server running.
            if child.stdin.take().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A policy that lets each identity, given as (kind, name) with kind `pipeline` or `line`, sign
/// with any key and issue under any profile, and leaves persons to their roles as the built-in
/// bootstrap policy does: what an officer activates so a test's pipelines and lines may work.
pub fn allow_policy(identities: &[(&str, &str)]) -> String {
    let mut rules = String::from(
        "@id(\"persons-by-role\")\npermit (principal is kagi::Person, action, resource);\n",
    );
    for (kind, name) in identities {
        let cedar = match *kind {
            "pipeline" => "Pipeline",
            "line" => "Line",
            "person" => "Person",
            other => panic!("unknown identity kind {other}"),
        };
        rules.push_str(&format!(
            "\n@id(\"allow-{kind}-{name}\")\npermit (principal == kagi::{cedar}::\"{name}\", action, resource);\n"
        ));
    }
    format!("description = \"tests: allow named pipelines and lines\"\nrules = '''\n{rules}'''\n")
}

pub struct Http {
    agent: ureq::Agent,
    base: String,
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts the one error shape and returns its code.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {v}"));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no error.message: {v}"
        );
        code.to_string()
    }
}

impl Http {
    pub fn new(base: &str, ca: &Path) -> Http {
        let pem = std::fs::read(ca).unwrap();
        let roots: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .build()
            .new_agent();
        Http {
            agent,
            base: base.to_string(),
        }
    }

    pub fn get(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.agent.get(format!("{}{}", self.base, path))
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Reply {
        let url = format!("{}{}", self.base, path);
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or(b""))
            }
        }
        .unwrap();
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(&resp.into_body().read_to_vec().unwrap()).into_owned();
        Reply { status, body }
    }
}

impl Http {
    /// POST a JSON body with a bearer token and extra headers; the answer whatever its status,
    /// with its `Retry-After`, if any.
    pub fn post_json_with(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (Reply, Option<String>) {
        let mut r = self
            .agent
            .post(format!("{}{}", self.base, path))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {token}"));
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        let resp = r.send(body).unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = String::from_utf8_lossy(&resp.into_body().read_to_vec().unwrap()).into_owned();
        (Reply { status, body }, retry_after)
    }

    /// POST with HTTP Basic credentials and a content type of our choosing (EST).
    pub fn post_basic(
        &self,
        path: &str,
        user: &str,
        password: &str,
        content_type: &str,
        body: &[u8],
    ) -> Reply {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let resp = self
            .agent
            .post(format!("{}{}", self.base, path))
            .header("Content-Type", content_type)
            .header("Authorization", format!("Basic {basic}"))
            .send(body)
            .unwrap();
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(&resp.into_body().read_to_vec().unwrap()).into_owned();
        Reply { status, body }
    }

    /// POST raw bytes, with a bearer token or none, and keep the answer's bytes (a binary
    /// protocol's reply: RFC 3161, OCSP).
    pub fn post_bytes(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut r = self
            .agent
            .post(format!("{}{}", self.base, path))
            .header("Content-Type", content_type);
        if let Some(t) = token {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        let resp = r.send(body).unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().read_to_vec().unwrap())
    }

    /// POST raw bytes with a bearer token and a content type (a CSR).
    pub fn post_raw(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> Reply {
        let resp = self
            .agent
            .post(format!("{}{}", self.base, path))
            .header("Content-Type", content_type)
            .header("Authorization", format!("Bearer {token}"))
            .send(body)
            .unwrap();
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(&resp.into_body().read_to_vec().unwrap()).into_owned();
        Reply { status, body }
    }
}

/// Runs a command (openssl) and returns its combined output, failing the test on non-zero exit.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
