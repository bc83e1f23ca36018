//! Break-glass: a quorum of unseal-share holders unlocks or replaces an administrator's
//! credential, so a lost, locked or leaked administrator token never leaves an instance
//! without administrators.

use super::*;

/// What [`Hsm::recover_administrator`] does to the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverAction {
    /// Clear its lock; its token stays.
    Unlock,
    /// Give it a new secret (and clear its lock): the old token stops working everywhere.
    NewToken,
}

impl RecoverAction {
    fn as_str(self) -> &'static str {
        match self {
            RecoverAction::Unlock => "unlock",
            RecoverAction::NewToken => "new_token",
        }
    }
}

/// The recovered credential, and its new token (shown once) for [`RecoverAction::NewToken`].
pub struct Recovered {
    pub credential: CredentialInfo,
    pub token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Recovered {{ credential: {:?}, token: {} }}",
            self.credential.id,
            if self.token.is_some() {
                "(redacted)"
            } else {
                "none"
            }
        )
    }
}

impl Hsm {
    /// Unlock or re-key the live administrator credential named `name`, authorized by
    /// `threshold` distinct unseal shares of this instance (more are ignored). The HSM must be
    /// unsealed; no session is needed, which is the point: it works while every administrator
    /// is locked out. Each share is checked against its commitment, and together they must
    /// rebuild this instance's master key. Audited as `credential.recover` by the share
    /// holders, naming which share indexes authorized it.
    pub fn recover_administrator(
        &self,
        share_texts: &[&str],
        name: &str,
        action: RecoverAction,
    ) -> Result<Recovered> {
        self.recover_administrator_from(share_texts, name, action, None)
    }

    /// [`Hsm::recover_administrator`] for shares that came over the network: the record says
    /// where from (`source`, `user_agent`).
    pub fn recover_administrator_from(
        &self,
        share_texts: &[&str],
        name: &str,
        action: RecoverAction,
        client: Option<&crate::auth::ClientInfo>,
    ) -> Result<Recovered> {
        let u = self.unsealed()?;
        let threshold = {
            let mut c = self.inner.store.conn()?;
            meta_get(&mut c, "threshold")?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(HsmError::NotInitialized)?
        };
        let commitments = self.share_commitments()?;
        let mut pool: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        for text in share_texts {
            let (t, share) = shares::parse(text)?;
            if t != threshold {
                return Err(HsmError::BadShare(format!(
                    "this share is from a {t}-of-N split, but this instance needs {threshold}"
                )));
            }
            if let Some(list) = &commitments {
                shares::check_commitment(&share, list)?;
            }
            if !pool.iter().any(|s| s[0] == share[0]) {
                pool.push(share);
            }
        }
        if pool.len() < threshold {
            return Err(HsmError::BadShare(format!(
                "recovery needs {threshold} different unseal shares of this instance; {} given",
                pool.len()
            )));
        }
        pool.truncate(threshold);
        let secret = shares::combine(threshold, &pool)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&secret, u.master.as_bytes())
            .map_err(|_| HsmError::WrongMasterKey)?;
        let indexes: Vec<u8> = pool.iter().map(|s| s[0]).collect();
        drop(pool);

        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::name.eq(name))
            .filter(credentials::revoked.eq(false))
            .first(&mut c)
            .optional()?;
        drop(c);
        let row = row
            .filter(|r| {
                roles_from_string(&r.roles).is_ok_and(|roles| roles.contains(&Role::Administrator))
            })
            .ok_or_else(|| {
                HsmError::NotFound(format!(
                    "live administrator credential named '{}' (recovery acts on administrators only; an administrator manages the others)",
                    name.chars().take(64).collect::<String>()
                ))
            })?;
        let (token, new_hash) = match action {
            RecoverAction::Unlock => (None, None),
            RecoverAction::NewToken => {
                let (token, hash) = new_secret_for(&row.id)?;
                (Some(token), Some(hash))
            }
        };
        let id = row.id.clone();
        let apply: ApplyFn = Box::new(move |c| {
            let target = credentials::table
                .filter(credentials::id.eq(&id))
                .filter(credentials::revoked.eq(false));
            let n = match &new_hash {
                Some(h) => diesel::update(target)
                    .set((
                        credentials::secret_hash.eq(h),
                        credentials::locked.eq(false),
                        credentials::failed_logins.eq(0),
                    ))
                    .execute(c)?,
                None => diesel::update(target)
                    .set((
                        credentials::locked.eq(false),
                        credentials::failed_logins.eq(0),
                    ))
                    .execute(c)?,
            };
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::NotFound(format!("live credential '{id}'")))
            }
        });
        let mut detail = serde_json::json!({
            "credential": row.id,
            "name": row.name,
            "action": action.as_str(),
            "share_indexes": indexes,
        });
        if let Some(c) = client {
            c.add_to(&mut detail);
        }
        u.committer.submit(
            None,
            Some(apply),
            EventDraft {
                actor: "share-holders".into(),
                action: "credential.recover".into(),
                partition: Some(row.partition_name.clone()),
                key_id: None,
                detail,
                outcome: None,
                use_hi: None,
            },
        )?;
        self.forget_sessions_of(&row.id);
        let mut credential = row.info()?;
        credential.locked = false;
        credential.failed_logins = 0;
        Ok(Recovered { credential, token })
    }
}
