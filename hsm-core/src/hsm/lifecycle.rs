//! Opening the store, init and unseal: the HSM's life before any session exists.

use super::*;

impl Hsm {
    /// Open the store (running migrations). The HSM starts sealed.
    pub fn open(cfg: HsmConfig) -> Result<Hsm> {
        let store = Store::open(&cfg.store)?;
        let threshold = {
            let mut c = store.conn()?;
            meta_get(&mut c, "threshold")?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
        };
        Ok(Hsm {
            inner: Arc::new(Inner {
                store,
                state: RwLock::new(State::Sealed {
                    threshold,
                    collected: Vec::new(),
                }),
                keys: RwLock::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                login_flights: login_flight::Flights::default(),
                argon2_slots: login_flight::Argon2Slots::per_core(),
                failed_logins: Mutex::new(FailedLogins::default()),
                failed_login_window: cfg.failed_login_window.max(Duration::from_millis(100)),
                password_lock: cfg.password_lock,
                key_auth_lock: cfg.key_auth_lock,
                quota_floors: Mutex::new(HashMap::new()),
                ca_records: Mutex::new(HashMap::new()),
                commit_observer: Arc::default(),
                witnesses: cfg.witnesses,
            }),
        })
    }

    pub fn store_config(&self) -> &StoreConfig {
        &self.inner.store.config
    }

    pub fn is_initialized(&self) -> Result<bool> {
        let mut c = self.inner.store.conn()?;
        Ok(meta_get(&mut c, "initialized")?.is_some())
    }

    pub fn is_sealed(&self) -> bool {
        match self.inner.state.read() {
            Ok(s) => matches!(*s, State::Sealed { .. }),
            Err(_) => true,
        }
    }

    pub(crate) fn unsealed(&self) -> Result<Arc<Unsealed>> {
        let state = self.inner.state.read().map_err(|_| lock_err())?;
        match &*state {
            State::Unsealed(u) => Ok(u.clone()),
            State::Sealed {
                threshold: None, ..
            } => Err(HsmError::NotInitialized),
            State::Sealed {
                threshold: Some(t),
                collected,
            } => Err(HsmError::Sealed {
                need: t.saturating_sub(collected.len()),
            }),
        }
    }

