//! Reading and verifying the audit log, and recording events that change nothing else.

use super::*;

impl Hsm {
    pub fn audit_verify(&self, s: &Session) -> Result<AuditReport> {
        s.require(Role::Auditor, "verify the audit log")?;
        let u = self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        audit::verify(&mut c, &u.audit)
    }

    pub fn audit_records(&self, s: &Session, from_seq: i64, limit: i64) -> Result<Vec<AuditEvent>> {
        s.require(Role::Auditor, "read the audit log")?;
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        Ok(audit_records::table
            .filter(audit_records::seq.ge(from_seq.max(0)))
            .order(audit_records::seq.asc())
            .limit(limit.clamp(1, 10_000))
            .load(&mut c)?)
    }

    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let mut c = self.inner.store.conn()?;
        Ok(audit_checkpoints::table
            .order(audit_checkpoints::tree_size.desc())
            .first(&mut c)
            .optional()?)
    }

    /// SPKI DER of the audit key that signs checkpoints.
    pub fn audit_public_key(&self) -> Result<Vec<u8>> {
        Ok(self.unsealed()?.audit.public_key_der())
    }

    /// Record an event seen by a front end (a rejected request, say).
    pub fn record_event(
        &self,
        actor: &str,
        action: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let u = self.unsealed()?;
        u.committer.submit(
            None,
            None,
            EventDraft {
                actor: actor.chars().take(256).collect(),
                action: action.chars().take(128).collect(),
                partition: None,
                key_id: None,
                detail,
                outcome: Some(outcome.chars().take(128).collect()),
                use_hi: None,
            },
        )?;
        Ok(())
    }
}
