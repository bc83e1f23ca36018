//! Certificate profiles officers add: kept nowhere but in the audit log.
//!
//! A profile decides what the CA signs, so a database writer who could widen one (a broader
//! SAN regex) could have anything certified. There is therefore no profile table: setting a
//! profile appends an audit record holding its whole spec, and the profile set is read back
//! from the HSM's verified index of the log ([`crate::integrity`]), which holds only records
//! whose MAC and place in the hash chain were checked. An edited record breaks its MAC, and the
//! HSM fails closed on it; a deleted or reordered one breaks the chain.
//!
//! Profiles belong to a partition: its officers set them, and its issuance uses them.

use crate::auth::{Role, Session};
use crate::error::{HsmError, Result};
use crate::hsm::approvals::{ApprovalAction, ChangeGrant};
use crate::hsm::{user_event, Gated, Hsm};

/// The change a profile asks the quorum for ([`ApprovalAction::Authorize`]).
pub const SET_PROFILE: &str = "set_profile";

/// The audit action whose records are the custom profiles.
pub const PROFILE_SET_ACTION: &str = "ca.profile_set";

/// A custom profile as its newest verified record states it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProfile {
    pub name: String,
    pub partition: String,
    /// The spec as the officer submitted it (the `ca` crate parses and compiles it).
    pub spec: serde_json::Value,
    pub set_by: String,
    /// Unix seconds.
    pub set_at: i64,
    /// The audit record's sequence number: a new one is a new version of the profile.
    pub audit_seq: i64,
}

/// The audit subject of a partition's profile; partitions' profiles never meet.
fn profile_subject(partition: &str, name: &str) -> String {
    format!("profile:{partition}/{name}")
}

impl Hsm {
    /// Ask for permission to set profile `name` to `spec` in the caller's partition: at once
    /// without a quorum, else an approval request for exactly this spec. Officers only.
    pub fn authorize_profile_change(
        &self,
        s: &Session,
        name: &str,
        spec: &serde_json::Value,
        summary: &str,
        approval: Option<&str>,
    ) -> Result<Gated<ChangeGrant>> {
        s.require(Role::Officer, "add or change certificate profiles")?;
        crate::hsm::validate_label(name)?;
        let action = ApprovalAction::Authorize {
            change: SET_PROFILE.into(),
            target: profile_subject(s.partition(), name),
            params: serde_json::json!({ "name": name, "spec": spec }),
        };
        self.authorize_change(s, action, summary, approval)
    }

    /// Set profile `name` to `spec` (already checked by the `ca` crate): one audit record with
    /// the whole spec, in the transaction that consumes the grant's approval.
    pub fn store_profile(
        &self,
        s: &Session,
        name: &str,
        spec: &serde_json::Value,
        grant: &ChangeGrant,
    ) -> Result<StoredProfile> {
        s.require(Role::Officer, "add or change certificate profiles")?;
        match grant.action() {
            ApprovalAction::Authorize {
                change,
                target,
                params,
            } if change == SET_PROFILE
                && *target == profile_subject(s.partition(), name)
                && params["name"] == name
                && params["spec"] == *spec => {}
            _ => {
                return Err(HsmError::Conflict(
                    "the approval does not cover this profile: file a request for it".into(),
                ))
            }
        }
        let u = self.unsealed()?;
        let detail = serde_json::json!({
            "name": name, "spec": spec, "approval": grant.approval(),
        });
        let committed = u.committer.submit(
            None,
            grant.consume(),
            user_event(
                s,
                PROFILE_SET_ACTION,
                Some(profile_subject(s.partition(), name)),
                detail,
            ),
        )?;
        Ok(StoredProfile {
            name: name.to_string(),
            partition: s.partition().to_string(),
            spec: spec.clone(),
            set_by: s.actor(),
            set_at: crate::commit::now_ms() / 1000,
            audit_seq: committed.seq,
        })
    }

    /// The custom profiles of `partition`, newest version of each, by name, from the verified
    /// audit log only.
    pub fn stored_profiles(&self, partition: &str) -> Result<Vec<StoredProfile>> {
        let u = self.unsealed()?;
        let prefix = profile_subject(partition, "");
        let events = u.audited_prefix(&self.inner.store, PROFILE_SET_ACTION, &prefix)?;
        let mut newest: std::collections::BTreeMap<String, StoredProfile> = Default::default();
        for ev in events {
            let Some(name) = ev.key_id.as_deref().and_then(|k| k.strip_prefix(&prefix)) else {
                continue;
            };
            let detail: serde_json::Value = serde_json::from_str(&ev.detail).map_err(|e| {
                HsmError::Integrity(format!(
                    "audit record {} of profile '{name}' does not hold JSON: {e}",
                    ev.seq
                ))
            })?;
            let p = StoredProfile {
                name: name.to_string(),
                partition: partition.to_string(),
                spec: detail["spec"].clone(),
                set_by: ev.actor.clone(),
                set_at: ev.ts / 1000,
                audit_seq: ev.seq,
            };
            match newest.get(name) {
                Some(old) if old.audit_seq > p.audit_seq => {}
                _ => {
                    newest.insert(name.to_string(), p);
                }
            }
        }
        Ok(newest.into_values().collect())
    }
}
