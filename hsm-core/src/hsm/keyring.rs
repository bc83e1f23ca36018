//! Key generation, loading (unsealing into the cache), listing, destruction and usage limits.

use super::*;
use crate::hsm::key_auth;
use crate::store::schema::certificates;

impl Hsm {
    pub fn create_key(&self, s: &Session, spec: &KeySpec) -> Result<KeyInfo> {
        s.require(Role::Officer, "create keys")?;
        let u = self.unsealed()?;
        let attrs = self.new_attrs(s, spec, true)?;
        self.generate_and_store(&u, s, attrs, "key.generate")
    }

    /// A new key with a restricted operation (a CA key, a CA's service key): named in
    /// [`RESTRICTED_NAMESPACE`], never exportable, and usable only through the CA's signing
    /// entry points. Officers create CA keys; the service's own session creates service keys.
    pub(crate) fn create_restricted_key(
        &self,
        s: &Session,
        label: &str,
        alg: Algorithm,
        op: Operation,
        action: &str,
    ) -> Result<KeyInfo> {
        match op {
            Operation::Certify => s.require(Role::Officer, "create CA keys")?,
            Operation::ServiceSign if s.is_service() => {}
            Operation::ServiceSign => s.require(Role::Officer, "create CA service keys")?,
            _ => return Err(HsmError::BadInput("not a restricted operation".into())),
        }
        if !label.starts_with(RESTRICTED_NAMESPACE) {
            return Err(HsmError::BadInput(format!(
                "a CA key's name starts with '{RESTRICTED_NAMESPACE}'"
            )));
        }
        let u = self.unsealed()?;
        let spec = KeySpec {
            operations: vec![op, Operation::Verify],
            ..KeySpec::new(label, alg)
        };
        let attrs = self.attrs_for(s, &spec, true)?;
        self.generate_and_store(&u, s, attrs, action)
    }

    pub(crate) fn generate_and_store(
        &self,
        u: &Unsealed,
        s: &Session,
        attrs: KeyAttributes,
        action: &str,
    ) -> Result<KeyInfo> {
        let (pkcs8, spki) = crypto::generate(attrs.algorithm)?;
        let attrs = KeyAttributes {
            public_key: spki,
            ..attrs
        };
        self.store_new_key(u, s, attrs, &pkcs8, action)
    }

    /// Attributes for a caller's new key; the import key's name is kagi's own.
    pub(super) fn new_attrs(
        &self,
        s: &Session,
        spec: &KeySpec,
        local: bool,
    ) -> Result<KeyAttributes> {
        if spec.label == IMPORT_KEY_LABEL {
            return Err(HsmError::KeyExists(spec.label.clone()));
        }
        if spec.label.starts_with(RESTRICTED_NAMESPACE) {
            return Err(HsmError::BadInput(format!(
                "key names starting with '{RESTRICTED_NAMESPACE}' are kept for CA keys: create a CA with 'kagi ca create-root' or pick another name"
            )));
        }
        if spec.operations.iter().any(|o| o.is_restricted()) {
            return Err(HsmError::BadInput(
                "the certify and service-sign operations belong to CA keys: create a CA with 'kagi ca create-root' instead".into(),
            ));
        }
        self.attrs_for(s, spec, local)
    }

