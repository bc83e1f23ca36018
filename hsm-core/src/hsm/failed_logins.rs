//! Failed logins, audited in aggregate: one record per source and window, with a count.
//!
//! A record per refused token would let anyone who reaches the port grow the audit log (and
//! the database) at will. The refusals are tallied in memory instead, per source address and
//! window, and each tally becomes one audit record when its window closes: how many, which
//! reasons, which credential ids were named (a bounded sample), first and last time. A crash
//! loses at most the open windows' tallies.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;

/// Sources tallied at once; beyond it refusals go to one shared tally, so memory stays bounded
/// however many addresses an attacker has.
const MAX_SOURCES: usize = 4096;
/// Credential ids named per tally, at most.
const MAX_NAMED: usize = 16;
/// The tally refusals from sources over [`MAX_SOURCES`] go to.
const OVERFLOW_SOURCE: &str = "(other sources)";

/// Why a login was refused, as the aggregate record counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Refusal {
    Malformed,
    UnknownCredential,
    BadSecret,
    UnknownCertificate,
    Revoked,
    Expired,
    Locked,
    /// Refused by the service's rate limit before any check ran.
    Throttled,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownCredential => "unknown_credential",
            Refusal::BadSecret => "bad_secret",
            Refusal::UnknownCertificate => "unknown_certificate",
            Refusal::Revoked => "credential_revoked",
            Refusal::Expired => "credential_expired",
            Refusal::Locked => "credential_locked",
            Refusal::Throttled => "too_many_attempts",
        }
    }
}

struct Tally {
    opened: Instant,
    first: i64,
    last: i64,
    count: u64,
    reasons: BTreeMap<Refusal, u64>,
    credentials: BTreeSet<String>,
}

#[derive(Default)]
pub(crate) struct FailedLogins {
    open: HashMap<String, Tally>,
}

impl FailedLogins {
    fn add(&mut self, source: &str, reason: Refusal, credential: Option<&str>) {
        let key = if self.open.contains_key(source) || self.open.len() < MAX_SOURCES {
            source
        } else {
            OVERFLOW_SOURCE
        };
        let now = now_ms();
        let t = self.open.entry(key.to_string()).or_insert_with(|| Tally {
            opened: Instant::now(),
            first: now,
            last: now,
            count: 0,
            reasons: BTreeMap::new(),
            credentials: BTreeSet::new(),
        });
        t.count = t.count.saturating_add(1);
        t.last = now;
        *t.reasons.entry(reason).or_insert(0) += 1;
        if let Some(id) = credential {
            if t.credentials.len() < MAX_NAMED {
                t.credentials.insert(id.chars().take(64).collect());
            }
        }
    }

    /// Takes the tallies whose window has closed (all of them with `all`).
    fn take_due(&mut self, all: bool, window: Duration) -> Vec<(String, Tally)> {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, t)| all || t.opened.elapsed() >= window)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.open.remove(&k).map(|t| (k, t)))
            .collect()
    }

    fn any_due(&self, window: Duration) -> bool {
        self.open.values().any(|t| t.opened.elapsed() >= window)
    }
}

impl Hsm {
    /// Count one refused login from `source`. No I/O: a front end may call it on its event
    /// loop (for example for a request its rate limit refused).
    pub(crate) fn tally_refusal(&self, source: &str, reason: Refusal, credential: Option<&str>) {
        if let Ok(mut f) = self.inner.failed_logins.lock() {
            f.add(source, reason, credential);
        }
    }

    /// A login refused by the front end's rate limit before it reached hsm-core: counted in
    /// `source`'s aggregate record like any other refusal. No I/O.
    pub fn note_throttled_login(&self, source: &str) {
        self.tally_refusal(source, Refusal::Throttled, None);
    }

    /// The window refused logins are aggregated over.
    pub fn failed_login_window(&self) -> Duration {
        self.inner.failed_login_window
    }

    /// Write the aggregate record of every tally whose window has closed (every tally with
    /// `all`, for a shutdown or a test). Returns how many records were written. A front end
    /// calls it on a timer; refused logins also call it, so a busy attacker's windows close
    /// on time without one.
    pub fn flush_failed_logins(&self, all: bool) -> Result<usize> {
        let u = self.unsealed()?;
        let due = match self.inner.failed_logins.lock() {
            Ok(mut f) => f.take_due(all, self.inner.failed_login_window),
            Err(_) => return Err(lock_err()),
        };
        let n = due.len();
        for (source, t) in due {
            let reasons: serde_json::Map<String, serde_json::Value> = t
                .reasons
                .iter()
                .map(|(r, n)| (r.as_str().to_string(), serde_json::json!(n)))
                .collect();
            u.committer.submit(
                None,
                None,
                EventDraft {
                    actor: format!("source:{source}"),
                    action: "auth.failed_logins".into(),
                    partition: None,
                    key_id: None,
                    detail: serde_json::json!({
                        "source": source,
                        "count": t.count,
                        "first_ms": t.first,
                        "last_ms": t.last,
                        "reasons": reasons,
                        "credentials": t.credentials,
                    }),
                    outcome: Some("denied:bad_credential".into()),
                    use_hi: None,
                },
            )?;
        }
        Ok(n)
    }

    /// Flush closed windows if there are any; a failure to audit is logged, not returned, so
    /// the caller's own refusal still reaches it.
    pub(super) fn flush_due_failed_logins(&self) {
        let due = self
            .inner
            .failed_logins
            .lock()
            .map(|f| f.any_due(self.inner.failed_login_window))
            .unwrap_or(false);
        if due {
            if let Err(e) = self.flush_failed_logins(false) {
                log::error!("could not write the failed-login audit records: {e}");
            }
        }
    }
}
