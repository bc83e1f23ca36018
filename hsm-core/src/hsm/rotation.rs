//! Key rotation (`kagi key rotate`): a new version under the same name, the old one deactivated.
//!
//! Each version is its own row with its own id, seal and public key; the name resolves to the
//! newest version that is not destroyed (`live_row`). The old version is deactivated (SP 800-57:
//! verify only, not compromised) in the same transaction and the same audit record
//! (`key.rotate`) that creates the new one, so there is never a moment with two signing
//! versions or none.
//!
//! Usage limits count per name by default: the new version starts with the old one's count
//! and the same limit, and the `key.rotate` record vouches for that count as the new key id's
//! audited floor (`use_hi`), so a database writer who zeroes the new row's counter gains
//! nothing. A key created with `limit_per_version` (sealed) starts each version at 0 instead.

use super::keyring::transition_refused;
use super::*;

impl Hsm {
    /// Rotate key `label`: generate version n + 1 (same algorithm, operations, limit and
    /// policy attributes), deactivate version n, and answer the new version. Officers only;
    /// refused for CA keys (a CA renews its own keys), imported keys (kagi cannot make their
    /// next version) and keys that are not active (suspended, deactivated, compromised).
    ///
    /// Rotating a key whose limit counts per version hands out a fresh set of uses, which is
    /// what raising its limit does: with a quorum in the active policy it files an approval
    /// request, as raising a limit does. A per-name limit carries over, so that rotation
    /// needs no quorum (like deactivating, it only retires a key; the new one is no more than
    /// `kagi key create` gives a lone officer).
    pub fn rotate_key(&self, s: &Session, label: &str) -> Result<Gated<KeyInfo>> {
        s.require(Role::Officer, "rotate keys")?;
        let u = self.unsealed()?;
        let row = self.live_row(s.partition(), label)?;
        let (old, _) = self.rotatable(&u, &row)?;
        let action = ApprovalAction::RotateKey {
            label: label.to_string(),
        };
        if let (true, Some(limit)) = (old.limit_per_version, old.usage_limit) {
            let text = format!(
                "rotate key '{label}' (id {}), whose usage limit counts per version: its version {} gets {limit} new uses",
                old.id,
                old.version + 1
            );
            if let Some(pending) = self.gate(s, &action, &text)? {
                return Ok(Gated::Pending(Box::new(pending)));
            }
        }
        self.run_action(s, s.partition(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(self.key_info(s, label)?))
    }

    /// The checks every rotation passes, on the key's sealed attributes: a locally generated,
    /// active key that is not a CA's.
    fn rotatable(&self, u: &Unsealed, row: &KeyRow) -> Result<(KeyAttributes, Zeroizing<Vec<u8>>)> {
        let label = row.label.as_str();
        if label == IMPORT_KEY_LABEL {
            return Err(HsmError::BadInput(format!(
                "'{label}' is kagi's own import key: it is not rotated"
            )));
        }
        // Through the seal: the attributes the new version copies are the sealed ones.
        let (old, pkcs8) = self.open_pkcs8(u, row)?;
        if old.operations.iter().any(|o| o.is_restricted()) {
            return Err(HsmError::BadInput(format!(
                "'{label}' is a CA key: a CA's keys are renewed by the CA (a new CA certificate), not rotated"
            )));
        }
        if old.key_auth {
            return Err(HsmError::BadInput(format!(
                "'{label}' has its own password (--key-auth): its next version would need the owner's password, which a rotation (or an approver) does not have. The owner creates a new key with --key-auth, and an officer deactivates this one"
            )));
        }
        if !old.local {
            return Err(HsmError::BadInput(format!(
                "'{label}' was imported (brought wrapped): kagi cannot generate its next version; import the new key under a new name, or deactivate this one"
            )));
        }
        // Rotation retires an active key; a suspended one is resumed first (or deactivated),
        // and from deactivated or compromised nothing leads to a new signing version.
        let from = self.current_state(u, &old.id, old.state)?;
        if from != KeyState::Active {
            return Err(transition_refused(label, from, KeyState::Deactivated));
        }
        Ok((old, pkcs8))
    }

    /// The durable change of a rotation (run at once, or once the quorum approved): the new
    /// version's row and the old one's compare-and-set to deactivated, in one transaction,
    /// with the `key.rotate` record.
    pub(crate) fn rotate_op(&self, partition: &str, label: &str) -> Result<(ApplyFn, EventParts)> {
        let u = self.unsealed()?;
        let row = self.live_row(partition, label)?;
        let (old, pkcs8) = self.rotatable(&u, &row)?;
        let now = now_ms() / 1000;
        let stored_count = row.usage_count;
        let carried = if old.limit_per_version {
            0
        } else {
            stored_count.max(self.audited_uses(&old.id)?)
        };
        // The new version's signing and verification periods are as long as the old one's,
        // from now: rotating at the end of a cryptoperiod starts the next one.
        let shift = now - old.not_before.unwrap_or(old.created_at);
        let (pkcs8_new, spki) = crypto::generate(old.algorithm)?;
        let new = KeyAttributes {
            id: random_hex(16)?,
            partition: old.partition.clone(),
            label: old.label.clone(),
            algorithm: old.algorithm,
            operations: old.operations.clone(),
            usage_limit: old.usage_limit,
            not_before: None,
            not_after: old.not_after.map(|t| t.saturating_add(shift)),
            verify_until: old.verify_until.map(|t| t.saturating_add(shift)),
            exportable_under_wrap: old.exportable_under_wrap,
            trusted: old.trusted,
            never_extractable: !old.exportable_under_wrap,
            local: true,
            state: KeyState::Active,
            generation: 0,
            public_key: spki,
            created_at: now,
            key_auth: false,
            version: old.version + 1,
            limit_per_version: old.limit_per_version,
        };
        let sealer = self.sealer(&u, &old.partition)?;
        let new_sealed = sealer.seal(&pkcs8_new, &new.associated_data())?;
        drop(pkcs8_new);
        let old_generation = old.generation;
        let retired = KeyAttributes {
            state: KeyState::Deactivated,
            generation: old_generation + 1,
            ..old.clone()
        };
        let old_sealed = sealer.seal(&pkcs8, &retired.associated_data())?;
        drop(pkcs8);
        let mut new_row = KeyRow::from_attrs(&new, new_sealed);
        new_row.usage_count = carried;
        let old_id = old.id.clone();
        let l2 = old.label.clone();
        let apply: ApplyFn = Box::new(move |c| {
            // Compare-and-set on what this rotation read: a use, a limit change, a state
            // change or another rotation since then refuses it whole (nothing is inserted).
            // A use reserved earlier in the same commit batch is not in the row yet; its
            // counter update then finds the generation moved and fails the whole batch, so
            // neither that use nor the rotation happens (never a use counted on a retired
            // version after its count was carried over).
            let n = diesel::update(
                keys::table
                    .filter(keys::id.eq(&old_id))
                    .filter(keys::generation.eq(old_generation))
                    .filter(keys::state.eq(KeyState::Active.as_str()))
                    .filter(keys::usage_count.eq(stored_count)),
            )
            .set((
                keys::state.eq(KeyState::Deactivated.as_str()),
                keys::generation.eq(old_generation + 1),
                keys::sealed.eq(Some(old_sealed)),
            ))
            .execute(c)?;
            if n != 1 {
                return Err(HsmError::KeyChanged(l2));
            }
            diesel::insert_into(keys::table)
                .values(&new_row)
                .execute(c)?;
            Ok(())
        });
        Ok((
            apply,
            EventParts {
                action: "key.rotate",
                key_id: Some(new.id.clone()),
                detail: serde_json::json!({
                    "label": label, "old_id": old.id, "new_id": new.id,
                    "old_version": old.version, "version": new.version,
                    "limit_per": if old.limit_per_version { "version" } else { "name" },
                    "usage_count": carried,
                    "public_key_sha256": hex::encode(digest(&SHA256, &new.public_key).as_ref()),
                }),
                // The new key id's audited floor: what the name has spent so far.
                use_hi: (!old.limit_per_version).then_some(carried),
            },
        ))
    }
}
