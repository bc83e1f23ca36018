//! The audit log as the HSM relies on it.
//!
//! Usage floors, quota floors, the active policy version, approvals, revocations and CRL
//! numbers are decided by audit records. A database writer can edit, delete or insert those
//! rows, so the HSM never reads them straight from the table: it reads them from this index,
//! which holds only records whose MAC matched and whose place in the hash chain it checked,
//! up to the stored head and every signed checkpoint on the way.
//!
//! The index is built by verifying the whole log at unseal, then follows the log as it grows:
//! the committer hands over its own batches (it computed them), and records other processes
//! appended are read and verified on the next [`Integrity::catch_up`]. A watcher thread also
//! re-reads the verified part in a rolling sweep, because an edit to an old row changes nothing
//! at the head. On any break the HSM fails closed: the committer appends nothing more, and
//! every change is refused with `integrity_failure` until an operator recovers (README).

use diesel::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use crate::audit::{self, AuditEvent, AuditKeys, Checkpoint};
use crate::error::{HsmError, Result};
use crate::store::schema::audit_checkpoints;
use crate::store::{AnyConnection, Store};
use kagi_tlog::merkle::{leaf_hash, Frontier};

/// Actions whose successful records are kept whole in the index, because something is
/// decided by their detail (who approved, which certificate was revoked, which approvers a
/// policy bound, what a custom certificate profile allows) or by their existence (a destroyed
/// key, a suspended key and its resumption, a console password set).
const KEPT_ACTIONS: &[&str] = &[
    "approval.approve",
    "ca.profile_set",
    "ca.revoke_certificate",
    "credential.create",
    "credential.password_set",
    "credential.revoke",
    "key.compromise",
    "key.deactivate",
    "key.destroy",
    "key.resume",
    "key.set_usage_limit",
    "key.suspend",
    "policy.activate",
];

/// Actions whose records are kept whatever their outcome: a password lock is recorded as the
/// refusal that caused it (`denied:password_locked`), and the lock is decided by it.
const KEPT_REFUSALS: &[&str] = &["auth.password_locked"];

/// Records the watcher re-verifies per tick: how fast an edit to an old row is found.
const SWEEP_PER_TICK: i64 = 20_000;
/// How often the watcher catches up with other processes and sweeps.
const TICK: Duration = Duration::from_secs(1);

/// What the HSM knows from verified records.
#[derive(Default)]
struct Index {
    /// Per subject (key id, `quota:NAME`, `policy`, `crl:CA`): the highest `use_hi`.
    use_hi: HashMap<String, i64>,
    /// Per (action, subject), in log order: the successful records of [`KEPT_ACTIONS`].
    kept: BTreeMap<(String, String), Vec<AuditEvent>>,
    /// The sequence number of the newest `tlog.rollback_detected` record: the witnesses showed
    /// that this database was restored, forked or truncated before it.
    rollback_at: Option<i64>,
    /// The sequence number of the newest `tlog.rollback_recovered` record: the officers' act
    /// that ends the refusal a detected rollback began.
    recovered_at: Option<i64>,
    /// How many CAs were created or revoked: a CA record read earlier is current while this
    /// has not moved (another process's change is seen within the watcher's tick).
    ca_changes: u64,
    /// Public-key hashes (hex SHA-256 of the SPKI) of keys declared compromised, with their
    /// labels: issuance asks on every certificate, so it is kept here rather than re-read.
    compromised_spki: HashMap<String, String>,
    /// Certificates a key's compromise revoked, by serial: (CA, revocation time in unix ms).
    /// OCSP, CRLs and listings ask per request, so the records are parsed once, here.
    compromise_revoked: BTreeMap<String, (String, i64)>,
    /// Per key id with per-key authorization: its current run of wrong passwords.
    key_auth: HashMap<String, KeyAuthStatus>,
}

/// Wrong passwords in a row for one key, and the refusal the last of them began (unix ms).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyAuthStatus {
    pub(crate) failures: u64,
    pub(crate) locked_until: Option<i64>,
}

