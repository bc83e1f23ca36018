//! M-of-N approval of sensitive changes.
//!
//! When the active policy names a quorum, destroying a key, raising a usage limit and
//! activating a policy version file a request instead of happening. Named officers other than
//! the requester approve; when `required` of them have, the change runs in one durable
//! transaction. Who approved is read from the audit log (MAC'd, Merkle-checkpointed), never from
//! the request row, and the row itself carries a MAC over what is to be done: editing the
//! database can neither forge an approval nor change what an approval means.

use aws_lc_rs::hmac;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::attributes::KeyState;
use crate::auth::{Role, Session};
use crate::commit::{now_ms, ApplyFn};
use crate::error::{HsmError, Result};
use crate::hsm::{random_hex, user_event, EventParts, Gated, Hsm, Unsealed};
use crate::seal;
use crate::store::schema::approvals;
use crate::store::AnyConnection;

/// Runs after an approved change, in its transaction, with what the change produced.
type ThenFn = Box<dyn FnOnce(&mut AnyConnection, Option<Vec<u8>>) -> Result<()> + Send>;

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalAction {
    DestroyKey {
        label: String,
    },
    SetUsageLimit {
        label: String,
        limit: Option<i64>,
    },
    /// Mark a key compromised (one way; see `Hsm::compromise_key`).
    CompromiseKey {
        label: String,
        reason: String,
    },
    ActivatePolicy {
        version: i64,
    },
    ExportWrapped {
        label: String,
        wrapping_key: String,
    },
    /// End a detected rollback, so kagi signs again (see `rollback_recovery`).
    RecoverRollback {
        reason: String,
    },
    /// A change outside the HSM's keys and policies (creating or revoking a CA, say).
    /// Approving it only authorizes the requester to make it once (`kagi ca create-*
    /// --approval ID`), with the [`ChangeGrant`] that [`Hsm::authorize_change`] returns:
    /// nothing is done for a request that is never approved. hsm-core compares the parameters
    /// and never interprets them.
    Authorize {
        /// The change's name, such as `create_ca`.
        change: String,
        /// What it applies to, such as `ca:devices`.
        target: String,
        /// The change's parameters, as the part of kagi that asks for it defines them.
        params: serde_json::Value,
    },
    /// Rotate a key whose limit counts per version (see `Hsm::rotate_key`).
    RotateKey {
        label: String,
    },
}

impl ApprovalAction {
    pub fn name(&self) -> &str {
        match self {
            ApprovalAction::DestroyKey { .. } => "destroy_key",
            ApprovalAction::SetUsageLimit { .. } => "set_usage_limit",
            ApprovalAction::CompromiseKey { .. } => "compromise_key",
            ApprovalAction::ActivatePolicy { .. } => "activate_policy",
            ApprovalAction::ExportWrapped { .. } => "export_wrapped",
            ApprovalAction::RecoverRollback { .. } => "recover_rollback",
            ApprovalAction::Authorize { change, .. } => change,
            ApprovalAction::RotateKey { .. } => "rotate_key",
        }
    }

    fn target(&self) -> String {
        match self {
            ApprovalAction::DestroyKey { label }
            | ApprovalAction::SetUsageLimit { label, .. }
            | ApprovalAction::CompromiseKey { label, .. }
            | ApprovalAction::ExportWrapped { label, .. }
            | ApprovalAction::RotateKey { label } => format!("key:{label}"),
            ApprovalAction::ActivatePolicy { version } => format!("policy:{version}"),
            ApprovalAction::RecoverRollback { .. } => "tlog".into(),
            ApprovalAction::Authorize { target, .. } => target.clone(),
        }
    }
}

/// Permission for an [`ApprovalAction::Authorize`] change: given at once without a quorum,
/// or by an approval request the quorum approved, which the change then consumes.
#[derive(Debug, Clone)]
pub struct ChangeGrant {
    approval: Option<String>,
    action: ApprovalAction,
}

impl ChangeGrant {
    pub fn action(&self) -> &ApprovalAction {
        &self.action
    }

    /// The approval request this grant consumes, if a quorum gave it.
    pub fn approval(&self) -> Option<&str> {
        self.approval.as_deref()
    }

