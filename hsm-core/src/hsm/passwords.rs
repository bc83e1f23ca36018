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
//! front end's per-source limit slows the stranger down anyway. The count and the lock live
//! in the database (`console_password_failures`, one row per person, only existing persons
//! are counted), so every kagi process on it counts the same guesses and a restart forgets
//! nothing. Every lock is also one audit record (`auth.password_locked`, subject
//! `password:<credential>`), which the verified index keeps: a database writer who deletes the
//! row does not end the lock. A new password (`credential.password_set`) ends it.
//!
//! A person may add a TOTP second factor ([`Hsm::enrol_totp`]). Replacing or removing it
//! needs a current code from the enrolled authenticator; an administrator may remove the
//! factor of a person who lost their device ([`Hsm::remove_totp_of`]), audited.

use super::failed_logins::Refusal;
use super::*;
use crate::store::schema::{console_passwords, console_totp};
use crate::totp;
use std::sync::OnceLock;

/// Passwords shorter than this are refused when set.
const MIN_PASSWORD_CHARS: usize = 12;
/// Longer ones are refused when set and at sign-in, before any hashing.
const MAX_PASSWORD_BYTES: usize = 256;

/// The subject of a person's password-lock and password-set records in the audit log.
fn password_subject(credential_id: &str) -> String {
    format!("password:{credential_id}")
}

/// The shared count of wrong passwords (table `console_password_failures`): one row per
/// identity, changed in one transaction so two processes counting at once add up.
mod failures {
    use super::*;
    use crate::store::schema::console_password_failures as f;

    /// The stored end of the lock (unix ms), if it is still ahead.
    pub(super) fn locked_until(c: &mut AnyConnection, id: &str, now: i64) -> Result<Option<i64>> {
        let until: Option<i64> = f::table
            .filter(f::credential_id.eq(id))
            .select(f::locked_until)
            .first(c)
            .optional()?;
        Ok(until.filter(|t| *t > now))
    }

    /// Counts one wrong password; `true` when it is the [`PASSWORD_ATTEMPTS`]th in a row,
    /// which locks the password until `now + lock_ms` and starts the count again.
    pub(super) fn wrong(c: &mut AnyConnection, id: &str, now: i64, lock_ms: i64) -> Result<bool> {
        c.transaction::<bool, HsmError, _>(|c| {
            let n = diesel::update(f::table.filter(f::credential_id.eq(id)))
                .set(f::wrong.eq(f::wrong + 1))
                .execute(c)?;
            if n == 0 {
                diesel::insert_into(f::table)
                    .values((
                        f::credential_id.eq(id),
                        f::wrong.eq(1),
                        f::locked_until.eq(0),
                    ))
                    .execute(c)?;
            }
            let wrong: i64 = f::table
                .filter(f::credential_id.eq(id))
                .select(f::wrong)
                .first(c)?;
            if wrong < i64::from(PASSWORD_ATTEMPTS) {
                return Ok(false);
            }
            diesel::update(f::table.filter(f::credential_id.eq(id)))
                .set((f::wrong.eq(0), f::locked_until.eq(now + lock_ms)))
                .execute(c)?;
            Ok(true)
        })
    }

