//! Logins, credentials, identities and partitions: who a caller is.

use super::failed_logins::Refusal;
use super::*;

impl Hsm {
    /// Check a bearer token (from this process: source "local"). See [`Hsm::login_from`].
    pub fn login(&self, token: &str) -> Result<Session> {
        self.login_from(token, "local")
    }

    /// Check a bearer token presented by `source` (the peer address, for the failed-login
    /// record).
    ///
    /// A refusal changes no credential: a wrong secret proves nothing, so it neither counts
    /// against nor locks the credential it names (locking by strangers was a way to shut every
    /// administrator out). Refusals are tallied per source and audited once per window
    /// (`failed_logins.rs`); the front end rate-limits them per source. A refusal before the
    /// secret is proven names nothing: revoked, expired and locked are told only to a caller
    /// who presented the right secret.
    ///
    /// Argon2id runs once per token at a time: concurrent requests with a token that has no
    /// live cached login wait for the first one's verification (`login_flight.rs`), and a token
    /// in use is re-verified in the background before its cached login ages out.
    pub fn login_from(&self, token: &str, source: &str) -> Result<Session> {
        self.unsealed()?;
        let token_hash = token_hash(token);
        if let Some(s) = self.recheck_cached(&token_hash)? {
            self.refresh_if_due(token, &token_hash);
            return Ok(s);
        }
        match self.inner.login_flights.join(&token_hash) {
            login_flight::Joined::Leader => {
                let _landing = login_flight::Landing {
                    flights: &self.inner.login_flights,
                    hash: token_hash,
                };
                self.login_uncached(token, token_hash, source)
            }
            login_flight::Joined::Waited => match self.recheck_cached(&token_hash)? {
                Some(s) => Ok(s),
                // The leader was refused: this request is verified (and tallied) on its own,
                // within the process's Argon2id slots.
                None => self.login_uncached(token, token_hash, source),
            },
        }
    }

    /// A token login with no cached session to use: Argon2id against the credential row.
    fn login_uncached(&self, token: &str, token_hash: [u8; 32], source: &str) -> Result<Session> {
        let u = self.unsealed()?;
        let refuse = |reason, credential: Option<&str>, e: HsmError| {
            self.tally_refusal(source, reason, credential);
            self.flush_due_failed_logins();
            Err(e)
        };
        let mut parts = token.trim().splitn(3, '_');
        let (Some("kagi"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return refuse(Refusal::Malformed, None, HsmError::Unauthenticated);
        };
        if id.len() != 16 || !id.chars().all(|c| c.is_ascii_hexdigit()) || secret.len() > 256 {
            return refuse(Refusal::Malformed, None, HsmError::Unauthenticated);
        }
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::id.eq(id))
            .first(&mut c)
            .optional()?;
        drop(c);
        let Some(row) = row else {
            return refuse(
                Refusal::UnknownCredential,
                Some(id),
                HsmError::BadCredential,
            );
        };
        if !self.secret_matches(&row, secret) {
            return refuse(Refusal::BadSecret, Some(id), HsmError::BadCredential);
        }
        // The caller holds this credential's secret: it may learn why it is refused.
        if let Some(e) = row.refusal() {
            let reason = match e {
                HsmError::CredentialRevoked(_) => Refusal::Revoked,
                HsmError::CredentialExpired(_) => Refusal::Expired,
                _ => Refusal::Locked,
            };
            return refuse(reason, Some(id), e);
        }
        let session = row.session()?;
        // Failed closed: the log takes no more records, and every change is refused, but a
        // proven caller may still read (an auditor finding out what broke).
        u.committer.submit_unless_closed(
            None,
            EventDraft {
                actor: session.actor(),
                action: "auth.login".into(),
                partition: Some(session.partition().to_string()),
                key_id: None,
                detail: serde_json::json!({"credential": session.credential_id(), "source": source}),
                outcome: None,
                use_hi: None,
            },
        )?;
        self.cache_login(token_hash, &session, row.fingerprint())?;
        Ok(session)
    }

    /// How many token secrets this process has checked with Argon2id since it started: with
    /// the login cache, single flight and background refresh, about one per token per
    /// minute of use, however many requests carry it.
    pub fn token_verifications(&self) -> u64 {
        self.inner.argon2_slots.started()
    }

    /// Argon2id of `secret` against the credential row, within the process's slots.
    fn secret_matches(&self, row: &CredentialRow, secret: &str) -> bool {
        self.inner
            .argon2_slots
            .verify(&row.secret_hash, secret.as_bytes())
    }

