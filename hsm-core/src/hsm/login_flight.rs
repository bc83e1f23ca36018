//! Argon2id without stampedes. A token's first login, and its re-verification when the login
//! cache's entry ages out, used to run Argon2id once per concurrent request: 64 clients on one
//! token meant 64 runs of 19 MiB each at the same instant, every minute. Here:
//! - one login per token is in flight ([`Flights`]): the others wait for it and take its cached
//!   session;
//! - a token in active use is re-verified in the background before its entry ages out, while
//!   requests keep using the entry (see `identity.rs`);
//! - verifications run on [`Argon2Slots`]' threads, one per core, which bounds the memory
//!   Argon2id holds however many tokens arrive together, and keeps it in those threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock, PoisonError};

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash};
use zeroize::Zeroizing;

/// Logins in flight, by token hash.
#[derive(Default)]
pub(super) struct Flights(Mutex<HashMap<[u8; 32], Arc<Flight>>>);

#[derive(Default)]
pub(super) struct Flight {
    done: Mutex<bool>,
    cv: Condvar,
}

/// What [`Flights::join`] made of the caller.
pub(super) enum Joined {
    /// No login of this token was in flight: the caller runs it and then calls
    /// [`Flights::land`].
    Leader,
    /// Another caller's login of this token was in flight, and has now finished.
    Waited,
}

impl Flights {
    /// Join the login of `hash` in flight, or lead one. A follower returns once the leader
    /// has landed, successful or not.
    pub(super) fn join(&self, hash: &[u8; 32]) -> Joined {
        let flight = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get(hash) {
                Some(f) => f.clone(),
                None => {
                    map.insert(*hash, Arc::new(Flight::default()));
                    return Joined::Leader;
                }
            }
        };
        let mut done = flight.done.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            done = flight.cv.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
        Joined::Waited
    }

    /// The leader's login of `hash` is over (its session, if any, is cached): wake the
    /// followers.
    pub(super) fn land(&self, hash: &[u8; 32]) {
        let flight = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(hash);
        if let Some(f) = flight {
            *f.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
            f.cv.notify_all();
        }
    }
}

/// Lands the flight when the leader's login returns, also by `?` or a panic.
pub(super) struct Landing<'a> {
    pub(super) flights: &'a Flights,
    pub(super) hash: [u8; 32],
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.flights.land(&self.hash);
    }
}

/// The process's Argon2id work (verifying and hashing tokens and passwords) runs on these
/// threads only, one per core, so at most that many run at once. Run on whichever request
/// thread asked, each left its 19 MiB block in that thread's allocator arena: with 64
/// connections and 8 tokens, 386 MB of resident memory. The threads are the process's, shared
/// by every HSM in it; each HSM counts its own verifications.
pub(super) struct Argon2Slots {
    /// Verifications started since this HSM began (for metrics and tests).
    started: AtomicU64,
}

enum Job {
    Verify {
        phc: String,
        secret: Zeroizing<Vec<u8>>,
        reply: mpsc::SyncSender<bool>,
    },
    Hash {
        secret: Zeroizing<Vec<u8>>,
        salt: SaltString,
        reply: mpsc::SyncSender<Option<String>>,
    },
    /// A 32-byte key from a key's own password (per-key authorization, `key_auth.rs`).
    Derive {
        secret: Zeroizing<Vec<u8>>,
        salt: Vec<u8>,
        params: argon2::Params,
        reply: mpsc::SyncSender<Option<Zeroizing<[u8; 32]>>>,
    },
}

impl Job {
    fn run(self) {
        match self {
            Job::Verify { phc, secret, reply } => {
                let _ = reply.send(matches(&phc, &secret));
            }
            Job::Hash {
                secret,
                salt,
                reply,
            } => {
                let _ = reply.send(hashed(&secret, &salt));
            }
            Job::Derive {
                secret,
                salt,
                params,
                reply,
            } => {
                let mut out = Zeroizing::new([0u8; 32]);
                let ok =
                    argon2id_into(params, argon2::Version::V0x13, &secret, &salt, &mut out[..]);
                let _ = reply.send(ok.then_some(out));
            }
        }
    }
}