    /// Create a new instance: master key, shares, the system and default partitions, the audit
    /// key and a first administrator. Leaves the HSM unsealed.
    pub fn init(&self, share_count: usize, threshold: usize) -> Result<InitOutput> {
        if self.is_initialized()? {
            return Err(HsmError::AlreadyInitialized);
        }
        let master = MasterKey::generate()?;
        let (shares, commitments) = shares::split(master.as_bytes(), threshold, share_count)?;
        let check = master
            .sealer(seal::CHECK_INFO)?
            .seal(seal::CHECK_PLAINTEXT, b"")?;

        // The audit key is an ordinary sealed key in the system partition.
        let now = now_ms() / 1000;
        let (audit_pkcs8, audit_spki) = crypto::generate(Algorithm::EcP256)?;
        let audit_attrs = KeyAttributes {
            id: random_hex(16)?,
            partition: SYSTEM_PARTITION.into(),
            label: AUDIT_KEY_LABEL.into(),
            algorithm: Algorithm::EcP256,
            operations: vec![Operation::Sign],
            usage_limit: None,
            not_before: None,
            not_after: None,
            verify_until: None,
            exportable_under_wrap: false,
            trusted: false,
            never_extractable: true,
            local: true,
            state: KeyState::Active,
            generation: 0,
            public_key: audit_spki,
            created_at: now,
            key_auth: false,
            version: 1,
            limit_per_version: false,
        };
        let audit_sealed = master
            .sealer(&seal::partition_info(SYSTEM_PARTITION))?
            .seal(&audit_pkcs8, &audit_attrs.associated_data())?;
        let audit_keys = Arc::new(AuditKeys {
            mac: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &master.derive(seal::AUDIT_MAC_INFO)?[..],
            ),
            signer: EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &audit_pkcs8,
            )
            .map_err(|_| HsmError::Crypto("audit key"))?,
            tlog: tlog_key(&master)?,
        });
        let (admin_row, admin_token) = new_credential(
            DEFAULT_PARTITION,
            "admin",
            IdentityKind::Person,
            &[
                Role::Administrator,
                Role::Officer,
                Role::User,
                Role::Auditor,
            ],
            None,
        )?;
        let admin_id = admin_row.id.clone();

        let (committer, integrity) = Committer::start(
            self.inner.store.clone(),
            audit_keys.clone(),
            self.inner.commit_observer.clone(),
            self.inner.witnesses.clone(),
        )?;
        let audit_row = KeyRow::from_attrs(&audit_attrs, audit_sealed);
        let apply: ApplyFn = Box::new(move |c| {
            if meta_get(c, "initialized")?.is_some() {
                return Err(HsmError::AlreadyInitialized);
            }
            for p in [SYSTEM_PARTITION, DEFAULT_PARTITION] {
                diesel::insert_into(partitions::table)
                    .values((partitions::name.eq(p), partitions::created_at.eq(now)))
                    .execute(c)?;
            }
            diesel::insert_into(keys::table)
                .values(&audit_row)
                .execute(c)?;
            diesel::insert_into(credentials::table)
                .values(&admin_row)
                .execute(c)?;
            meta_put(c, "master_check", &check)?;
            meta_put(c, "threshold", threshold.to_string().as_bytes())?;
            meta_put(c, SHARE_COMMITMENTS, &commitments)?;
            meta_put(c, "audit_key_id", audit_row.id.as_bytes())?;
            meta_put(c, "initialized", b"1")?;
            Ok(())
        });
        committer.submit(
            None,
            Some(apply),
            EventDraft {
                actor: "hsm".into(),
                action: "hsm.init".into(),
                partition: None,
                key_id: None,
                detail: serde_json::json!({"shares": share_count, "threshold": threshold, "admin_credential": admin_id, "verifiable_shares": true}),
                outcome: None,
                use_hi: None,
            },
        )?;
        let unsealed = Unsealed {
            master,
            sealers: Mutex::new(HashMap::new()),
            audit: audit_keys,
            committer,
            integrity,
        };
        unsealed.start_verifying(&self.inner.store)?;
        *self.inner.state.write().map_err(|_| lock_err())? = State::Unsealed(Arc::new(unsealed));
        Ok(InitOutput {
            shares,
            threshold,
            admin_token,
        })
    }

    /// Add one share. When enough are in, rebuild the master key, check it, and unseal.
    ///
    /// A share is checked against its commitment (stored at `init`) before it joins the pool,
    /// so a forged share is refused by itself and the real shares already in stay. Instances
    /// made before commitments existed have none: their shares join unchecked, as before, and
    /// their first unseal stores the commitments (every index's share is known once the
    /// polynomial is), so from then on they are checked too.
    pub fn unseal(&self, share_text: &str) -> Result<UnsealProgress> {
        self.unseal_from(share_text, None)
    }

    /// [`Hsm::unseal`] for a share that came over the network: the unseal's audit record says
    /// where from (`source`, `user_agent`).
    pub fn unseal_from(
        &self,
        share_text: &str,
        client: Option<&crate::auth::ClientInfo>,
    ) -> Result<UnsealProgress> {
        let (share_threshold, share) = shares::parse(share_text)?;
        let commitments = {
            let mut c = self.inner.store.conn()?;
            meta_get(&mut c, SHARE_COMMITMENTS)?
        };
        let mut state = self.inner.state.write().map_err(|_| lock_err())?;
        let (threshold, collected) = match &mut *state {
            State::Unsealed(_) => {
                return Ok(UnsealProgress {
                    have: 0,
                    need: 0,
                    unsealed: true,
                })
            }
            State::Sealed {
                threshold: None, ..
            } => return Err(HsmError::NotInitialized),
            State::Sealed {
                threshold: Some(t),
                collected,
            } => (*t, collected),
        };
        if share_threshold != threshold {
            return Err(HsmError::BadShare(format!(
                "this share is from a {share_threshold}-of-N split, but this instance needs {threshold}"
            )));
        }
        if let Some(list) = &commitments {
            shares::check_commitment(&share, list)?;
        }
        if !collected.iter().any(|s| s[0] == share[0]) {
            collected.push(share);
        }
        if collected.len() < threshold {
            return Ok(UnsealProgress {
                have: collected.len(),
                need: threshold,
                unsealed: false,
            });
        }
        let pool = std::mem::take(collected);
        let master = MasterKey::from_bytes(&shares::combine(threshold, &pool)?)?;
        let unsealed = self.open_with_master(master)?;
        // The master key checked, so the pool's shares are genuine points of the polynomial
        // (one wrong byte in any of them would have changed the key): every index's
        // commitment follows from them.
        let count = commitments
            .as_ref()
            .map(|l| l.len())
            .filter(|n| n % shares::COMMITMENT_LEN == 0)
            .and_then(|n| u8::try_from(n / shares::COMMITMENT_LEN).ok())
            .filter(|n| *n > 0)
            .unwrap_or(u8::MAX);
        let expected = shares::commitments_from(&pool, count)?;
        drop(pool);
        let (apply, detail) = match &commitments {
            Some(list) if *list == expected => {
                (None, serde_json::json!({"share_commitments": "verified"}))
            }
            stored => {
                let changed: Vec<usize> = match stored {
                    Some(list) => (0..usize::from(count))
                        .filter(|i| {
                            let r = i * shares::COMMITMENT_LEN..(i + 1) * shares::COMMITMENT_LEN;
                            list.get(r.clone()) != expected.get(r)
                        })
                        .map(|i| i + 1)
                        .collect(),
                    None => Vec::new(),
                };
                if stored.is_some() {
                    log::error!(
                        "the stored share commitments of share(s) {changed:?} were changed in the database; they are rewritten from the shares that unsealed, and the audit log records it"
                    );
                }
                let apply: ApplyFn = Box::new(move |c| {
                    diesel::delete(meta::table.filter(meta::name.eq(SHARE_COMMITMENTS)))
                        .execute(c)?;
                    meta_put(c, SHARE_COMMITMENTS, &expected)
                });
                let detail = if stored.is_some() {
                    serde_json::json!({"share_commitments": "repaired", "changed": changed})
                } else {
                    serde_json::json!({"share_commitments": "stored", "count": count})
                };
                (Some(apply), detail)
            }
        };
        let mut detail = detail;
        if let Some(c) = client {
            c.add_to(&mut detail);
        }
        let committer = unsealed.committer.clone();
        *state = State::Unsealed(unsealed);
        drop(state);
        // Unsealed but failed closed: the log takes nothing more, and `/readyz` says why.
        committer.submit_unless_closed(apply, system_event("hsm.unseal", detail))?;
        Ok(UnsealProgress {
            have: threshold,
            need: threshold,
            unsealed: true,
        })
    }

    /// The stored share commitments, or `None` for an instance made before they existed.
    pub(super) fn share_commitments(&self) -> Result<Option<Vec<u8>>> {
        let mut c = self.inner.store.conn()?;
        meta_get(&mut c, SHARE_COMMITMENTS)
    }

    pub(super) fn open_with_master(&self, master: MasterKey) -> Result<Arc<Unsealed>> {
        let mut c = self.inner.store.conn()?;
        let check = meta_get(&mut c, "master_check")?.ok_or(HsmError::NotInitialized)?;
        if master
            .sealer(seal::CHECK_INFO)?
            .open(&check, b"")
            .as_deref()
            .map(|v| &v[..])
            != Some(seal::CHECK_PLAINTEXT)
        {
            return Err(HsmError::WrongMasterKey);
        }
        let audit_id = meta_get(&mut c, "audit_key_id")?
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or(HsmError::NotInitialized)?;
        let row: KeyRow = keys::table.filter(keys::id.eq(&audit_id)).first(&mut c)?;
        let attrs = row.attrs()?;
        let sealer = master.sealer(&seal::partition_info(SYSTEM_PARTITION))?;
        let pkcs8 = sealer
            .open(
                row.sealed.as_deref().unwrap_or_default(),
                &attrs.associated_data(),
            )
            .ok_or(HsmError::KeyIntegrity {
                label: "system/audit".into(),
            })?;
        let audit_keys = Arc::new(AuditKeys {
            mac: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &master.derive(seal::AUDIT_MAC_INFO)?[..],
            ),
            signer: EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &pkcs8,
            )
            .map_err(|_| HsmError::KeyIntegrity {
                label: "system/audit".into(),
            })?,
            tlog: tlog_key(&master)?,
        });
        let (committer, integrity) = Committer::start(
            self.inner.store.clone(),
            audit_keys.clone(),
            self.inner.commit_observer.clone(),
            self.inner.witnesses.clone(),
        )?;
        let unsealed = Unsealed {
            master,
            sealers: Mutex::new(HashMap::new()),
            audit: audit_keys,
            committer,
            integrity,
        };
        unsealed.start_verifying(&self.inner.store)?;
        Ok(Arc::new(unsealed))
    }

    /// Why the HSM failed closed (the audit log does not verify), if it did: what `/readyz`
    /// reports. `None` while sealed.
    pub fn integrity_failure(&self) -> Option<String> {
        self.unsealed().ok().and_then(|u| u.integrity.failure())
    }

    pub(crate) fn sealer(&self, u: &Unsealed, partition: &str) -> Result<Arc<Sealer>> {
        let mut map = u.sealers.lock().map_err(|_| lock_err())?;
        if let Some(s) = map.get(partition) {
            return Ok(s.clone());
        }
        let s = Arc::new(u.master.sealer(&seal::partition_info(partition))?);
        map.insert(partition.to_string(), s.clone());
        Ok(s)
    }
}