    pub(super) fn clear(c: &mut AnyConnection, id: &str) -> Result<()> {
        diesel::delete(f::table.filter(f::credential_id.eq(id))).execute(c)?;
        Ok(())
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

/// Deletes the enrolment of `id` in a commit: with `Some(step)`, only the enrolment that step's
/// code was checked against and not used since (a code is good once, and a concurrent
/// replacement wins only once); with `None`, there must be none.
fn take_enrolment(c: &mut AnyConnection, id: &str, step: Option<i64>) -> Result<()> {
    let n = match step {
        Some(step) => diesel::delete(
            console_totp::table
                .filter(console_totp::credential_id.eq(id))
                .filter(console_totp::last_step.lt(step)),
        )
        .execute(c)?,
        None => {
            let n: i64 = console_totp::table
                .filter(console_totp::credential_id.eq(id))
                .count()
                .get_result(c)?;
            return if n == 0 {
                Ok(())
            } else {
                Err(HsmError::Conflict(
                    "an authenticator was enrolled meanwhile: reload and enter its current code"
                        .into(),
                ))
            };
        }
    };
    if n == 1 {
        Ok(())
    } else {
        Err(HsmError::Conflict(
            "the authenticator changed meanwhile, or that code was used already: reload and try again".into(),
        ))
    }
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
    super::login_flight::argon2_verify(phc, password.as_bytes())
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
            // A new password ends a lock on the old one (the record below does for the index).
            failures::clear(c, &id2)?;
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
                Some(password_subject(&id)),
                serde_json::json!({"credential": id}),
            ),
        )?;
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
        if let Some(secs) = self.password_locked_for(&u, &row.id)? {
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
            let actor = format!("{}:{}", row.partition_name, row.name);
            if let Some(secs) =
                self.count_wrong(&u, &row.id, &actor, &row.partition_name, source)?
            {
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
        let mut c = self.inner.store.conn()?;
        failures::clear(&mut c, &row.id)?;
        drop(c);
        let session = row.session()?;
        // The accepted step is used up before the sign-in counts, by a compare-and-set on the
        // shared row (another process taking the same code first makes this one fail). It is
        // not left to the login's audit record: once the HSM failed closed the log takes no
        // record, and a person with a second factor must still be able to sign in to read why
        // (as everyone else can), without the code becoming reusable.
        let totp = totp_step.flatten();
        if let Some(step) = totp {
            let mut c = self.inner.store.conn()?;
            let n = diesel::update(
                console_totp::table
                    .filter(console_totp::credential_id.eq(&row.id))
                    .filter(console_totp::last_step.lt(step)),
            )
            .set(console_totp::last_step.eq(step))
            .execute(&mut c)?;
            if n != 1 {
                return refuse(Refusal::BadSecret, Some(&row.id));
            }
        }
        let event = EventDraft {
            actor: session.actor(),
            action: "auth.login_password".into(),
            partition: Some(session.partition().to_string()),
            key_id: None,
            detail: serde_json::json!({"credential": session.credential_id(), "source": source, "totp": totp.is_some()}),
            outcome: None,
            use_hi: None,
        };
        // As for a token login: failed closed, a proven caller may still read.
        u.committer.submit_unless_closed(None, event)?;
        Ok(session)
    }

    /// Counts one wrong password (or wrong code) of `credential_id` in the shared row; when
    /// it is the [`PASSWORD_ATTEMPTS`]th in a row, the password locks, the lock is audited as
    /// `auth.password_locked` and its length in seconds is the answer.
    fn count_wrong(
        &self,
        u: &Unsealed,
        credential_id: &str,
        actor: &str,
        partition: &str,
        source: &str,
    ) -> Result<Option<u64>> {
        let lock_ms = i64::try_from(self.inner.password_lock.as_millis()).unwrap_or(i64::MAX);
        let now_locked = {
            let mut c = self.inner.store.conn()?;
            let now = now_ms();
            // A first attempt can lose a race to insert the row with another process.
            failures::wrong(&mut c, credential_id, now, lock_ms)
                .or_else(|_| failures::wrong(&mut c, credential_id, now, lock_ms))?
        };
        if !now_locked {
            return Ok(None);
        }
        let secs = self.inner.password_lock.as_secs().max(1);
        u.committer.submit_unless_closed(
            None,
            EventDraft {
                actor: actor.to_string(),
                action: "auth.password_locked".into(),
                partition: Some(partition.to_string()),
                key_id: Some(password_subject(credential_id)),
                detail: serde_json::json!({
                    "credential": credential_id, "source": source,
                    "attempts": PASSWORD_ATTEMPTS, "locked_secs": secs,
                }),
                outcome: Some(format!("denied:{}", "password_locked")),
                use_hi: None,
            },
        )?;
        Ok(Some(secs))
    }

    /// How long the password of `credential_id` stays locked, if it is: the shared row says
    /// so, or the verified audit log does (its newest lock record, not followed by a new
    /// password, with time left). A database writer who deletes the row does not end a lock;
    /// one who sets a lock far ahead gets no more than one lock's length.
    fn password_locked_for(&self, u: &Unsealed, credential_id: &str) -> Result<Option<u64>> {
        let now = now_ms();
        let lock_ms = i64::try_from(self.inner.password_lock.as_millis()).unwrap_or(i64::MAX);
        let mut c = self.inner.store.conn()?;
        let stored = failures::locked_until(&mut c, credential_id, now)?;
        drop(c);
        let subject = password_subject(credential_id);
        // Failed closed, the index answers nothing and the row alone decides: sign-in stays
        // open then so that people can read why (see `login_password_from`).
        let audited = |action| match u.audited(&self.inner.store, action, &subject) {
            Err(HsmError::Integrity(_)) => Ok(Vec::new()),
            other => other,
        };
        let locks = audited("auth.password_locked")?;
        let sets = audited("credential.password_set")?;
        let audited = locks
            .last()
            .filter(|l| sets.last().is_none_or(|p| p.seq < l.seq))
            .and_then(|l| {
                let secs = serde_json::from_str::<serde_json::Value>(&l.detail)
                    .ok()?
                    .get("locked_secs")?
                    .as_i64()?;
                Some(l.ts.saturating_add(secs.saturating_mul(1000)))
            })
            .filter(|t| *t > now);
        let until = match (stored, audited) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        let left = (until - now).min(lock_ms);
        Ok(Some(u64::try_from((left + 999) / 1000).unwrap_or(1).max(1)))
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

    /// Enrol the session's own TOTP authenticator, or replace it: `secret` is what the
    /// person's app was given (the console shows it as a QR code), `code` one it shows now,
    /// which proves the app has it. From then on password sign-in also needs a code. Audited
    /// as `credential.totp_enrolled`.
    ///
    /// Replacing an enrolled authenticator needs `current`, a code the *enrolled* one shows
    /// now (used up like a sign-in's): a person's token or an unattended console session
    /// alone cannot move the second factor to a device of someone else's choosing.
    pub fn enrol_totp(
        &self,
        s: &Session,
        secret: &[u8],
        code: &str,
        current: Option<&str>,
    ) -> Result<()> {
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
        let old_step = self.current_code_step(&u, s, current, "replace")?;
        let sealed = self
            .sealer(&u, s.partition())?
            .seal(secret, totp_aad(&id).as_bytes())?;
        let id2 = id.clone();
        let apply: ApplyFn = Box::new(move |c| {
            take_enrolment(c, &id2, old_step)?;
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
                serde_json::json!({"credential": id, "replaced": old_step.is_some()}),
            ),
        )?;
        Ok(())
    }

    /// Remove the session's own authenticator, proven with a code it shows now: password
    /// sign-in no longer asks for one. Audited as `credential.totp_removed`.
    pub fn remove_own_totp(&self, s: &Session, current: &str) -> Result<()> {
        let u = self.unsealed()?;
        let Some(step) = self.current_code_step(&u, s, Some(current), "remove")? else {
            return Err(HsmError::BadInput(
                "no authenticator is enrolled: there is nothing to remove".into(),
            ));
        };
        let id = s.credential_id().to_string();
        let id2 = id.clone();
        let apply: ApplyFn = Box::new(move |c| take_enrolment(c, &id2, Some(step)));
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.totp_removed",
                None,
                serde_json::json!({"credential": id, "by": "self"}),
            ),
        )?;
        Ok(())
    }

