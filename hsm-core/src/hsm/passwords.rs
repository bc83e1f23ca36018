//! Console passwords: how a person (an identity of kind `person`) signs in to the web console.
//!
//! A person sets their own password with their token (`kagi identity set-password`, `POST /api/v1/password`): whoever holds the
//! token is already that person to kagi, and no administrator ever learns the password. Only an
//! Argon2id hash is stored, as for tokens' secrets.
//!
//! Wrong passwords lock the *password* (not the identity, not its token) for
//! [`crate::PASSWORD_LOCK`] after [`crate::PASSWORD_ATTEMPTS`] in a row. That is narrower than
//! what the project refuses for tokens (a stranger locking credentials by their public id): a
//! lock here only stops password sign-in for a while, the person keeps their token, and the
//! front end's per-source limit slows the stranger down anyway. Counts live in this process's
//! memory (bounded by the number of identities, since only existing persons are counted), so
//! a restart forgets them; every lock is one audit record.

use super::failed_logins::Refusal;
use super::*;
use crate::store::schema::{console_passwords, console_totp};
use crate::totp;
use std::sync::OnceLock;

/// Passwords shorter than this are refused when set.
const MIN_PASSWORD_CHARS: usize = 12;
/// Longer ones are refused when set and at sign-in, before any hashing.
const MAX_PASSWORD_BYTES: usize = 256;

#[derive(Default)]
pub(crate) struct PasswordFailures {
    by_credential: HashMap<String, Failures>,
}

struct Failures {
    wrong: u32,
    locked_until: Option<Instant>,
}

impl PasswordFailures {
    /// Seconds the password of `id` stays locked, if it is.
    fn locked_for(&mut self, id: &str) -> Option<u64> {
        let f = self.by_credential.get_mut(id)?;
        let until = f.locked_until?;
        let now = Instant::now();
        if until > now {
            Some((until - now).as_secs().max(1))
        } else {
            // The lock ran out: a fresh run of attempts.
            self.by_credential.remove(id);
            None
        }
    }

    /// Counts a wrong password; true when it locks the password now.
    fn wrong(&mut self, id: &str, lock: Duration) -> bool {
        let f = self
            .by_credential
            .entry(id.to_string())
            .or_insert(Failures {
                wrong: 0,
                locked_until: None,
            });
        f.wrong += 1;
        if f.wrong >= PASSWORD_ATTEMPTS {
            f.wrong = 0;
            f.locked_until = Some(Instant::now() + lock);
            true
        } else {
            false
        }
    }

    fn clear(&mut self, id: &str) {
        self.by_credential.remove(id);
    }
}

/// What the second factor of a sign-in came to.
enum Factor {
    /// The password (or the code) was wrong: counts toward the lock.
    Wrong,
    /// Enrolled, but no code was sent.
    Missing,
    NotEnrolled,
    /// The code of this time step, not used before.
    Step(i64),
}

/// The associated data a TOTP secret is sealed with: its credential.
fn totp_aad(credential_id: &str) -> String {
    format!("kagi-totp-v1:{credential_id}")
}

/// The time step (now, one before or one after, for clocks a little apart) whose code is
/// `code`.
fn matching_step(secret: &[u8], code: &str, unix_secs: i64) -> Option<i64> {
    if code.len() != totp::DIGITS as usize || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    let now = totp::step_at(unix_secs);
    (now - 1..=now + 1).find(|s| u64::try_from(*s).is_ok_and(|s| totp::code(secret, s) == given))
}

#[derive(Queryable)]
struct PasswordRow {
    #[allow(dead_code)]
    credential_id: String,
    password_hash: String,
    #[allow(dead_code)]
    set_at: i64,
}

