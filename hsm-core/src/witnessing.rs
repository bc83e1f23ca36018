//! kagi as a witnessed log (C2SP tlog-witness): results are released only once a quorum of
//! witnesses has cosigned a checkpoint covering them, so a restored, forked or truncated
//! database cannot release anything: the witnesses remember a longer log than it holds.
//!
//! hsm-core speaks no HTTP: a front end gives the HSM a [`WitnessSet`] of [`Witness`]es (the
//! signer's are HTTP clients) at open. With one, the committer appends an audit-checkpoint
//! anchor to the transparency log with every batch (so every batch has a checkpoint, whatever
//! it holds) and hands the replies of key uses to the [`Gate`] instead of answering them.
//!
//! The gate witnesses one checkpoint at a time, the *target*: every witness's worker thread
//! sends it (with a consistency proof from the size the worker believes its witness holds),
//! and once a quorum cosigned it, every held result of a batch at or below its size is
//! released and the target moves to the newest committed checkpoint. The committer keeps
//! committing meanwhile, so witnessing adds latency, not a throughput ceiling; all witnesses
//! cosign the same sizes, so the newest witnessed checkpoint carries the whole quorum.
//!
//! A round costs the witnesses' answers and nothing in kagi's database: the cosignature lines
//! are kept in memory (the newest witnessed checkpoint is served from there) and appended to
//! their stored checkpoints by the committer's next batch, in its transaction, or by a
//! witness's worker when no batch came for [`STORE_AFTER`]. Writing them in transactions of
//! their own competed with the committer for SQLite's write lock, whose busy handler sleeps
//! for milliseconds, and made every round that long. A line lost to a crash costs nothing
//! but the line: the witness holds the checkpoint, and cosigns it again after a restart.
//!
//! A witness that has seen a larger log than the database holds, or refuses a consistency
//! proof computed from it, means the database went back or forked: the gate sets a failure
//! every held and future result gets (`rollback_detected`), and the committer refuses every
//! change but the audit record saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use diesel::prelude::*;
pub use kagi_tlog::witness::{AddCheckpoint, WitnessAnswer};

use crate::commit::{Committed, EventDraft, Op, Reply};
use crate::error::{HsmError, Result};
use crate::store::schema::tlog_checkpoints;
use crate::store::{AnyConnection, Store};
use crate::tlog;

/// One witness as the HSM sees it: a name and cosignature key to check its answers against,
/// and a way to send it an add-checkpoint request.
pub trait Witness: Send + Sync {
    /// The witness's name: the key name of its cosignature lines.
    fn name(&self) -> &str;
    /// The witness's cosignature/v1 Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// Send `req` (POST add-checkpoint). `Err` says why no answer came (unreachable, timed
    /// out): the witness is unavailable for now, and the request is retried.
    fn add_checkpoint(&self, req: &AddCheckpoint) -> std::result::Result<WitnessAnswer, String>;
}

/// The witnesses kagi's log needs cosignatures from: a quorum of them, within a timeout.
#[derive(Clone)]
pub struct WitnessSet {
    pub witnesses: Vec<Arc<dyn Witness>>,
    /// Cosignatures a checkpoint needs before results it covers are released.
    pub quorum: usize,
    /// How long a caller of a key use waits for its result, from when it asked: a use that
    /// committed within it and still lacks the quorum gets witness_unavailable (a use the
    /// committer has not reached yet is waited for another timeout).
    pub timeout: Duration,
}

impl WitnessSet {
    /// A set with `1 <= quorum <= witnesses.len()` and distinct names.
    pub fn new(
        witnesses: Vec<Arc<dyn Witness>>,
        quorum: usize,
        timeout: Duration,
    ) -> Result<WitnessSet> {
        let n = witnesses.len();
        if quorum == 0 || quorum > n {
            return Err(HsmError::BadInput(format!(
                "a witness quorum of {quorum} with {n} witness(es) is impossible: give a quorum from 1 to {n}"
            )));
        }
        let names: BTreeSet<&str> = witnesses.iter().map(|w| w.name()).collect();
        if names.len() != n {
            return Err(HsmError::BadInput(
                "two witnesses have the same name: each witness counts once toward the quorum, so give each one once".into(),
            ));
        }
        Ok(WitnessSet {
            witnesses,
            quorum,
            timeout,
        })
    }
}