    pub(super) fn attrs_for(
        &self,
        s: &Session,
        spec: &KeySpec,
        local: bool,
    ) -> Result<KeyAttributes> {
        validate_label(&spec.label)?;
        if let Some(l) = spec.usage_limit {
            if l < 0 {
                return Err(HsmError::BadInput(
                    "a usage limit cannot be negative".into(),
                ));
            }
        }
        if let (Some(a), Some(b)) = (spec.not_before, spec.not_after) {
            if a >= b {
                return Err(HsmError::BadInput(
                    "not-before must be earlier than not-after".into(),
                ));
            }
        }
        // SP 800-57: the recipient usage period ends no earlier than the originator's.
        if let Some(v) = spec.verify_until {
            if spec.not_after.is_none_or(|b| v < b) {
                return Err(HsmError::BadInput(
                    "--verify-until needs a signing period end (--not-after) no later than it: a key cannot stop verifying while it still signs".into(),
                ));
            }
        }
        let mut operations = if spec.operations.is_empty() {
            vec![Operation::Sign, Operation::Verify]
        } else {
            spec.operations.clone()
        };
        operations.sort();
        operations.dedup();
        if operations.contains(&Operation::Wrap) && !spec.algorithm.is_rsa() {
            return Err(HsmError::BadInput(
                "only RSA keys can wrap other keys".into(),
            ));
        }
        if spec.trusted && !operations.contains(&Operation::Wrap) {
            return Err(HsmError::BadInput(
                "a trusted key must allow the wrap operation".into(),
            ));
        }
        if spec.key_auth
            && (spec.exportable_under_wrap || spec.trusted || operations.contains(&Operation::Wrap))
        {
            return Err(HsmError::BadInput(
                "a key with its own password (--key-auth) only signs and verifies: it cannot be exportable, trusted or a wrapping key".into(),
            ));
        }
        Ok(KeyAttributes {
            id: random_hex(16)?,
            partition: s.partition().to_string(),
            label: spec.label.clone(),
            algorithm: spec.algorithm,
            operations,
            usage_limit: spec.usage_limit,
            not_before: spec.not_before,
            not_after: spec.not_after,
            verify_until: spec.verify_until,
            exportable_under_wrap: spec.exportable_under_wrap,
            trusted: spec.trusted,
            // An imported key was outside once, so it was never "never extractable".
            never_extractable: local && !spec.exportable_under_wrap,
            local,
            state: KeyState::Active,
            generation: 0,
            public_key: Vec::new(),
            created_at: now_ms() / 1000,
            key_auth: spec.key_auth,
            version: 1,
            limit_per_version: spec.limit_per_version,
        })
    }

    pub(super) fn store_new_key(
        &self,
        u: &Unsealed,
        s: &Session,
        attrs: KeyAttributes,
        pkcs8: &[u8],
        action: &str,
    ) -> Result<KeyInfo> {
        // A key with its own password: the master key's seal goes around the password layer.
        let inner;
        let pkcs8 = if attrs.key_auth {
            let auth = s.key_auth().ok_or_else(|| {
                HsmError::BadInput(
                    "a key with its own password (--key-auth) needs that password with the request that creates it (the Kagi-Key-Auth header or the key_password field)".into(),
                )
            })?;
            key_auth::check_new(auth)?;
            inner = key_auth::wrap(auth, pkcs8, &attrs.key_auth_data())?;
            &inner[..]
        } else {
            pkcs8
        };
        let sealed = self
            .sealer(u, &attrs.partition)?
            .seal(pkcs8, &attrs.associated_data())?;
        let row = KeyRow::from_attrs(&attrs, sealed);
        let info = row.info(0)?;
        let apply: ApplyFn = Box::new(move |c| {
            let exists: i64 = keys::table
                .filter(keys::partition_name.eq(&row.partition_name))
                .filter(keys::label.eq(&row.label))
                .filter(keys::state.ne("destroyed"))
                .count()
                .get_result(c)?;
            if exists > 0 {
                return Err(HsmError::KeyExists(row.label.clone()));
            }
            diesel::insert_into(keys::table).values(&row).execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                action,
                Some(info.id.clone()),
                serde_json::json!({
                    "label": info.label, "algorithm": info.algorithm.as_str(),
                    "usage_limit": info.usage_limit, "exportable_under_wrap": info.exportable_under_wrap,
                    "trusted": info.trusted, "operations": operations_to_string(&info.operations),
                    "key_auth": info.key_auth, "escrow": false,
                }),
            ),
        )?;
        Ok(info)
    }

    /// The key a name means: its newest version that is not destroyed (after `kagi key
    /// rotate`, earlier versions keep their rows, deactivated, for verifying).
    pub(crate) fn live_row(&self, partition: &str, label: &str) -> Result<KeyRow> {
        let mut c = self.inner.store.conn()?;
        keys::table
            .filter(keys::partition_name.eq(partition))
            .filter(keys::label.eq(label))
            .filter(keys::state.ne("destroyed"))
            .order(keys::version.desc())
            .first(&mut c)
            .optional()?
            .ok_or_else(|| HsmError::KeyNotFound(label.chars().take(128).collect()))
    }

    /// Highest usage count the verified audit log shows for a key: the floor for its counter.
    /// A log that does not verify fails the HSM closed instead of giving a floor.
    pub(crate) fn audited_uses(&self, key_id: &str) -> Result<i64> {
        self.unsealed()?.audited_use_hi(&self.inner.store, key_id)
    }

