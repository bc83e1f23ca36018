//! The real `kagi serve` for the benchmarks that go through its HTTPS API: the release binary
//! (rebuilt first, so a stale one is never measured), a server on a free port in a scratch folder,
//! and an HTTPS client that trusts that server's TLS CA.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

pub fn kagi_binary() -> PathBuf {
    if let Ok(p) = std::env::var("KAGI_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    // Always (re)build: a stale binary would measure old code. A no-op when up to date.
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "signer"])
        .current_dir(&root)
        .status()
        .expect("cargo build --release -p signer");
    assert!(status.success(), "cannot build the kagi binary");
    target.join("release/kagi")
}

pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// The server's process id (to read its CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &Path) -> Server {
    start_with(dir, &[])
}

/// [`start`] with more `kagi serve` arguments (witnesses, say).
pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(kagi_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--public-listen", "off"])
        .args(extra)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kagi serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(u) = l.strip_prefix("kagi is listening on ") {
                    break u.trim().to_string();
                }
            }
            _ => panic!("kagi serve did not start"),
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

pub fn agent(ca_pem: &Path) -> ureq::Agent {
    let pem = std::fs::read(ca_pem).expect("tls-ca.pem");
    let roots: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    // One kept-alive connection per client thread: ureq keeps 3 per host by default, so
    // most requests of a many-threaded bench would pay a TLS handshake.
    ureq::Agent::config_builder()
        .tls_config(tls)
        .max_idle_connections(256)
        .max_idle_connections_per_host(256)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Runs a `kagi` client command in `dir` against the server at `url`; its standard output.
pub fn cli(dir: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new(kagi_binary())
        .args(args)
        .current_dir(dir)
        .env("KAGI_URL", url)
        .output()
        .expect("kagi");
    assert!(
        out.status.success(),
        "kagi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
