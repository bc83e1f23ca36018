//! The officers' act that ends a detected rollback.
//!
//! When a witness shows that the database went back (restored, forked, truncated), the HSM
//! records `tlog.rollback_detected` and makes nothing more. Resetting the witnesses and
//! restarting is not enough to sign again: that is what an attacker who restored the database
//! would also do. Signing resumes only after a `tlog.rollback_recovered` record, which an
//! officer requests and the policy's quorum approves, so a person on record says the restore
//! was deliberate. Keys with usage limits and the policy's quotas stay frozen after that,
//! until officers set each again (`Integrity::frozen_by_rollback`,
//! `Integrity::quotas_frozen_by_rollback`).

use super::*;
use crate::hsm::approvals::ApprovalAction;

/// What the recovery ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RollbackRecovery {
    /// The audit record of the detected rollback.
    pub rollback_seq: i64,
}

impl Hsm {
    /// Request the end of a detected rollback (officers). Runs at once without a quorum;
    /// with one, files a request the approvers decide.
    pub fn recover_rollback(&self, s: &Session, reason: &str) -> Result<Gated<RollbackRecovery>> {
        s.require(Role::Officer, "recover from a detected rollback")?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 1024 {
            return Err(HsmError::BadInput(
                "say why the recovery is right, in 1 to 1024 characters (--reason): the audit log keeps it".into(),
            ));
        }
        let rollback_seq = self.rollback_to_recover()?;
        let action = ApprovalAction::RecoverRollback {
            reason: reason.to_string(),
        };
        let text =
            format!("recover from the rollback detected at audit record {rollback_seq}: {reason}");
        if let Some(pending) = self.gate(s, &action, &text)? {
            return Ok(Gated::Pending(Box::new(pending)));
        }
        self.run_action(s, s.partition(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(RollbackRecovery { rollback_seq }))
    }

    /// The detected rollback a recovery would end, once the witnesses no longer show it.
    fn rollback_to_recover(&self) -> Result<i64> {
        let u = self.unsealed()?;
        {
            let mut c = self.inner.store.conn()?;
            u.integrity.catch_up(&mut c, &u.audit)?;
        }
        if let Some(why) = u.committer.gate().and_then(|g| g.rollback()) {
            return Err(HsmError::Conflict(format!(
                "the witnesses still show the rollback ({why}). First the witnesses' operators reset kagi's log on them ('kagi witness forget'), then kagi restarts, then officers recover"
            )));
        }
        u.unrecovered_rollback().ok_or_else(|| {
            HsmError::Conflict(
                "no detected rollback waits for recovery: the audit log has no 'tlog.rollback_detected' record after the last recovery".into(),
            )
        })
    }

    /// The audited change a recovery makes: only its record, which the HSM reads back.
    pub(crate) fn recover_rollback_op(&self, reason: &str) -> Result<(ApplyFn, EventParts)> {
        let rollback_seq = self.rollback_to_recover()?;
        let apply: ApplyFn = Box::new(|_| Ok(()));
        Ok((
            apply,
            EventParts {
                action: "tlog.rollback_recovered",
                key_id: Some("tlog".into()),
                detail: serde_json::json!({ "rollback_seq": rollback_seq, "reason": reason }),
                use_hi: None,
            },
        ))
    }
}
