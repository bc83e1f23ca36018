//! Signing and verifying. Every signature kagi makes is one [`SignOp`] executed by
//! [`Hsm::sign_op`]: the request names the key, the digest, what the signature is for, what it
//! is charged to and what commits with it, so no path can skip the quota, the audit record or
//! the log entry.

use super::*;

/// Which key signs.
#[derive(Debug, Clone, Copy)]
pub enum SignKey<'a> {
    /// A key stored in the caller's partition, by label.
    Stored(&'a str),
    /// The stored key with this label, which must still be the key with this id: a client
    /// that found the key earlier (a PKCS#11 handle) must not sign with a key created later
    /// under the same name after the first was destroyed.
    StoredId { label: &'a str, key_id: &'a str },
    /// A key the caller keeps outside, wrapped to the partition's import key: unwrapped into
    /// memory for this one signature and dropped (zeroized) right after. Nothing is stored.
    Wrapped {
        algorithm: Algorithm,
        wrapped: &'a [u8],
    },
}

/// What the signature is for, which decides the keys that may make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignPurpose {
    /// A digest the caller sent (raw, CMS, Sigstore): keys with the `sign` operation only.
    Digest,
    /// A certificate or CRL the CA built: keys with the `certify` operation only.
    Certify,
    /// A response a CA's service built (OCSP, timestamp, SCT) or a CA structure: keys with
    /// the `service-sign` or `certify` operation.
    Service,
}

/// What commits in the transaction that counts the use, besides its audit record. With
/// [`Staging::KagiEntry`] the use is counted before the digest is signed ("count, then
/// sign"). The other two need the signature, so the digest is signed first and the signature
/// is released only once what it made is durable: a refused reservation or a crash discards it
/// unseen.
pub enum Staging<'a> {
    /// kagi's own signature entry in the transparency log.
    KagiEntry,
    /// The log entry the closure makes from the signature (a Sigstore hashedrekord names the
    /// signature), instead of kagi's own.
    LogEntry(&'a mut dyn FnMut(&[u8]) -> Result<Vec<u8>>),
    /// Rows another part of kagi stores with the use (an issued certificate), made from the
    /// signature, plus kagi's own log entry.
    Rows(&'a mut dyn FnMut(&[u8]) -> Result<StagedRows>),
}

/// Rows of any [`crate::StagedRow`] type, ready to commit with a use.
pub struct StagedRows(pub(crate) Box<dyn crate::commit::ErasedRow>);

impl StagedRows {
    pub fn new<T: crate::StagedRow>(row: T) -> StagedRows {
        StagedRows(Box::new(row))
    }
}

/// One signing operation.
pub struct SignOp<'a> {
    pub key: SignKey<'a>,
    pub request: &'a SignRequest,
    pub purpose: SignPurpose,
    /// Policy quotas charged one use each, in the same transaction as the key's use: if any
    /// quota or the key's limit is exhausted, nothing is counted and nothing signed.
    pub quotas: &'a [QuotaCharge],
    /// Joins the use's audit record (an object: the policy rule that allowed it, the format).
    pub audit: serde_json::Value,
    pub staging: Staging<'a>,
}

impl<'a> SignOp<'a> {
    /// A caller's digest with a stored key, no quotas, kagi's own log entry.
    pub fn digest(label: &'a str, request: &'a SignRequest) -> SignOp<'a> {
        SignOp {
            key: SignKey::Stored(label),
            request,
            purpose: SignPurpose::Digest,
            quotas: &[],
            audit: serde_json::json!({}),
            staging: Staging::KagiEntry,
        }
    }

    /// A caller's digest with a key the caller brought wrapped, no quotas.
    pub fn wrapped(
        algorithm: Algorithm,
        wrapped: &'a [u8],
        request: &'a SignRequest,
    ) -> SignOp<'a> {
        SignOp {
            key: SignKey::Wrapped { algorithm, wrapped },
            request,
            purpose: SignPurpose::Digest,
            quotas: &[],
            audit: serde_json::json!({}),
            staging: Staging::KagiEntry,
        }
    }
}