    /// The change that consumes the approved request: exactly once, in the change's own
    /// transaction.
    pub(crate) fn consume(&self) -> Option<ApplyFn> {
        let id = self.approval.clone()?;
        Some(Box::new(move |c| {
            if move_status(c, &id, "approved", "executed")? {
                Ok(())
            } else {
                Err(HsmError::Conflict(format!(
                    "approval request {id} was already used: file a new request"
                )))
            }
        }))
    }
}

/// M of N named officers, from the active policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumRule {
    /// Identity names of the officers who may approve.
    pub approvers: Vec<String>,
    pub required: usize,
    /// How long a request stays open.
    pub ttl_secs: i64,
}

/// A request as shown to officers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalInfo {
    pub id: String,
    pub action: ApprovalAction,
    pub partition: String,
    /// What the change would do, for people: a sentence, or a diff for policies.
    pub summary: String,
    pub requested_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub required: i64,
    pub approvers: Vec<String>,
    /// Who has approved so far (from the audit log).
    pub approved_by: Vec<String>,
    /// pending, executed, rejected or expired.
    pub status: String,
    /// For the requester of an executed export: the wrapped key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
}

/// An approver as a policy's activation bound it: the name the policy gives and the id of
/// the live person identity that had it then. A later identity with the same name is
/// someone else, and no approver until a new policy version (itself approved) names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundApprover {
    pub name: String,
    pub credential: String,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    action: ApprovalAction,
    approvers: Vec<String>,
    /// The approvers bound when the request was filed; a request without them (filed
    /// before approvers were bound) can't be approved.
    #[serde(default)]
    bound: Vec<BoundApprover>,
}

#[derive(Queryable, Insertable, Clone)]
#[diesel(table_name = approvals)]
struct ApprovalRow {
    id: String,
    action: String,
    partition_name: String,
    target: String,
    payload: String,
    summary: String,
    requested_by: String,
    requester_name: String,
    created_at: i64,
    expires_at: i64,
    required: i64,
    status: String,
    decided_at: Option<i64>,
    result: Option<Vec<u8>>,
    mac: Vec<u8>,
}

impl ApprovalRow {
    fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [
            self.id.as_bytes(),
            self.action.as_bytes(),
            self.partition_name.as_bytes(),
            self.target.as_bytes(),
            self.payload.as_bytes(),
            self.summary.as_bytes(),
            self.requested_by.as_bytes(),
            self.requester_name.as_bytes(),
        ] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.required.to_be_bytes());
        out
    }

    fn payload(&self) -> Result<Payload> {
        serde_json::from_str(&self.payload).map_err(|_| integrity(&self.id))
    }
}

fn integrity(id: &str) -> HsmError {
    HsmError::Integrity(format!(
        "approval request {id} does not match its MAC: the database was changed outside kagi; the request is void"
    ))
}

pub(crate) fn record_mac(u: &Unsealed, bytes: &[u8]) -> Result<Vec<u8>> {
    let key = hmac::Key::new(
        hmac::HMAC_SHA256,
        &u.master.derive(seal::RECORD_MAC_INFO)?[..],
    );
    Ok(hmac::sign(&key, bytes).as_ref().to_vec())
}

/// Move request `id` from status `from` to `to` inside a batch; false if it was not in `from`
/// (someone else decided or used it first).
pub(crate) fn move_status(c: &mut AnyConnection, id: &str, from: &str, to: &str) -> Result<bool> {
    let n = diesel::update(
        approvals::table
            .filter(approvals::id.eq(id))
            .filter(approvals::status.eq(from)),
    )
    .set((
        approvals::status.eq(to),
        approvals::decided_at.eq(Some(now_ms() / 1000)),
    ))
    .execute(c)?;
    Ok(n == 1)
}

pub(crate) fn record_mac_ok(u: &Unsealed, bytes: &[u8], mac: &[u8]) -> Result<bool> {
    let want = record_mac(u, bytes)?;
    Ok(aws_lc_rs::constant_time::verify_slices_are_equal(&want, mac).is_ok())
}

