//! `kagi witness`: a C2SP tlog-witness (https://c2sp.org/tlog-witness) in its own process and
//! data folder. It knows the logs it witnesses by their signed-note verifier keys, keeps the
//! latest checkpoint it cosigned of each (SQLite, `synchronous=FULL`), and cosigns a new one
//! only if a consistency proof links it to that one. The protocol and the check are
//! `kagi_tlog::witness`'s; this module is the key, the store and the HTTP server.
//!
//! The server speaks plain HTTP: a cosignature is self-authenticating (the log checks it with
//! the witness's public key), and requests are authenticated by the log's signature on the
//! checkpoint, so TLS would add privacy for public data only. Put it behind a TLS proxy if the
//! network path needs it.
//!
//! Data folder: `witness-key.pem` (the Ed25519 key, PKCS#8 PEM, mode 0600) and `witness.db`
//! (mode 0600: the name and each log's latest checkpoint); optionally `logs.txt`, one log
//! verifier key per line, read by `serve` beside its `--log` flags.

pub mod server;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use diesel::sqlite::SqliteConnection;
use kagi_tlog::witness::{
    check_opened, checkpoint_origin, open_add_checkpoint, AddCheckpoint, WitnessAnswer,
};

use crate::secret_files::{create_private_dir, write_new_private_file};

/// The key file in a data folder.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("witness-key.pem")
}

/// The optional file of witnessed logs' verifier keys in a data folder.
pub fn logs_path(dir: &Path) -> PathBuf {
    dir.join("logs.txt")
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Largest request body the server reads: 63 proof lines and a checkpoint with many signatures
/// fit many times over.
pub const MAX_BODY: usize = 64 * 1024;

/// A witness name is a note key name: non-empty, no spaces, no '+'.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!(
            "'{name}' cannot name a witness: a witness name is non-empty and has no spaces and no '+'; use a schema-less URL that identifies it, e.g. 'witness.example.com/w1'"
        );
    }
    Ok(())
}

/// `kagi witness init`: make the data folder, the key and the database. Returns the
/// cosignature verifier key.
pub fn init(dir: &Path, name: &str) -> Result<String> {
    check_name(name)?;
    if key_path(dir).exists() || store::db_path(dir).exists() {
        bail!(
            "{} is already a witness data folder: 'kagi witness key --data {}' prints its key; choose an empty folder for a new witness",
            dir.display(),
            dir.display()
        );
    }
    create_private_dir(dir).with_context(|| {
        format!(
            "cannot create the data folder {}: choose a folder you can write to",
            dir.display()
        )
    })?;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow!("generating the witness's Ed25519 key failed"))?;
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| anyhow!("the generated Ed25519 key does not load"))?;
    let mut c = store::open(dir, true)?;
    store::set_meta(&mut c, "name", name).context("cannot write the witness's name")?;
    let b64 = B64.encode(pkcs8.as_ref());
    let mut pem = format!("{PEM_BEGIN}\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    write_new_private_file(&key_path(dir), pem.as_bytes())
        .with_context(|| format!("cannot write {}", key_path(dir).display()))?;
    Ok(kagi_tlog::note::cosignature_verifier_key(
        name,
        &public(&key)?,
    ))
}

fn public(key: &Ed25519KeyPair) -> Result<[u8; 32]> {
    KeyPair::public_key(key)
        .as_ref()
        .try_into()
        .map_err(|_| anyhow!("the Ed25519 public key is not 32 bytes"))
}

/// A witness as `serve` runs it: its name and key, the logs it witnesses, its database.
pub struct Witness {
    pub name: String,
    key: Ed25519KeyPair,
    /// Origin → the log's Ed25519 public keys (any of them may sign).
    logs: BTreeMap<String, Vec<[u8; 32]>>,
    db: Mutex<SqliteConnection>,
}

impl Witness {
    /// Open the witness in `dir` (its key, name and database).
    pub fn open(dir: &Path) -> Result<Witness> {
        if !dir.is_dir() {
            bail!(
                "{} is not a folder: pass the --data folder you gave 'kagi witness init'",
                dir.display()
            );
        }
        let kp = key_path(dir);
        let pem = std::fs::read_to_string(&kp).with_context(|| {
            format!(
                "cannot read the witness key {}: run 'kagi witness init --data {} --name NAME' first, or point --data at the folder that holds it",
                kp.display(),
                dir.display()
            )
        })?;
        let b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let key = B64
            .decode(b64.trim())
            .ok()
            .filter(|_| pem.contains(PEM_BEGIN))
            .and_then(|der| Ed25519KeyPair::from_pkcs8(&der).ok())
            .ok_or_else(|| {
                anyhow!(
                    "{} is not an Ed25519 private key in PKCS#8 PEM: restore it from your backup, or make a new witness with 'kagi witness init' in another folder",
                    kp.display()
                )
            })?;
        let mut db = store::open(dir, false)?;
        let name = store::meta(&mut db, "name")
            .context("cannot read the witness's name from its database")?
            .ok_or_else(|| {
                anyhow!(
                    "{} holds no witness name: it was not made by 'kagi witness init'",
                    store::db_path(dir).display()
                )
            })?;
        Ok(Witness {
            name,
            key,
            logs: BTreeMap::new(),
            db: Mutex::new(db),
        })
    }

    /// The cosignature/v1 verifier key clients configure.
    pub fn verifier_key(&self) -> Result<String> {
        Ok(kagi_tlog::note::cosignature_verifier_key(
            &self.name,
            &public(&self.key)?,
        ))
    }