/// One witness's state, as `/readyz`, `/metrics` and `kagi status` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WitnessState {
    pub name: String,
    /// Largest log size this witness cosigned for this process (0: none yet).
    pub cosigned_size: i64,
    /// Why its last request failed, while it keeps failing.
    pub last_error: Option<String>,
}

/// The witnessing as a whole.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WitnessStatus {
    pub quorum: usize,
    /// Newest log size a quorum cosigned.
    pub witnessed_size: i64,
    /// Newest log size this process committed or found at start.
    pub log_size: i64,
    /// Results committed and held for cosignatures.
    pub held: usize,
    /// Why kagi stopped releasing results, if a rollback or fork was detected.
    pub rollback: Option<String>,
    pub witnesses: Vec<WitnessState>,
}

/// A committed result waiting for the quorum.
struct Held {
    size: u64,
    reply: SyncSender<Reply>,
    done: Committed,
    since: Instant,
}

/// A verified cosignature line not yet appended to its stored checkpoint.
pub(crate) struct Unstored {
    size: u64,
    witness: usize,
    line: String,
}

/// How long cosignature lines wait for a committer batch before a witness worker stores them.
const STORE_AFTER: Duration = Duration::from_millis(50);

/// How long a due round waits for the committer's batches in progress when it fell due: the
/// batch being committed, and the next one if key uses are queued for it. Under load both
/// nearly always exist, and their results would otherwise wait for the whole next round;
/// waiting for them covers more results per round (fewer rounds, less CPU per signature) and
/// releases those batches a round sooner. Idle, there is neither, and a round starts at once.
/// The bound keeps a stalled commit from holding back results already committed.
const COALESCE_MAX: Duration = Duration::from_millis(8);

/// The most a round waits after the previous one (see [`spacing`]).
const SPACING_MAX: Duration = Duration::from_millis(8);
/// Results a round released at which the next one waits the previous one's whole duration.
const SPACING_FULL_AT: usize = 64;

/// How long the next round waits after one that took `took` (from its send to its quorum) and
/// released `released` results. A round costs kagi and each witness CPU and thread wake-ups
/// however many results it covers. Under load its exchange is slow (the cores are busy) and
/// it covers many results: waiting as long as it took then covers about twice as many per
/// round, at the time CPU is short. Lightly loaded, a round covers a few results, and a slow
/// one is the disk's, not the cores': the wait shrinks with the results, so one slow fsync
/// does not also delay the round after it.
fn spacing(took: Duration, released: usize) -> Duration {
    let share = released.min(SPACING_FULL_AT) as u32;
    (took * share / SPACING_FULL_AT as u32).min(SPACING_MAX)
}

struct PerWitness {
    cosigned: u64,
    error: Option<String>,
}

struct GateState {
    /// The checkpoint this round's workers send, once one took it: (size, note with the log's
    /// signature only). Until then a round's target is the newest committed one, `latest`.
    round: Option<(u64, String)>,
    /// The newest committed checkpoint.
    latest: Option<(u64, String)>,
    /// Per size above the witnessed one: the witnesses that cosigned it, with their lines.
    cosigned: BTreeMap<u64, BTreeMap<usize, String>>,
    witnessed: u64,
    /// The witnessed checkpoint with the quorum's cosignature lines, served before (and
    /// whether or not) the lines are stored.
    witnessed_note: Option<(u64, String)>,
    /// Lines to append to the stored checkpoints, and since when the oldest waits.
    unstored: Vec<Unstored>,
    unstored_since: Option<Instant>,
    per: Vec<PerWitness>,
    held: Vec<Held>,
    rollback: Option<String>,
    /// Committer batches begun and finished, so a round can wait for the batch being
    /// committed when it became due (see [`COALESCE_MAX`]).
    batches_begun: u64,
    batches_ended: u64,
    /// Key uses the committer took into batches (see [`Gate::queued`]).
    ops_taken: u64,
    /// The lowest batch count a worker waiting for batches wants to be woken at; the end of
    /// any other batch wakes nobody.
    wake_at_batch: Option<u64>,
    /// Workers waiting for a checkpoint to send, which a committed batch wakes.
    idle_workers: usize,
    /// When a worker took the current round, and when the next may be taken (see
    /// [`SPACING_MAX`]).
    round_taken: Option<Instant>,
    not_before: Option<Instant>,
}