impl Hsm {
    /// Ask for permission to make an [`ApprovalAction::Authorize`] change. With a quorum in
    /// the active policy and no `approval`, this files a request and returns it; once the
    /// approvers approved it, call again with its id. Without a quorum, permission is immediate.
    pub fn authorize_change(
        &self,
        s: &Session,
        action: ApprovalAction,
        summary: &str,
        approval: Option<&str>,
    ) -> Result<Gated<ChangeGrant>> {
        if !matches!(action, ApprovalAction::Authorize { .. }) {
            return Err(HsmError::BadInput(
                "only an authorize action is granted; other actions run when approved".into(),
            ));
        }
        match approval {
            Some(id) => {
                let info = self.approval(s, id)?;
                if info.action != action {
                    return Err(HsmError::Conflict(format!(
                        "approval request {id} approved a different change ({:?}): file a new request for this one",
                        info.action
                    )));
                }
                if info.status != "approved" {
                    return Err(HsmError::Conflict(format!(
                        "approval request {id} is {}, not approved: it needs {} approval(s) from {:?} ('kagi approval show {id}')",
                        info.status, info.required, info.approvers
                    )));
                }
                Ok(Gated::Done(ChangeGrant {
                    approval: Some(id.to_string()),
                    action,
                }))
            }
            None => match self.gate(s, &action, summary)? {
                Some(pending) => Ok(Gated::Pending(Box::new(pending))),
                None => Ok(Gated::Done(ChangeGrant {
                    approval: None,
                    action,
                })),
            },
        }
    }

    /// If the active policy has a quorum, file a request for `action` and return it.
    pub(crate) fn gate(
        &self,
        s: &Session,
        action: &ApprovalAction,
        summary: &str,
    ) -> Result<Option<ApprovalInfo>> {
        let Some((quorum, bound)) = self.current_bound_quorum()? else {
            return Ok(None);
        };
        let u = self.unsealed()?;
        let now = now_ms() / 1000;
        let payload = Payload {
            action: action.clone(),
            approvers: quorum.approvers.clone(),
            bound,
        };
        let mut row = ApprovalRow {
            id: random_hex(8)?,
            action: action.name().into(),
            partition_name: s.partition().to_string(),
            target: action.target(),
            payload: serde_json::to_string(&payload).map_err(|e| HsmError::Store(e.to_string()))?,
            summary: summary.chars().take(64 * 1024).collect(),
            requested_by: s.credential_id().to_string(),
            requester_name: s.name().to_string(),
            created_at: now,
            expires_at: now + quorum.ttl_secs.max(1),
            required: quorum.required as i64,
            status: "pending".into(),
            decided_at: None,
            result: None,
            mac: Vec::new(),
        };
        row.mac = record_mac(&u, &row.mac_input())?;
        let info = self.info_of(&row, Vec::new())?;
        let detail = serde_json::json!({
            "action": action, "summary": row.summary, "required": row.required, "approvers": quorum.approvers,
        });
        let inserted = row.clone();
        let apply: ApplyFn = Box::new(move |c| {
            diesel::insert_into(approvals::table)
                .values(&inserted)
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "approval.request",
                Some(format!("approval:{}", row.id)),
                detail,
            ),
        )?;
        Ok(Some(info))
    }

    /// Run an action now, as `s` (no quorum, or a quorum that has approved).
    pub(crate) fn run_action(
        &self,
        s: &Session,
        partition: &str,
        action: &ApprovalAction,
        extra: serde_json::Value,
    ) -> Result<Option<Vec<u8>>> {
        self.run_action_then(s, partition, action, extra, None)
    }

