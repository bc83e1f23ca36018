//! Per-key authorization: a key that only its own password unlocks, on top of the caller's
//! login (Luna's `CA_AuthorizeKey`; PKCS#11 `CKA_ALWAYS_AUTHENTICATE`).
//!
//! Such a key's PKCS#8 is first encrypted under a key derived from its password with Argon2id,
//! then sealed under the partition's key like every other key. The master key therefore opens
//! only the outer layer: a database reader holding every unseal share still lacks the
//! password. The password layer's associated data is the key's id and public key, which never
//! change, so suspending, deactivating or re-limiting the key re-seals the outer layer without
//! the password.
//!
//! Every use presents the password with its session ([`Session::with_key_auth`]); the
//! unwrapped key lives for that one operation and is never put in the key cache.
//!
//! Wrong passwords are counted per key in the verified audit log (`key.auth_failed`), not in a
//! table: a database writer cannot reset the count without breaking the log's chain. Every
//! [`KEY_AUTH_ATTEMPTS`]th wrong password in a row refuses the key for a delay that doubles
//! each time, from the configured base up to [`KEY_AUTH_LOCK_MAX`], never for good. A right
//! password after wrong ones writes `key.auth_ok`, which starts the count again. Only a caller
//! whose login, role and policy already allow using the key gets this far, so a stranger
//! cannot lock a key.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::*;
use crate::auth::KeyAuth;

/// Wrong passwords in a row that refuse a key for a while.
pub const KEY_AUTH_ATTEMPTS: u32 = 5;
/// The first refusal's length; each further one in the same run of wrong passwords doubles.
pub const KEY_AUTH_LOCK: Duration = Duration::from_secs(60);
/// The longest refusal, however many wrong passwords came.
pub const KEY_AUTH_LOCK_MAX: Duration = Duration::from_secs(24 * 3600);

const MAGIC: &[u8] = b"kagi-key-auth-v1";
const SALT_LEN: usize = 16;
/// Argon2id cost of the password layer: OWASP's minimum (19 MiB, two passes, one lane), the
/// same as kagi's login secrets. Stored in each blob, so a later kagi can raise it.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN + 12;

fn password_key(
    auth: &KeyAuth,
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>> {
    // Bounds a stored blob can ask for: a database writer must not make kagi allocate gigabytes.
    if !(8..=256 * 1024).contains(&m) || !(1..=16).contains(&t) || !(1..=8).contains(&p) {
        return Err(HsmError::Crypto("key password parameters out of range"));
    }
    let params =
        argon2::Params::new(m, t, p, Some(32)).map_err(|_| HsmError::Crypto("argon2 params"))?;
    // On the process's Argon2id threads, like every login: their number bounds the memory
    // Argon2id holds however many signatures with such keys arrive at once.
    super::login_flight::argon2_derive(auth.as_bytes(), salt, params)
        .ok_or(HsmError::Crypto("argon2"))
}

/// `pkcs8` encrypted under `auth`: MAGIC || salt || m || t || p (big-endian u32) || the
/// AES-256-GCM blob.
pub(crate) fn wrap(auth: &KeyAuth, pkcs8: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new().fill(&mut salt)?;
    let key = password_key(auth, &salt, M_COST_KIB, T_COST, P_COST)?;
    let mut out = Vec::with_capacity(HEADER_LEN + pkcs8.len() + 28);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    for v in [M_COST_KIB, T_COST, P_COST] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&Sealer::from_key(&key[..])?.seal(pkcs8, aad)?);
    Ok(out)
}

/// The PKCS#8 inside a password layer, or `None` when the password is wrong. A blob that is
/// not a password layer at all is an integrity failure, reported by the caller.
pub(crate) fn unwrap(
    auth: &KeyAuth,
    blob: &[u8],
    aad: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    if blob.len() < HEADER_LEN || !blob.starts_with(MAGIC) {
        return Err(HsmError::Crypto("not a key password layer"));
    }
    let salt = &blob[MAGIC.len()..MAGIC.len() + SALT_LEN];
    let num = |i: usize| {
        let at = MAGIC.len() + SALT_LEN + 4 * i;
        u32::from_be_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]])
    };
    let key = password_key(auth, salt, num(0), num(1), num(2))?;
    Ok(Sealer::from_key(&key[..])?.open(&blob[HEADER_LEN..], aad))
}