    pub(super) fn was_destroyed(&self, key_id: &str) -> Result<bool> {
        Ok(!self
            .unsealed()?
            .audited(&self.inner.store, "key.destroy", key_id)?
            .is_empty())
    }

    /// Unseal a key into the cache, checking every bound attribute.
    pub(super) fn load_key(
        &self,
        u: &Unsealed,
        s: &Session,
        label: &str,
    ) -> Result<Arc<CachedKey>> {
        let partition = s.partition();
        let cache_key = (partition.to_string(), label.to_string());
        if let Some(k) = self
            .inner
            .keys
            .read()
            .map_err(|_| lock_err())?
            .get(&cache_key)
        {
            return Ok(k.clone());
        }
        let row = self.live_row(partition, label)?;
        let attrs = row.attrs()?;
        let integrity = || HsmError::KeyIntegrity {
            label: label.chars().take(128).collect(),
        };
        let sealed = row.sealed.as_deref().ok_or_else(integrity)?;
        let pkcs8 = self
            .sealer(u, partition)?
            .open(sealed, &attrs.associated_data())
            .ok_or_else(integrity)?;
        // A restored row of a destroyed key still has a valid seal; the audit log remembers.
        if self.was_destroyed(&attrs.id)? {
            return Err(integrity());
        }
        // So does a restored row from before a deactivation or compromise, which are final.
        match u.retired(&self.inner.store, &attrs.id)? {
            Some(KeyState::Compromised) => {
                return Err(HsmError::KeyCompromised(attrs.label.clone()))
            }
            Some(_) => return Err(HsmError::KeyDeactivated(attrs.label.clone())),
            None => {}
        }
        // So does a restored row from before a suspension.
        if u.suspended(&self.inner.store, &attrs.id)? {
            return Err(HsmError::KeySuspended(attrs.label.clone()));
        }
        // A key with its own password opens for this one operation and is never cached.
        let pkcs8 = if attrs.key_auth {
            self.authorize_key(u, s, &attrs, &pkcs8)?
        } else {
            pkcs8
        };
        let key = crypto::load(attrs.algorithm, &pkcs8)?;
        if key.public_key_der()? != attrs.public_key {
            return Err(integrity());
        }
        let hw = self.audited_uses(&attrs.id)?;
        let key_auth = attrs.key_auth;
        let cached = Arc::new(CachedKey {
            attrs,
            key,
            high_water: Arc::new(AtomicI64::new(hw)),
        });
        if key_auth {
            return Ok(cached);
        }
        self.inner
            .keys
            .write()
            .map_err(|_| lock_err())?
            .insert(cache_key, cached.clone());
        Ok(cached)
    }

    /// The audited floor of a quota's total counter, read once per process.
    pub(super) fn quota_floor(&self, name: &str) -> Result<Arc<AtomicI64>> {
        if let Some(f) = self
            .inner
            .quota_floors
            .lock()
            .map_err(|_| lock_err())?
            .get(name)
        {
            return Ok(f.clone());
        }
        let floor = Arc::new(AtomicI64::new(self.audited_uses(&format!("quota:{name}"))?));
        let mut map = self.inner.quota_floors.lock().map_err(|_| lock_err())?;
        Ok(map.entry(name.to_string()).or_insert(floor).clone())
    }

    /// Uses counted against a quota so far (total window), for display.
    pub fn quota_used(&self, name: &str) -> Result<i64> {
        let mut c = self.inner.store.conn()?;
        let stored: Option<i64> = quota_counters::table
            .filter(quota_counters::name.eq(name))
            .filter(quota_counters::window_id.eq("total"))
            .select(quota_counters::used)
            .first(&mut c)
            .optional()?;
        drop(c);
        Ok(stored
            .unwrap_or(0)
            .max(self.audited_uses(&format!("quota:{name}"))?))
    }

    pub(crate) fn evict(&self, partition: &str, label: &str) {
        if let Ok(mut m) = self.inner.keys.write() {
            m.remove(&(partition.to_string(), label.to_string()));
        }
    }

    pub fn list_keys(&self, s: &Session) -> Result<Vec<KeyInfo>> {
        self.list_keys_after(s, None, None)
    }