impl Hsm {
    /// Sign a digest with a stored key: [`Hsm::sign_op`] with [`SignOp::digest`].
    pub fn sign(&self, s: &Session, label: &str, req: &SignRequest) -> Result<Vec<u8>> {
        self.sign_op(s, SignOp::digest(label, req))
            .map(|d| d.signature)
    }

    /// Execute one signing operation: check the session, the key and the digest, reserve the
    /// use and its quotas with its audit record and log entry in one durable transaction, and
    /// sign (before or after the commit, as [`Staging`] says).
    pub fn sign_op(&self, s: &Session, mut op: SignOp<'_>) -> Result<Signed> {
        s.require(Role::User, "use keys")?;
        let u = self.unsealed()?;
        // A detected rollback is over only once officers say so in the log: restarting,
        // or resetting the witnesses, is not enough.
        if u.unrecovered_rollback().is_some() {
            return Err(HsmError::RollbackDetected(
                self.rollback_detected().unwrap_or_default(),
            ));
        }
        if s.is_service() && op.purpose == SignPurpose::Digest {
            return Err(HsmError::Forbidden {
                have: "the service's own session".into(),
                action: "sign a caller's digest",
                need: "user",
            });
        }
        match op.key {
            SignKey::Stored(label) => self.sign_stored(&u, s, label, None, &mut op),
            SignKey::StoredId { label, key_id } => {
                self.sign_stored(&u, s, label, Some(key_id), &mut op)
            }
            SignKey::Wrapped { algorithm, wrapped } => {
                self.sign_wrapped(&u, s, algorithm, wrapped, &mut op)
            }
        }
    }

    /// The quotas to charge, each with the floor the audit log gives its counter.
    fn quota_reservations(
        &self,
        u: &Unsealed,
        quotas: &[QuotaCharge],
    ) -> Result<Vec<QuotaReservation>> {
        if let Some(q) = quotas.first() {
            if u.quotas_frozen_by_rollback() {
                return Err(HsmError::QuotaFrozen(q.name.clone()));
            }
        }
        quotas
            .iter()
            .map(|q| {
                Ok(QuotaReservation {
                    name: q.name.clone(),
                    total: q.total,
                    per_hour: q.per_hour,
                    per_day: q.per_day,
                    high_water: self.quota_floor(&q.name)?,
                })
            })
            .collect()
    }

