//! Stored policy documents. hsm-core keeps them as opaque, MAC'd text (the service parses and
//! validates them with the `policy` crate before submitting); which version is active is the
//! highest version named by a `policy.activate` record in the audit log, so an edited database
//! can neither change a document nor roll the active version back.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::auth::{Role, Session};
use crate::commit::{now_ms, ApplyFn};
use crate::error::{HsmError, Result};
use crate::hsm::approvals::{record_mac, record_mac_ok, ApprovalAction, BoundApprover, QuorumRule};
use crate::hsm::{user_event, EventParts, Gated, Hsm, Unsealed};
use crate::store::schema::{audit_records, credentials, policies};

/// The audit "subject" whose `use_hi` is the active policy version.
const POLICY_SUBJECT: &str = "policy";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub version: i64,
    pub text: String,
    pub quorum: Option<QuorumRule>,
    pub submitted_by: String,
    pub submitted_at: i64,
    pub active: bool,
}

#[derive(Queryable, Insertable, Clone)]
#[diesel(table_name = policies)]
struct PolicyRow {
    version: i64,
    text: String,
    quorum: String,
    submitted_by: String,
    submitted_at: i64,
    mac: Vec<u8>,
}

impl PolicyRow {
    fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + self.quorum.len() + 64);
        out.extend_from_slice(b"kagi-policy-v1");
        out.extend_from_slice(&self.version.to_be_bytes());
        for part in [
            self.text.as_bytes(),
            self.quorum.as_bytes(),
            self.submitted_by.as_bytes(),
        ] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.submitted_at.to_be_bytes());
        out
    }

    fn stored(&self, active: Option<i64>) -> Result<StoredPolicy> {
        Ok(StoredPolicy {
            version: self.version,
            text: self.text.clone(),
            quorum: serde_json::from_str(&self.quorum).map_err(|_| tampered(self.version))?,
            submitted_by: self.submitted_by.clone(),
            submitted_at: self.submitted_at,
            active: active == Some(self.version),
        })
    }
}

fn tampered(version: i64) -> HsmError {
    HsmError::Integrity(format!(
        "policy version {version} does not match its MAC: the database was changed outside kagi. Submit the document again"
    ))
}