    /// The caller's keys in label order, from the label after `after`, at most `limit` of
    /// them (all without a limit): an index walk from the cursor.
    pub fn list_keys_after(
        &self,
        s: &Session,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<KeyInfo>> {
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let mut q = keys::table
            .filter(keys::partition_name.eq(s.partition()))
            .filter(keys::state.ne("destroyed"))
            .filter(current_version())
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(keys::label.gt(after.to_string()));
        }
        if let Some(limit) = limit {
            q = q.limit(limit.clamp(1, 10_000));
        }
        let rows: Vec<KeyRow> = q.order(keys::label.asc()).load(&mut c)?;
        // One catch-up with the log for the whole page, then each key's floor from memory:
        // per key, a pool checkout and a catch-up query cost more than the key itself.
        let u = self.unsealed()?;
        u.integrity.catch_up(&mut c, &u.audit)?;
        drop(c);
        rows.iter()
            .map(|r| self.row_info_with(r, u.integrity.use_hi_now(&r.id)?))
            .collect()
    }

    /// A row's description with its audited usage floor, and suspended when the verified log
    /// says so whatever the row says (a row restored from before a suspension).
    fn row_info(&self, r: &KeyRow) -> Result<KeyInfo> {
        self.row_info_with(r, self.audited_uses(&r.id)?)
    }

    /// [`Hsm::row_info`] with the audited floor already read.
    fn row_info_with(&self, r: &KeyRow, audited_uses: i64) -> Result<KeyInfo> {
        let mut info = r.info(r.usage_count.max(audited_uses))?;
        let u = self.unsealed()?;
        let state = effective_state(&u, &r.id, info.state);
        if state != info.state {
            info.state = state;
            info.active = false;
            info.lifecycle = Lifecycle::of(state, info.not_before, info.not_after, now_ms() / 1000);
        }
        Ok(info)
    }

    pub fn key_info(&self, s: &Session, label: &str) -> Result<KeyInfo> {
        self.unsealed()?;
        let row = self.live_row(s.partition(), label)?;
        self.row_info(&row)
    }

    /// [`Hsm::key_info`] with the name's earlier versions (`kagi key show`): one more query,
    /// so only the answer about one key pays it.
    pub fn key_details(&self, s: &Session, label: &str) -> Result<KeyInfo> {
        let mut info = self.key_info(s, label)?;
        if info.version > 1 {
            let mut c = self.inner.store.conn()?;
            let rows: Vec<KeyRow> = keys::table
                .filter(keys::partition_name.eq(s.partition()))
                .filter(keys::label.eq(label))
                .filter(keys::state.ne("destroyed"))
                .filter(keys::version.lt(info.version))
                .order(keys::version.desc())
                .load(&mut c)?;
            drop(c);
            let u = self.unsealed()?;
            info.earlier_versions = rows
                .iter()
                .map(|r| KeyVersion {
                    id: r.id.clone(),
                    version: r.version,
                    state: effective_state(
                        &u,
                        &r.id,
                        KeyState::from_str(&r.state).unwrap_or(KeyState::Compromised),
                    ),
                    public_key_sha256: hex::encode(digest(&SHA256, &r.public_key).as_ref()),
                    created_at: r.created_at,
                })
                .collect();
        }
        Ok(info)
    }

    /// Version `version` of key `label` (not destroyed), current or earlier: a verifier
    /// reads an earlier version's public key here to check the signatures it made.
    pub fn key_version_info(&self, s: &Session, label: &str, version: i64) -> Result<KeyInfo> {
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let row: Option<KeyRow> = keys::table
            .filter(keys::partition_name.eq(s.partition()))
            .filter(keys::label.eq(label))
            .filter(keys::state.ne("destroyed"))
            .filter(keys::version.eq(version))
            .first(&mut c)
            .optional()?;
        drop(c);
        match row {
            Some(r) => self.row_info(&r),
            None => Err(HsmError::KeyNotFound(format!(
                "{} version {version}",
                label.chars().take(128).collect::<String>()
            ))),
        }
    }

