//! What an operator watches, read without side effects: whether the database answers, how far
//! each key and quota is used, how large the logs are, and a hook on committed batches. None of
//! it writes an audit record or needs a session: it names only counts, and the front end
//! decides who may see them.

use super::*;
use crate::commit::CommitObserver;

/// One key's uses against its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub partition: String,
    pub label: String,
    /// Uses so far: the stored counter, or the audit log's when that is higher (as `key show`).
    pub uses: i64,
    pub limit: Option<i64>,
}

/// One policy quota's uses in its windows (what counts now: this hour, today, in total).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaUsage {
    pub total: i64,
    pub this_hour: i64,
    pub today: i64,
}

/// Entries in the audit log and in the transparency log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSizes {
    pub audit: i64,
    pub transparency: i64,
}

impl Hsm {
    /// `Ok` when the database answers `SELECT 1` within `timeout` (readiness).
    pub fn ping_store(&self, timeout: Duration) -> Result<()> {
        self.inner.store.ping(timeout)
    }

    /// Have `observer` told about every batch the committer finishes, from now on (it replaces
    /// an earlier one).
    pub fn observe_commits(&self, observer: Arc<dyn CommitObserver>) {
        self.inner.commit_observer.set(observer);
    }

    /// Every live key of every partition with its uses and limit. Unsealed only (the audited
    /// count is read from the verified log).
    pub fn key_usage(&self) -> Result<Vec<KeyUsage>> {
        let u = self.unsealed()?;
        // One connection for the whole scrape: a checkout per key would cost a round trip each.
        let mut c = self.inner.store.conn()?;
        let rows: Vec<(String, String, String, i64, Option<i64>)> = keys::table
            .filter(keys::state.ne("destroyed"))
            // One series per name: a rotated key's earlier versions sign nothing more.
            .filter(super::keyring::current_version())
            .order((keys::partition_name.asc(), keys::label.asc()))
            .select((
                keys::id,
                keys::partition_name,
                keys::label,
                keys::usage_count,
                keys::usage_limit,
            ))
            .load(&mut c)?;
        rows.into_iter()
            .map(|(id, partition, label, count, limit)| {
                Ok(KeyUsage {
                    partition,
                    label,
                    uses: count.max(u.integrity.use_hi(&mut c, &u.audit, &id)?),
                    limit,
                })
            })
            .collect()
    }

    /// The uses counted against quota `name` in its windows now.
    pub fn quota_usage(&self, name: &str) -> Result<QuotaUsage> {
        let now_s = now_ms() / 1000;
        let (hour, day) = (format!("h{}", now_s / 3600), format!("d{}", now_s / 86_400));
        let mut c = self.inner.store.conn()?;
        let rows: Vec<(String, i64)> = quota_counters::table
            .filter(quota_counters::name.eq(name))
            .select((quota_counters::window_id, quota_counters::used))
            .load(&mut c)?;
        drop(c);
        let mut usage = QuotaUsage {
            total: self.quota_used(name)?,
            ..QuotaUsage::default()
        };
        for (window, used) in rows {
            if window == hour {
                usage.this_hour = used;
            } else if window == day {
                usage.today = used;
            }
        }
        Ok(usage)
    }

    /// Transparency-log entries (every signature and certificate) per UTC day over the last
    /// `days` days, oldest first, as (days since 1970-01-01, count). It reads the entries'
    /// times only, one scan of the window (no per-day index yet).
    pub fn log_entries_per_day(&self, days: i64) -> Result<Vec<(i64, i64)>> {
        const DAY_MS: i64 = 86_400_000;
        let days = days.clamp(1, 366);
        let first = now_ms() / DAY_MS - days + 1;
        let mut c = self.inner.store.conn()?;
        let times: Vec<i64> = crate::store::schema::tlog_entries::table
            .filter(crate::store::schema::tlog_entries::ts.ge(first * DAY_MS))
            .select(crate::store::schema::tlog_entries::ts)
            .load(&mut c)?;
        drop(c);
        let mut counts = vec![0i64; days as usize];
        for t in times {
            if let Some(n) = usize::try_from(t / DAY_MS - first)
                .ok()
                .and_then(|d| counts.get_mut(d))
            {
                *n += 1;
            }
        }
        Ok((first..).zip(counts).collect())
    }

    /// How many records the audit log and entries the transparency log hold.
    pub fn log_sizes(&self) -> Result<LogSizes> {
        let mut c = self.inner.store.conn()?;
        let audit: i64 = crate::store::schema::audit_head::table
            .filter(crate::store::schema::audit_head::id.eq(1))
            .select(crate::store::schema::audit_head::tree_size)
            .first(&mut c)?;
        let (transparency, _) = crate::tlog::head(&mut c)?;
        Ok(LogSizes {
            audit,
            transparency,
        })
    }
}
