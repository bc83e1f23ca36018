//! Audit forwarding: every audit record, in sequence order, to a syslog collector as RFC 5424
//! over TLS (RFC 5425), from a thread of its own that reads the database, so signing never
//! waits for the collector.
//!
//! Delivery is at-least-once. RFC 5425 has no acknowledgement, and bytes a socket accepted are
//! not yet the collector's: a collector that dies takes what sat in its socket with it. So the
//! durable cursor (table `syslog_cursors`, the first record not known delivered) only moves
//! past records once the connection they went out on has stayed open [`CONFIRM_AFTER`] longer,
//! with the collector's kernel having acknowledged every byte (Linux's send queue is empty);
//! after any break, kagi reconnects and sends again from the cursor. A collector therefore sees
//! some records twice after an outage, each time with the same `seq`, and drops the second.
//!
//! Several kagi processes on one database: the cursor row carries a lease, taken and renewed
//! with a compare-and-set, so one process forwards to a collector at a time; when it stops,
//! another takes over after the lease lapses and goes on from the cursor.

pub mod format;

use anyhow::{Context, Result};
use kagi_hsm_core::Hsm;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A record counts as delivered once its connection has stayed healthy this long after it was
/// written: long enough for a collector to take it from its socket into its queue and file.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(3);
/// How long one process holds the forwarding lease without renewing it.
const LEASE: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often the database is asked for new records when there were none.
const POLL: Duration = Duration::from_millis(250);
const BATCH: i64 = 500;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A collector that takes no bytes for this long counts as down.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// While the collector stays down, the warning is repeated at most this often.
const WARN_EVERY: Duration = Duration::from_secs(300);

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// As configured (`tls://HOST:PORT`); also the cursor's name in the database.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// PEM file of the CA that issued the collector's certificate.
    pub ca: std::path::PathBuf,
    /// The certificate chain and key kagi presents when the collector asks for one.
    pub client: Option<crate::config::OwnTls>,
    /// HOSTNAME in each message.
    pub hostname: String,
}

/// RFC 5425's port.
pub const DEFAULT_PORT: u16 = 6514;

/// `tls://HOST[:PORT]` as (host, port).
pub fn parse_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("tls://").ok_or_else(|| {
        format!("'{url}' is not tls://HOST:PORT (kagi forwards over TLS only, RFC 5425)")
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, "")) => (h, DEFAULT_PORT),
            Some((h, p)) => (
                h,
                p.strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("'{url}' has no valid port after the address"))?,
            ),
            None => return Err(format!("'{url}' opens '[' without closing it")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("'{p}' in '{url}' is not a port number"))?,
            ),
            None => (rest, DEFAULT_PORT),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return Err(format!("'{url}' names no host: give tls://HOST:PORT"));
    }
    Ok((host.to_string(), port))
}