    /// The live key of the caller's partition with this id, if any: one indexed row, with the
    /// same audited usage floor `list_keys` and `key_info` apply, so a lookup by id costs the
    /// same at ten keys as at ten thousand.
    pub fn key_info_by_id(&self, s: &Session, id: &str) -> Result<Option<KeyInfo>> {
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let row: Option<KeyRow> = keys::table
            .filter(keys::partition_name.eq(s.partition()))
            .filter(keys::id.eq(id))
            .filter(keys::state.ne("destroyed"))
            .first(&mut c)
            .optional()?;
        drop(c);
        row.map(|r| self.row_info(&r)).transpose()
    }

    /// Destroy a key. With an M-of-N quorum in the active policy this only files an approval
    /// request; the key is destroyed when enough other officers approve.
    pub fn destroy_key(&self, s: &Session, label: &str) -> Result<Gated<()>> {
        s.require(Role::Officer, "destroy keys")?;
        // No unseal needed: a key that fails its integrity check must still be destroyable.
        let row = self.live_row(s.partition(), label)?;
        let action = ApprovalAction::DestroyKey {
            label: label.to_string(),
        };
        if let Some(pending) = self.gate(
            s,
            &action,
            &format!("destroy key '{label}' ({}, id {})", row.algorithm, row.id),
        )? {
            return Ok(Gated::Pending(Box::new(pending)));
        }
        self.run_action(s, s.partition(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(()))
    }

    /// The durable change of a destroy: state destroyed, sealed material erased.
    pub(crate) fn destroy_op(&self, partition: &str, label: &str) -> Result<(ApplyFn, EventParts)> {
        let row = self.live_row(partition, label)?;
        // A name is destroyed with all its versions: the earlier ones only verified, and a
        // name whose newest version is gone must not fall back to an older one.
        let earlier: Vec<String> = {
            let mut c = self.inner.store.conn()?;
            keys::table
                .filter(keys::partition_name.eq(partition))
                .filter(keys::label.eq(label))
                .filter(keys::state.ne("destroyed"))
                .filter(keys::id.ne(&row.id))
                .select(keys::id)
                .load(&mut c)?
        };
        let mut ids = earlier.clone();
        ids.push(row.id.clone());
        let key_id = row.id.clone();
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                keys::table
                    .filter(keys::id.eq_any(&ids))
                    .filter(keys::state.ne("destroyed")),
            )
            .set((
                keys::state.eq("destroyed"),
                keys::sealed.eq(None::<Vec<u8>>),
                keys::generation.eq(keys::generation + 1),
            ))
            .execute(c)?;
            if n >= 1 {
                Ok(())
            } else {
                Err(HsmError::KeyNotFound(row.label.clone()))
            }
        });
        let mut detail = serde_json::json!({"label": label});
        if let (Some(d), false) = (detail.as_object_mut(), earlier.is_empty()) {
            d.insert("earlier_versions".into(), earlier.into());
        }
        Ok((
            apply,
            EventParts {
                action: "key.destroy",
                key_id: Some(key_id),
                detail,
                use_hi: None,
            },
        ))
    }

    /// Suspend (disable) a key: it signs nothing until [`Hsm::resume_key`]. Officers do this,
    /// as they create and destroy keys; it takes effect at once and needs no quorum (stopping
    /// a key is the safe direction), and neither does resuming, which gives back no more than
    /// the key had. The state is bound into the key's sealed attributes (a database edit of
    /// the state column makes the key fail to open) and recorded as `key.suspend` /
    /// `key.resume` in the audit log, whose verified index the sign path asks every time: a
    /// row restored from before the suspension still refuses to sign.
    pub fn suspend_key(&self, s: &Session, label: &str) -> Result<KeyInfo> {
        self.set_suspended(s, label, true)
    }

    /// Enable a suspended key again (audited as `key.resume`).
    pub fn resume_key(&self, s: &Session, label: &str) -> Result<KeyInfo> {
        self.set_suspended(s, label, false)
    }

    fn set_suspended(&self, s: &Session, label: &str, suspend: bool) -> Result<KeyInfo> {
        s.require(
            Role::Officer,
            if suspend {
                "disable keys"
            } else {
                "enable keys"
            },
        )?;
        let u = self.unsealed()?;
        let row = self.live_row(s.partition(), label)?;
        let (attrs, pkcs8) = self.open_pkcs8(&u, &row)?;
        if attrs.operations.iter().any(|o| o.is_restricted()) {
            return Err(HsmError::BadInput(format!(
                "'{label}' is a CA key: a CA is stopped by revoking its certificate, not by disabling its key"
            )));
        }
        let (from, to) = if suspend {
            (KeyState::Active, KeyState::Suspended)
        } else {
            (KeyState::Suspended, KeyState::Active)
        };
        let logged = u.suspended(&self.inner.store, &attrs.id)?;
        if let Some(retired) = u.retired(&self.inner.store, &attrs.id)? {
            return Err(transition_refused(label, retired, to));
        }
        if attrs.state == to && logged == suspend {
            return Err(HsmError::Conflict(format!(
                "key '{label}' is already {}",
                if suspend {
                    "disabled (suspended)"
                } else {
                    "enabled"
                }
            )));
        }
        if attrs.state != KeyState::Active && attrs.state != KeyState::Suspended {
            return Err(transition_refused(label, attrs.state, to));
        }
        let old_generation = attrs.generation;
        let old_state = attrs.state;
        let new = KeyAttributes {
            state: to,
            generation: old_generation + 1,
            ..attrs
        };
        let sealed = self
            .sealer(&u, &new.partition)?
            .seal(&pkcs8, &new.associated_data())?;
        let id = row.id.clone();
        let l2 = row.label.clone();
        let apply: ApplyFn =
            Box::new(move |c| swap_state(c, &id, old_generation, old_state, to, sealed, l2));
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                if suspend { "key.suspend" } else { "key.resume" },
                Some(row.id.clone()),
                serde_json::json!({"label": label, "from": from.as_str(), "to": to.as_str()}),
            ),
        )?;
        self.evict(s.partition(), label);
        self.key_info(s, label)
    }

    /// Deactivate a key: its signing period ends now, for good; it still verifies. Officers,
    /// no quorum (retiring a key is the safe direction). Audited as `key.deactivate`, kept in
    /// the verified index, and bound into the sealed attributes: neither an edited state
    /// column nor a row restored from before brings it back to active.
    pub fn deactivate_key(&self, s: &Session, label: &str) -> Result<KeyInfo> {
        s.require(Role::Officer, "deactivate keys")?;
        let (apply, parts) = self.retire_op(s.partition(), label, KeyState::Deactivated, None)?;
        let u = self.unsealed()?;
        self.evict(s.partition(), label);
        let done = u.committer.submit(
            None,
            Some(apply),
            user_event(s, parts.action, parts.key_id, parts.detail),
        );
        self.evict(s.partition(), label);
        done?;
        self.key_info(s, label)
    }

    /// Mark a key compromised: it signs and verifies nothing more, for good, and only
    /// destroying it is left. Behind the active policy's quorum when it has one (like
    /// destroy), because a compromise is final; audited as `key.compromise` with the reason.
    pub fn compromise_key(&self, s: &Session, label: &str, reason: &str) -> Result<Gated<KeyInfo>> {
        s.require(Role::Officer, "mark keys compromised")?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 1024 {
            return Err(HsmError::BadInput(
                "say why the key is compromised (--reason TEXT, 1 to 1024 bytes)".into(),
            ));
        }
        let u = self.unsealed()?;
        let row = self.live_row(s.partition(), label)?;
        let attrs = row.attrs()?;
        let from = self.current_state(&u, &row.id, attrs.state)?;
        if !from.allowed_next().contains(&KeyState::Compromised) {
            return Err(transition_refused(label, from, KeyState::Compromised));
        }
        let action = ApprovalAction::CompromiseKey {
            label: label.to_string(),
            reason: reason.to_string(),
        };
        if let Some(pending) = self.gate(
            s,
            &action,
            &format!(
                "mark key '{label}' ({}, id {}) compromised: {reason}",
                row.algorithm, row.id
            ),
        )? {
            return Ok(Gated::Pending(Box::new(pending)));
        }
        self.run_action(s, s.partition(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(self.key_info(s, label)?))
    }

    /// [`effective_state`] once caught up with the log.
    pub(super) fn current_state(
        &self,
        u: &Unsealed,
        key_id: &str,
        stored: KeyState,
    ) -> Result<KeyState> {
        u.retired(&self.inner.store, key_id)?;
        Ok(effective_state(u, key_id, stored))
    }

    /// The durable change of a deactivation or compromise: the key resealed in its new state
    /// with the next generation, refused unless the move is allowed from the state the
    /// sealed attributes and the verified log give together.
    pub(crate) fn retire_op(
        &self,
        partition: &str,
        label: &str,
        to: KeyState,
        reason: Option<&str>,
    ) -> Result<(ApplyFn, EventParts)> {
        let u = self.unsealed()?;
        let row = self.live_row(partition, label)?;
        let (attrs, pkcs8) = self.open_pkcs8(&u, &row)?;
        if attrs.operations.iter().any(|o| o.is_restricted()) {
            return Err(HsmError::BadInput(format!(
                "'{label}' is a CA key: a CA is retired by revoking its certificate"
            )));
        }
        let from = self.current_state(&u, &attrs.id, attrs.state)?;
        if !from.allowed_next().contains(&to) {
            return Err(transition_refused(label, from, to));
        }
        let old_generation = attrs.generation;
        let old_state = attrs.state;
        let new = KeyAttributes {
            state: to,
            generation: old_generation + 1,
            ..attrs
        };
        let sealed = self
            .sealer(&u, partition)?
            .seal(&pkcs8, &new.associated_data())?;
        let id = row.id.clone();
        let l2 = row.label.clone();
        // A compromise revokes every certificate of the key (keyCompromise) in the same
        // transaction and the same audit record, which lists them: CRLs and OCSP read
        // revocations from the verified log, so an edited certificate row does not undo one.
        let spki = hex::encode(digest(&SHA256, &new.public_key).as_ref());
        let revoked: Vec<(String, String)> = if to == KeyState::Compromised {
            let mut c = self.inner.store.conn()?;
            certificates::table
                .filter(certificates::spki_sha256.eq(&spki))
                .filter(certificates::revoked_at.is_null())
                .select((certificates::serial, certificates::ca_name))
                .order(certificates::serial.asc())
                .load(&mut c)?
        } else {
            Vec::new()
        };
        let serials: Vec<String> = revoked.iter().map(|(s, _)| s.clone()).collect();
        let now = now_ms() / 1000;
        let apply: ApplyFn = Box::new(move |c| {
            swap_state(c, &id, old_generation, old_state, to, sealed, l2)?;
            if !serials.is_empty() {
                diesel::update(
                    certificates::table
                        .filter(certificates::serial.eq_any(&serials))
                        .filter(certificates::revoked_at.is_null()),
                )
                .set((
                    certificates::revoked_at.eq(Some(now)),
                    certificates::revocation_reason.eq(Some(KEY_COMPROMISE)),
                ))
                .execute(c)?;
            }
            Ok(())
        });
        let mut detail =
            serde_json::json!({"label": label, "from": from.as_str(), "to": to.as_str()});
        if let (Some(d), Some(r)) = (detail.as_object_mut(), reason) {
            d.insert("reason".into(), r.into());
        }
        if let (Some(d), true) = (detail.as_object_mut(), to == KeyState::Compromised) {
            // What issuance compares a request's key with: no new certificate for it.
            d.insert("public_key_sha256".into(), spki.into());
            d.insert(
                "revoked_certificates".into(),
                revoked
                    .iter()
                    .map(|(serial, ca)| serde_json::json!({"serial": serial, "ca": ca}))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        Ok((
            apply,
            EventParts {
                action: if to == KeyState::Compromised {
                    "key.compromise"
                } else {
                    "key.deactivate"
                },
                key_id: Some(row.id.clone()),
                detail,
                use_hi: None,
            },
        ))
    }

    /// Change a key's usage limit (None: unlimited). Lowering takes effect at once; raising
    /// (or removing) a limit goes through M-of-N approval when the active policy has a quorum.
    pub fn set_usage_limit(
        &self,
        s: &Session,
        label: &str,
        limit: Option<i64>,
    ) -> Result<Gated<KeyInfo>> {
        s.require(Role::Officer, "change usage limits")?;
        if limit.is_some_and(|l| l < 0) {
            return Err(HsmError::BadInput(
                "a usage limit cannot be negative".into(),
            ));
        }
        // A retired key's limit means nothing any more: say why rather than "retry".
        match self.key_info(s, label)?.state {
            KeyState::Deactivated => return Err(HsmError::KeyDeactivated(label.to_string())),
            KeyState::Compromised => return Err(HsmError::KeyCompromised(label.to_string())),
            _ => {}
        }
        let row = self.live_row(s.partition(), label)?;
        let raising = match (row.usage_limit, limit) {
            (Some(old), Some(new)) => new > old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let action = ApprovalAction::SetUsageLimit {
            label: label.to_string(),
            limit,
        };
        if raising {
            let text = format!(
                "raise the usage limit of key '{label}' from {} to {}",
                row.usage_limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "unlimited".into()),
                limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            );
            if let Some(pending) = self.gate(s, &action, &text)? {
                return Ok(Gated::Pending(Box::new(pending)));
            }
        }
        self.run_action(s, s.partition(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(self.key_info(s, label)?))
    }

    /// Reseal a key under attributes with a new limit and the next generation.
    pub(crate) fn set_limit_op(
        &self,
        partition: &str,
        label: &str,
        limit: Option<i64>,
    ) -> Result<(ApplyFn, EventParts)> {
        let u = self.unsealed()?;
        let row = self.live_row(partition, label)?;
        let (attrs, pkcs8) = self.open_pkcs8(&u, &row)?;
        let old_generation = attrs.generation;
        let new = KeyAttributes {
            usage_limit: limit,
            generation: old_generation + 1,
            ..attrs
        };
        let sealed = self
            .sealer(&u, partition)?
            .seal(&pkcs8, &new.associated_data())?;
        let id = row.id.clone();
        let old_limit = row.usage_limit;
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                keys::table
                    .filter(keys::id.eq(&id))
                    .filter(keys::generation.eq(old_generation))
                    .filter(keys::state.eq("active")),
            )
            .set((
                keys::usage_limit.eq(limit),
                keys::generation.eq(old_generation + 1),
                keys::sealed.eq(Some(sealed)),
            ))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::KeyChanged(row.label.clone()))
            }
        });
        Ok((
            apply,
            EventParts {
                action: "key.set_usage_limit",
                key_id: Some(row.id.clone()),
                detail: serde_json::json!({"label": label, "from": old_limit, "to": limit}),
                use_hi: None,
            },
        ))
    }
}

