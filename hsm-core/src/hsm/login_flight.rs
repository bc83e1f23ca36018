//! Argon2id without stampedes. A token's first login, and its re-verification when the login
//! cache's entry ages out, used to run Argon2id once per concurrent request: 64 clients on one
//! token meant 64 runs of 19 MiB each at the same instant, every minute. Here:
//! - one login per token is in flight ([`Flights`]): the others wait for it and take its cached
//!   session;
//! - a token in active use is re-verified in the background before its entry ages out, while
//!   requests keep using the entry (see `identity.rs`);
//! - at most [`Argon2Slots`] verifications run at once in the process, which bounds the memory
//!   Argon2id holds however many tokens arrive together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

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

/// A counting semaphore over Argon2id verifications in this process.
pub(super) struct Argon2Slots {
    used: Mutex<usize>,
    cv: Condvar,
    max: usize,
    /// Verifications started since the process began (for metrics and tests).
    started: AtomicU64,
}

pub(super) struct Slot<'a>(&'a Argon2Slots);

impl Argon2Slots {
    /// One slot per core: more would only queue in the scheduler while holding their memory.
    pub(super) fn per_core() -> Argon2Slots {
        Argon2Slots {
            used: Mutex::new(0),
            cv: Condvar::new(),
            max: std::thread::available_parallelism().map_or(2, |n| n.get()),
            started: AtomicU64::new(0),
        }
    }

    pub(super) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    pub(super) fn acquire(&self) -> Slot<'_> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used >= self.max {
            used = self.cv.wait(used).unwrap_or_else(PoisonError::into_inner);
        }
        *used += 1;
        self.started.fetch_add(1, Ordering::Relaxed);
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(1);
        self.0.cv.notify_one();
    }
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
    fn slots_bound_the_verifications_in_flight() {
        let slots = Arc::new(Argon2Slots {
            used: Mutex::new(0),
            cv: Condvar::new(),
            max: 2,
            started: AtomicU64::new(0),
        });
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, now, peak) = (slots.clone(), now.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _slot = slots.acquire();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert_eq!(*slots.used.lock().unwrap(), 0);
        assert_eq!(slots.started(), 8);
    }
}
