//! Group commit: one thread owns the write path. Concurrent requests queue here, and each batch
//! becomes one durable transaction that reserves usage, applies state changes and appends their
//! audit records with one signed checkpoint.
//!
//! Nothing is released before its batch commits ("count, then sign"): a crash can waste a
//! reserved use, never grant one. The head row of the audit log is locked first in every batch,
//! so several processes sharing one database serialize their batches instead of interleaving
//! them.

use diesel::prelude::*;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Weak};

use crate::audit::{self, AuditEvent, AuditKeys};
use crate::error::{HsmError, Result};
use crate::integrity::Integrity;
use crate::store::schema::{audit_checkpoints, audit_head, audit_records, keys, quota_counters};
use crate::store::{AnyConnection, Store};
use crate::witnessing::{Gate, WitnessSet};
use kagi_tlog::merkle::leaf_hash;

/// Largest batch: bounds the latency a request can add to others in its batch.
const MAX_BATCH: usize = 512;
const QUEUE: usize = 8192;
/// Rows per multi-row INSERT: 10 columns each stays far below both backends' bind limits.
const INSERT_CHUNK: usize = 200;

pub(crate) type ApplyFn = Box<dyn FnOnce(&mut AnyConnection) -> Result<()> + Send>;

/// What one use reserves: a use of a stored key (none for a key the caller brought wrapped),
/// and one use of each policy quota the use is charged to.
pub(crate) struct Reservation {
    pub key: Option<KeyReservation>,
    /// Policy quotas charged with this use: all of them have room, or nothing is counted.
    pub quotas: Vec<QuotaReservation>,
}

/// A use to reserve on a stored key, checked against the attributes the caller authenticated.
pub(crate) struct KeyReservation {
    pub key_id: String,
    pub label: String,
    pub generation: i64,
    pub limit: Option<i64>,
    /// Highest usage count this process knows to be spent (from the audit log and its own
    /// reservations). A database count below it means an old row was restored.
    pub high_water: Arc<AtomicI64>,
}

/// One use charged against a policy quota, with the limits from the active policy.
pub(crate) struct QuotaReservation {
    pub name: String,
    pub total: Option<i64>,
    pub per_hour: Option<i64>,
    pub per_day: Option<i64>,
    /// Highest total the audit log records for this quota: the floor of its counter.
    pub high_water: Arc<AtomicI64>,
}

/// Per-(quota, window) state within one batch.
struct QuotaTouch {
    /// `None` when the window has no row yet.
    start: Option<i64>,
    current: i64,
    high_water: Option<Arc<AtomicI64>>,
}

/// The windows a quota counts in, at `now_s`, with their limits.
fn quota_windows(q: &QuotaReservation, now_s: i64) -> Vec<(String, i64, String)> {
    let mut w = Vec::with_capacity(3);
    if let Some(l) = q.total {
        w.push(("total".to_string(), l, format!("total limit {l}")));
    }
    if let Some(l) = q.per_hour {
        w.push((format!("h{}", now_s / 3600), l, format!("{l} per hour")));
    }
    if let Some(l) = q.per_day {
        w.push((format!("d{}", now_s / 86_400), l, format!("{l} per day")));
    }
    w
}

/// What the audit record of an operation says; outcome and sequence are filled at commit.
pub(crate) struct EventDraft {
    pub actor: String,
    pub action: String,
    pub partition: Option<String>,
    pub key_id: Option<String>,
    pub detail: serde_json::Value,
    /// Set when the operation "succeeds" at recording a refusal (a failed login, say).
    pub outcome: Option<String>,
    /// A counter value the record vouches for (a policy version, say); key uses set theirs.
    pub use_hi: Option<i64>,
}

pub(crate) struct Op {
    pub reserve: Option<Reservation>,
    pub apply: Option<ApplyFn>,
    /// Rows another part of kagi stores with this op's use (an issued certificate, say).
    /// Rows of one type are inserted together after the batch's reservations (multi-row on
    /// PostgreSQL), with no savepoint each: on a busy CA the per-row round trips, not the
    /// signatures, would otherwise bound issuance.
    pub rows: Option<Box<dyn ErasedRow>>,
    /// The transparency-log entry of a signature: appended in this batch, with this op's use.
    pub tlog: Option<Vec<u8>>,
    pub event: EventDraft,
    /// The HSM's own record (a detected rollback): committed even once results are withheld.
    system: bool,
    reply: SyncSender<Reply>,
    /// Set once the op committed and its result waits for the witnesses' quorum: the caller
    /// reads it when its wait times out, instead of being woken once more to be told.
    held: Arc<AtomicBool>,
}

