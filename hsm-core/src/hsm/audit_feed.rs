//! The audit log as a feed for a forwarder (the signer's syslog sender): committed records in
//! sequence order, each with whether its MAC holds, and a durable cursor per collector that one
//! process at a time may advance (a lease, so several kagi processes on one database do not
//! all send the same records).
//!
//! The feed reads no key material out of the crate: it checks each record's MAC here and says
//! whether it held, so a record a database writer forged or changed before it was forwarded
//! reaches the collector marked as such instead of passing for kagi's.

use super::*;
use crate::store::schema::{audit_head, syslog_cursors};

/// Records read for forwarding.
#[derive(Debug, Clone)]
pub struct AuditFeed {
    /// Records from the requested sequence number on, in order, each with whether its MAC
    /// matches its content.
    pub records: Vec<(AuditEvent, bool)>,
    /// Sequence numbers below the audit head that are missing from the database (deleted by
    /// someone behind kagi's back): the feed goes on past them, the collector sees the gap.
    pub missing: Vec<i64>,
    /// The audit head: how many records the log has. Records at or beyond it are not read
    /// (they would not be kagi's: every batch writes its records and the head together).
    pub head: i64,
}

impl Hsm {
    /// Up to `limit` committed audit records from `from_seq` on, for the service's own
    /// forwarder (no session: the process forwards its own log; nothing here is secret beyond
    /// what the collector receives). Needs the HSM unsealed, to check MACs.
    pub fn audit_feed(&self, from_seq: i64, limit: i64) -> Result<AuditFeed> {
        let u = self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        // The head first: every record below it was committed with or before it.
        let head: i64 = audit_head::table
            .filter(audit_head::id.eq(1))
            .select(audit_head::tree_size)
            .first(&mut c)?;
        let from = from_seq.max(0);
        let end = head.min(from.saturating_add(limit.clamp(1, 10_000)));
        let rows: Vec<AuditEvent> = if from < end {
            audit_records::table
                .filter(audit_records::seq.ge(from))
                .filter(audit_records::seq.lt(end))
                .order(audit_records::seq.asc())
                .load(&mut c)?
        } else {
            Vec::new()
        };
        let mut missing = Vec::new();
        let mut expected = from;
        let mut records = Vec::with_capacity(rows.len());
        for ev in rows {
            while expected < ev.seq {
                missing.push(expected);
                expected += 1;
            }
            expected = ev.seq + 1;
            let want = u.audit.mac_of(&ev);
            let ok = aws_lc_rs::constant_time::verify_slices_are_equal(&want, &ev.mac).is_ok();
            records.push((ev, ok));
        }
        while expected < end {
            missing.push(expected);
            expected += 1;
        }
        Ok(AuditFeed {
            records,
            missing,
            head,
        })
    }

    /// Takes or renews the lease on `collector`'s cursor for `holder` until `now_ms + lease_ms`,
    /// creating the cursor at 0 (the whole log) the first time. Returns the cursor (the first
    /// record not yet known delivered) when `holder` has the lease, `None` while another
    /// holder's lease runs.
    pub fn feed_cursor_claim(
        &self,
        collector: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>> {
        let mut c = self.inner.store.conn()?;
        let now = now_ms();
        let exists: Option<String> = syslog_cursors::table
            .filter(syslog_cursors::collector.eq(collector))
            .select(syslog_cursors::collector)
            .first(&mut c)
            .optional()?;
        if exists.is_none() {
            let inserted = diesel::insert_into(syslog_cursors::table)
                .values((
                    syslog_cursors::collector.eq(collector),
                    syslog_cursors::next_seq.eq(0i64),
                    syslog_cursors::holder.eq(holder),
                    syslog_cursors::lease_until.eq(now + lease_ms),
                ))
                .execute(&mut c);
            match inserted {
                Ok(_) => {}
                // Another process made it first; the update below decides who holds it.
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Compare-and-set: only the holder renews, anyone takes a lapsed lease.
        let taken = diesel::update(
            syslog_cursors::table
                .filter(syslog_cursors::collector.eq(collector))
                .filter(
                    syslog_cursors::holder
                        .eq(holder)
                        .or(syslog_cursors::lease_until.lt(now)),
                ),
        )
        .set((
            syslog_cursors::holder.eq(holder),
            syslog_cursors::lease_until.eq(now + lease_ms),
        ))
        .execute(&mut c)?;
        if taken == 0 {
            return Ok(None);
        }
        Ok(Some(
            syslog_cursors::table
                .filter(syslog_cursors::collector.eq(collector))
                .select(syslog_cursors::next_seq)
                .first(&mut c)?,
        ))
    }

    /// Moves `collector`'s cursor forward to `next_seq` if `holder` still holds the lease (and
    /// never backward). Returns whether it moved.
    pub fn feed_cursor_advance(
        &self,
        collector: &str,
        holder: &str,
        next_seq: i64,
    ) -> Result<bool> {
        let mut c = self.inner.store.conn()?;
        let moved = diesel::update(
            syslog_cursors::table
                .filter(syslog_cursors::collector.eq(collector))
                .filter(syslog_cursors::holder.eq(holder))
                .filter(syslog_cursors::next_seq.lt(next_seq)),
        )
        .set(syslog_cursors::next_seq.eq(next_seq))
        .execute(&mut c)?;
        Ok(moved > 0)
    }

    /// The cursor of `collector` (the first record not yet known delivered), if forwarding
    /// to it ever started.
    pub fn feed_cursor(&self, collector: &str) -> Result<Option<i64>> {
        let mut c = self.inner.store.conn()?;
        Ok(syslog_cursors::table
            .filter(syslog_cursors::collector.eq(collector))
            .select(syslog_cursors::next_seq)
            .first(&mut c)
            .optional()?)
    }
}