/// The threads' queue (a `Sender` is not `Sync`); `None` if no thread could start, and then
/// the work runs where it is asked.
fn pool() -> Option<&'static Mutex<mpsc::Sender<Job>>> {
    static POOL: OnceLock<Option<Mutex<mpsc::Sender<Job>>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut running = 0;
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("kagi-argon2-{i}"))
                .spawn(move || loop {
                    // One thread waits on the queue at a time; the others wait for the lock.
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    job.run();
                });
            if spawned.is_ok() {
                running += 1;
            }
        }
        (running > 0).then(|| Mutex::new(tx))
    })
    .as_ref()
}

/// Run `job` on the pool, or here when the pool is not there.
fn submit(job: Job) {
    let refused = match pool() {
        Some(tx) => tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .err()
            .map(|e| e.0),
        None => Some(job),
    };
    if let Some(job) = refused {
        job.run();
    }
}

impl Argon2Slots {
    pub(super) fn per_core() -> Argon2Slots {
        Argon2Slots {
            started: AtomicU64::new(0),
        }
    }

    pub(super) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether `secret` matches the Argon2id PHC string `phc`, computed on the pool; counted.
    pub(super) fn verify(&self, phc: &str, secret: &[u8]) -> bool {
        self.started.fetch_add(1, Ordering::Relaxed);
        argon2_verify(phc, secret)
    }
}

/// Argon2id of `secret` with `salt` and `params` into 32 bytes, computed on the pool; `None`
/// if Argon2 refused.
pub(super) fn argon2_derive(
    secret: &[u8],
    salt: &[u8],
    params: argon2::Params,
) -> Option<Zeroizing<[u8; 32]>> {
    let (reply, answer) = mpsc::sync_channel(1);
    submit(Job::Derive {
        secret: Zeroizing::new(secret.to_vec()),
        salt: salt.to_vec(),
        params,
        reply,
    });
    answer.recv().ok().flatten()
}

/// Whether `secret` matches the Argon2id PHC string `phc`, computed on the pool.
pub(super) fn argon2_verify(phc: &str, secret: &[u8]) -> bool {
    let (reply, answer) = mpsc::sync_channel(1);
    submit(Job::Verify {
        phc: phc.to_string(),
        secret: Zeroizing::new(secret.to_vec()),
        reply,
    });
    answer.recv().unwrap_or(false)
}

/// The Argon2id PHC string of `secret` with `salt` (the library's defaults), computed on the
/// pool; `None` if Argon2 refused.
pub(super) fn argon2_hash(secret: &[u8], salt: SaltString) -> Option<String> {
    let (reply, answer) = mpsc::sync_channel(1);
    submit(Job::Hash {
        secret: Zeroizing::new(secret.to_vec()),
        salt,
        reply,
    });
    answer.recv().ok().flatten()
}