impl Op {
    /// An audit record the HSM writes about itself, answered to no one.
    pub(crate) fn system(event: EventDraft) -> Op {
        let (reply, _) = mpsc::sync_channel(2);
        Op {
            reserve: None,
            apply: None,
            rows: None,
            tlog: None,
            event,
            system: true,
            reply,
            held: Arc::default(),
        }
    }
}

/// What the committer (or, under witnesses, the release stage) tells a waiting caller.
pub(crate) type Reply = Result<Committed>;

/// A change that commits with an op: a closure over the connection, or other crates' rows.
pub(crate) enum Staged {
    Apply(ApplyFn),
    Rows(Box<dyn ErasedRow>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed {
    pub seq: i64,
    pub use_hi: Option<i64>,
    /// Index of this op's transparency-log entry.
    pub tlog_index: Option<i64>,
}

/// Told about every batch the committer finishes: how many operations it held, how long its
/// transaction took, and whether it committed. A front end turns this into metrics; hsm-core
/// itself keeps no statistics and depends on no metrics library.
pub trait CommitObserver: Send + Sync {
    fn batch_done(&self, ops: usize, elapsed: std::time::Duration, committed: bool);
}

/// Where the committer finds its observer: set once by the front end, possibly after unseal
/// started the committer, so the committer holds the slot rather than the observer.
#[derive(Default)]
pub(crate) struct ObserverSlot(std::sync::RwLock<Option<Arc<dyn CommitObserver>>>);

impl ObserverSlot {
    pub(crate) fn set(&self, observer: Arc<dyn CommitObserver>) {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(observer);
    }

    fn get(&self) -> Option<Arc<dyn CommitObserver>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
pub(crate) struct Committer {
    tx: SyncSender<Op>,
    /// The release stage, when witnesses are configured.
    gate: Option<Arc<Gate>>,
}

impl Committer {
    /// Start the write path, with the verified view of the log it keeps fed and checks
    /// before every batch (empty until [`Integrity::catch_up`] first runs).
    pub(crate) fn start(
        store: Store,
        keys: Arc<AuditKeys>,
        observer: Arc<ObserverSlot>,
        witnesses: Option<WitnessSet>,
    ) -> Result<(Committer, Arc<Integrity>)> {
        let integrity = Integrity::new();
        let checked = integrity.clone();
        let (tx, rx) = mpsc::sync_channel::<Op>(QUEUE);
        let gate = match witnesses {
            Some(set) => Some(Gate::start(set, store.clone(), tx.clone())?),
            None => None,
        };
        let weak = gate.as_ref().map(Arc::downgrade);
        std::thread::Builder::new()
            .name("kagi-commit".into())
            .spawn(move || run(store, keys, checked, rx, observer, weak))
            .map_err(|e| HsmError::Store(format!("cannot start the commit thread: {e}")))?;
        Ok((Committer { tx, gate }, integrity))
    }

    /// The release stage, when witnesses are configured.
    pub(crate) fn gate(&self) -> Option<&Arc<Gate>> {
        self.gate.as_ref()
    }

    /// Queue an operation and wait until its batch is durable.
    pub(crate) fn submit(
        &self,
        reserve: Option<Reservation>,
        apply: Option<ApplyFn>,
        event: EventDraft,
    ) -> Result<Committed> {
        self.submit_staged(reserve, apply.map(Staged::Apply), None, event)
    }

    /// [`Committer::submit`] for a record that must not stop a read-only caller once the HSM
    /// failed closed (a login, an unseal): the log takes nothing more then, and the record is
    /// skipped instead of refusing the caller.
    pub(crate) fn submit_unless_closed(
        &self,
        apply: Option<ApplyFn>,
        event: EventDraft,
    ) -> Result<()> {
        match self.submit(None, apply, event) {
            Ok(_) | Err(HsmError::Integrity(_)) | Err(HsmError::RollbackDetected(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// [`Committer::submit`] with a staged change: a closure, or rows of another crate.
    pub(crate) fn submit_staged(
        &self,
        reserve: Option<Reservation>,
        staged: Option<Staged>,
        tlog: Option<Vec<u8>>,
        event: EventDraft,
    ) -> Result<Committed> {
        let (apply, rows, tlog) = match staged {
            None => (None, None, tlog),
            Some(Staged::Apply(a)) => (Some(a), None, tlog),
            Some(Staged::Rows(r)) => (None, Some(r), tlog),
        };
        let (reply, wait) = mpsc::sync_channel(1);
        let held = Arc::new(AtomicBool::new(false));
        let op = Op {
            reserve,
            apply,
            rows,
            tlog,
            event,
            system: false,
            reply,
            held: held.clone(),
        };
        if let Some(g) = &self.gate {
            g.queued();
        }
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(op)) => {
                self.tx.send(op).map_err(|_| stopped())?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        let Some(gate) = &self.gate else {
            return wait.recv().map_err(|_| stopped())?;
        };
        // Under witnesses the caller waits up to the timeout for its result. If by then its
        // use committed and is held for the quorum, it gets witness_unavailable (the use stays
        // counted); if it has not committed yet, the committer's answer is still to come.
        loop {
            match wait.recv_timeout(gate.timeout()) {
                Ok(r) => return r,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(stopped()),
                Err(mpsc::RecvTimeoutError::Timeout) if held.load(Ordering::Acquire) => {
                    return Err(gate.unavailable_error())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

fn stopped() -> HsmError {
    HsmError::Store("the commit thread stopped; restart kagi".into())
}

fn run(
    store: Store,
    keys: Arc<AuditKeys>,
    integrity: Arc<Integrity>,
    rx: Receiver<Op>,
    observer: Arc<ObserverSlot>,
    gate: Option<Weak<Gate>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let gate = match &gate {
            Some(w) => match w.upgrade() {
                Some(g) => Some(g),
                // The HSM that owned this committer is gone.
                None => return,
            },
            None => None,
        };
        // The gate learns that these key uses left the queue, and (when the guard drops) that
        // the batch ended, however it ends.
        let _batch = gate
            .as_ref()
            .map(|g| g.batch_begins(batch.iter().filter(|op| !op.system).count() as u64));
        // Failed closed: nothing more is appended to a log that does not verify.
        if let Err(e) = integrity.check() {
            let msg = e.to_string();
            for op in batch {
                let _ = op.reply.send(Err(HsmError::Integrity(msg.clone())));
            }
            continue;
        }
        // A rollback was detected: nothing more is released, and only the HSM's own record
        // of it is committed.
        if let Some(reason) = gate.as_ref().and_then(|g| g.rollback()) {
            let (system, refused): (Vec<Op>, Vec<Op>) = batch.into_iter().partition(|op| op.system);
            for op in refused {
                let _ = op
                    .reply
                    .send(Err(HsmError::RollbackDetected(reason.clone())));
            }
            if system.is_empty() {
                continue;
            }
            batch = system;
        }
        let ops = batch.len();
        let started = std::time::Instant::now();
        let committed = commit_batch(&store, &keys, &integrity, batch, gate.as_deref());
        if let Some(o) = observer.get() {
            o.batch_done(ops, started.elapsed(), committed);
        }
    }
}

/// Per-key state within one batch.
struct KeyTouch {
    start: i64,
    current: i64,
    generation: i64,
    high_water: Arc<AtomicI64>,
}

/// Commits one batch and answers each of its ops; true when the transaction committed.
fn commit_batch(
    store: &Store,
    keys: &AuditKeys,
    integrity: &Integrity,
    mut batch: Vec<Op>,
    gate: Option<&Gate>,
) -> bool {
    let mut outcomes: Vec<Result<Option<i64>>> = Vec::with_capacity(batch.len());
    let mut seqs: Vec<i64> = Vec::with_capacity(batch.len());
    // Per op: its position among the batch's log entries; and the batch's first log index.
    let mut tlog_at: Vec<Option<usize>> = Vec::with_capacity(batch.len());
    let mut tlog_first: Option<i64> = None;
    // The batch's checkpoint: (size, signed note).
    let mut tlog_note: Option<(u64, String)> = None;
    // Witnesses' cosignature lines ride along with the batch instead of taking the write
    // lock for themselves (see `witnessing`).
    let cosignatures = gate.map(Gate::take_unstored).unwrap_or_default();
    let result = store.conn().and_then(|mut conn| {
        conn.transaction::<_, HsmError, _>(|c| {
            outcomes.clear();
            seqs.clear();
            // Take the write lock first: on SQLite a write as the first statement acquires the
            // RESERVED lock up front; on PostgreSQL it row-locks the head.
            diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
                .set(audit_head::tree_size.eq(audit_head::tree_size))
                .execute(c)?;
            let mut frontier = audit::load_head(c)?;
            integrity.check_head(&frontier)?;
            let before = frontier.clone();
            let mut touched: HashMap<String, KeyTouch> = HashMap::new();
            let mut extra: Vec<(EventDraft, Option<i64>)> = Vec::new();
            let now = now_ms();

            let mut quotas: HashMap<(String, String), QuotaTouch> = HashMap::new();
            let mut rows_to_store = RowGroups::default();
            let mut tlog_bodies: Vec<Vec<u8>> = Vec::new();
            tlog_at.clear();
            for op in batch.iter_mut() {
                let mut outcome: Result<Option<i64>> = Ok(None);
                if let Some(r) = &op.reserve {
                    // Quotas first (check only), then the key, then charge the quotas: a use
                    // refused by either counts against neither.
                    outcome = check_quotas(c, &r.quotas, now / 1000, &mut quotas, &mut extra)
                        .and_then(|windows| {
                            let use_hi = match &r.key {
                                Some(k) => Some(reserve(c, k, &mut touched, &mut extra)?),
                                None => None,
                            };
                            charge_quotas(&windows, &mut quotas);
                            Ok(use_hi)
                        });
                }
                if outcome.is_ok() {
                    if let Some(apply) = op.apply.take() {
                        // A savepoint, so a failed change leaves nothing behind in the batch.
                        outcome = c.transaction(|c| apply(c)).map(|_| None);
                    }
                }
                if outcome.is_ok() {
                    if let Some(row) = op.rows.take() {
                        // A savepoint, so a refused claim leaves nothing behind in the batch and
                        // refuses this op alone.
                        match c.transaction(|c| row.claim(c)) {
                            Ok(()) => row.add_to(&mut rows_to_store),
                            Err(e) => outcome = Err(e),
                        }
                    }
                }
                tlog_at.push(match (&outcome, &op.tlog) {
                    (Ok(_), Some(body)) => {
                        tlog_bodies.push(body.clone());
                        Some(tlog_bodies.len() - 1)
                    }
                    _ => None,
                });
                outcomes.push(outcome);
            }
            rows_to_store.insert_all(c)?;
            for (key_id, t) in &touched {
                if t.current != t.start {
                    let n = diesel::update(
                        keys::table
                            .filter(keys::id.eq(key_id))
                            .filter(keys::usage_count.eq(t.start))
                            .filter(keys::generation.eq(t.generation)),
                    )
                    .set(keys::usage_count.eq(t.current))
                    .execute(c)?;
                    if n != 1 {
                        return Err(HsmError::Store(
                            "a key's usage counter changed during a locked batch; retry".into(),
                        ));
                    }
                }
            }

            // Build every record first, then insert them in multi-row statements: one round
            // trip per chunk instead of one per record matters on PostgreSQL.
            let mut records: Vec<AuditEvent> = Vec::with_capacity(extra.len() + batch.len());
            write_quotas(c, &quotas, &mut extra)?;
            let mut append = |draft: &EventDraft, outcome: String, use_hi: Option<i64>| -> i64 {
                let mut ev = AuditEvent {
                    seq: frontier.size as i64,
                    ts: now,
                    actor: draft.actor.clone(),
                    action: draft.action.clone(),
                    partition_name: draft.partition.clone(),
                    key_id: draft.key_id.clone(),
                    use_hi,
                    outcome,
                    detail: draft.detail.to_string(),
                    mac: Vec::new(),
                };
                ev.mac = keys.mac_of(&ev);
                frontier.push(leaf_hash(&ev.entry_bytes()));
                let seq = ev.seq;
                records.push(ev);
                seq
            };
            for (draft, use_hi) in &extra {
                append(draft, "ok".into(), *use_hi);
            }
            for (op, outcome) in batch.iter().zip(outcomes.iter()) {
                let (text, use_hi) = match outcome {
                    Ok(u) => (
                        op.event.outcome.clone().unwrap_or_else(|| "ok".to_string()),
                        u.or(op.event.use_hi),
                    ),
                    Err(e) => (format!("denied:{}", e.code()), None),
                };
                seqs.push(append(&op.event, text, use_hi));
            }
            let c: &mut AnyConnection = c;
            match c {
                AnyConnection::Postgresql(pg) => {
                    for chunk in records.chunks(INSERT_CHUNK) {
                        diesel::insert_into(audit_records::table)
                            .values(chunk)
                            .execute(pg)?;
                    }
                }
                // One statement per chunk here too: building and stepping a statement per
                // row was a visible share of the commit thread.
                AnyConnection::Sqlite(sq) => {
                    for chunk in records.chunks(INSERT_CHUNK) {
                        diesel::insert_into(audit_records::table)
                            .values(chunk)
                            .execute(sq)?;
                    }
                }
            }
            let root = frontier.root();
            // The public log after the audit head (lock order), one signed note per batch.
            // Witnessed, every batch also logs the audit log's state (an anchor), so every
            // batch has a checkpoint covering it, whatever it holds.
            tlog_first = None;
            tlog_note = None;
            if gate.is_some() {
                tlog_bodies.push(
                    kagi_tlog::AuditCheckpointEntry {
                        time: now / 1000,
                        audit_size: frontier.size as i64,
                        audit_root: root,
                    }
                    .canonical_bytes(),
                );
            }
            if !tlog_bodies.is_empty() {
                let (first, size, tlog_root) = crate::tlog::append(c, &tlog_bodies, now)?;
                let body =
                    crate::tlog::checkpoint_body(crate::tlog::ORIGIN, size as u64, &tlog_root);
                let note = crate::tlog::sign_note(&body, crate::tlog::ORIGIN, &keys.tlog)?;
                crate::tlog::store_checkpoint(c, size, now, &note)?;
                tlog_first = Some(first);
                tlog_note = Some((size as u64, note));
            }
            if let Some(g) = gate {
                g.store_lines(c, &cosignatures)?;
            }
            let cp = keys.sign_checkpoint(frontier.size as i64, &root, now)?;
            diesel::insert_into(audit_checkpoints::table)
                .values(&cp)
                .execute(c)?;
            diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
                .set((
                    audit_head::tree_size.eq(frontier.size as i64),
                    audit_head::frontier.eq(frontier.to_bytes()),
                ))
                .execute(c)?;
            Ok((touched, quotas, before, records))
        })
    });
    match result {
        Ok((touched, quotas, before, records)) => {
            integrity.committed(&before, &records);
            for t in touched.values() {
                t.high_water.fetch_max(t.current, Ordering::SeqCst);
            }
            for q in quotas.values() {
                if let Some(hw) = &q.high_water {
                    hw.fetch_max(q.current, Ordering::SeqCst);
                }
            }
            let mut held = Vec::new();
            for (((op, outcome), seq), at) in batch.into_iter().zip(outcomes).zip(seqs).zip(tlog_at)
            {
                let tlog_index = at.and_then(|i| tlog_first.map(|f| f + i as i64));
                let outcome = outcome.map(|use_hi| Committed {
                    seq,
                    use_hi,
                    tlog_index,
                });
                // Under witnesses a key use's result (a signature, a certificate, a timestamp)
                // waits for the quorum; other changes are answered now.
                let gated =
                    gate.is_some() && !op.system && (op.reserve.is_some() || op.tlog.is_some());
                match outcome {
                    Ok(done) if gated => {
                        op.held.store(true, Ordering::Release);
                        held.push((op.reply, done));
                    }
                    other => {
                        let _ = op.reply.send(other);
                    }
                }
            }
            if let (Some(g), Some((size, note))) = (gate, tlog_note) {
                g.committed(size, note, held);
            }
            true
        }
        Err(e) => {
            if let Some(g) = gate {
                g.requeue(cosignatures);
            }
            log::error!("audit/usage batch failed, nothing in it was released: {e}");
            let msg = e.to_string();
            let closed = matches!(e, HsmError::Integrity(_));
            for op in batch {
                let _ = op.reply.send(Err(if closed {
                    HsmError::Integrity(msg.clone())
                } else {
                    HsmError::Store(format!(
                        "the operation could not be recorded durably, so it was not performed: {msg}"
                    ))
                }));
            }
            false
        }
    }
}

/// Rows that another crate commits in the same transaction as a key use. hsm-core does not
/// know what they are: it collects a batch's rows by type and hands each type's rows to
/// [`StagedRow::insert_all`] once, after the batch's reservations succeeded. An error there
/// (a unique-key collision, say) fails the whole batch, which then releases nothing.
pub trait StagedRow: Send + 'static {
    /// Insert rows of this type staged by one batch, in as few statements as the backend
    /// allows.
    fn insert_all(rows: Vec<Self>, c: &mut AnyConnection) -> Result<()>
    where
        Self: Sized;

    /// Run for each row on its own, in order, after its op's reservation and before the batch's
    /// rows are inserted, in a savepoint: what it writes is seen by the batch's later rows, and
    /// an error refuses this op alone (a uniqueness rule between rows, say). Batches are
    /// serialized by the audit head lock, so what it reads cannot change under it.
    fn claim(&self, _c: &mut AnyConnection) -> Result<()> {
        Ok(())
    }
}

/// A staged row with its type erased, so one queue carries every crate's rows.
pub(crate) trait ErasedRow: Send {
    fn add_to(self: Box<Self>, groups: &mut RowGroups);
    fn claim(&self, c: &mut AnyConnection) -> Result<()>;
}

impl<T: StagedRow> ErasedRow for T {
    fn claim(&self, c: &mut AnyConnection) -> Result<()> {
        StagedRow::claim(self, c)
    }

    fn add_to(self: Box<Self>, groups: &mut RowGroups) {
        let group = groups
            .0
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(Vec::<T>::new()));
        if let Some(rows) = group.as_any().downcast_mut::<Vec<T>>() {
            rows.push(*self);
        }
    }
}

/// One batch's rows, by type.
#[derive(Default)]
pub(crate) struct RowGroups(BTreeMap<TypeId, Box<dyn RowGroup>>);

trait RowGroup: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn insert(self: Box<Self>, c: &mut AnyConnection) -> Result<()>;
}

impl<T: StagedRow> RowGroup for Vec<T> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn insert(self: Box<Self>, c: &mut AnyConnection) -> Result<()> {
        T::insert_all(*self, c)
    }
}

impl RowGroups {
    fn insert_all(self, c: &mut AnyConnection) -> Result<()> {
        for group in self.0.into_values() {
            group.insert(c)?;
        }
        Ok(())
    }
}

fn check_quotas(
    c: &mut AnyConnection,
    qs: &[QuotaReservation],
    now_s: i64,
    state: &mut HashMap<(String, String), QuotaTouch>,
    extra: &mut Vec<(EventDraft, Option<i64>)>,
) -> Result<Vec<(String, String)>> {
    let mut windows = Vec::new();
    for q in qs {
        for (window, limit, text) in quota_windows(q, now_s) {
            let k = (q.name.clone(), window.clone());
            if !state.contains_key(&k) {
                let start: Option<i64> = quota_counters::table
                    .filter(quota_counters::name.eq(&q.name))
                    .filter(quota_counters::window_id.eq(&window))
                    .select(quota_counters::used)
                    .first(c)
                    .optional()?;
                let mut current = start.unwrap_or(0);
                let high_water = (window == "total").then(|| q.high_water.clone());
                if let Some(hw) = &high_water {
                    let floor = hw.load(Ordering::SeqCst);
                    if current < floor {
                        extra.push((
                            EventDraft {
                                actor: "hsm".into(),
                                action: "quota.counter_rollback_detected".into(),
                                partition: None,
                                key_id: Some(format!("quota:{}", q.name)),
                                detail: serde_json::json!({"quota": q.name, "stored_count": current, "audited_count": floor}),
                                outcome: None,
                                use_hi: None,
                            },
                            None,
                        ));
                        current = floor;
                    }
                }
                state.insert(
                    k.clone(),
                    QuotaTouch {
                        start,
                        current,
                        high_water,
                    },
                );
            }
            let used = state.get(&k).map(|t| t.current).unwrap_or(0);
            if used >= limit {
                return Err(HsmError::QuotaExhausted {
                    quota: q.name.clone(),
                    window: text,
                });
            }
            windows.push(k);
        }
    }
    Ok(windows)
}

/// Count one use in each window `check_quotas` found room in.
fn charge_quotas(windows: &[(String, String)], state: &mut HashMap<(String, String), QuotaTouch>) {
    for k in windows {
        if let Some(t) = state.get_mut(k) {
            t.current += 1;
        }
    }
}

/// Write the batch's quota counters, and one audit record per charged total so the audit log
/// holds each quota's floor (an old counter row put back cannot return spent quota).
fn write_quotas(
    c: &mut AnyConnection,
    state: &HashMap<(String, String), QuotaTouch>,
    extra: &mut Vec<(EventDraft, Option<i64>)>,
) -> Result<()> {
    for ((name, window), t) in state {
        if Some(t.current) == t.start || (t.start.is_none() && t.current == 0) {
            continue;
        }
        match t.start {
            Some(start) => {
                let n = diesel::update(
                    quota_counters::table
                        .filter(quota_counters::name.eq(name))
                        .filter(quota_counters::window_id.eq(window))
                        .filter(quota_counters::used.eq(start)),
                )
                .set(quota_counters::used.eq(t.current))
                .execute(c)?;
                if n != 1 {
                    return Err(HsmError::Store(
                        "a quota counter changed during a locked batch; retry".into(),
                    ));
                }
            }
            None => {
                // A new hour or day has begun for this quota: its earlier windows count for
                // nothing any more.
                if let Some(kind) = window.get(..1).filter(|k| *k == "h" || *k == "d") {
                    diesel::delete(
                        quota_counters::table
                            .filter(quota_counters::name.eq(name))
                            .filter(quota_counters::window_id.like(format!("{kind}%")))
                            .filter(quota_counters::window_id.ne(window)),
                    )
                    .execute(c)?;
                }
                diesel::insert_into(quota_counters::table)
                    .values((
                        quota_counters::name.eq(name),
                        quota_counters::window_id.eq(window),
                        quota_counters::used.eq(t.current),
                    ))
                    .execute(c)?;
            }
        }
        if window == "total" {
            extra.push((
                EventDraft {
                    actor: "hsm".into(),
                    action: "quota.use".into(),
                    partition: None,
                    key_id: Some(format!("quota:{name}")),
                    detail: serde_json::json!({"quota": name, "used": t.current}),
                    outcome: None,
                    use_hi: None,
                },
                Some(t.current),
            ));
        }
    }
    Ok(())
}

/// Reserve one use. Reads the key row once per batch; the batch writes the total at the end.
fn reserve(
    c: &mut AnyConnection,
    r: &KeyReservation,
    touched: &mut HashMap<String, KeyTouch>,
    extra: &mut Vec<(EventDraft, Option<i64>)>,
) -> Result<i64> {
    if !touched.contains_key(&r.key_id) {
        let row: Option<(i64, i64, String)> = keys::table
            .filter(keys::id.eq(&r.key_id))
            .select((keys::usage_count, keys::generation, keys::state))
            .first(c)
            .optional()?;
        let Some((count, generation, state)) = row else {
            return Err(HsmError::KeyNotFound(r.label.clone()));
        };
        if generation != r.generation || state != "active" {
            return Err(HsmError::KeyChanged(r.label.clone()));
        }
        let hw = r.high_water.load(Ordering::SeqCst);
        let current = if count < hw {
            // Someone put back an older copy of the row. The audit log and this process know
            // better; count from there and say so in the log.
            extra.push((
                EventDraft {
                    actor: "hsm".into(),
                    action: "key.counter_rollback_detected".into(),
                    partition: None,
                    key_id: Some(r.key_id.clone()),
                    detail: serde_json::json!({"label": r.label, "stored_count": count, "audited_count": hw}),
                    outcome: None,
                    use_hi: None,
                },
                None,
            ));
            log::warn!(
                "key '{}': stored usage count {count} is below the audited {hw}; using {hw}",
                r.label
            );
            hw
        } else {
            count
        };
        touched.insert(
            r.key_id.clone(),
            KeyTouch {
                start: count,
                current,
                generation,
                high_water: r.high_water.clone(),
            },
        );
    }
    let t = touched
        .get_mut(&r.key_id)
        .ok_or_else(|| HsmError::Store("internal: key vanished from batch".into()))?;
    if let Some(limit) = r.limit {
        if t.current >= limit {
            return Err(HsmError::UsageLimitReached {
                label: r.label.clone(),
                limit,
            });
        }
    }
    t.current += 1;
    Ok(t.current)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