/// The password is long enough to set.
pub(crate) fn check_new(auth: &KeyAuth) -> Result<()> {
    let chars = std::str::from_utf8(auth.as_bytes())
        .map(|s| s.chars().count())
        .unwrap_or(0);
    if chars < KeyAuth::MIN_CHARS {
        return Err(HsmError::BadInput(format!(
            "a key password has at least {} characters",
            KeyAuth::MIN_CHARS
        )));
    }
    Ok(())
}

impl Hsm {
    /// The PKCS#8 of key `a` (with per-key authorization) from its password layer `inner`,
    /// with the password the session carries; counts a wrong one. The caller has caught up
    /// with the audit log.
    pub(super) fn authorize_key(
        &self,
        u: &Unsealed,
        s: &Session,
        a: &KeyAttributes,
        inner: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let auth = s
            .key_auth()
            .ok_or_else(|| HsmError::KeyAuthRequired(a.label.clone()))?;
        // Both callers have just caught up with the log (`Unsealed::suspended` in `load_key`,
        // `Unsealed::retired` in `change_key_auth`), so other processes' guesses are counted.
        let now = now_ms();
        let status = u.integrity.key_auth_status(&a.id);
        if let Some(until) = status.locked_until.filter(|t| *t > now) {
            return Err(HsmError::KeyAuthLocked {
                label: a.label.clone(),
                retry_after_secs: u64::try_from((until - now + 999) / 1000).unwrap_or(1),
            });
        }
        let integrity = || HsmError::KeyIntegrity {
            label: a.label.clone(),
        };
        match unwrap(auth, inner, &a.key_auth_data()).map_err(|_| integrity())? {
            Some(pkcs8) => {
                if status.failures > 0 {
                    u.committer.submit(
                        None,
                        None,
                        user_event(
                            s,
                            "key.auth_ok",
                            Some(a.id.clone()),
                            serde_json::json!({"label": a.label, "after_failures": status.failures}),
                        ),
                    )?;
                }
                Ok(pkcs8)
            }
            None => Err(self.count_wrong_key_auth(u, s, a, status.failures + 1)),
        }
    }

    /// Records the `streak`th wrong password in a row for key `a`; every
    /// [`KEY_AUTH_ATTEMPTS`]th locks the key, for twice as long as the lock before.
    fn count_wrong_key_auth(
        &self,
        u: &Unsealed,
        s: &Session,
        a: &KeyAttributes,
        streak: u64,
    ) -> HsmError {
        let attempts = u64::from(KEY_AUTH_ATTEMPTS);
        let locked_secs = streak.is_multiple_of(attempts).then(|| {
            let doublings = u32::try_from(streak / attempts - 1)
                .unwrap_or(u32::MAX)
                .min(20);
            self.inner
                .key_auth_lock
                .as_secs()
                .max(1)
                .saturating_mul(1u64 << doublings)
                .min(KEY_AUTH_LOCK_MAX.as_secs())
        });
        let mut event = user_event(
            s,
            "key.auth_failed",
            Some(a.id.clone()),
            serde_json::json!({"label": a.label, "failures": streak, "locked_secs": locked_secs}),
        );
        event.outcome = Some("denied:key_auth_wrong".into());
        if let Err(e) = u.committer.submit(None, None, event) {
            // Not counted, so not answered as a counted guess either.
            return e;
        }
        match locked_secs {
            Some(secs) => HsmError::KeyAuthLocked {
                label: a.label.clone(),
                retry_after_secs: secs,
            },
            None => HsmError::KeyAuthWrong {
                label: a.label.clone(),
                left: u32::try_from(attempts - streak % attempts).unwrap_or(KEY_AUTH_ATTEMPTS),
            },
        }
    }

    /// Replace a key's password; the session carries the current one (a wrong one counts as
    /// any wrong password does). Whoever may use the key may do this: the password is theirs,
    /// not an officer's. Audited as `key.auth_change`.
    pub fn change_key_auth(&self, s: &Session, label: &str, new: &KeyAuth) -> Result<KeyInfo> {
        s.require(Role::User, "use keys")?;
        check_new(new)?;
        let u = self.unsealed()?;
        let row = self.live_row(s.partition(), label)?;
        let (attrs, inner) = self.open_pkcs8(&u, &row)?;
        if !attrs.key_auth {
            return Err(HsmError::BadInput(format!(
                "key '{label}' has no password of its own: per-key authorization is chosen when the key is created ('kagi key create --key-auth')"
            )));
        }
        if let Some(retired) = u.retired(&self.inner.store, &attrs.id)? {
            return Err(transition_refused_auth(label, retired));
        }
        let pkcs8 = self.authorize_key(&u, s, &attrs, &inner)?;
        let new_inner = wrap(new, &pkcs8, &attrs.key_auth_data())?;
        drop(pkcs8);
        let old_generation = attrs.generation;
        let next = KeyAttributes {
            generation: old_generation + 1,
            ..attrs
        };
        let sealed = self
            .sealer(&u, &next.partition)?
            .seal(&new_inner, &next.associated_data())?;
        let (id, l2, state) = (next.id.clone(), next.label.clone(), next.state);
        // The state stays; the generation moves, so a concurrent change refuses one of the two.
        let apply: ApplyFn = Box::new(move |c| {
            super::keyring::swap_state(c, &id, old_generation, state, state, sealed, l2)
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "key.auth_change",
                Some(next.id.clone()),
                serde_json::json!({"label": next.label}),
            ),
        )?;
        self.evict(s.partition(), label);
        self.key_info(s, label)
    }
}