/// The release stage between the committer and the callers of key uses.
pub(crate) struct Gate {
    set: WitnessSet,
    store: Store,
    state: Mutex<GateState>,
    changed: Condvar,
    /// Where the rollback's audit record goes: the committer's queue (the committer thread
    /// holds the gate weakly, so this does not keep it alive once the HSM is dropped).
    committer: SyncSender<Op>,
    /// The last consistency proof computed: every worker sends the same target, usually from
    /// the same old size, so the second one of a round reuses it.
    last_proof: Mutex<Option<CachedProof>>,
    /// Key uses queued for the committer: beside [`GateState::ops_taken`], whether a batch is
    /// about to begin.
    ops_queued: AtomicU64,
}

/// A consistency proof from `old` to `size`.
struct CachedProof {
    old: u64,
    size: u64,
    proof: Vec<[u8; 32]>,
}

/// The newest stored checkpoint, with the log's own signature only.
fn latest_stored(store: &Store) -> Result<Option<(u64, String)>> {
    let mut c = store.conn()?;
    Ok(tlog::checkpoint(&mut c, None)?.map(|(size, _, note)| (size as u64, log_note_only(&note))))
}

/// A stored note up to and including its first signature line (the log's): cosignatures
/// appended later are not sent back to witnesses.
pub(crate) fn log_note_only(note: &str) -> String {
    match note.find("\n\n") {
        Some(split) => {
            let sigs = &note[split + 2..];
            match sigs.find('\n') {
                Some(end) => note[..split + 2 + end + 1].to_string(),
                None => note.to_string(),
            }
        }
        None => note.to_string(),
    }
}