/// The TLS client configuration: only the given CA is trusted, the collector's certificate
/// must name the host of the URL, and kagi presents its client certificate when it has one.
pub fn client_config(target: &SyslogTarget) -> Result<Arc<rustls::ClientConfig>> {
    let ca = target.ca.as_path();
    let dir = ca.parent().unwrap_or(Path::new("."));
    let certs = crate::tls::read_certs(ca, dir)
        .with_context(|| format!("the syslog collector's CA {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .with_context(|| format!("{} holds a certificate rustls cannot use", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &target.client {
        None => builder.with_no_client_auth(),
        Some(own) => {
            let dir = own.cert.parent().unwrap_or(Path::new("."));
            let chain = crate::tls::read_certs(&own.cert, dir)
                .with_context(|| format!("the syslog client certificate {}", own.cert.display()))?;
            let bytes = std::fs::read(&own.key)
                .with_context(|| format!("cannot read {}", own.key.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a PEM private key (PKCS#8, SEC1 or RSA): {e}",
                    own.key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).with_context(|| {
                format!(
                    "{} and {} do not make a usable client certificate",
                    own.cert.display(),
                    own.key.display()
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// Starts the forwarder's thread. `instance` names this kagi instance (its data folder): the
/// lease is held in the name of the machine and that folder, so a restarted kagi takes its
/// own lease back at once instead of waiting for it to lapse, while another process (another
/// folder or machine) on the same database waits.
pub fn spawn(
    hsm: Hsm,
    target: SyslogTarget,
    tls: Arc<rustls::ClientConfig>,
    instance: &Path,
) -> Result<()> {
    let machine = system_hostname().unwrap_or_else(|| target.hostname.clone());
    let folder = std::path::absolute(instance).unwrap_or_else(|_| instance.to_path_buf());
    let holder = format!("{machine}:{}", folder.display());
    let mut f = Forwarder {
        hsm,
        target,
        tls,
        holder,
        link: None,
        cursor: None,
        claimed_at: None,
        down: None,
        told_missing: -1,
    };
    std::thread::Builder::new()
        .name("kagi-syslog".into())
        .spawn(move || f.run())
        .context("cannot start the audit forwarding thread")?;
    Ok(())
}

struct Forwarder {
    hsm: Hsm,
    target: SyslogTarget,
    tls: Arc<rustls::ClientConfig>,
    holder: String,
    link: Option<Link>,
    /// The durable cursor as this process last read or moved it, while it holds the lease.
    cursor: Option<i64>,
    claimed_at: Option<Instant>,
    down: Option<Outage>,
    /// The highest missing record already reported, so each gap is logged once.
    told_missing: i64,
}

/// The collector has been unreachable since `since`.
struct Outage {
    since: Instant,
    warned_at: Instant,
    backoff: Duration,
}

/// One TLS connection to the collector, with what was sent on it and not yet confirmed.
struct Link {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// The next record to send on this connection.
    next: i64,
    /// (everything below this was sent, when) in sending order.
    unconfirmed: VecDeque<(i64, Instant)>,
}

impl Forwarder {
    fn run(&mut self) {
        loop {
            let pause = match self.step() {
                Ok(true) => Duration::ZERO,
                Ok(false) => POLL,
                Err(pause) => pause,
            };
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }

    /// One round: hold the lease, be connected, confirm, send a batch. `Ok(true)`: records were
    /// sent (look again at once); `Ok(false)`: nothing new; `Err(pause)`: wait that long.
    fn step(&mut self) -> std::result::Result<bool, Duration> {
        if self.hsm.is_sealed() {
            self.link = None;
            return Err(Duration::from_secs(1));
        }
        self.hold_lease()?;
        let Some(cursor) = self.cursor else {
            return Err(POLL);
        };
        if self.link.is_none() {
            self.connect(cursor)?;
        }
        self.confirm()?;
        self.send_batch()
    }

    fn hold_lease(&mut self) -> std::result::Result<(), Duration> {
        if self.cursor.is_some() && self.claimed_at.is_some_and(|t| t.elapsed() < RENEW_EVERY) {
            return Ok(());
        }
        match self
            .hsm
            .feed_cursor_claim(&self.target.url, &self.holder, LEASE.as_millis() as i64)
        {
            Ok(Some(c)) => {
                if self.cursor.is_none() {
                    log::info!(
                        "forwarding audit records to {} from record {c} on",
                        self.target.url
                    );
                }
                self.cursor = Some(c);
                self.claimed_at = Some(Instant::now());
                Ok(())
            }
            Ok(None) => {
                // Another kagi process forwards to this collector.
                self.cursor = None;
                self.link = None;
                Err(RENEW_EVERY)
            }
            Err(e) => {
                log::warn!(
                    "audit forwarding to {}: cannot read its cursor: {e}",
                    self.target.url
                );
                self.cursor = None;
                self.link = None;
                Err(RENEW_EVERY)
            }
        }
    }

    fn connect(&mut self, cursor: i64) -> std::result::Result<(), Duration> {
        match open(&self.target, &self.tls) {
            Ok(stream) => {
                if let Some(down) = self.down.take() {
                    log::warn!(
                        "syslog collector {} is reachable again after {} s; sending audit records from {cursor} on",
                        self.target.url,
                        down.since.elapsed().as_secs()
                    );
                }
                self.link = Some(Link {
                    stream,
                    next: cursor,
                    unconfirmed: VecDeque::new(),
                });
                Ok(())
            }
            Err(e) => Err(self.broken(&format!("cannot connect: {e:#}"))),
        }
    }

    /// The connection failed: drop it (what it did not confirm is sent again from the cursor)
    /// and say how long to wait. Warns at the start of an outage and then rarely.
    fn broken(&mut self, why: &str) -> Duration {
        self.link = None;
        let now = Instant::now();
        match &mut self.down {
            None => {
                log::warn!(
                    "syslog collector {}: {why}; audit records wait in the database and are sent once it can be reached",
                    self.target.url
                );
                self.down = Some(Outage {
                    since: now,
                    warned_at: now,
                    backoff: Duration::from_secs(1),
                });
                Duration::from_secs(1)
            }
            Some(down) => {
                if now.duration_since(down.warned_at) >= WARN_EVERY {
                    log::warn!(
                        "syslog collector {} still unreachable after {} s: {why}",
                        self.target.url,
                        down.since.elapsed().as_secs()
                    );
                    down.warned_at = now;
                }
                down.backoff = (down.backoff * 2).min(BACKOFF_MAX);
                down.backoff
            }
        }
    }

    /// Moves the cursor past records whose connection stayed healthy [`CONFIRM_AFTER`] after
    /// they were written.
    fn confirm(&mut self) -> std::result::Result<(), Duration> {
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        let due = link
            .unconfirmed
            .front()
            .is_some_and(|(_, at)| at.elapsed() >= CONFIRM_AFTER);
        if !due {
            return Ok(());
        }
        match healthy(&mut link.stream) {
            Health::Open => {}
            // Bytes are still in flight: ask again next round.
            Health::Unacknowledged => return Ok(()),
            Health::Closed(why) => return Err(self.broken(&why)),
        }
        let mut upto = None;
        while let Some((end, at)) = link.unconfirmed.front().copied() {
            if at.elapsed() < CONFIRM_AFTER {
                break;
            }
            upto = Some(end);
            link.unconfirmed.pop_front();
        }
        if let Some(end) = upto {
            match self
                .hsm
                .feed_cursor_advance(&self.target.url, &self.holder, end)
            {
                Ok(_) => self.cursor = Some(end.max(self.cursor.unwrap_or(0))),
                Err(e) => log::warn!(
                    "audit forwarding to {}: cannot store its cursor ({e}); records may be sent again",
                    self.target.url
                ),
            }
        }
        Ok(())
    }

    fn send_batch(&mut self) -> std::result::Result<bool, Duration> {
        let Some(link) = &mut self.link else {
            return Ok(false);
        };
        let from = link.next;
        let feed = match self.hsm.audit_feed(from, BATCH) {
            Ok(f) => f,
            Err(e) => {
                log::warn!(
                    "audit forwarding to {}: cannot read the audit log: {e}",
                    self.target.url
                );
                return Err(Duration::from_secs(1));
            }
        };
        let end = feed
            .records
            .last()
            .map(|(ev, _)| ev.seq + 1)
            .into_iter()
            .chain(feed.missing.last().map(|m| m + 1))
            .max()
            .unwrap_or(from);
        if end <= from {
            return Ok(false);
        }
        for m in &feed.missing {
            if *m > self.told_missing {
                log::error!(
                    "audit record {m} is missing from the database (deleted behind kagi's back); the syslog collector will see a gap there ('kagi audit verify' names it)"
                );
                self.told_missing = *m;
            }
        }
        let mut bytes = Vec::new();
        for (ev, mac_ok) in &feed.records {
            if !mac_ok {
                log::error!(
                    "audit record {} does not match its MAC (changed behind kagi's back); it is forwarded marked macValid=\"false\"",
                    ev.seq
                );
            }
            let msg = format::message(ev, *mac_ok, &self.target.hostname);
            bytes.extend_from_slice(&format::frame(&msg));
        }
        let written = link
            .stream
            .write_all(&bytes)
            .and_then(|()| link.stream.flush());
        if let Err(e) = written {
            return Err(self.broken(&format!("sending failed: {e}")));
        }
        link.next = end;
        link.unconfirmed.push_back((end, Instant::now()));
        Ok(true)
    }
}

/// A TLS connection to the collector, handshake done (so a certificate the CA does not vouch
/// for is refused here, with rustls's reason).
fn open(
    target: &SyslogTarget,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.host))?
        .collect();
    let mut last = None;
    let mut sock = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut sock = match (sock, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e.into()),
        (None, None) => anyhow::bail!("{} resolves to no address", target.host),
    };
    sock.set_write_timeout(Some(WRITE_TIMEOUT))?;
    sock.set_read_timeout(Some(WRITE_TIMEOUT))?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from(target.host.clone())
        .with_context(|| format!("'{}' is not a server name", target.host))?;
    let mut conn = rustls::ClientConnection::new(tls.clone(), name)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .context("TLS handshake with the collector failed")?;
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

enum Health {
    Open,
    /// Open, but the collector's kernel has not acknowledged every byte yet.
    Unacknowledged,
    Closed(String),
}

/// Whether the collector still holds the connection: a syslog collector sends nothing, so a
/// read that would block means open, and end of stream or an error means it went away.
fn healthy(stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Health {
    if let Err(e) = stream.sock.set_nonblocking(true) {
        return Health::Closed(format!("socket: {e}"));
    }
    let mut buf = [0u8; 1024];
    let read = stream.read(&mut buf);
    if let Err(e) = stream.sock.set_nonblocking(false) {
        return Health::Closed(format!("socket: {e}"));
    }
    match read {
        Ok(0) => Health::Closed("the collector closed the connection".into()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            match unacknowledged_bytes(&stream.sock) {
                Some(n) if n > 0 => Health::Unacknowledged,
                _ => Health::Open,
            }
        }
        Err(e) => Health::Closed(format!("the connection broke: {e}")),
        // Whatever a collector says, it is there.
        Ok(_) => Health::Open,
    }
}

/// Bytes sent on `sock` that the peer's kernel has not acknowledged (Linux's tx_queue in
/// /proc/net/tcp, IPv4 only); `None` where that cannot be known.
fn unacknowledged_bytes(sock: &TcpStream) -> Option<u64> {
    let (local, peer) = match (sock.local_addr().ok()?, sock.peer_addr().ok()?) {
        (std::net::SocketAddr::V4(l), std::net::SocketAddr::V4(p)) => (l, p),
        _ => return None,
    };
    let hex = |a: &std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (l, p) = (hex(&local), hex(&peer));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) == Some(&l.as_str()) && cols.get(2) == Some(&p.as_str()) {
            let tx = cols.get(4)?.split(':').next()?;
            u64::from_str_radix(tx, 16).ok()
        } else {
            None
        }
    })
}

/// The host name messages carry when none is configured: the machine's.
pub fn system_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_urls() {
        assert_eq!(
            parse_url("tls://logs.example:6515").unwrap(),
            ("logs.example".into(), 6515)
        );
        assert_eq!(
            parse_url("tls://logs.example").unwrap(),
            ("logs.example".into(), DEFAULT_PORT)
        );
        assert_eq!(parse_url("tls://[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert!(parse_url("udp://logs.example:514").is_err());
        assert!(parse_url("tls://:6514").is_err());
        assert!(parse_url("tls://h:port").is_err());
    }
}