    /// An administrator removes the authenticator of person `name` (of the administrator's
    /// partition), who lost their device: they sign in with their password alone until they
    /// enrol a new one. One administrator suffices, as for resetting a token: the password is
    /// still needed, and the record `credential.totp_removed` (with `"by": "administrator"`)
    /// names who did it.
    pub fn remove_totp_of(&self, s: &Session, name: &str) -> Result<()> {
        s.require(Role::Administrator, "remove another person's authenticator")?;
        let u = self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::name.eq(name))
            .filter(credentials::partition_name.eq(s.partition()))
            .filter(credentials::kind.eq(IdentityKind::Person.as_str()))
            .first(&mut c)
            .optional()?;
        let Some(row) = row else {
            return Err(HsmError::NotFound(format!(
                "person '{}' in partition '{}'",
                name.chars().take(128).collect::<String>(),
                s.partition()
            )));
        };
        let enrolled: i64 = console_totp::table
            .filter(console_totp::credential_id.eq(&row.id))
            .count()
            .get_result(&mut c)?;
        drop(c);
        if enrolled == 0 {
            return Err(HsmError::BadInput(format!(
                "'{}' has no authenticator enrolled: there is nothing to remove",
                row.name
            )));
        }
        let id = row.id.clone();
        let apply: ApplyFn = Box::new(move |c| {
            diesel::delete(console_totp::table.filter(console_totp::credential_id.eq(&id)))
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.totp_removed",
                None,
                serde_json::json!({"credential": row.id, "name": row.name, "by": "administrator"}),
            ),
        )?;
        Ok(())
    }

    /// The step of `current`, a code the session's enrolled authenticator shows now, or
    /// `None` when nothing is enrolled. Enrolled and no (or a wrong, or a used) code:
    /// `TotpRequired` / `BadCredential`, so nobody replaces or removes a second factor
    /// without it.
    fn current_code_step(
        &self,
        u: &Unsealed,
        s: &Session,
        current: Option<&str>,
        verb: &str,
    ) -> Result<Option<i64>> {
        let mut c = self.inner.store.conn()?;
        let enrolled: Option<(Vec<u8>, i64)> = console_totp::table
            .filter(console_totp::credential_id.eq(s.credential_id()))
            .select((console_totp::sealed_secret, console_totp::last_step))
            .first(&mut c)
            .optional()?;
        drop(c);
        let Some((sealed, last_step)) = enrolled else {
            return Ok(None);
        };
        // Codes are guessed no faster here than at sign-in: a locked password refuses, and a
        // wrong code counts toward the lock.
        if let Some(secs) = self.password_locked_for(u, s.credential_id())? {
            return Err(HsmError::PasswordLocked {
                name: s.name().to_string(),
                retry_after_secs: secs,
            });
        }
        let Some(code) = current.map(str::trim).filter(|c| !c.is_empty()) else {
            return Err(HsmError::BadInput(format!(
                "an authenticator is enrolled: to {verb} it, also enter the code it shows now (an administrator can remove it for a person who lost the device)"
            )));
        };
        let secret = self
            .sealer(u, s.partition())?
            .open(&sealed, totp_aad(s.credential_id()).as_bytes())
            .ok_or_else(|| {
                HsmError::Integrity(format!(
                    "the one-time-code secret of '{}' does not open: it was changed outside kagi",
                    s.name()
                ))
            })?;
        match matching_step(&secret, code, now_ms() / 1000) {
            Some(step) if step > last_step => Ok(Some(step)),
            _ => {
                let source = s
                    .client()
                    .map(|c| c.source().to_string())
                    .unwrap_or_default();
                if let Some(secs) =
                    self.count_wrong(u, s.credential_id(), &s.actor(), s.partition(), &source)?
                {
                    return Err(HsmError::PasswordLocked {
                        name: s.name().to_string(),
                        retry_after_secs: secs,
                    });
                }
                Err(HsmError::BadInput(format!(
                "that is not the code the enrolled authenticator shows now (or it was used already): enter its current code to {verb} it"
                )))
            }
        }
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