impl Index {
    fn add(&mut self, ev: &AuditEvent) {
        if let (Some(id), "key.auth_failed") = (&ev.key_id, ev.action.as_str()) {
            let d: serde_json::Value = serde_json::from_str(&ev.detail).unwrap_or_default();
            let st = self.key_auth.entry(id.clone()).or_default();
            st.failures += 1;
            if let Some(secs) = d["locked_secs"].as_i64() {
                // The HSM wrote the length; the cap still holds for any record.
                let cap = crate::hsm::KEY_AUTH_LOCK_MAX.as_secs() as i64;
                st.locked_until = Some(ev.ts.saturating_add(secs.clamp(0, cap) * 1000));
            }
        }
        if let (Some(id), "ok", "key.auth_ok" | "key.auth_change") =
            (&ev.key_id, ev.outcome.as_str(), ev.action.as_str())
        {
            self.key_auth.remove(id);
        }
        if ev.action == "tlog.rollback_detected" && ev.outcome == "ok" {
            self.rollback_at = Some(ev.seq);
        }
        if ev.action == "tlog.rollback_recovered" && ev.outcome == "ok" {
            self.recovered_at = Some(ev.seq);
        }
        if (ev.action == "ca.create" || ev.action == "ca.revoke") && ev.outcome == "ok" {
            self.ca_changes += 1;
        }
        if ev.action == "key.compromise" && ev.outcome == "ok" {
            let d: serde_json::Value = serde_json::from_str(&ev.detail).unwrap_or_default();
            if let Some(spki) = d["public_key_sha256"].as_str() {
                let label = d["label"].as_str().unwrap_or("?").to_string();
                self.compromised_spki.insert(spki.to_string(), label);
            }
            for r in d["revoked_certificates"].as_array().into_iter().flatten() {
                if let (Some(serial), Some(ca)) = (r["serial"].as_str(), r["ca"].as_str()) {
                    self.compromise_revoked
                        .entry(serial.to_string())
                        .or_insert_with(|| (ca.to_string(), ev.ts));
                }
            }
        }
        let Some(subject) = &ev.key_id else { return };
        if let Some(v) = ev.use_hi {
            let e = self.use_hi.entry(subject.clone()).or_insert(v);
            *e = (*e).max(v);
        }
        if ev.action == "key.rotate" && ev.outcome == "ok" {
            // Kept under the version it retired, not the one it made (the record's key id,
            // whose floor `use_hi` carries): the old version is deactivated by it for good.
            let d: serde_json::Value = serde_json::from_str(&ev.detail).unwrap_or_default();
            if let Some(old) = d["old_id"].as_str() {
                self.kept
                    .entry((ev.action.clone(), old.to_string()))
                    .or_default()
                    .push(ev.clone());
            }
            return;
        }
        if ev.action == "key.destroy" && ev.outcome == "ok" {
            // Destroying a rotated key's name destroys its earlier versions too: each is
            // remembered as destroyed, so a row of one restored from a backup stays dead.
            let d: serde_json::Value = serde_json::from_str(&ev.detail).unwrap_or_default();
            for old in d["earlier_versions"].as_array().into_iter().flatten() {
                if let Some(old) = old.as_str() {
                    self.kept
                        .entry((ev.action.clone(), old.to_string()))
                        .or_default()
                        .push(ev.clone());
                }
            }
        }
        if (ev.outcome == "ok" && KEPT_ACTIONS.contains(&ev.action.as_str()))
            || KEPT_REFUSALS.contains(&ev.action.as_str())
        {
            self.kept
                .entry((ev.action.clone(), subject.clone()))
                .or_default()
                .push(ev.clone());
        }
    }
}

struct Verified {
    frontier: Frontier,
    index: Index,
    /// False until the whole log was verified once (at unseal).
    complete: bool,
}

/// Where the rolling re-verification is: its own frontier over the records it re-read.
#[derive(Default)]
struct Sweep {
    frontier: Frontier,
}

pub(crate) struct Integrity {
    failure: RwLock<Option<String>>,
    verified: Mutex<Verified>,
    sweep: Mutex<Sweep>,
    /// Dropped with this, which ends the watcher thread at once (see [`watch`]).
    watcher: Mutex<Option<SyncSender<()>>>,
}