impl Hsm {
    /// Store a new version (validated by the caller). It does not take effect until activated.
    pub fn submit_policy(
        &self,
        s: &Session,
        text: &str,
        quorum: Option<QuorumRule>,
    ) -> Result<StoredPolicy> {
        s.require(Role::Officer, "submit policies")?;
        if text.len() > 4 * 1024 * 1024 {
            return Err(HsmError::BadInput(
                "a policy document is at most 4 MiB".into(),
            ));
        }
        let u = self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let last: Option<i64> = policies::table
            .select(diesel::dsl::max(policies::version))
            .first(&mut c)?;
        drop(c);
        let mut row = PolicyRow {
            version: last.unwrap_or(0) + 1,
            text: text.to_string(),
            quorum: serde_json::to_string(&quorum).map_err(|e| HsmError::Store(e.to_string()))?,
            submitted_by: s.actor(),
            submitted_at: now_ms() / 1000,
            mac: Vec::new(),
        };
        row.mac = record_mac(&u, &row.mac_input())?;
        let stored = row.stored(None)?;
        let digest = hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref(),
        );
        let version = row.version;
        let apply: ApplyFn = Box::new(move |c| {
            // The version was read before the batch; a submit that won the race to it holds it
            // now (primary key), and this one is told to try again.
            match diesel::insert_into(policies::table).values(&row).execute(c) {
                Ok(_) => Ok(()),
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => Err(HsmError::Conflict(format!(
                    "another policy was submitted as version {version} at the same moment: submit again"
                ))),
                Err(e) => Err(e.into()),
            }
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "policy.submit",
                None,
                serde_json::json!({"version": version, "sha256": digest}),
            ),
        )?;
        Ok(stored)
    }

    /// Make `version` the active policy: at once when no quorum governs, otherwise as an
    /// approval request whose summary (a diff, from the caller) officers review.
    pub fn activate_policy(&self, s: &Session, version: i64, summary: &str) -> Result<Gated<i64>> {
        s.require(Role::Officer, "activate policies")?;
        let stored = self.policy(s, version)?;
        let active = self.active_policy_version()?;
        if active.is_some_and(|a| a >= version) {
            return Err(HsmError::Conflict(format!(
                "version {version} is not newer than the active version {}: submit the document again to make a new version",
                active.unwrap_or(0)
            )));
        }
        let action = ApprovalAction::ActivatePolicy {
            version: stored.version,
        };
        if let Some(pending) = self.gate(s, &action, summary)? {
            return Ok(Gated::Pending(Box::new(pending)));
        }
        self.run_action(s, s.partition(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(version))
    }

    pub(crate) fn activate_op(&self, version: i64) -> Result<(ApplyFn, EventParts)> {
        let u = self.unsealed()?;
        // Only an intact stored document can become active.
        let row = self.policy_row(&u, version)?;
        // Its approvers are bound to the people who have their names now, by identity id.
        let quorum: Option<QuorumRule> =
            serde_json::from_str(&row.quorum).map_err(|_| tampered(version))?;
        let bound = match &quorum {
            Some(q) => self.bind_approvers(&q.approvers)?,
            None => Vec::new(),
        };
        let ids: Vec<String> = bound.iter().map(|b| b.credential.clone()).collect();
        let apply: ApplyFn = Box::new(move |c| {
            // Under the batch lock: is every bound approver still live?
            for id in &ids {
                let live: i64 = credentials::table
                    .filter(credentials::id.eq(id))
                    .filter(credentials::revoked.eq(false))
                    .count()
                    .get_result(c)?;
                if live != 1 {
                    return Err(HsmError::Conflict(format!(
                        "approver identity {id} was revoked meanwhile: activate again"
                    )));
                }
            }
            // Under the batch lock: still newer than what is active?
            let active: Option<i64> = audit_records::table
                .filter(audit_records::key_id.eq(POLICY_SUBJECT))
                .select(diesel::dsl::max(audit_records::use_hi))
                .first(c)?;
            if active.is_some_and(|a| a >= version) {
                return Err(HsmError::Conflict(format!(
                    "a version at least as new as {version} is already active"
                )));
            }
            Ok(())
        });
        Ok((
            apply,
            EventParts {
                action: "policy.activate",
                key_id: Some(POLICY_SUBJECT.into()),
                detail: serde_json::json!({"version": version, "approvers_bound": bound}),
                use_hi: Some(version),
            },
        ))
    }

    /// The active version, from the audit log.
    pub fn active_policy_version(&self) -> Result<Option<i64>> {
        let v = self.audited_uses(POLICY_SUBJECT)?;
        Ok((v > 0).then_some(v))
    }

    /// The active document, MAC-checked. `None` before any activation.
    pub fn active_policy(&self) -> Result<Option<StoredPolicy>> {
        let Some(version) = self.active_policy_version()? else {
            return Ok(None);
        };
        let u = self.unsealed()?;
        // The audit log says this version is active, so its absence is tampering.
        let row = self.policy_row(&u, version).map_err(|e| match e {
            HsmError::NotFound(_) => HsmError::Integrity(format!(
                "the active policy version {version} is missing from the database"
            )),
            e => e,
        })?;
        Ok(Some(row.stored(Some(version))?))
    }

    /// One stored version, MAC-checked.
    fn policy_row(&self, u: &Unsealed, version: i64) -> Result<PolicyRow> {
        let mut c = self.inner.store.conn()?;
        let row: PolicyRow = policies::table
            .filter(policies::version.eq(version))
            .first(&mut c)
            .optional()?
            .ok_or_else(|| HsmError::NotFound(format!("policy version {version}")))?;
        drop(c);
        if !record_mac_ok(u, &row.mac_input(), &row.mac)? {
            return Err(tampered(version));
        }
        Ok(row)
    }

    /// The active quorum with the approvers its activation bound (from the verified log). A
    /// policy activated before approvers were bound (an older kagi) binds its names to the
    /// people who have them now, as that kagi did, until a new version is activated.
    pub(crate) fn current_bound_quorum(&self) -> Result<Option<(QuorumRule, Vec<BoundApprover>)>> {
        let Some(policy) = self.active_policy()? else {
            return Ok(None);
        };
        let Some(quorum) = policy.quorum else {
            return Ok(None);
        };
        let activations =
            self.unsealed()?
                .audited(&self.inner.store, "policy.activate", POLICY_SUBJECT)?;
        let recorded: Option<Vec<BoundApprover>> = activations
            .iter()
            .rev()
            .find(|e| e.use_hi == Some(policy.version))
            .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.detail).ok())
            .and_then(|d| serde_json::from_value(d["approvers_bound"].clone()).ok());
        let bound = match recorded {
            Some(bound) => bound,
            None => self.bind_approvers(&quorum.approvers).unwrap_or_default(),
        };
        Ok(Some((quorum, bound)))
    }

    pub fn policy(&self, s: &Session, version: i64) -> Result<StoredPolicy> {
        s.require(Role::Officer, "read policies")?;
        let u = self.unsealed()?;
        let row = self.policy_row(&u, version)?;
        row.stored(self.active_policy_version()?)
    }

    pub fn list_policies(&self, s: &Session) -> Result<Vec<StoredPolicy>> {
        s.require(Role::Officer, "read policies")?;
        let u = self.unsealed()?;
        let active = self.active_policy_version()?;
        let mut c = self.inner.store.conn()?;
        let rows: Vec<PolicyRow> = policies::table
            .order(policies::version.desc())
            .limit(200)
            .load(&mut c)?;
        rows.iter()
            .map(|r| {
                if !record_mac_ok(&u, &r.mac_input(), &r.mac)? {
                    return Err(tampered(r.version));
                }
                r.stored(active)
            })
            .collect()
    }
}