/// Rows that are the newest live version of their name: lists show one row per name.
pub(crate) fn current_version() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql::<diesel::sql_types::Bool>(
        "NOT EXISTS (SELECT 1 FROM keys AS newer WHERE newer.partition_name = keys.partition_name \
         AND newer.label = keys.label AND newer.state <> 'destroyed' AND newer.version > keys.version)",
    )
}

/// RFC 5280 CRLReason keyCompromise.
pub(crate) const KEY_COMPROMISE: i64 = 1;

/// A key's state from its sealed attributes and the verified log together: the further along
/// the one-way path of the two, and suspended when the log's newest suspend/resume says so.
pub(super) fn effective_state(u: &Unsealed, key_id: &str, stored: KeyState) -> KeyState {
    let mut state = stored;
    if let Some(retired) = u.integrity.retired_now(key_id) {
        if retired.rank() > state.rank() {
            state = retired;
        }
    }
    if state == KeyState::Active && u.suspended_now(key_id) {
        state = KeyState::Suspended;
    }
    state
}

pub(super) fn transition_refused(label: &str, from: KeyState, to: KeyState) -> HsmError {
    let allowed = from.allowed_next();
    HsmError::KeyStateTransition {
        label: label.chars().take(128).collect(),
        from: from.as_str(),
        to: to.as_str(),
        allowed: if allowed.is_empty() {
            "nothing".into()
        } else {
            allowed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
    }
}

/// Move key `id` from `old_state` at `old_generation` to `to`, resealed as `sealed`, in the
/// caller's transaction; `KeyChanged` if another change got there first.
#[allow(clippy::too_many_arguments)]
pub(super) fn swap_state(
    c: &mut AnyConnection,
    id: &str,
    old_generation: i64,
    old_state: KeyState,
    to: KeyState,
    sealed: Vec<u8>,
    label: String,
) -> Result<()> {
    let n = diesel::update(
        keys::table
            .filter(keys::id.eq(id))
            .filter(keys::generation.eq(old_generation))
            .filter(keys::state.eq(old_state.as_str())),
    )
    .set((
        keys::state.eq(to.as_str()),
        keys::generation.eq(old_generation + 1),
        keys::sealed.eq(Some(sealed)),
    ))
    .execute(c)?;
    if n == 1 {
        Ok(())
    } else {
        Err(HsmError::KeyChanged(label))
    }
}