fn broken(seq: i64, reason: String) -> HsmError {
    HsmError::AuditIntegrity { seq, reason }
}

impl Integrity {
    pub(crate) fn new() -> Arc<Integrity> {
        Arc::new(Integrity {
            failure: RwLock::new(None),
            verified: Mutex::new(Verified {
                frontier: Frontier::default(),
                index: Index::default(),
                complete: false,
            }),
            sweep: Mutex::new(Sweep::default()),
            watcher: Mutex::new(None),
        })
    }

    /// Why the HSM failed closed, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        match self.failure.read() {
            Ok(f) => f.clone(),
            Err(_) => Some("an internal lock was poisoned; restart kagi".into()),
        }
    }

    /// `Err(integrity_failure)` once the HSM failed closed.
    pub(crate) fn check(&self) -> Result<()> {
        match self.failure() {
            None => Ok(()),
            Some(reason) => Err(failed_closed(&reason)),
        }
    }

    /// Fail closed for good (until an operator recovers and restarts): the first reason stays.
    pub(crate) fn fail(&self, reason: &str) {
        if let Ok(mut f) = self.failure.write() {
            if f.is_none() {
                log::error!(
                    "INTEGRITY FAILURE: {reason}. kagi refuses every change and appends nothing more to the audit log until it is recovered"
                );
                *f = Some(reason.to_string());
            }
        }
    }

    fn failing<T>(&self, e: HsmError) -> Result<T> {
        if matches!(e, HsmError::AuditIntegrity { .. }) {
            self.fail(&e.to_string());
            return Err(failed_closed(&e.to_string()));
        }
        Err(e)
    }

    /// Verify and index every record appended since the last call, up to the stored head.
    pub(crate) fn catch_up(&self, conn: &mut AnyConnection, keys: &AuditKeys) -> Result<()> {
        self.check()?;
        let mut v = self
            .verified
            .lock()
            .map_err(|_| HsmError::Store("internal lock poisoned; restart kagi".into()))?;
        match extend(conn, keys, &mut v) {
            Ok(()) => {
                v.complete = true;
                Ok(())
            }
            Err(e) => self.failing(e),
        }
    }

    /// The committer checks, under its write lock, that the head it appends to is the head
    /// verified here, when this process verified up to it.
    pub(crate) fn check_head(&self, head: &Frontier) -> Result<()> {
        self.check()?;
        let Ok(v) = self.verified.try_lock() else {
            return Ok(());
        };
        if v.complete && v.frontier.size == head.size && v.frontier.root() != head.root() {
            drop(v);
            self.fail("the stored audit head does not match the verified log: the database was changed outside kagi");
            return self.check();
        }
        Ok(())
    }

    /// The committer's own batch, durable now: index it without reading it back, when it
    /// directly follows what is verified (else the next catch-up reads it).
    pub(crate) fn committed(&self, before: &Frontier, records: &[AuditEvent]) {
        let Ok(mut v) = self.verified.lock() else {
            return;
        };
        if !v.complete || v.frontier.size != before.size || v.frontier.root() != before.root() {
            return;
        }
        for ev in records {
            v.frontier.push(leaf_hash(&ev.entry_bytes()));
            v.index.add(ev);
        }
    }

    /// The verified floor for `subject`: its highest audited `use_hi`, or 0.
    pub(crate) fn use_hi(
        &self,
        conn: &mut AnyConnection,
        keys: &AuditKeys,
        subject: &str,
    ) -> Result<i64> {
        self.catch_up(conn, keys)?;
        let v = self.lock()?;
        Ok(v.index.use_hi.get(subject).copied().unwrap_or(0))
    }

    /// [`Integrity::use_hi`] as far as the log was read, without reading the database: for a
    /// caller that caught up once for many subjects.
    pub(crate) fn use_hi_now(&self, subject: &str) -> Result<i64> {
        let v = self.lock()?;
        Ok(v.index.use_hi.get(subject).copied().unwrap_or(0))
    }

    /// The verified successful records of `action` on `subject`, in log order.
    pub(crate) fn records(
        &self,
        conn: &mut AnyConnection,
        keys: &AuditKeys,
        action: &str,
        subject: &str,
    ) -> Result<Vec<AuditEvent>> {
        self.catch_up(conn, keys)?;
        let v = self.lock()?;
        Ok(v.index
            .kept
            .get(&(action.to_string(), subject.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    /// Whether the newest indexed `key.suspend`/`key.resume` record of `key_id` is a
    /// suspension (no catch-up: what this process has verified so far).
    pub(crate) fn suspended_now(&self, key_id: &str) -> bool {
        let Ok(v) = self.verified.lock() else {
            // A poisoned lock: refuse rather than sign with a key that may be suspended.
            return true;
        };
        let last = |action: &str| {
            v.index
                .kept
                .get(&(action.to_string(), key_id.to_string()))
                .and_then(|evs| evs.last())
                .map(|e| e.seq)
        };
        match (last("key.suspend"), last("key.resume")) {
            (Some(s), Some(r)) => s > r,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Key `key_id`'s current run of wrong passwords, as far as this process has verified the
    /// log (callers catch up first). A poisoned lock answers locked for a minute.
    pub(crate) fn key_auth_status(&self, key_id: &str) -> KeyAuthStatus {
        match self.verified.lock() {
            Ok(v) => v.index.key_auth.get(key_id).copied().unwrap_or_default(),
            Err(_) => KeyAuthStatus {
                failures: 0,
                locked_until: Some(crate::commit::now_ms() + 60_000),
            },
        }
    }

    /// The one-way state the verified log gives key `key_id`: compromised once any
    /// `key.compromise` record exists, else deactivated once any `key.deactivate` record
    /// does, or a `key.rotate` record that made its next version (no catch-up: what this process has verified so far). Nothing undoes either, so a
    /// row edited or restored to an earlier state does not revive the key.
    pub(crate) fn retired_now(&self, key_id: &str) -> Option<crate::attributes::KeyState> {
        use crate::attributes::KeyState;
        let Ok(v) = self.verified.lock() else {
            // A poisoned lock: refuse rather than sign with a key that may be retired.
            return Some(KeyState::Compromised);
        };
        let has = |action: &str| {
            v.index
                .kept
                .get(&(action.to_string(), key_id.to_string()))
                .is_some_and(|evs| !evs.is_empty())
        };
        if has("key.compromise") {
            Some(KeyState::Compromised)
        } else if has("key.deactivate") || has("key.rotate") {
            Some(KeyState::Deactivated)
        } else {
            None
        }
    }

    /// Whether key `key_id`, which has a usage limit, is frozen by a detected rollback: the
    /// verified log holds a `tlog.rollback_detected` record and no `key.set_usage_limit` of
    /// this key after it. The uses spent between the restored point and the restore are
    /// unknown, so such a key signs again only once an officer has set its limit anew.
    pub(crate) fn frozen_by_rollback(&self, key_id: &str) -> bool {
        let Ok(v) = self.verified.lock() else {
            return true;
        };
        let Some(rollback) = v.index.rollback_at else {
            return false;
        };
        let limit_set_after = v
            .index
            .kept
            .get(&("key.set_usage_limit".to_string(), key_id.to_string()))
            .and_then(|evs| evs.last())
            .is_some_and(|e| e.seq > rollback);
        !limit_set_after
    }

    /// The sequence number of a detected rollback the officers have not recovered from yet:
    /// until they do, kagi makes no signature, certificate or timestamp.
    pub(crate) fn unrecovered_rollback(&self) -> Option<i64> {
        let Ok(v) = self.verified.lock() else {
            return Some(0);
        };
        let rollback = v.index.rollback_at?;
        match v.index.recovered_at {
            Some(r) if r > rollback => None,
            _ => Some(rollback),
        }
    }

    /// How many CA creations and revocations the verified log holds, as far as read.
    /// The label of a key declared compromised whose public key hashes to `spki_sha256`
    /// (hex), as far as the log was read (callers catch up first).
    pub(crate) fn compromised_key_with_spki(&self, spki_sha256: &str) -> Result<Option<String>> {
        Ok(self
            .lock()?
            .index
            .compromised_spki
            .get(spki_sha256)
            .cloned())
    }

    /// Certificates revoked by a key's compromise, as (CA, serial, unix ms): the one with
    /// `serial`, or all. After a catch-up with the log.
    pub(crate) fn compromise_revocations(
        &self,
        conn: &mut AnyConnection,
        keys: &AuditKeys,
        serial: Option<&str>,
    ) -> Result<Vec<(String, String, i64)>> {
        self.catch_up(conn, keys)?;
        let v = self.lock()?;
        let all = &v.index.compromise_revoked;
        let entry = |(s, (ca, ts)): (&String, &(String, i64))| (ca.clone(), s.clone(), *ts);
        Ok(match serial {
            Some(s) => all.get_key_value(s).map(entry).into_iter().collect(),
            None => all.iter().map(entry).collect(),
        })
    }

    pub(crate) fn ca_generation(&self) -> Result<u64> {
        Ok(self.lock()?.index.ca_changes)
    }

    /// Whether the policy's quotas are frozen by a detected rollback: no policy version was
    /// activated after the `tlog.rollback_detected` record. Like a key's limit, a quota's
    /// spent count after the restored point is unknown, so officers review the quotas and
    /// activate a version again before any quota is charged.
    pub(crate) fn quotas_frozen_by_rollback(&self) -> bool {
        let Ok(v) = self.verified.lock() else {
            return true;
        };
        let Some(rollback) = v.index.rollback_at else {
            return false;
        };
        v.index
            .kept
            .get(&("policy.activate".to_string(), "policy".to_string()))
            .and_then(|evs| evs.last())
            .is_none_or(|e| e.seq <= rollback)
    }

    /// The verified successful records of `action` whose subject starts with `prefix`.
    pub(crate) fn records_with_prefix(
        &self,
        conn: &mut AnyConnection,
        keys: &AuditKeys,
        action: &str,
        prefix: &str,
    ) -> Result<Vec<AuditEvent>> {
        self.catch_up(conn, keys)?;
        let v = self.lock()?;
        let from = (action.to_string(), prefix.to_string());
        Ok(v.index
            .kept
            .range(from..)
            .take_while(|((a, s), _)| a == action && s.starts_with(prefix))
            .flat_map(|(_, evs)| evs.iter().cloned())
            .collect())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Verified>> {
        self.verified
            .lock()
            .map_err(|_| HsmError::Store("internal lock poisoned; restart kagi".into()))
    }

    /// Re-verify up to `budget` records of the verified part, from where the sweep stopped.
    /// When the sweep reaches the verified size its root must be the verified root.
    pub(crate) fn sweep(&self, conn: &mut AnyConnection, keys: &AuditKeys, budget: i64) {
        if self.failure().is_some() {
            return;
        }
        let (target, target_root) = match self.verified.lock() {
            Ok(v) if v.complete => (v.frontier.size as i64, v.frontier.root()),
            _ => return,
        };
        let Ok(mut sweep) = self.sweep.lock() else {
            return;
        };
        if sweep.frontier.size as i64 > target {
            sweep.frontier = Frontier::default();
        }
        let mut from = sweep.frontier.size as i64;
        let end = (from + budget).min(target);
        let result = (|| -> Result<()> {
            audit::verify_records(
                conn,
                keys,
                &mut sweep.frontier,
                &mut from,
                end,
                &mut |_, _, _| Ok(()),
            )?;
            if from < end {
                return Err(broken(
                    from,
                    format!("record {from} is missing from the verified log"),
                ));
            }
            if from == target {
                // A full pass: the records as stored now hash to what was verified.
                if sweep.frontier.root() != target_root {
                    return Err(broken(
                        target - 1,
                        format!(
                            "records up to {} no longer hash to the verified root",
                            target - 1
                        ),
                    ));
                }
                sweep.frontier = Frontier::default();
            }
            Ok(())
        })();
        // Only a record that does not verify fails the HSM closed; a store error (a dropped
        // connection) is tried again on the next tick.
        if let Err(e @ HsmError::AuditIntegrity { .. }) = result {
            self.fail(&e.to_string());
        }
    }
}

/// The refusal every change gets once the HSM failed closed.
pub(crate) fn failed_closed(reason: &str) -> HsmError {
    HsmError::Integrity(format!(
        "kagi failed closed because the audit log does not verify ({reason}); it refuses every change until an operator recovers it (README: 'Recovering from an integrity failure')"
    ))
}

/// Verify records from the verified size up to the stored head, with the checkpoints on the
/// way, and index them. Nothing is indexed unless the whole stretch verifies.
fn extend(conn: &mut AnyConnection, keys: &AuditKeys, v: &mut Verified) -> Result<()> {
    let head = audit::load_head(conn)?;
    let from = v.frontier.size as i64;
    let to = head.size as i64;
    if to < from {
        return Err(broken(
            to,
            format!("the audit head went back from {from} to {to} records"),
        ));
    }
    if to == from {
        if head.root() != v.frontier.root() {
            return Err(broken(
                to - 1,
                "the stored audit head does not match the verified log".into(),
            ));
        }
        return Ok(());
    }
    let checkpoints: Vec<Checkpoint> = audit_checkpoints::table
        .filter(audit_checkpoints::tree_size.gt(from))
        .filter(audit_checkpoints::tree_size.le(to))
        .order(audit_checkpoints::tree_size.asc())
        .load(conn)?;
    let public = keys.public_key_der();
    let verifier = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        &public,
    );
    let mut cps = checkpoints.iter().peekable();
    let mut frontier = v.frontier.clone();
    let mut fresh: Vec<AuditEvent> = Vec::new();
    let mut at = from;
    audit::verify_records(
        conn,
        keys,
        &mut frontier,
        &mut at,
        to,
        &mut |ev, frontier, size| {
            while let Some(cp) = cps.next_if(|cp| cp.tree_size <= size) {
                audit::check_checkpoint(cp, frontier, size, &verifier)?;
            }
            fresh.push(ev);
            Ok(())
        },
    )?;
    if at < to {
        return Err(broken(
            at,
            format!("records from {at} on are missing: the audit head says {to} records"),
        ));
    }
    if frontier.root() != head.root() {
        return Err(broken(
            to - 1,
            format!(
                "the records up to {} do not hash to the stored audit head",
                to - 1
            ),
        ));
    }
    for ev in &fresh {
        v.index.add(ev);
    }
    v.frontier = frontier;
    Ok(())
}

/// Catch up with other processes and sweep, once per tick, while the HSM is unsealed. The
/// thread ends as soon as the unsealed state it watches is dropped, not a tick later: it holds
/// the store's connection pool, and an HSM opened and dropped many times a second (a test, a
/// tool) would otherwise keep that many pools' connections open.
pub(crate) fn watch(store: Store, integrity: Weak<Integrity>, keys: Weak<AuditKeys>) {
    let (stop, stopped) = std::sync::mpsc::sync_channel::<()>(0);
    match integrity.upgrade() {
        Some(i) => *i.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop),
        None => return,
    }
    let spawned = std::thread::Builder::new()
        .name("kagi-integrity".into())
        .spawn(move || loop {
            // Nothing is ever sent: a timeout is a tick, a disconnect is the end.
            if !matches!(stopped.recv_timeout(TICK), Err(RecvTimeoutError::Timeout)) {
                return;
            }
            let (Some(i), Some(k)) = (integrity.upgrade(), keys.upgrade()) else {
                return;
            };
            if i.failure().is_some() {
                continue;
            }
            let Ok(mut c) = store.conn() else { continue };
            // A store error is not tampering: the next tick tries again.
            let _ = i.catch_up(&mut c, &k);
            i.sweep(&mut c, &k, SWEEP_PER_TICK);
        });
    if let Err(e) = spawned {
        log::error!("cannot start the audit watcher thread: {e}; only requests verify the log");
    }
}
