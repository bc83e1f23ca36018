//! Logins, credentials, identities and partitions: who a caller is.

use super::*;

impl Hsm {
    /// Check a bearer token. Failed attempts are counted and audited; the credential locks
    /// after `max_failed_logins`.
    pub fn login(&self, token: &str) -> Result<Session> {
        let u = self.unsealed()?;
        let token_hash = token_hash(token);
        if let Some(s) = self.cached_by_hash(&token_hash) {
            return Ok(s);
        }
        let mut parts = token.trim().splitn(3, '_');
        let (Some("kagi"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(HsmError::Unauthenticated);
        };
        if id.len() != 16 || !id.chars().all(|c| c.is_ascii_hexdigit()) || secret.len() > 256 {
            return Err(HsmError::Unauthenticated);
        }
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::id.eq(id))
            .first(&mut c)
            .optional()?;
        drop(c);
        let event = |outcome: Option<String>, detail: serde_json::Value| EventDraft {
            actor: format!("credential:{id}"),
            action: "auth.login".into(),
            partition: None,
            key_id: None,
            detail,
            outcome,
            use_hi: None,
        };
        let Some(row) = row else {
            u.committer.submit(
                None,
                None,
                event(
                    Some("denied:bad_credential".into()),
                    serde_json::json!({"reason": "unknown credential"}),
                ),
            )?;
            return Err(HsmError::BadCredential);
        };
        // Revoked, expired and locked are refused whatever the secret.
        if let Some(e) = row.refusal() {
            u.committer.submit(
                None,
                None,
                event(
                    Some(format!("denied:{}", e.code())),
                    serde_json::json!({"name": row.name}),
                ),
            )?;
            return Err(e);
        }
        let ok = PasswordHash::new(&row.secret_hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let cred_id = row.id.clone();
        if !ok {
            let max = self.inner.max_failed_logins;
            let apply: ApplyFn = Box::new(move |c| {
                let failed: i64 = credentials::table
                    .filter(credentials::id.eq(&cred_id))
                    .select(credentials::failed_logins)
                    .first(c)?;
                diesel::update(credentials::table.filter(credentials::id.eq(&cred_id)))
                    .set((
                        credentials::failed_logins.eq(failed + 1),
                        credentials::locked.eq(failed + 1 >= max),
                    ))
                    .execute(c)?;
                Ok(())
            });
            u.committer.submit(
                None,
                Some(apply),
                event(
                    Some("denied:bad_credential".into()),
                    serde_json::json!({"name": row.name}),
                ),
            )?;
            return Err(HsmError::BadCredential);
        }
        let session = row.session()?;
        let reset: Option<ApplyFn> = (row.failed_logins > 0).then(|| -> ApplyFn {
            Box::new(move |c| {
                diesel::update(credentials::table.filter(credentials::id.eq(&cred_id)))
                    .set(credentials::failed_logins.eq(0))
                    .execute(c)?;
                Ok(())
            })
        });
        u.committer.submit(
            None,
            reset,
            EventDraft {
                actor: session.actor(),
                action: "auth.login".into(),
                partition: Some(session.partition().to_string()),
                key_id: None,
                detail: serde_json::json!({"credential": session.credential_id()}),
                outcome: None,
                use_hi: None,
            },
        )?;
        let mut sessions = self.inner.sessions.lock().map_err(|_| lock_err())?;
        if sessions.len() > 10_000 {
            sessions.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
        }
        sessions.insert(token_hash, (session.clone(), Instant::now()));
        Ok(session)
    }

    /// A session for `token` if it logged in less than a minute ago: no Argon2id, no I/O, so
    /// front ends may call it on their event loop before falling back to [`Hsm::login`].
    pub fn cached_session(&self, token: &str) -> Option<Session> {
        if self.is_sealed() {
            return None;
        }
        self.cached_by_hash(&token_hash(token))
    }

    /// Cached sessions expire with SESSION_TTL; revocation in this process purges them at once
    /// (other processes see it within SESSION_TTL).
    pub(super) fn cached_by_hash(&self, hash: &[u8; 32]) -> Option<Session> {
        let sessions = self.inner.sessions.lock().ok()?;
        let (s, at) = sessions.get(hash)?;
        // An expiry inside the cache window still ends the session on time.
        let expired = s.expires_at().is_some_and(|t| now_ms() / 1000 >= t);
        (at.elapsed() < SESSION_TTL && !expired).then(|| s.clone())
    }

    /// A credential in the caller's own partition.
    pub fn create_credential(
        &self,
        s: &Session,
        name: &str,
        roles: &[Role],
    ) -> Result<(CredentialInfo, Zeroizing<String>)> {
        self.create_credential_in(s, s.partition(), name, roles)
    }

    /// A credential in any user partition. The administrator role is HSM-wide for partitions
    /// and credentials (like an HSM security officer); it grants no use of other partitions'
    /// keys without a credential there.
    pub fn create_credential_in(
        &self,
        s: &Session,
        partition: &str,
        name: &str,
        roles: &[Role],
    ) -> Result<(CredentialInfo, Zeroizing<String>)> {
        self.create_identity(
            s,
            &IdentitySpec {
                partition: Some(partition.to_string()),
                name: name.to_string(),
                kind: IdentityKind::Person,
                roles: roles.to_vec(),
                expires_at: None,
                client_cert_sha256: None,
            },
        )
    }

    /// A new identity (person, pipeline or factory line) with a fresh token, shown once.
    /// Names are unique among live identities, because policies name identities.
    pub fn create_identity(
        &self,
        s: &Session,
        spec: &IdentitySpec,
    ) -> Result<(CredentialInfo, Zeroizing<String>)> {
        let partition = spec.partition.as_deref().unwrap_or(s.partition());
        let (name, roles) = (spec.name.as_str(), spec.roles.as_slice());
        s.require(Role::Administrator, "create credentials")?;
        validate_label(name)?;
        if roles.is_empty() {
            return Err(HsmError::BadInput(
                "give the credential at least one role".into(),
            ));
        }
        if partition == SYSTEM_PARTITION {
            return Err(HsmError::BadInput(
                "the system partition holds kagi's own keys and takes no credentials".into(),
            ));
        }
        if spec.expires_at.is_some_and(|t| t <= now_ms() / 1000) {
            return Err(HsmError::BadInput("the expiry time is in the past".into()));
        }
        self.require_partition(partition)?;
        let u = self.unsealed()?;
        let (mut row, token) = new_credential(partition, name, spec.kind, roles, spec.expires_at)?;
        row.cert_sha256 = spec.client_cert_sha256.map(hex::encode);
        let info = row.info()?;
        let apply: ApplyFn = Box::new(move |c| {
            let taken: i64 = credentials::table
                .filter(credentials::name.eq(&row.name))
                .filter(credentials::revoked.eq(false))
                .count()
                .get_result(c)?;
            if taken > 0 {
                return Err(HsmError::Conflict(format!(
                    "an identity named '{}' already exists: revoke it first or pick another name",
                    row.name
                )));
            }
            if let Some(fp) = &row.cert_sha256 {
                let bound: i64 = credentials::table
                    .filter(credentials::cert_sha256.eq(fp))
                    .filter(credentials::revoked.eq(false))
                    .count()
                    .get_result(c)?;
                if bound > 0 {
                    return Err(HsmError::Conflict(
                        "that client certificate already authenticates another live identity"
                            .into(),
                    ));
                }
            }
            diesel::insert_into(credentials::table)
                .values(&row)
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(s, "credential.create", None, serde_json::json!({"credential": info.id, "name": info.name, "kind": info.kind.as_str(), "partition": info.partition, "roles": roles_to_string(&info.roles), "expires_at": info.expires_at})),
        )?;
        Ok((info, token))
    }

    /// The service acting for itself in `partition` (CRLs on a schedule, OCSP answers,
    /// timestamps, the certificates of its own service keys): a session named "kagi-ca" with
    /// the user role that may use CA and CA service keys only, never a caller's key, and may
    /// create only CA service keys. It lets the service run its CAs without holding anyone's
    /// token; what it signs is still counted and audited under its name.
    pub fn service_session(&self, partition: &str) -> Session {
        Session::service("kagi-ca", partition)
    }

    pub(super) fn require_partition(&self, name: &str) -> Result<()> {
        let mut c = self.inner.store.conn()?;
        let n: i64 = partitions::table
            .filter(partitions::name.eq(name))
            .count()
            .get_result(&mut c)?;
        if n == 1 {
            Ok(())
        } else {
            Err(HsmError::NotFound(format!(
                "partition '{}' ('kagi partition list' shows them)",
                name.chars().take(64).collect::<String>()
            )))
        }
    }

    /// A new partition: its own sealing key (derived from the master key and its name) and its
    /// own credentials.
    pub fn create_partition(&self, s: &Session, name: &str) -> Result<()> {
        s.require(Role::Administrator, "create partitions")?;
        validate_label(name)?;
        let u = self.unsealed()?;
        let owned = name.to_string();
        let apply: ApplyFn = Box::new(move |c| {
            let n: i64 = partitions::table
                .filter(partitions::name.eq(&owned))
                .count()
                .get_result(c)?;
            if n > 0 {
                return Err(HsmError::Conflict(format!(
                    "partition '{owned}' already exists"
                )));
            }
            diesel::insert_into(partitions::table)
                .values((
                    partitions::name.eq(&owned),
                    partitions::created_at.eq(now_ms() / 1000),
                ))
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "partition.create",
                None,
                serde_json::json!({"partition": name}),
            ),
        )?;
        Ok(())
    }

    pub fn list_partitions(&self, s: &Session) -> Result<Vec<String>> {
        s.require(Role::Administrator, "list partitions")?;
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        Ok(partitions::table
            .filter(partitions::name.ne(SYSTEM_PARTITION))
            .select(partitions::name)
            .order(partitions::name.asc())
            .load(&mut c)?)
    }

    pub fn list_credentials(&self, s: &Session) -> Result<Vec<CredentialInfo>> {
        s.require(Role::Administrator, "list credentials")?;
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let rows: Vec<CredentialRow> = credentials::table
            .filter(credentials::partition_name.eq(s.partition()))
            .order(credentials::created_at.asc())
            .load(&mut c)?;
        rows.iter().map(|r| r.info()).collect()
    }

    /// Log in with a TLS client certificate (DER) bound to an identity. The handshake proved the
    /// caller holds its private key; the identity is found by the certificate's SHA-256.
    pub fn login_by_certificate(&self, cert_der: &[u8]) -> Result<Session> {
        let u = self.unsealed()?;
        let fp = {
            let d = digest(&SHA256, cert_der);
            hex::encode(d.as_ref())
        };
        let cache = token_hash(&format!("cert:{fp}"));
        if let Some(s) = self.cached_by_hash(&cache) {
            return Ok(s);
        }
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::cert_sha256.eq(&fp))
            .filter(credentials::revoked.eq(false))
            .first(&mut c)
            .optional()?;
        drop(c);
        let event =
            |outcome: Option<String>, detail: serde_json::Value, actor: String| EventDraft {
                actor,
                action: "auth.login_certificate".into(),
                partition: None,
                key_id: None,
                detail,
                outcome,
                use_hi: None,
            };
        let Some(row) = row else {
            u.committer.submit(
                None,
                None,
                event(
                    Some("denied:bad_credential".into()),
                    serde_json::json!({"cert_sha256": fp}),
                    "tls-client".into(),
                ),
            )?;
            return Err(HsmError::BadCredential);
        };
        let actor = format!("{}:{}", row.partition_name, row.name);
        if let Some(e) = row.refusal() {
            u.committer.submit(
                None,
                None,
                event(
                    Some(format!("denied:{}", e.code())),
                    serde_json::json!({"cert_sha256": fp}),
                    actor,
                ),
            )?;
            return Err(e);
        }
        let session = row.session()?;
        u.committer.submit(
            None,
            None,
            event(
                None,
                serde_json::json!({"credential": row.id, "cert_sha256": fp}),
                actor,
            ),
        )?;
        let mut sessions = self.inner.sessions.lock().map_err(|_| lock_err())?;
        sessions.insert(cache, (session.clone(), Instant::now()));
        Ok(session)
    }

    /// Revoke a credential for good. This process forgets its cached sessions at once.
    pub fn revoke_credential(&self, s: &Session, id: &str) -> Result<()> {
        s.require(Role::Administrator, "revoke credentials")?;
        let u = self.unsealed()?;
        let id2 = id.to_string();
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                credentials::table
                    .filter(credentials::id.eq(&id2))
                    .filter(credentials::revoked.eq(false)),
            )
            .set(credentials::revoked.eq(true))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::NotFound(format!("live credential '{id2}'")))
            }
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.revoke",
                None,
                serde_json::json!({"credential": id}),
            ),
        )?;
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.retain(|_, (sess, _)| sess.credential_id() != id);
        }
        Ok(())
    }

    pub fn unlock_credential(&self, s: &Session, id: &str) -> Result<()> {
        s.require(Role::Administrator, "unlock credentials")?;
        let u = self.unsealed()?;
        let (id2, part) = (id.to_string(), s.partition().to_string());
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                credentials::table
                    .filter(credentials::id.eq(&id2))
                    .filter(credentials::partition_name.eq(&part)),
            )
            .set((
                credentials::locked.eq(false),
                credentials::failed_logins.eq(0),
            ))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::NotFound(format!("credential '{id2}'")))
            }
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.unlock",
                None,
                serde_json::json!({"credential": id}),
            ),
        )?;
        Ok(())
    }
}