fn transition_refused_auth(label: &str, state: KeyState) -> HsmError {
    HsmError::Conflict(format!(
        "key '{label}' is {state}: it signs nothing more, so its password cannot change"
    ))
}

#[cfg(test)]
mod tests {
    //! The attacker who holds the database and every unseal share: the master key, which the
    //! test takes from the unsealed HSM, opens the outer seal of a key with its own password
    //! and finds only the password layer.
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::StoreConfig;

    const RIGHT: &str = "correct horse battery";

    #[test]
    fn the_master_key_and_the_database_do_not_open_a_key_with_its_own_password() {
        let dir = tempfile::tempdir().unwrap();
        attacker_with_the_master_key(StoreConfig::sqlite_in(dir.path()));
        let pg = kagi_testkit::pg::Database::create();
        attacker_with_the_master_key(StoreConfig::Postgres(pg.url()));
    }

    fn attacker_with_the_master_key(store: StoreConfig) {
        let hsm = Hsm::open(HsmConfig::new(store)).unwrap();
        let out = hsm.init(1, 1).unwrap();
        let admin = hsm.login(&out.admin_token).unwrap();
        let (_, token) = hsm
            .create_credential(
                &admin,
                "everything",
                &[
                    Role::Administrator,
                    Role::Officer,
                    Role::User,
                    Role::Auditor,
                ],
            )
            .unwrap();
        let all = hsm.login(&token).unwrap();
        let owner = all.clone().with_key_auth(KeyAuth::new(RIGHT).unwrap());
        let spec = KeySpec {
            key_auth: true,
            ..KeySpec::new("owned", Algorithm::EcP256)
        };
        let info = hsm.create_key(&owner, &spec).unwrap();
        assert!(info.key_auth);

        // What the database holds, opened with the master key.
        let u = hsm.unsealed().unwrap();
        let row = hsm.live_row("default", "owned").unwrap();
        let attrs = row.attrs().unwrap();
        let outer = u
            .master
            .sealer(&seal::partition_info("default"))
            .unwrap()
            .open(row.sealed.as_deref().unwrap(), &attrs.associated_data())
            .expect("the master key opens the outer seal");
        assert!(
            outer.starts_with(MAGIC),
            "only the password layer is inside"
        );
        assert!(
            crypto::load(Algorithm::EcP256, &outer).is_err(),
            "the outer seal holds no usable key"
        );
        let wrong = KeyAuth::new("correct horse battery!").unwrap();
        assert!(unwrap(&wrong, &outer, &attrs.key_auth_data())
            .unwrap()
            .is_none());
        // The right password is all that is missing.
        let pkcs8 = unwrap(
            &KeyAuth::new(RIGHT).unwrap(),
            &outer,
            &attrs.key_auth_data(),
        )
        .unwrap()
        .unwrap();
        let key = crypto::load(Algorithm::EcP256, &pkcs8).unwrap();
        assert_eq!(key.public_key_der().unwrap(), info.public_key_der);

        // Every role, no password: no signature, and nothing to export.
        let req = SignRequest {
            digest_alg: None,
            digest: vec![7; 32],
            padding: crate::algorithm::RsaPadding::Pkcs1v15,
        };
        assert_eq!(
            hsm.sign(&all, "owned", &req).unwrap_err().code(),
            "key_auth_required"
        );
        assert_eq!(
            hsm.sign(&all.clone().with_key_auth(wrong), "owned", &req)
                .unwrap_err()
                .code(),
            "key_auth_wrong"
        );
        assert!(hsm.sign(&owner, "owned", &req).is_ok());
        assert!(hsm.export_wrapped(&all, "owned", "nothing").is_err());
    }
}