/// A hash no password matches in practice, verified for names without a password so that an
/// unknown name costs as much time as a wrong password.
fn decoy_hash() -> Option<&'static str> {
    static DECOY: OnceLock<Option<String>> = OnceLock::new();
    DECOY
        .get_or_init(|| random_hex(32).and_then(|s| hash_secret(&s)).ok())
        .as_deref()
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Hsm {
    /// Set (or replace) the console password of the session's own identity, which must be a
    /// person. Audited as `credential.password_set`; a lock on the old password ends.
    pub fn set_own_password(&self, s: &Session, password: &str) -> Result<()> {
        if s.kind() != IdentityKind::Person || s.is_service() {
            return Err(HsmError::BadInput(format!(
                "only persons sign in to the console with a password; '{}' is a {}",
                s.name(),
                s.kind().as_str()
            )));
        }
        let chars = password.chars().count();
        if chars < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
            return Err(HsmError::BadInput(format!(
                "a console password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long (this one has {chars} characters): pick a longer passphrase"
            )));
        }
        let u = self.unsealed()?;
        let hash = hash_secret(password)?;
        let id = s.credential_id().to_string();
        let id2 = id.clone();
        let apply: ApplyFn = Box::new(move |c| {
            diesel::delete(
                console_passwords::table.filter(console_passwords::credential_id.eq(&id2)),
            )
            .execute(c)?;
            diesel::insert_into(console_passwords::table)
                .values((
                    console_passwords::credential_id.eq(&id2),
                    console_passwords::password_hash.eq(&hash),
                    console_passwords::set_at.eq(now_ms() / 1000),
                ))
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.password_set",
                None,
                serde_json::json!({"credential": id}),
            ),
        )?;
        if let Ok(mut f) = self.inner.password_failures.lock() {
            f.clear(&id);
        }
        Ok(())
    }

    /// Sign a person in with their name and console password, presented from `source` (the
    /// peer address). A wrong password or an unknown name is `BadCredential`, tallied like a
    /// refused token; the [`PASSWORD_ATTEMPTS`]th wrong password in a row locks password
    /// sign-in for the identity ([`HsmError::PasswordLocked`], audited as
    /// `auth.password_locked`) until the lock runs out. A success is audited as
    /// `auth.login_password`.
    ///
    /// A person who enrolled a TOTP authenticator ([`Hsm::enrol_totp`]) also sends its current
    /// code: without one the answer is [`HsmError::TotpRequired`] (the password was right); a
    /// wrong or already used code counts as a wrong password.
    pub fn login_password_from(
        &self,
        name: &str,
        password: &str,
        code: Option<&str>,
        source: &str,
    ) -> Result<Session> {
        let u = self.unsealed()?;
        let refuse = |reason, credential: Option<&str>| {
            self.tally_refusal(source, reason, credential);
            self.flush_due_failed_logins();
            Err(HsmError::BadCredential)
        };
        if name.is_empty() || name.len() > 128 || password.len() > MAX_PASSWORD_BYTES {
            return refuse(Refusal::Malformed, None);
        }
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::name.eq(name))
            .filter(credentials::revoked.eq(false))
            .filter(credentials::kind.eq(IdentityKind::Person.as_str()))
            .first(&mut c)
            .optional()?;
        let stored: Option<PasswordRow> = match &row {
            Some(r) => console_passwords::table
                .filter(console_passwords::credential_id.eq(&r.id))
                .first(&mut c)
                .optional()?,
            None => None,
        };
        drop(c);
        let (Some(row), Some(stored)) = (row, stored) else {
            if let Some(decoy) = decoy_hash() {
                verify(password, decoy);
            }
            return refuse(Refusal::UnknownCredential, None);
        };
        let locked = self
            .inner
            .password_failures
            .lock()
            .map_err(|_| lock_err())?
            .locked_for(&row.id);
        if let Some(secs) = locked {
            self.tally_refusal(source, Refusal::Locked, Some(&row.id));
            return Err(HsmError::PasswordLocked {
                name: row.name.clone(),
                retry_after_secs: secs,
            });
        }
        let second = if verify(password, &stored.password_hash) {
            self.second_factor(&u, &row, code)?
        } else {
            Factor::Wrong
        };
        let totp_step = match second {
            Factor::Wrong => None,
            Factor::Missing => {
                self.tally_refusal(source, Refusal::BadSecret, Some(&row.id));
                return Err(HsmError::TotpRequired(row.name.clone()));
            }
            Factor::NotEnrolled => Some(None),
            Factor::Step(step) => Some(Some(step)),
        };
        if totp_step.is_none() {
            let now_locked = self
                .inner
                .password_failures
                .lock()
                .map_err(|_| lock_err())?
                .wrong(&row.id, self.inner.password_lock);
            if now_locked {
                let secs = self.inner.password_lock.as_secs().max(1);
                u.committer.submit_unless_closed(
                    None,
                    EventDraft {
                        actor: format!("{}:{}", row.partition_name, row.name),
                        action: "auth.password_locked".into(),
                        partition: Some(row.partition_name.clone()),
                        key_id: None,
                        detail: serde_json::json!({
                            "credential": row.id, "source": source,
                            "attempts": PASSWORD_ATTEMPTS, "locked_secs": secs,
                        }),
                        outcome: Some(format!("denied:{}", "password_locked")),
                        use_hi: None,
                    },
                )?;
                self.tally_refusal(source, Refusal::BadSecret, Some(&row.id));
                return Err(HsmError::PasswordLocked {
                    name: row.name.clone(),
                    retry_after_secs: secs,
                });
            }
            return refuse(Refusal::BadSecret, Some(&row.id));
        }
        // The caller knows the password: it may learn why the identity itself is refused.
        if let Some(e) = row.refusal() {
            self.tally_refusal(source, Refusal::Locked, Some(&row.id));
            return Err(e);
        }
        if let Ok(mut f) = self.inner.password_failures.lock() {
            f.clear(&row.id);
        }
        let session = row.session()?;
        // The accepted step is written with the login's record, and only if no other login
        // took it first: a code is good once.
        let apply: Option<ApplyFn> = totp_step.flatten().map(|step| {
            let id = row.id.clone();
            let apply: ApplyFn = Box::new(move |c| {
                let n = diesel::update(
                    console_totp::table
                        .filter(console_totp::credential_id.eq(&id))
                        .filter(console_totp::last_step.lt(step)),
                )
                .set(console_totp::last_step.eq(step))
                .execute(c)?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(HsmError::BadCredential)
                }
            });
            apply
        });
        let event = EventDraft {
            actor: session.actor(),
            action: "auth.login_password".into(),
            partition: Some(session.partition().to_string()),
            key_id: None,
            detail: serde_json::json!({"credential": session.credential_id(), "source": source, "totp": apply.is_some()}),
            outcome: None,
            use_hi: None,
        };
        match apply {
            // As for a token login: failed closed, a proven caller may still read.
            None => u.committer.submit_unless_closed(None, event)?,
            // A code's step must be recorded to be used up; if the log takes nothing more,
            // the sign-in is refused rather than leave the code reusable.
            Some(apply) => {
                u.committer.submit(None, Some(apply), event)?;
            }
        }
        Ok(session)
    }

    /// The second factor of a person whose password was right.
    fn second_factor(
        &self,
        u: &Unsealed,
        row: &CredentialRow,
        code: Option<&str>,
    ) -> Result<Factor> {
        let mut c = self.inner.store.conn()?;
        let enrolled: Option<(Vec<u8>, i64)> = console_totp::table
            .filter(console_totp::credential_id.eq(&row.id))
            .select((console_totp::sealed_secret, console_totp::last_step))
            .first(&mut c)
            .optional()?;
        drop(c);
        let Some((sealed, last_step)) = enrolled else {
            return Ok(Factor::NotEnrolled);
        };
        let code = match code.map(str::trim) {
            None | Some("") => return Ok(Factor::Missing),
            Some(c) => c,
        };
        let secret = self
            .sealer(u, &row.partition_name)?
            .open(&sealed, totp_aad(&row.id).as_bytes())
            .ok_or_else(|| {
                HsmError::Integrity(format!(
                    "the one-time-code secret of '{}' does not open: it was changed outside kagi",
                    row.name
                ))
            })?;
        Ok(match matching_step(&secret, code, now_ms() / 1000) {
            Some(step) if step > last_step => Factor::Step(step),
            _ => Factor::Wrong,
        })
    }

    /// Enrol (or replace) the session's own TOTP authenticator: `secret` is what the person's
    /// app was given (the console shows it as a QR code), `code` one it shows now, which proves
    /// the app has it. From then on password sign-in also needs a code. Audited as
    /// `credential.totp_enrolled`.
    pub fn enrol_totp(&self, s: &Session, secret: &[u8], code: &str) -> Result<()> {
        if s.kind() != IdentityKind::Person || s.is_service() {
            return Err(HsmError::BadInput(
                "only persons sign in to the console, so only they enrol an authenticator".into(),
            ));
        }
        if secret.len() != totp::SECRET_LEN {
            return Err(HsmError::BadInput(format!(
                "a one-time-code secret is {} bytes; start the enrolment again",
                totp::SECRET_LEN
            )));
        }
        let Some(step) = matching_step(secret, code.trim(), now_ms() / 1000) else {
            return Err(HsmError::BadInput(
                "that code does not match: check the authenticator's clock and enter the code it shows now".into(),
            ));
        };
        let u = self.unsealed()?;
        let id = s.credential_id().to_string();
        let sealed = self
            .sealer(&u, s.partition())?
            .seal(secret, totp_aad(&id).as_bytes())?;
        let id2 = id.clone();
        let apply: ApplyFn = Box::new(move |c| {
            diesel::delete(console_totp::table.filter(console_totp::credential_id.eq(&id2)))
                .execute(c)?;
            diesel::insert_into(console_totp::table)
                .values((
                    console_totp::credential_id.eq(&id2),
                    console_totp::sealed_secret.eq(&sealed),
                    console_totp::enrolled_at.eq(now_ms() / 1000),
                    console_totp::last_step.eq(step),
                ))
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.totp_enrolled",
                None,
                serde_json::json!({"credential": id}),
            ),
        )?;
        Ok(())
    }

    /// Whether the session's identity has enrolled an authenticator.
    pub fn totp_enrolled(&self, s: &Session) -> Result<bool> {
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let n: i64 = console_totp::table
            .filter(console_totp::credential_id.eq(s.credential_id()))
            .count()
            .get_result(&mut c)?;
        Ok(n > 0)
    }

    /// Whether a session made earlier still stands: its credential is live (not revoked,
    /// locked or expired). A front end that keeps sessions of its own (the console) asks this
    /// on every request, so a revocation ends them at once.
    pub fn recheck_session(&self, s: &Session) -> Result<()> {
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::id.eq(s.credential_id()))
            .first(&mut c)
            .optional()?;
        match row {
            None => Err(HsmError::BadCredential),
            Some(r) => r.refusal().map_or(Ok(()), Err),
        }
    }
}
