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
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
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

/// The process's Argon2id verifications run on these threads only, one per core, so at most
/// that many run at once. Run on whichever request thread asked, each left its 19 MiB block
/// in that thread's allocator arena: with 64 connections and 8 tokens, 386 MB of resident
/// memory after one login-cache refresh. Here only these threads' arenas hold one.
pub(super) struct Argon2Slots {
    /// The threads' queue (a `Sender` is not `Sync`); `None` if no thread could start, and
    /// then verifications run where they are asked.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Verifications started since the process began (for metrics and tests).
    started: AtomicU64,
}

struct Job {
    phc: String,
    secret: Zeroizing<Vec<u8>>,
    reply: mpsc::SyncSender<bool>,
}

impl Argon2Slots {
    /// One thread per core: more would only queue in the scheduler while holding memory.
    pub(super) fn per_core() -> Argon2Slots {
        Argon2Slots::with_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    fn with_threads(n: usize) -> Argon2Slots {
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
                    // The queue closes when the HSM is dropped.
                    let Ok(job) = job else { return };
                    let _ = job.reply.send(matches(&job.phc, &job.secret));
                });
            if spawned.is_ok() {
                running += 1;
            }
        }
        Argon2Slots {
            jobs: Mutex::new((running > 0).then_some(tx)),
            started: AtomicU64::new(0),
        }
    }

    pub(super) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether `secret` matches the Argon2id PHC string `phc`, computed on one of the threads.
    pub(super) fn verify(&self, phc: &str, secret: &[u8]) -> bool {
        self.started.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job {
            phc: phc.to_string(),
            secret: Zeroizing::new(secret.to_vec()),
            reply,
        };
        let refused = {
            let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            match jobs.as_ref() {
                Some(tx) => tx.send(job).err().map(|e| e.0),
                None => Some(job),
            }
        };
        match refused {
            None => answer.recv().unwrap_or(false),
            Some(job) => matches(&job.phc, &job.secret),
        }
    }
}

fn matches(phc: &str, secret: &[u8]) -> bool {
    PasswordHash::new(phc)
        .map(|h| Argon2::default().verify_password(secret, &h).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        // Small parameters: the PHC string carries them, and verification follows it.
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let hasher = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let phc = hasher.hash_password(b"right", &salt).unwrap().to_string();
        let slots = Arc::new(Argon2Slots::with_threads(2));
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
    }
}