    /// Start a background re-verification of `token` when its cached login is near the end of
    /// its lifetime, once per entry: requests keep the cached session meanwhile, so a token in
    /// steady use never waits for Argon2id again.
    fn refresh_if_due(&self, token: &str, hash: &[u8; 32]) {
        let due = match self.inner.sessions.lock() {
            Ok(mut sessions) => match sessions.get_mut(hash) {
                Some(e) if !e.refreshing && e.verified.elapsed() >= refresh_due_after(hash) => {
                    e.refreshing = true;
                    true
                }
                _ => false,
            },
            Err(_) => false,
        };
        if !due {
            return;
        }
        let hsm = self.clone();
        let token = zeroize::Zeroizing::new(token.to_string());
        let hash = *hash;
        let spawned = std::thread::Builder::new()
            .name("kagi-login-refresh".into())
            .spawn(move || hsm.refresh_login(&token, &hash));
        if spawned.is_err() {
            // No thread now: the entry ages out and the next request verifies in the
            // foreground, as before.
            if let Ok(mut sessions) = self.inner.sessions.lock() {
                if let Some(e) = sessions.get_mut(&hash) {
                    e.refreshing = false;
                }
            }
        }
    }

    /// Re-verify a cached token login: the credential row must still admit it with the same
    /// fingerprint, and the secret must still match. A success renews the entry's lifetime;
    /// anything else drops it, so the next request logs in afresh.
    fn refresh_login(&self, token: &str, hash: &[u8; 32]) {
        let cached = self.inner.sessions.lock().ok().and_then(|s| {
            s.get(hash)
                .map(|e| (e.session.credential_id().to_string(), e.fingerprint))
        });
        let Some((id, fingerprint)) = cached else {
            return;
        };
        let secret = token.trim().splitn(3, '_').nth(2).unwrap_or_default();
        let row: Option<CredentialRow> = self.inner.store.conn().ok().and_then(|mut c| {
            credentials::table
                .filter(credentials::id.eq(&id))
                .first(&mut c)
                .optional()
                .ok()
                .flatten()
        });
        let ok = row.is_some_and(|r| {
            r.refusal().is_none()
                && r.fingerprint() == fingerprint
                && self.secret_matches(&r, secret)
        });
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            if ok {
                if let Some(e) = sessions.get_mut(hash) {
                    let now = Instant::now();
                    e.verified = now;
                    e.checked = now;
                    e.refreshing = false;
                }
            } else {
                sessions.remove(hash);
            }
        }
    }

    /// A session for `token` if it logged in less than a minute ago and its credential was
    /// checked within the last second: no Argon2id, no I/O, so front ends may call it on their
    /// event loop before falling back to [`Hsm::login_from`] (which re-checks an older entry).
    pub fn cached_session(&self, token: &str) -> Option<Session> {
        if self.is_sealed() {
            return None;
        }
        let hash = token_hash(token);
        let session = self.cached_by_hash(&hash)?;
        self.refresh_if_due(token, &hash);
        Some(session)
    }

    /// Whether `token` has a live cached login (which [`Hsm::login_from`] re-checks rather
    /// than running Argon2id). No I/O.
    pub fn has_cached_login(&self, token: &str) -> bool {
        self.inner
            .sessions
            .lock()
            .ok()
            .and_then(|s| s.get(&token_hash(token)).map(Self::cache_usable))
            .unwrap_or(false)
    }

    /// A cached session that needs no re-check now.
    pub(super) fn cached_by_hash(&self, hash: &[u8; 32]) -> Option<Session> {
        let sessions = self.inner.sessions.lock().ok()?;
        let e = sessions.get(hash)?;
        (Self::cache_usable(e) && e.checked.elapsed() < SESSION_RECHECK).then(|| e.session.clone())
    }

    /// Within the login cache's lifetime and the credential's expiry.
    fn cache_usable(e: &CachedLogin) -> bool {
        let expired = e.session.expires_at().is_some_and(|t| now_ms() / 1000 >= t);
        e.verified.elapsed() < SESSION_TTL && !expired
    }

    /// The cached session under `hash`, re-reading its credential row when the last check is
    /// older than [`SESSION_RECHECK`]: a revocation, lock, new secret or new certificate
    /// binding made by any process ends it. `None`: log in afresh.
    fn recheck_cached(&self, hash: &[u8; 32]) -> Result<Option<Session>> {
        let (session, fingerprint) = {
            let sessions = self.inner.sessions.lock().map_err(|_| lock_err())?;
            match sessions.get(hash) {
                Some(e) if Self::cache_usable(e) => {
                    if e.checked.elapsed() < SESSION_RECHECK {
                        return Ok(Some(e.session.clone()));
                    }
                    (e.session.clone(), e.fingerprint)
                }
                _ => return Ok(None),
            }
        };
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::id.eq(session.credential_id()))
            .first(&mut c)
            .optional()?;
        drop(c);
        let mut sessions = self.inner.sessions.lock().map_err(|_| lock_err())?;
        match row {
            Some(r) if r.refusal().is_none() && r.fingerprint() == fingerprint => {
                if let Some(e) = sessions.get_mut(hash) {
                    e.checked = Instant::now();
                }
                Ok(Some(session))
            }
            _ => {
                sessions.remove(hash);
                Ok(None)
            }
        }
    }

    fn cache_login(&self, hash: [u8; 32], session: &Session, fingerprint: [u8; 32]) -> Result<()> {
        let mut sessions = self.inner.sessions.lock().map_err(|_| lock_err())?;
        if sessions.len() > 10_000 {
            sessions.retain(|_, e| e.verified.elapsed() < SESSION_TTL);
        }
        let now = Instant::now();
        sessions.insert(
            hash,
            CachedLogin {
                session: session.clone(),
                verified: now,
                checked: now,
                fingerprint,
                refreshing: false,
            },
        );
        Ok(())
    }

    /// Forget every cached session of credential `id` in this process (other processes see
    /// the change within [`SESSION_RECHECK`]).
    pub(super) fn forget_sessions_of(&self, id: &str) {
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.retain(|_, e| e.session.credential_id() != id);
        }
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
    /// keys without a credential there. Under a quorum, a credential with the administrator or
    /// officer role needs an approved request: see [`Hsm::create_identity`].
    pub fn create_credential_in(
        &self,
        s: &Session,
        partition: &str,
        name: &str,
        roles: &[Role],
    ) -> Result<(CredentialInfo, Zeroizing<String>)> {
        let spec = IdentitySpec {
            partition: Some(partition.to_string()),
            name: name.to_string(),
            kind: IdentityKind::Person,
            roles: roles.to_vec(),
            expires_at: None,
            client_cert_sha256: None,
        };
        match self.create_identity(s, &spec, None)? {
            Gated::Done(created) => Ok(created),
            Gated::Pending(req) => Err(HsmError::Conflict(format!(
                "giving '{name}' the administrator or officer role needs the quorum's approval: approval request {} was filed; once approved, create the identity again with that approval",
                req.id
            ))),
        }
    }

    /// A new identity (person, pipeline or factory line) with a fresh token, shown once.
    /// Names are unique among live identities, because policies name identities.
    ///
    /// Once the active policy has a quorum, granting the administrator or officer role is a
    /// governed change: without `approval` this files a request and returns it; once the
    /// approvers approved it, call again with its id (the request is used up).
    pub fn create_identity(
        &self,
        s: &Session,
        spec: &IdentitySpec,
        approval: Option<&str>,
    ) -> Result<Gated<(CredentialInfo, Zeroizing<String>)>> {
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
        let privileged = roles
            .iter()
            .any(|r| matches!(r, Role::Administrator | Role::Officer));
        let grant = if privileged {
            let action = ApprovalAction::Authorize {
                change: "create_identity".into(),
                target: format!("identity:{partition}/{name}"),
                params: serde_json::json!({
                    "kind": spec.kind.as_str(),
                    "roles": roles_to_string(roles),
                    "expires_at": spec.expires_at,
                    "client_cert_sha256": spec.client_cert_sha256.map(hex::encode),
                }),
            };
            let summary = format!(
                "create {} '{name}' in partition '{partition}' with the role(s) {}",
                spec.kind.as_str(),
                roles_to_string(roles)
            );
            match self.authorize_change(s, action, &summary, approval)? {
                Gated::Pending(req) => return Ok(Gated::Pending(req)),
                Gated::Done(grant) => Some(grant),
            }
        } else {
            None
        };
        let u = self.unsealed()?;
        let (mut row, token) = new_credential(partition, name, spec.kind, roles, spec.expires_at)?;
        row.cert_sha256 = spec.client_cert_sha256.map(hex::encode);
        let info = row.info()?;
        let consume = grant.as_ref().and_then(|g| g.consume());
        let apply: ApplyFn = Box::new(move |c| {
            if let Some(consume) = consume {
                consume(c)?;
            }
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
            user_event(
                s,
                "credential.create",
                Some(credential_subject(&info.id)),
                serde_json::json!({"credential": info.id, "name": info.name, "kind": info.kind.as_str(), "partition": info.partition, "roles": roles_to_string(&info.roles), "expires_at": info.expires_at, "approval": grant.as_ref().and_then(|g| g.approval())}),
            ),
        )?;
        Ok(Gated::Done((info, token)))
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

    /// Log in with a TLS client certificate (DER) bound to an identity (source "local").
    pub fn login_by_certificate(&self, cert_der: &[u8]) -> Result<Session> {
        self.login_by_certificate_from(cert_der, "local")
    }

    /// Log in with a TLS client certificate (DER) bound to an identity, presented by
    /// `source`. The handshake proved the caller holds its private key; the identity is found
    /// by the certificate's SHA-256. Refusals are tallied like token refusals.
    pub fn login_by_certificate_from(&self, cert_der: &[u8], source: &str) -> Result<Session> {
        let u = self.unsealed()?;
        let fp = {
            let d = digest(&SHA256, cert_der);
            hex::encode(d.as_ref())
        };
        let cache = token_hash(&format!("cert:{fp}"));
        if let Some(s) = self.recheck_cached(&cache)? {
            return Ok(s);
        }
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::cert_sha256.eq(&fp))
            .filter(credentials::revoked.eq(false))
            .first(&mut c)
            .optional()?;
        drop(c);
        let Some(row) = row else {
            self.tally_refusal(source, Refusal::UnknownCertificate, None);
            self.flush_due_failed_logins();
            return Err(HsmError::BadCredential);
        };
        // The handshake proved possession of the certificate's key, so the caller may learn
        // why its identity is refused.
        if let Some(e) = row.refusal() {
            let reason = match e {
                HsmError::CredentialExpired(_) => Refusal::Expired,
                _ => Refusal::Locked,
            };
            self.tally_refusal(source, reason, Some(&row.id));
            self.flush_due_failed_logins();
            return Err(e);
        }
        let session = row.session()?;
        // As for a token login: failed closed, a proven caller may still read.
        u.committer.submit_unless_closed(
            None,
            EventDraft {
                actor: format!("{}:{}", row.partition_name, row.name),
                action: "auth.login_certificate".into(),
                partition: None,
                key_id: None,
                detail: serde_json::json!({"credential": row.id, "cert_sha256": fp, "source": source}),
                outcome: None,
                use_hi: None,
            },
        )?;
        self.cache_login(cache, &session, row.fingerprint())?;
        Ok(session)
    }

    /// Revoke a credential for good. This process forgets its cached sessions at once. Under
    /// a quorum, revoking an approver or an administrator needs an approved request: see
    /// [`Hsm::revoke_identity`]; this files it and says so.
    pub fn revoke_credential(&self, s: &Session, id: &str) -> Result<()> {
        match self.revoke_identity(s, id, None)? {
            Gated::Done(()) => Ok(()),
            Gated::Pending(req) => Err(HsmError::Conflict(format!(
                "revoking an approver or administrator needs the quorum's approval: approval request {} was filed; once approved, revoke again with that approval",
                req.id
            ))),
        }
    }

    /// Revoke an identity for good. Once the active policy has a quorum, revoking one of its
    /// approvers or an administrator is a governed change: without `approval` this files a
    /// request; once approved, call again with its id.
    pub fn revoke_identity(
        &self,
        s: &Session,
        id: &str,
        approval: Option<&str>,
    ) -> Result<Gated<()>> {
        s.require(Role::Administrator, "revoke credentials")?;
        let u = self.unsealed()?;
        let target: Option<CredentialRow> = {
            let mut c = self.inner.store.conn()?;
            credentials::table
                .filter(credentials::id.eq(id))
                .filter(credentials::revoked.eq(false))
                .first(&mut c)
                .optional()?
        };
        let Some(target) = target else {
            return Err(HsmError::NotFound(format!(
                "live credential '{}'",
                id.chars().take(32).collect::<String>()
            )));
        };
        let admin = roles_from_string(&target.roles)?.contains(&Role::Administrator);
        let approver = self
            .current_bound_quorum()?
            .is_some_and(|(_, bound)| bound.iter().any(|b| b.credential == id));
        let grant = if admin || approver {
            let action = ApprovalAction::Authorize {
                change: "revoke_identity".into(),
                target: credential_subject(id),
                params: serde_json::json!({"name": target.name}),
            };
            let summary = format!(
                "revoke {} '{}' ({id})",
                if approver {
                    "approver"
                } else {
                    "administrator"
                },
                target.name
            );
            match self.authorize_change(s, action, &summary, approval)? {
                Gated::Pending(req) => return Ok(Gated::Pending(req)),
                Gated::Done(grant) => Some(grant),
            }
        } else {
            None
        };
        let consume = grant.as_ref().and_then(|g| g.consume());
        let id2 = id.to_string();
        let apply: ApplyFn = Box::new(move |c| {
            if let Some(consume) = consume {
                consume(c)?;
            }
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
                Some(credential_subject(id)),
                serde_json::json!({"credential": id, "name": target.name, "approval": grant.as_ref().and_then(|g| g.approval())}),
            ),
        )?;
        self.forget_sessions_of(id);
        Ok(Gated::Done(()))
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
