//! Console sign-in sessions in the database (table `console_sessions`), so every kagi process
//! on it knows them and a restart signs nobody out.
//!
//! The cookie is 32 random bytes; a row holds only its SHA-256, so a database reader learns no
//! cookie. A row also holds an HMAC (key derived from the master key, `kagi/console-session/v1`)
//! over that hash, the credential and the sign-in time: a database writer can delete rows
//! (which signs people out) but cannot add one for a cookie of their own, move one to another
//! identity, or make one look younger. The CSRF token is an HMAC of the cookie under the same
//! key, so it is bound to the session without being stored. Every lookup re-reads the
//! credential, so a revoked, locked or expired identity's sessions end at once.

use super::*;
use crate::store::schema::console_sessions as cs;
use aws_lc_rs::hmac;

const SESSION_KEY_INFO: &str = "kagi/console-session/v1";
/// `seen_at` is written again only when it is older than this, so a busy page does not write
/// a row per request; idle expiry is this much coarse.
const TOUCH_MS: i64 = 30_000;

/// A console session as the front end sees it.
pub struct ConsoleSession {
    /// The cookie value (64 hex digits). Only the sign-in hands it out.
    pub cookie: String,
    /// The session's CSRF token (64 hex digits), derived from the cookie.
    pub csrf: String,
    pub session: Session,
}

/// How long a console session lasts.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Ends after this long without a request...
    pub idle: Duration,
    /// ...and this long after sign-in, whatever happens.
    pub absolute: Duration,
}

fn hash_hex(cookie: &str) -> String {
    hex::encode(digest(&SHA256, cookie.as_bytes()))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Hsm {
    fn session_key(&self, u: &Unsealed) -> Result<hmac::Key> {
        Ok(hmac::Key::new(
            hmac::HMAC_SHA256,
            &u.master.derive(SESSION_KEY_INFO)?[..],
        ))
    }

    /// Start a console session for `s`, a person who just signed in: a new random cookie.
    /// Expired sessions are removed on the way.
    pub fn start_console_session(
        &self,
        s: &Session,
        limits: SessionLimits,
    ) -> Result<ConsoleSession> {
        let u = self.unsealed()?;
        let key = self.session_key(&u)?;
        let cookie = random_hex(32)?;
        let id_hash = hash_hex(&cookie);
        let now = now_ms();
        let mac = row_mac(&key, &id_hash, s.credential_id(), now);
        let mut c = self.inner.store.conn()?;
        diesel::delete(
            cs::table.filter(
                cs::seen_at
                    .lt(now.saturating_sub(ms(limits.idle)))
                    .or(cs::created_at.lt(now.saturating_sub(ms(limits.absolute)))),
            ),
        )
        .execute(&mut c)?;
        diesel::insert_into(cs::table)
            .values((
                cs::id_hash.eq(&id_hash),
                cs::credential_id.eq(s.credential_id()),
                cs::mac.eq(&mac),
                cs::created_at.eq(now),
                cs::seen_at.eq(now),
            ))
            .execute(&mut c)?;
        Ok(ConsoleSession {
            csrf: csrf_of(&key, &cookie),
            cookie,
            session: s.clone(),
        })
    }

    /// The live console session whose cookie is `cookie`, touched; `None` for an unknown,
    /// expired or ended one, a row that does not carry its MAC, or a credential that no
    /// longer stands (the row is deleted then).
    pub fn console_session(
        &self,
        cookie: &str,
        limits: SessionLimits,
    ) -> Result<Option<ConsoleSession>> {
        if cookie.len() != 64 || !cookie.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let u = self.unsealed()?;
        let key = self.session_key(&u)?;
        let id_hash = hash_hex(cookie);
        let mut c = self.inner.store.conn()?;
        let row: Option<(String, String, i64, i64)> = cs::table
            .filter(cs::id_hash.eq(&id_hash))
            .select((cs::credential_id, cs::mac, cs::created_at, cs::seen_at))
            .first(&mut c)
            .optional()?;
        let Some((credential_id, mac, created_at, seen_at)) = row else {
            return Ok(None);
        };
        let end = |c: &mut AnyConnection| -> Result<Option<ConsoleSession>> {
            diesel::delete(cs::table.filter(cs::id_hash.eq(&id_hash))).execute(c)?;
            Ok(None)
        };
        let expected = row_mac(&key, &id_hash, &credential_id, created_at);
        if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
            log::warn!("a console session row does not carry its MAC: it was written outside kagi, and is removed");
            return end(&mut c);
        }
        let now = now_ms();
        if now.saturating_sub(seen_at) >= ms(limits.idle)
            || now.saturating_sub(created_at) >= ms(limits.absolute)
        {
            return end(&mut c);
        }
        let cred: Option<CredentialRow> = credentials::table
            .filter(credentials::id.eq(&credential_id))
            .first(&mut c)
            .optional()?;
        let Some(cred) = cred.filter(|r| r.refusal().is_none()) else {
            return end(&mut c);
        };
        if cred.kind != IdentityKind::Person.as_str() {
            return end(&mut c);
        }
        if now - seen_at >= TOUCH_MS {
            diesel::update(cs::table.filter(cs::id_hash.eq(&id_hash)))
                .set(cs::seen_at.eq(now))
                .execute(&mut c)?;
        }
        Ok(Some(ConsoleSession {
            cookie: cookie.to_string(),
            csrf: csrf_of(&key, cookie),
            session: cred.session()?,
        }))
    }

    /// End the console session whose cookie is `cookie` (sign-out): its row is deleted.
    pub fn end_console_session(&self, cookie: &str) -> Result<()> {
        let mut c = self.inner.store.conn()?;
        diesel::delete(cs::table.filter(cs::id_hash.eq(hash_hex(cookie)))).execute(&mut c)?;
        Ok(())
    }
}

fn row_mac(key: &hmac::Key, id_hash: &str, credential_id: &str, created_at: i64) -> String {
    let mut ctx = hmac::Context::with_key(key);
    for part in [
        b"row".as_slice(),
        id_hash.as_bytes(),
        credential_id.as_bytes(),
        &created_at.to_be_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    hex::encode(ctx.sign())
}

fn csrf_of(key: &hmac::Key, cookie: &str) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(b"csrf\0");
    ctx.update(cookie.as_bytes());
    hex::encode(ctx.sign())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