fn lock(m: &Mutex<GateState>) -> MutexGuard<'_, GateState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Gate {
    /// Start the workers, one per witness. The newest stored checkpoint is sent at once, so a
    /// restored database is found before its first request.
    pub(crate) fn start(
        set: WitnessSet,
        store: Store,
        committer: SyncSender<Op>,
    ) -> Result<Arc<Gate>> {
        let latest = latest_stored(&store)?;
        let n = set.witnesses.len();
        let gate = Arc::new(Gate {
            state: Mutex::new(GateState {
                round: None,
                latest,
                cosigned: BTreeMap::new(),
                witnessed: 0,
                witnessed_note: None,
                unstored: Vec::new(),
                unstored_since: None,
                per: (0..n)
                    .map(|_| PerWitness {
                        cosigned: 0,
                        error: None,
                    })
                    .collect(),
                held: Vec::new(),
                rollback: None,
                batches_begun: 0,
                batches_ended: 0,
                ops_taken: 0,
                wake_at_batch: None,
                idle_workers: 0,
                round_taken: None,
                not_before: None,
            }),
            changed: Condvar::new(),
            set,
            store,
            committer,
            last_proof: Mutex::new(None),
            ops_queued: AtomicU64::new(0),
        });
        for i in 0..n {
            let weak = Arc::downgrade(&gate);
            let name = gate.set.witnesses[i].name().to_string();
            std::thread::Builder::new()
                .name(format!("kagi-witness-{i}"))
                .spawn(move || worker(weak, i))
                .map_err(|e| {
                    HsmError::Store(format!("cannot start the thread for witness '{name}': {e}"))
                })?;
        }
        Ok(gate)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.set.timeout
    }

    /// Why results are no longer released, if a rollback was detected.
    pub(crate) fn rollback(&self) -> Option<String> {
        lock(&self.state).rollback.clone()
    }

    /// A batch committed checkpoint `size` (`note`): hold its key uses' results until a quorum
    /// cosigned a checkpoint at least this large.
    pub(crate) fn committed(
        &self,
        size: u64,
        note: String,
        replies: Vec<(SyncSender<Reply>, Committed)>,
    ) {
        let mut st = lock(&self.state);
        if let Some(reason) = &st.rollback {
            for (reply, _) in replies {
                let _ = reply.send(Err(rollback_error(reason)));
            }
            return;
        }
        let now = Instant::now();
        // Callers stop waiting after the timeout: their entries only cost memory after that.
        let keep = self.set.timeout + Duration::from_secs(5);
        st.held.retain(|h| now.duration_since(h.since) < keep);
        for (reply, done) in replies {
            if size <= st.witnessed {
                let _ = reply.send(Ok(done));
                continue;
            }
            st.held.push(Held {
                size,
                reply,
                done,
                since: now,
            });
        }
        if st.latest.as_ref().is_none_or(|(s, _)| *s < size) {
            st.latest = Some((size, note));
        }
        // A round whose checkpoint is witnessed (a slow witness catching up) is over.
        if st.round.as_ref().is_some_and(|(t, _)| *t <= st.witnessed) {
            st.round = None;
        }
        // Only a worker with nothing to send waits for a commit; the others wait for a batch's
        // end, a time, or their witness.
        if st.idle_workers > 0 {
            self.changed.notify_all();
        }
    }

    /// The committer took `ops` queued key uses into a batch; the batch ends (committed or
    /// not) when the guard drops, and a round waiting for it may start.
    pub(crate) fn batch_begins(&self, ops: u64) -> BatchGuard<'_> {
        let mut st = lock(&self.state);
        st.batches_begun += 1;
        st.ops_taken += ops;
        BatchGuard(self)
    }

    /// A caller queued a key use for the committer.
    pub(crate) fn queued(&self) {
        self.ops_queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status(&self) -> WitnessStatus {
        let st = lock(&self.state);
        WitnessStatus {
            quorum: self.set.quorum,
            witnessed_size: st.witnessed as i64,
            log_size: st.latest.as_ref().map(|(s, _)| *s as i64).unwrap_or(0),
            held: st.held.len(),
            rollback: st.rollback.clone(),
            witnesses: self
                .set
                .witnesses
                .iter()
                .zip(st.per.iter())
                .map(|(w, p)| WitnessState {
                    name: w.name().to_string(),
                    cosigned_size: p.cosigned as i64,
                    last_error: p.error.clone(),
                })
                .collect(),
        }
    }

    /// Why a caller's held result was not released in time.
    pub(crate) fn unavailable_error(&self) -> HsmError {
        let s = self.status();
        let troubles: Vec<String> = s
            .witnesses
            .iter()
            .filter_map(|w| w.last_error.as_ref().map(|e| format!("{}: {e}", w.name)))
            .collect();
        HsmError::WitnessUnavailable(format!(
            "fewer than {} of the {} witnesses cosigned the transparency log within {} s{}: the use was counted and its result was not released; retry once the witnesses answer (README, \"Witnessed log\")",
            s.quorum,
            s.witnesses.len(),
            self.set.timeout.as_secs_f64(),
            if troubles.is_empty() {
                String::new()
            } else {
                format!(" ({})", troubles.join("; "))
            }
        ))
    }

    /// Wait (up to a second) for a checkpoint witness `i` has not cosigned yet.
    fn next_job(&self, i: usize) -> Option<(u64, String)> {
        let mut st = lock(&self.state);
        let wait = match st.unstored_since {
            Some(t) => STORE_AFTER.saturating_sub(t.elapsed()),
            None => Duration::from_secs(1),
        };
        let deadline = Instant::now() + wait;
        // The last batch this round waits for (the one being committed when it fell due, or the
        // next one if key uses are queued), and until when.
        let mut coalesce: Option<(u64, Instant)> = None;
        loop {
            if st.rollback.is_some() {
                return None;
            }
            let due = st
                .round
                .as_ref()
                .or(st.latest.as_ref())
                .is_some_and(|(size, _)| st.per[i].cosigned < *size);
            if due && st.round.is_none() {
                let now = Instant::now();
                if let Some(left) = st.not_before.and_then(|t| t.checked_duration_since(now)) {
                    st = self.wait(st, left);
                    continue;
                }
                let (batch, until) = *coalesce.get_or_insert_with(|| {
                    let waiting = self.ops_queued.load(Ordering::Relaxed) > st.ops_taken;
                    (st.batches_begun + u64::from(waiting), now + COALESCE_MAX)
                });
                let left = until.saturating_duration_since(now);
                if st.batches_ended < batch && !left.is_zero() {
                    st.wake_at_batch = Some(st.wake_at_batch.map_or(batch, |b| b.min(batch)));
                    st = self.wait(st, left);
                    continue;
                }
                st.round = st.latest.clone();
                st.round_taken = Some(now);
                st.wake_at_batch = None;
                // Workers still waiting for batches send this round's checkpoint too.
                self.changed.notify_all();
            }
            if due {
                if let Some((size, note)) = &st.round {
                    return Some((*size, note.clone()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st.idle_workers += 1;
            st = self.wait(st, left);
            st.idle_workers -= 1;
        }
    }

    fn wait<'a>(
        &self,
        st: MutexGuard<'a, GateState>,
        at_most: Duration,
    ) -> MutexGuard<'a, GateState> {
        match self.changed.wait_timeout(st, at_most) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    fn failed(&self, i: usize, why: String) {
        let mut st = lock(&self.state);
        if st.per[i].error.as_deref() != Some(&why) {
            log::warn!(
                "witness '{}' did not cosign: {why}",
                self.set.witnesses[i].name()
            );
        }
        st.per[i].error = Some(why);
    }

    /// Witness `i` cosigned checkpoint `size` (`note`, the log's signature only) with `line`:
    /// keep the line to store, count it, and release what a quorum covers.
    fn cosigned(&self, i: usize, size: u64, note: &str, line: String) {
        let mut st = lock(&self.state);
        st.per[i].error = None;
        st.per[i].cosigned = st.per[i].cosigned.max(size);
        if st.unstored_since.is_none() {
            st.unstored_since = Some(Instant::now());
        }
        st.unstored.push(Unstored {
            size,
            witness: i,
            line: line.clone(),
        });
        if size <= st.witnessed {
            return;
        }
        let n = {
            let lines = st.cosigned.entry(size).or_default();
            lines.insert(i, line);
            lines.len()
        };
        if n < self.set.quorum {
            self.changed.notify_all();
            return;
        }
        let mut full = note.to_string();
        for l in st.cosigned.get(&size).into_iter().flat_map(|m| m.values()) {
            full.push_str(l);
        }
        st.witnessed = size;
        st.witnessed_note = Some((size, full));
        st.cosigned = st.cosigned.split_off(&(size + 1));
        let held = std::mem::take(&mut st.held);
        let (release, keep): (Vec<Held>, Vec<Held>) =
            held.into_iter().partition(|h| h.size <= size);
        st.held = keep;
        let released = release.len();
        for h in release {
            let _ = h.reply.send(Ok(h.done));
        }
        if st.round.as_ref().is_some_and(|(t, _)| *t <= size) {
            st.round = None;
            if let Some(taken) = st.round_taken.take() {
                st.not_before = Some(Instant::now() + spacing(taken.elapsed(), released));
            }
        }
        self.changed.notify_all();
    }

    /// The newest checkpoint a quorum cosigned, with their lines.
    pub(crate) fn witnessed_note(&self) -> Option<(u64, String)> {
        lock(&self.state).witnessed_note.clone()
    }

    /// The cosignature lines waiting to be stored, taken for the committer's batch.
    pub(crate) fn take_unstored(&self) -> Vec<Unstored> {
        let mut st = lock(&self.state);
        st.unstored_since = None;
        std::mem::take(&mut st.unstored)
    }

    /// Lines a failed batch did not store: they wait for the next one.
    pub(crate) fn requeue(&self, mut lines: Vec<Unstored>) {
        if lines.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        st.unstored_since.get_or_insert_with(Instant::now);
        lines.append(&mut st.unstored);
        st.unstored = lines;
    }

    /// Append cosignature lines to their stored checkpoints, each witness's once, in the
    /// caller's transaction.
    pub(crate) fn store_lines(&self, c: &mut AnyConnection, lines: &[Unstored]) -> Result<()> {
        for u in lines {
            let w = &self.set.witnesses[u.witness];
            let stored: Option<String> = tlog_checkpoints::table
                .filter(tlog_checkpoints::size.eq(u.size as i64))
                .select(tlog_checkpoints::note)
                .first(c)
                .optional()?;
            // A checkpoint no longer stored (pruned) keeps no lines.
            let Some(stored) = stored else { continue };
            // The line was verified when it came; a stored line by the same key is verified
            // before it counts, so a forged one does not keep the real one out.
            let key = w.public_key();
            if kagi_tlog::has_cosignature_line(&stored, w.name(), &key)
                && kagi_tlog::open_cosignature(&stored, w.name(), &key).is_ok()
            {
                continue;
            }
            diesel::update(
                tlog_checkpoints::table.filter(tlog_checkpoints::size.eq(u.size as i64)),
            )
            .set(tlog_checkpoints::note.eq(tlog_checkpoints::note.concat(u.line.clone())))
            .execute(c)?;
        }
        Ok(())
    }

    /// Store the lines no committer batch took within [`STORE_AFTER`] (kagi is idle).
    fn store_stale_lines(&self) {
        let due = {
            let st = lock(&self.state);
            st.unstored_since
                .is_some_and(|t| t.elapsed() >= STORE_AFTER)
        };
        if !due {
            return;
        }
        let lines = self.take_unstored();
        if lines.is_empty() {
            return;
        }
        let stored = self
            .store
            .conn()
            .and_then(|mut c| c.transaction(|c| self.store_lines(c, &lines)));
        if let Err(e) = stored {
            log::warn!("witness cosignatures could not be stored yet ({e}); retrying");
            self.requeue(lines);
        }
    }

    /// A witness holds more of the log than the database, or refused a proof computed from it.
    fn detected_rollback(&self, i: usize, reason: String, detail: serde_json::Value) {
        let mut st = lock(&self.state);
        if st.rollback.is_some() {
            return;
        }
        let name = self.set.witnesses[i].name();
        let message = format!(
            "witness '{name}' shows this database is behind or forked: {reason}. The database was restored from a backup, forked or truncated, so uses spent after that point are unknown. kagi releases nothing until officers run the recovery in the README (\"Witnessed log\")"
        );
        log::error!("rollback detected: {message}");
        for h in std::mem::take(&mut st.held) {
            let _ = h.reply.send(Err(rollback_error(&message)));
        }
        st.rollback = Some(message);
        self.changed.notify_all();
        drop(st);
        // The committer refuses everything else now, and writes this record.
        let _ = self.committer.try_send(Op::system(rollback_event(detail)));
    }

    fn db_size(&self) -> Result<u64> {
        let mut c = self.store.conn()?;
        Ok(tlog::head(&mut c)?.0 as u64)
    }

    fn proof(&self, old: u64, size: u64) -> Result<Vec<[u8; 32]>> {
        if old == 0 || old == size {
            return Ok(Vec::new());
        }
        // Held while the proof is read: the workers of a round are woken together, and the
        // second one waits for the first one's proof instead of reading it again beside it.
        let mut cached = self.last_proof.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref().filter(|c| (c.old, c.size) == (old, size)) {
            return Ok(c.proof.clone());
        }
        let mut c = self.store.conn()?;
        let mut nodes = tlog::DbNodes::new(&mut c)?;
        let proof = tlog::consistency_proof(&mut nodes, old, size)?;
        *cached = Some(CachedProof {
            old,
            size,
            proof: proof.clone(),
        });
        Ok(proof)
    }

    /// Move the target to the newest stored checkpoint when it is larger (another process
    /// sharing the database advanced the witnesses).
    fn catch_up_target(&self) -> Result<()> {
        if let Some((size, note)) = latest_stored(&self.store)? {
            let mut st = lock(&self.state);
            if st.latest.as_ref().is_none_or(|(s, _)| *s < size) {
                st.latest = Some((size, note));
            }
            if st.round.as_ref().is_some_and(|(s, _)| *s < size) {
                st.round = None;
            }
            self.changed.notify_all();
        }
        Ok(())
    }
}

/// A committer batch in progress (see [`Gate::batch_begins`]).
pub(crate) struct BatchGuard<'a>(&'a Gate);

impl Drop for BatchGuard<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.batches_ended += 1;
        // Only a round no worker took yet waits for batches, and only for one that ended.
        if st.round.is_none() && st.wake_at_batch.is_some_and(|b| st.batches_ended >= b) {
            st.wake_at_batch = None;
            self.0.changed.notify_all();
        }
    }
}