thread_local! {
    /// This thread's Argon2id memory, allocated at its first use and kept. Freed after every
    /// run, the 19 MiB block made glibc raise its mmap threshold to 19 MiB (and its trim
    /// threshold to twice that), after which each malloc arena kept up to 38 MiB of freed
    /// memory: 330 MB resident under `benches/wrk_sign.sh` (8 tokens), against 77 MB with the
    /// threshold held at its default.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2id of `secret` and `salt` into `out` with `params`, in this thread's kept memory,
/// which is wiped afterwards (it holds password-derived state).
fn argon2id_into(
    params: argon2::Params,
    version: argon2::Version,
    secret: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> bool {
    let n = params.block_count();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, version, params);
    BLOCKS.with(|blocks| {
        let Ok(mut blocks) = blocks.try_borrow_mut() else {
            return false;
        };
        if blocks.len() < n {
            blocks.resize(n, argon2::Block::new());
        }
        let ok = argon
            .hash_password_into_with_memory(secret, salt, out, &mut blocks[..n])
            .is_ok();
        blocks[..n].fill(argon2::Block::new());
        ok
    })
}

/// Whether `secret` matches the Argon2id PHC string `phc` (its parameters, version and salt).
fn matches(phc: &str, secret: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if argon2::Algorithm::try_from(hash.algorithm) != Ok(argon2::Algorithm::Argon2id) {
        return false;
    }
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    if !argon2id_into(params, version, secret, salt, &mut out) {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// The PHC string of `secret` with `salt` and the library's default parameters (19 MiB, two
/// passes, one lane, 32 bytes), as `Argon2::default().hash_password` writes it.
fn hashed(secret: &[u8], salt: &SaltString) -> Option<String> {
    let params = argon2::Params::default();
    let version = argon2::Version::V0x13;
    let salt = salt.as_salt();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).ok()?;
    let mut out = Zeroizing::new([0u8; argon2::Params::DEFAULT_OUTPUT_LEN]);
    if !argon2id_into(params.clone(), version, secret, salt_bytes, &mut out[..]) {
        return None;
    }
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(version.into()),
        params: argon2::password_hash::ParamsString::try_from(&params).ok()?,
        salt: Some(salt),
        hash: Some(argon2::password_hash::Output::new(&out[..]).ok()?),
    };
    Some(phc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept-memory Argon2id reads and writes exactly what the library's own hasher does:
    /// every secret hashed before still verifies, and the library accepts ours.
    #[test]
    fn kept_memory_argon2id_agrees_with_the_library() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"secret one", &salt)
            .unwrap()
            .to_string();
        let ours = hashed(b"secret one", &salt).unwrap();
        assert_eq!(ours, theirs);
        assert!(matches(&theirs, b"secret one"));
        assert!(!matches(&theirs, b"secret two"));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"secret one", &parsed)
            .is_ok());
        // Other parameters in a stored hash are honoured, not replaced by the defaults.
        let custom = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(4096, 3, 1, Some(32)).unwrap(),
        )
        .hash_password(b"secret three", &salt)
        .unwrap()
        .to_string();
        assert!(matches(&custom, b"secret three"));
        assert!(!matches(&custom, b"secret one"));
        assert!(!matches(
            "$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA",
            b"x"
        ));
        assert!(!matches("not a phc string", b"x"));
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_leader_per_token_and_followers_wait_for_it() {
        let flights = Arc::new(Flights::default());
        let leaders = Arc::new(AtomicUsize::new(0));
        let landed = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (flights, leaders, landed) = (flights.clone(), leaders.clone(), landed.clone());
                std::thread::spawn(move || match flights.join(&[7; 32]) {
                    Joined::Leader => {
                        leaders.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        landed.fetch_add(1, Ordering::SeqCst);
                        flights.land(&[7; 32]);
                    }
                    // A follower wakes only after a leader landed.
                    Joined::Waited => assert!(landed.load(Ordering::SeqCst) >= 1),
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Threads that arrive after a landing lead a new flight; never two at once.
        assert!(leaders.load(Ordering::SeqCst) >= 1);
        assert_eq!(
            leaders.load(Ordering::SeqCst),
            landed.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn verifications_run_on_the_pool_and_answer_each_caller() {
        use argon2::PasswordHasher;
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        // Small parameters: the PHC string carries them, and verification follows it.
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let hasher = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let phc = hasher.hash_password(b"right", &salt).unwrap().to_string();
        let slots = Arc::new(Argon2Slots::per_core());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (slots, phc) = (slots.clone(), phc.clone());
                std::thread::spawn(move || {
                    let secret: &[u8] = if i % 2 == 0 { b"right" } else { b"wrong" };
                    (i, slots.verify(&phc, secret))
                })
            })
            .collect();
        for t in threads {
            let (i, ok) = t.join().unwrap();
            assert_eq!(ok, i % 2 == 0, "caller {i}");
        }
        assert_eq!(slots.started(), 8);
        assert!(!slots.verify("not a phc string", b"right"));
        let made = argon2_hash(b"another", salt).unwrap();
        assert!(argon2_verify(&made, b"another"));
        assert!(!argon2_verify(&made, b"right"));
    }
}