    fn run_action_then(
        &self,
        s: &Session,
        partition: &str,
        action: &ApprovalAction,
        extra: serde_json::Value,
        then: Option<ThenFn>,
    ) -> Result<Option<Vec<u8>>> {
        let u = self.unsealed()?;
        let (apply, parts, output) = match action {
            ApprovalAction::DestroyKey { label } => {
                let (a, p) = self.destroy_op(partition, label)?;
                (a, p, None)
            }
            ApprovalAction::SetUsageLimit { label, limit } => {
                let (a, p) = self.set_limit_op(partition, label, *limit)?;
                (a, p, None)
            }
            ApprovalAction::CompromiseKey { label, reason } => {
                let (a, p) =
                    self.retire_op(partition, label, KeyState::Compromised, Some(reason))?;
                (a, p, None)
            }
            ApprovalAction::ActivatePolicy { version } => {
                let (a, p) = self.activate_op(*version)?;
                (a, p, None)
            }
            ApprovalAction::ExportWrapped {
                label,
                wrapping_key,
            } => {
                let (a, p, w) = self.export_op(partition, label, wrapping_key)?;
                (a, p, Some(w))
            }
            ApprovalAction::RecoverRollback { reason } => {
                let (a, p) = self.recover_rollback_op(reason)?;
                (a, p, None)
            }
            ApprovalAction::RotateKey { label } => {
                let (a, p) = self.rotate_op(partition, label)?;
                (a, p, None)
            }
            ApprovalAction::Authorize { target, .. } => {
                // Approval only authorizes: the requester makes the change, which consumes it.
                let apply: ApplyFn = Box::new(|_| Ok(()));
                let parts = EventParts {
                    action: "change.authorized",
                    key_id: Some(target.clone()),
                    detail: serde_json::json!({ "action": action }),
                    use_hi: None,
                };
                (apply, parts, None)
            }
        };
        let kept = output.clone();
        let apply: ApplyFn = match then {
            None => apply,
            Some(then) => Box::new(move |c| {
                apply(c)?;
                then(c, kept)
            }),
        };
        let mut detail = parts.detail;
        if let (Some(d), Some(e)) = (detail.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        let mut event = user_event(s, parts.action, parts.key_id, detail);
        event.use_hi = parts.use_hi;
        if let ApprovalAction::DestroyKey { label }
        | ApprovalAction::SetUsageLimit { label, .. }
        | ApprovalAction::CompromiseKey { label, .. }
        | ApprovalAction::RotateKey { label } = action
        {
            self.evict(partition, label);
        }
        let done = u.committer.submit(None, Some(apply), event);
        if let ApprovalAction::DestroyKey { label }
        | ApprovalAction::SetUsageLimit { label, .. }
        | ApprovalAction::CompromiseKey { label, .. }
        | ApprovalAction::RotateKey { label } = action
        {
            self.evict(partition, label);
        }
        done.map(|_| output)
    }

    fn load_approval(&self, u: &Unsealed, id: &str) -> Result<ApprovalRow> {
        let mut c = self.inner.store.conn()?;
        let row: ApprovalRow = approvals::table
            .filter(approvals::id.eq(id))
            .first(&mut c)
            .optional()?
            .ok_or_else(|| {
                HsmError::NotFound(format!(
                    "approval request '{}'",
                    id.chars().take(32).collect::<String>()
                ))
            })?;
        if !record_mac_ok(u, &row.mac_input(), &row.mac)? {
            return Err(integrity(&row.id));
        }
        Ok(row)
    }

    /// Who approved request `id` and still counts: in log order, from the verified audit
    /// log, each a bound approver of the request whose identity is still live. Revoking an
    /// approver voids their approvals of requests not yet executed.
    fn approved_by(&self, id: &str, bound: &[BoundApprover]) -> Result<Vec<String>> {
        let events = self.unsealed()?.audited(
            &self.inner.store,
            "approval.approve",
            &format!("approval:{id}"),
        )?;
        let mut names: Vec<String> = Vec::new();
        for e in events {
            let v: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            let (Some(n), Some(cred)) = (v["approver"].as_str(), v["credential"].as_str()) else {
                continue;
            };
            let is_bound = bound.iter().any(|b| b.name == n && b.credential == cred);
            if is_bound && !names.iter().any(|x| x == n) && self.identity_live(cred)? {
                names.push(n.to_string());
            }
        }
        Ok(names)
    }

    /// An identity is live while its row says so and the verified log has no revocation of it
    /// (a database writer can un-revoke a row, not the record).
    pub(crate) fn identity_live(&self, credential: &str) -> Result<bool> {
        let u = self.unsealed()?;
        let subject = crate::hsm::credential_subject(credential);
        if !u
            .audited(&self.inner.store, "credential.revoke", &subject)?
            .is_empty()
        {
            return Ok(false);
        }
        let mut c = self.inner.store.conn()?;
        let n: i64 = crate::store::schema::credentials::table
            .filter(crate::store::schema::credentials::id.eq(credential))
            .filter(crate::store::schema::credentials::revoked.eq(false))
            .count()
            .get_result(&mut c)?;
        Ok(n == 1)
    }

    /// Bind each approver a quorum names to the live person identity with that name and the
    /// officer role, as the verified log created it. Refused when one has none.
    pub(crate) fn bind_approvers(&self, names: &[String]) -> Result<Vec<BoundApprover>> {
        let u = self.unsealed()?;
        let created = u.audited_prefix(&self.inner.store, "credential.create", "credential:")?;
        let mut bound = Vec::with_capacity(names.len());
        for name in names {
            let mut found = None;
            for e in &created {
                let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
                let officer = d["roles"]
                    .as_str()
                    .is_some_and(|r| r.split(',').any(|r| r == "officer"));
                if d["name"].as_str() == Some(name.as_str())
                    && d["kind"].as_str() == Some("person")
                    && officer
                {
                    if let Some(id) = d["credential"].as_str() {
                        if self.identity_live(id)? {
                            found = Some(id.to_string());
                        }
                    }
                }
            }
            let Some(credential) = found else {
                return Err(HsmError::Conflict(format!(
                    "the quorum names '{}' as an approver, but no live person identity with the officer role has that name: create it ('kagi identity create {} --kind person --role officer') before activating this policy",
                    name.chars().take(128).collect::<String>(),
                    name.chars().take(128).collect::<String>()
                )));
            };
            bound.push(BoundApprover {
                name: name.clone(),
                credential,
            });
        }
        Ok(bound)
    }

    fn info_of(&self, row: &ApprovalRow, approved_by: Vec<String>) -> Result<ApprovalInfo> {
        let payload = row.payload()?;
        let status = if row.status == "pending" && now_ms() / 1000 >= row.expires_at {
            "expired".to_string()
        } else {
            row.status.clone()
        };
        Ok(ApprovalInfo {
            id: row.id.clone(),
            action: payload.action,
            partition: row.partition_name.clone(),
            summary: row.summary.clone(),
            requested_by: row.requester_name.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            required: row.required,
            approvers: payload.approvers,
            approved_by,
            status,
            wrapped_key: None,
        })
    }

    pub fn approval(&self, s: &Session, id: &str) -> Result<ApprovalInfo> {
        s.require(Role::Officer, "read approval requests")?;
        let u = self.unsealed()?;
        let row = self.load_approval(&u, id)?;
        let bound = row.payload()?.bound;
        let mut info = self.info_of(&row, self.approved_by(id, &bound)?)?;
        // The product of an approved export is for the officer who asked for it.
        if row.requested_by == s.credential_id() {
            if let Some(r) = &row.result {
                use base64::Engine;
                info.wrapped_key = Some(base64::engine::general_purpose::STANDARD.encode(r));
            }
        }
        Ok(info)
    }

    pub fn list_approvals(&self, s: &Session) -> Result<Vec<ApprovalInfo>> {
        s.require(Role::Officer, "read approval requests")?;
        let u = self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let rows: Vec<ApprovalRow> = approvals::table
            .order(approvals::created_at.desc())
            .limit(500)
            .load(&mut c)?;
        drop(c);
        rows.iter()
            .map(|r| {
                if !record_mac_ok(&u, &r.mac_input(), &r.mac)? {
                    return Err(integrity(&r.id));
                }
                self.info_of(r, self.approved_by(&r.id, &r.payload()?.bound)?)
            })
            .collect()
    }

    /// Approve a request. The approver must be a named officer other than the requester. When
    /// this approval completes the quorum, the change runs before this returns.
    pub fn approve(&self, s: &Session, id: &str) -> Result<ApprovalInfo> {
        s.require(Role::Officer, "approve changes")?;
        let u = self.unsealed()?;
        let row = self.load_approval(&u, id)?;
        let payload = row.payload()?;
        let info = self.info_of(&row, Vec::new())?;
        match info.status.as_str() {
            "pending" => {}
            "expired" => {
                return Err(HsmError::Conflict(format!(
                    "approval request {id} expired: file a new request"
                )))
            }
            other => {
                return Err(HsmError::Conflict(format!(
                    "approval request {id} is already {other}"
                )))
            }
        }
        if s.credential_id() == row.requested_by || s.name() == row.requester_name {
            return Err(HsmError::SelfApproval(id.to_string()));
        }
        // The person the policy's activation bound, not whoever holds the name now.
        let bound = payload
            .bound
            .iter()
            .any(|b| b.name == s.name() && b.credential == s.credential_id());
        if bound && !self.identity_live(s.credential_id())? {
            return Err(HsmError::CredentialRevoked(s.name().to_string()));
        }
        if !bound {
            return Err(HsmError::NotAnApprover {
                name: s.name().to_string(),
                id: id.to_string(),
            });
        }
        let mut approved = self.approved_by(id, &payload.bound)?;
        if !approved.iter().any(|a| a == s.name()) {
            let (id2, status_ok) = (id.to_string(), "pending");
            let still_pending: ApplyFn = Box::new(move |c| {
                let n: i64 = approvals::table
                    .filter(approvals::id.eq(&id2))
                    .filter(approvals::status.eq(status_ok))
                    .count()
                    .get_result(c)?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(HsmError::Conflict(format!(
                        "approval request {id2} is no longer pending"
                    )))
                }
            });
            u.committer.submit(
                None,
                Some(still_pending),
                user_event(
                    s,
                    "approval.approve",
                    Some(format!("approval:{id}")),
                    serde_json::json!({"approver": s.name(), "credential": s.credential_id(), "action": payload.action}),
                ),
            )?;
            approved = self.approved_by(id, &payload.bound)?;
        }
        if approved.len() as i64 >= row.required {
            let id2 = id.to_string();
            // A CA change is authorized, not run, by its approval (see `ApprovalAction::CreateCa`).
            let done_status = match payload.action {
                ApprovalAction::Authorize { .. } => "approved",
                _ => "executed",
            };
            let mark: ThenFn = Box::new(move |c, result| {
                let n = diesel::update(
                    approvals::table
                        .filter(approvals::id.eq(&id2))
                        .filter(approvals::status.eq("pending")),
                )
                .set((
                    approvals::status.eq(done_status),
                    approvals::decided_at.eq(Some(now_ms() / 1000)),
                    approvals::result.eq(result),
                ))
                .execute(c)?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(HsmError::Conflict(format!(
                        "approval request {id2} was already decided"
                    )))
                }
            });
            self.run_action_then(
                s,
                &row.partition_name,
                &payload.action,
                serde_json::json!({"approval": id, "approved_by": approved}),
                Some(mark),
            )?;
        }
        let row = self.load_approval(&u, id)?;
        self.info_of(&row, approved)
    }

    /// Reject (or, for the requester, withdraw) a request.
    pub fn reject(&self, s: &Session, id: &str) -> Result<ApprovalInfo> {
        s.require(Role::Officer, "reject changes")?;
        let u = self.unsealed()?;
        let row = self.load_approval(&u, id)?;
        let payload = row.payload()?;
        let own = s.credential_id() == row.requested_by;
        let approver = payload
            .bound
            .iter()
            .any(|b| b.name == s.name() && b.credential == s.credential_id());
        if !own && !approver {
            return Err(HsmError::NotAnApprover {
                name: s.name().to_string(),
                id: id.to_string(),
            });
        }
        let id2 = id.to_string();
        let apply: ApplyFn = Box::new(move |c| {
            if move_status(c, &id2, "pending", "rejected")? {
                Ok(())
            } else {
                Err(HsmError::Conflict(format!(
                    "approval request {id2} is not pending"
                )))
            }
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "approval.reject",
                Some(format!("approval:{id}")),
                serde_json::json!({"by": s.name(), "withdrawn": own}),
            ),
        )?;
        let row = self.load_approval(&u, id)?;
        self.info_of(&row, self.approved_by(id, &payload.bound)?)
    }
}