    fn sign_stored(
        &self,
        u: &Unsealed,
        s: &Session,
        label: &str,
        key_id: Option<&str>,
        op: &mut SignOp<'_>,
    ) -> Result<Signed> {
        let mut retried = false;
        loop {
            let k = self.load_key(u, s, label)?;
            let a = &k.attrs;
            if key_id.is_some_and(|id| id != a.id) {
                // The key the caller means is gone; this one only has its name.
                return Err(HsmError::KeyNotFound(a.label.clone()));
            }
            check_purpose(a, op.purpose)?;
            // The verified log, as far as read: a deactivation, compromise or suspension here
            // is seen at once, another process's within the watcher's tick, and a restored row
            // undoes none of them. The final states answer first.
            if let Some(retired) = u.integrity.retired_now(&a.id) {
                self.evict(s.partition(), label);
                return Err(match retired {
                    KeyState::Compromised => HsmError::KeyCompromised(a.label.clone()),
                    _ => HsmError::KeyDeactivated(a.label.clone()),
                });
            }
            if u.suspended_now(&a.id) {
                self.evict(s.partition(), label);
                return Err(HsmError::KeySuspended(a.label.clone()));
            }
            if a.usage_limit.is_some() && u.frozen_by_rollback(&a.id) {
                // While the rollback itself is still shown by the witnesses, that is the
                // answer; the freeze is what remains once they were reset.
                return Err(match self.rollback_detected() {
                    Some(why) => HsmError::RollbackDetected(why),
                    None => HsmError::KeyFrozen(a.label.clone()),
                });
            }
            let digest_alg = checked_digest(op.request, a.algorithm)?;
            let reservation = Reservation {
                key: Some(KeyReservation {
                    key_id: a.id.clone(),
                    label: a.label.clone(),
                    generation: a.generation,
                    limit: a.usage_limit,
                    high_water: k.high_water.clone(),
                }),
                quotas: self.quota_reservations(u, op.quotas)?,
            };
            let mut event = use_event(
                s,
                "key.use",
                Some(a.id.clone()),
                serde_json::json!({"label": a.label, "op": "sign", "digest_alg": digest_alg.as_str(), "digest": hex::encode(&op.request.digest)}),
                &op.audit,
            );
            // Which version of the name signed (its own key id names it too).
            if let Some(d) = event.detail.as_object_mut() {
                d.insert("version".into(), a.version.into());
            }
            let entry = EntryKey::Stored(a);
            let signer =
                |req: &SignRequest| k.key.sign_digest(digest_alg, &req.digest, req.padding);
            match self.commit_use(u, s, op, reservation, event, entry, digest_alg, &signer) {
                Ok((signature, done)) => {
                    return Ok(Signed {
                        signature,
                        algorithm: a.algorithm,
                        usage_count: done.use_hi.unwrap_or(0),
                        usage_limit: a.usage_limit,
                        digest_alg,
                        audit_seq: done.seq,
                        tlog_index: done.tlog_index,
                        key_version: Some(a.version),
                    })
                }
                Err(HsmError::KeyChanged(_) | HsmError::KeyNotFound(_)) if !retried => {
                    self.evict(s.partition(), label);
                    retried = true;
                }
                Err(HsmError::KeyChanged(l)) => {
                    return Err(HsmError::KeyNotActive {
                        label: l,
                        reason: "it changed during the request".into(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn sign_wrapped(
        &self,
        u: &Unsealed,
        s: &Session,
        algorithm: Algorithm,
        wrapped: &[u8],
        op: &mut SignOp<'_>,
    ) -> Result<Signed> {
        if op.purpose != SignPurpose::Digest {
            return Err(HsmError::BadInput(
                "a wrapped key signs only a caller's digest".into(),
            ));
        }
        let digest_alg = checked_digest(op.request, algorithm)?;
        let import_row = self.live_row(s.partition(), IMPORT_KEY_LABEL).map_err(|_| {
            HsmError::BadInput("this partition has no import key yet: fetch it first (GET /api/v1/keys/import-key) and wrap the key to it".into())
        })?;
        let (_, import_pkcs8) = self.open_pkcs8(u, &import_row)?;
        let pkcs8 = wrap::unwrap(&import_pkcs8, wrapped)?;
        let key = crypto::load(algorithm, &pkcs8)?;
        drop(pkcs8);
        let spki = key.public_key_der()?;
        let public_key_sha256 = kagi_tlog::SignatureEntry::public_key_hash(&spki);
        let fingerprint = hex::encode(public_key_sha256);
        let event = use_event(
            s,
            "key.use_wrapped",
            None,
            serde_json::json!({"algorithm": algorithm.as_str(), "public_key_sha256": fingerprint, "op": "sign", "digest_alg": digest_alg.as_str(), "digest": hex::encode(&op.request.digest)}),
            &op.audit,
        );
        let reservation = Reservation {
            key: None,
            quotas: self.quota_reservations(u, op.quotas)?,
        };
        let entry = EntryKey::Wrapped {
            algorithm,
            public_key_sha256,
        };
        let signer = |req: &SignRequest| key.sign_digest(digest_alg, &req.digest, req.padding);
        let (signature, done) =
            self.commit_use(u, s, op, reservation, event, entry, digest_alg, &signer)?;
        Ok(Signed {
            signature,
            algorithm,
            usage_count: 0,
            usage_limit: None,
            digest_alg,
            audit_seq: done.seq,
            tlog_index: done.tlog_index,
            key_version: None,
        })
    }

    /// Commit the use with what it stages, signing before or after as the staging needs.
    #[allow(clippy::too_many_arguments)]
    fn commit_use(
        &self,
        u: &Unsealed,
        s: &Session,
        op: &mut SignOp<'_>,
        reservation: Reservation,
        event: EventDraft,
        entry: EntryKey<'_>,
        digest_alg: DigestAlg,
        sign: &dyn Fn(&SignRequest) -> Result<Vec<u8>>,
    ) -> Result<(Vec<u8>, Committed)> {
        let kagi_entry = || signature_entry(s, &entry, digest_alg, &op.request.digest, &op.audit);
        let (early, rows, log_entry) = match &mut op.staging {
            Staging::KagiEntry => (None, None, kagi_entry()),
            Staging::LogEntry(make) => {
                let sig = sign(op.request)?;
                let body = make(&sig)?;
                (Some(sig), None, body)
            }
            Staging::Rows(make) => {
                let sig = sign(op.request)?;
                let rows = make(&sig)?;
                (Some(sig), Some(Staged::Rows(rows.0)), kagi_entry())
            }
        };
        let done = u
            .committer
            .submit_staged(Some(reservation), rows, Some(log_entry), event)?;
        let signature = match early {
            Some(sig) => sig,
            None => sign(op.request)?,
        };
        Ok((signature, done))
    }

    /// Verify with a key's public half. No use is counted. A deactivated key (or one past its
    /// signing period) still verifies; a compromised one does not, since anyone may have made
    /// a signature that checks.
    pub fn verify(&self, s: &Session, label: &str, req: &SignRequest, sig: &[u8]) -> Result<bool> {
        let u = self.unsealed()?;
        let row = self.live_row(s.partition(), label)?;
        // Through the seal, so the public key and the verification period are the ones the
        // key was sealed with, not a database writer's.
        let (a, _) = self.open_pkcs8(&u, &row)?;
        if a.state == KeyState::Compromised
            || u.retired(&self.inner.store, &a.id)? == Some(KeyState::Compromised)
        {
            return Err(HsmError::KeyCompromised(a.label));
        }
        if let Some(until) = a.verify_until.filter(|t| now_ms() / 1000 > *t) {
            return Err(HsmError::VerificationPeriodOver {
                label: a.label,
                until,
            });
        }
        if !a.allows(Operation::Verify) {
            return Err(HsmError::OperationNotAllowed {
                label: a.label,
                op: "verify",
            });
        }
        let digest_alg = checked_digest(req, a.algorithm)?;
        crypto::verify_digest(
            a.algorithm,
            &a.public_key,
            digest_alg,
            &req.digest,
            req.padding,
            sig,
        )
    }
}

/// May key `a` make a signature for `purpose`? CA keys never sign a caller's digest (a forged
/// certificate's), and a caller's key never signs as a CA.
fn check_purpose(a: &KeyAttributes, purpose: SignPurpose) -> Result<()> {
    let restricted = a.operations.iter().any(|o| o.is_restricted());
    match purpose {
        SignPurpose::Digest if restricted => Err(HsmError::CaKeyReserved(a.label.clone())),
        SignPurpose::Digest => check_usable(a, Operation::Sign),
        SignPurpose::Certify => check_usable(a, Operation::Certify).map_err(|e| not_ca_key(a, e)),
        SignPurpose::Service => {
            let op = if a.allows(Operation::ServiceSign) {
                Operation::ServiceSign
            } else {
                Operation::Certify
            };
            check_usable(a, op).map_err(|e| not_ca_key(a, e))
        }
    }
}

fn not_ca_key(a: &KeyAttributes, e: HsmError) -> HsmError {
    match e {
        HsmError::OperationNotAllowed { .. } => {
            HsmError::BadInput(format!("'{}' is not a CA key", a.label))
        }
        e => e,
    }
}

/// The digest algorithm in use, once the digest's length matches it.
fn checked_digest(req: &SignRequest, alg: Algorithm) -> Result<DigestAlg> {
    let digest_alg = req.digest_alg.unwrap_or_else(|| alg.default_digest());
    if req.digest.len() != digest_alg.output_len() {
        return Err(HsmError::DigestLength {
            alg: digest_alg.as_str(),
            got: req.digest.len(),
            want: digest_alg.output_len(),
        });
    }
    Ok(digest_alg)
}

/// A use's audit record: `base` plus whatever `extra` adds without overriding it.
fn use_event(
    s: &Session,
    action: &str,
    key_id: Option<String>,
    base: serde_json::Value,
    extra: &serde_json::Value,
) -> EventDraft {
    let mut event = user_event(s, action, key_id, base);
    if let (Some(d), Some(extra)) = (event.detail.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            d.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    event
}