fn rollback_error(reason: &str) -> HsmError {
    HsmError::RollbackDetected(reason.to_string())
}

/// One witness's loop: send the target, learn the witness's size from 409s, back off while it
/// is unreachable. Holds the gate only while working, so it ends when the HSM is dropped.
fn worker(weak: Weak<Gate>, i: usize) {
    // The size this worker believes its witness holds: learned from 409 at first.
    let mut old: u64 = 0;
    let mut backoff = BACKOFF_START;
    let mut conflicts = 0u32;
    loop {
        let Some(gate) = weak.upgrade() else { return };
        if gate.rollback().is_some() {
            return;
        }
        let Some((size, note)) = gate.next_job(i) else {
            gate.store_stale_lines();
            continue;
        };
        let w = gate.set.witnesses[i].clone();
        let proof = match gate.proof(old, size) {
            Ok(p) => p,
            Err(e) => {
                gate.failed(
                    i,
                    format!("cannot compute the consistency proof {old} -> {size}: {e}"),
                );
                drop(gate);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let req = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note.clone(),
        };
        let answer = w.add_checkpoint(&req);
        let pause = match answer {
            Err(why) => {
                gate.failed(i, format!("unreachable: {why}"));
                true
            }
            Ok(WitnessAnswer::Cosigned(lines)) => {
                let line = lines.split_inclusive('\n').find(|l| {
                    let mut with = note.clone();
                    with.push_str(l);
                    kagi_tlog::open_cosignature(&with, w.name(), &w.public_key()).is_ok()
                });
                match line {
                    None => {
                        gate.failed(
                            i,
                            "it answered 200 without a valid cosignature by its configured key: check the witness's verifier key in kagi's settings".into(),
                        );
                        true
                    }
                    Some(line) => {
                        old = size;
                        conflicts = 0;
                        backoff = BACKOFF_START;
                        gate.cosigned(i, size, &note, line.to_string());
                        false
                    }
                }
            }
            Ok(WitnessAnswer::Conflict(theirs)) => {
                conflicts += 1;
                match gate.db_size() {
                    Err(e) => {
                        gate.failed(i, format!("cannot read the log's size: {e}"));
                        true
                    }
                    Ok(ours) if theirs > ours => {
                        gate.detected_rollback(
                            i,
                            format!("it has seen the log at size {theirs}, but this database's log has only {ours} entries"),
                            serde_json::json!({"witness": w.name(), "witness_size": theirs, "log_size": ours}),
                        );
                        return;
                    }
                    Ok(ours) if theirs == old && theirs == size => {
                        gate.detected_rollback(
                            i,
                            format!("it holds another checkpoint at size {theirs} (the same size, another root)"),
                            serde_json::json!({"witness": w.name(), "witness_size": theirs, "log_size": ours, "fork": true}),
                        );
                        return;
                    }
                    Ok(_) => {
                        old = theirs;
                        if theirs > size {
                            if let Err(e) = gate.catch_up_target() {
                                gate.failed(i, format!("cannot read the newest checkpoint: {e}"));
                            }
                        }
                        // Retry at once; a witness that keeps moving is retried more slowly.
                        conflicts > 3
                    }
                }
            }
            Ok(WitnessAnswer::Refused {
                status: 422,
                message,
            }) => {
                let ours = gate.db_size().unwrap_or(size);
                gate.detected_rollback(
                    i,
                    format!("it refused the consistency proof from size {old} to {size} computed from this database ({message})"),
                    serde_json::json!({"witness": w.name(), "witness_size": old, "log_size": ours, "refused_proof": true}),
                );
                return;
            }
            Ok(WitnessAnswer::Refused { status, message }) => {
                gate.failed(
                    i,
                    format!("it refused the checkpoint with status {status}: {message}"),
                );
                true
            }
        };
        drop(gate);
        if pause {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// The audit record of a detected rollback.
fn rollback_event(detail: serde_json::Value) -> EventDraft {
    EventDraft {
        actor: "hsm".into(),
        action: "tlog.rollback_detected".into(),
        partition: None,
        key_id: None,
        detail,
        outcome: None,
        use_hi: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_waits_after_a_busy_round_as_long_as_it_took_and_at_once_after_an_idle_one() {
        let ms = Duration::from_millis;
        // Many results: the previous round's whole duration, up to the cap.
        assert_eq!(spacing(ms(5), SPACING_FULL_AT), ms(5));
        assert_eq!(spacing(ms(5), 10 * SPACING_FULL_AT), ms(5));
        assert_eq!(spacing(ms(30), 500), SPACING_MAX);
        // Few results (a light load, where a slow round is a slow disk): a share of it.
        assert_eq!(spacing(ms(32), SPACING_FULL_AT / 4), SPACING_MAX);
        assert_eq!(spacing(ms(8), SPACING_FULL_AT / 4), ms(2));
        assert_eq!(spacing(ms(20), 1), ms(20) / SPACING_FULL_AT as u32);
        assert_eq!(spacing(ms(20), 0), Duration::ZERO);
    }
}