    /// Witness the log with this signed-note verifier key (`<origin>+<hash>+<key>`).
    pub fn add_log(&mut self, vkey: &str) -> Result<()> {
        let (origin, pk) = kagi_tlog::parse_verifier_key(vkey.trim()).map_err(|e| {
            anyhow!("{e}. A log's verifier key is what its /log/key answers (for kagi: 'curl https://HOST:8443/log/key')")
        })?;
        let keys = self.logs.entry(origin).or_default();
        if !keys.contains(&pk) {
            keys.push(pk);
        }
        Ok(())
    }

    /// The logs' verifier keys in `dir/logs.txt`, if that file exists (blank lines and '#'
    /// comments skipped).
    pub fn add_logs_file(&mut self, dir: &Path) -> Result<()> {
        let path = logs_path(dir);
        if !path.exists() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add_log(line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?;
        }
        Ok(())
    }

    /// The origins witnessed.
    pub fn origins(&self) -> Vec<&str> {
        self.logs.keys().map(String::as_str).collect()
    }

    /// Answer one add-checkpoint request body. What needs no saved state (the log's signature,
    /// a well-formed checkpoint) is checked first, without any lock; the check against the saved
    /// checkpoint and the save run under the process lock in one immediate transaction, and a
    /// 200 is returned only after the commit.
    pub fn add_checkpoint(&self, body: &[u8]) -> WitnessAnswer {
        let Ok(body) = std::str::from_utf8(body) else {
            return WitnessAnswer::refused(400, "the request body is not UTF-8 text");
        };
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return WitnessAnswer::refused(400, e.to_string()),
        };
        let origin = match checkpoint_origin(&req.checkpoint) {
            Ok(o) => o,
            Err(e) => return WitnessAnswer::refused(400, e.to_string()),
        };
        let Some(keys) = self.logs.get(&origin) else {
            return WitnessAnswer::refused(
                404,
                format!(
                    "this witness does not witness the log '{origin}' (it witnesses: {}): its operator adds it with 'kagi witness serve --log <the log's verifier key>'",
                    self.origins().join(", ")
                ),
            );
        };
        // The checks that need nothing saved (the log's signature first) run before the lock:
        // a caller without the log's key never takes it, nor the database's write lock.
        let mut opened = Err(WitnessAnswer::refused(
            403,
            "no key is configured for this log",
        ));
        for pk in keys {
            opened = open_add_checkpoint(&req, &origin, pk);
            match &opened {
                // Another key of the same origin may have signed it.
                Err(WitnessAnswer::Refused { status: 403, .. }) => continue,
                _ => break,
            }
        }
        let outcome = match opened {
            Err(a) => Ok(a),
            Ok(opened) => {
                let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
                db.immediate_transaction(|c| self.check_and_save(c, &req, opened))
            }
        };
        match outcome {
            Ok(a) => {
                match &a {
                    WitnessAnswer::Cosigned(_) => {
                        log::info!("cosigned '{origin}' (old size {})", req.old_size)
                    }
                    WitnessAnswer::Conflict(size) => log::warn!(
                        "refused '{origin}' with 409 (saved size {size}, old size {}): {}",
                        req.old_size,
                        req.checkpoint.escape_debug()
                    ),
                    WitnessAnswer::Refused { status, message } => {
                        log::warn!("refused '{origin}' with {status}: {message}")
                    }
                }
                a
            }
            Err(e) => {
                log::error!("the witness database failed: {e}");
                WitnessAnswer::refused(
                    500,
                    format!("the witness's database failed ({e}); nothing was saved: try again"),
                )
            }
        }
    }

    /// Check an opened request against the saved checkpoint of its log and, if it is
    /// consistent, save it and cosign: in the caller's immediate transaction.
    fn check_and_save(
        &self,
        c: &mut SqliteConnection,
        req: &AddCheckpoint,
        opened: kagi_tlog::witness::Accepted,
    ) -> Result<WitnessAnswer, diesel::result::Error> {
        let origin = opened.origin.clone();
        let stored = store::latest(c, &origin)?;
        let latest = match &stored {
            None => None,
            Some(s) => match (u64::try_from(s.size), <[u8; 32]>::try_from(&s.root[..])) {
                (Ok(size), Ok(root)) => Some((size, root)),
                _ => {
                    return Ok(WitnessAnswer::refused(
                        500,
                        format!("the witness's saved state of '{origin}' is malformed: its database was changed outside kagi"),
                    ))
                }
            },
        };
        let accepted = match check_opened(req, opened, latest) {
            Ok(a) => a,
            Err(answer) => return Ok(answer),
        };
        let line = match kagi_tlog::cosign(&accepted.text, &self.name, now(), &self.key) {
            Ok(l) => l,
            Err(e) => {
                return Ok(WitnessAnswer::refused(
                    500,
                    format!("cosigning failed: {e}"),
                ))
            }
        };
        let size = i64::try_from(accepted.size).map_err(|_| {
            diesel::result::Error::SerializationError(
                "the checkpoint's size does not fit a 64-bit signed integer".into(),
            )
        })?;
        store::save(
            c,
            &store::LogState {
                origin,
                size,
                root: accepted.root.to_vec(),
                note: req.checkpoint.clone(),
                updated: now() as i64,
            },
        )?;
        Ok(WitnessAnswer::Cosigned(line))
    }

    /// Forget `origin`'s saved checkpoint (see [`store::forget`]); the state it had, if any.
    pub fn forget(&self, origin: &str) -> Result<Option<store::LogState>> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        store::forget(&mut db, origin).context("cannot change the witness database")
    }

    /// Every log's saved state, for `kagi witness status`.
    pub fn states(&self) -> Result<Vec<store::LogState>> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        store::all(&mut db).context("cannot read the witness database")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
