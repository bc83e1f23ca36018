//! Console sessions, kept in the service's memory: a restart signs everyone out, and two kagi
//! processes behind one address do not share them (a first slice; a shared store would be a
//! table the committer writes).
//!
//! A session is found by a random 256-bit id (the cookie) and carries a second random token
//! for CSRF: every state-changing form echoes it, and the service compares it with the
//! session's own (a synchronizer token). A cross-site page can make the browser send the
//! cookie (not with SameSite=Strict, but older browsers) yet cannot read the token.

use rand_core::{OsRng, RngCore};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// 32 random bytes from the operating system, as 64 hex digits; `None` if the OS RNG fails.
pub fn random_token() -> Option<String> {
    let mut b = [0u8; 32];
    OsRng.try_fill_bytes(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Compares secrets without stopping at the first difference, so timing does not tell how
/// much of a guess was right.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Entry<T> {
    value: T,
    csrf: String,
    created: Instant,
    seen: Instant,
}

/// A live session as a request sees it.
#[derive(Clone)]
pub struct Started<T> {
    /// The cookie value.
    pub id: String,
    pub csrf: String,
    pub value: T,
}

/// Sessions by id, each ending after `idle` without a request or `absolute` after sign-in.
pub struct SessionStore<T> {
    sessions: Mutex<HashMap<String, Entry<T>>>,
    idle: Duration,
    absolute: Duration,
    max: usize,
}

impl<T: Clone> SessionStore<T> {
    pub fn new(idle: Duration, absolute: Duration, max: usize) -> Self {
        SessionStore {
            sessions: Mutex::new(HashMap::new()),
            idle,
            absolute,
            max: max.max(1),
        }
    }

    /// The absolute lifetime, for the cookie's Max-Age.
    pub fn lifetime(&self) -> Duration {
        self.absolute
    }

    /// A new session holding `value`. `None` if no random id could be made.
    pub fn start(&self, value: T) -> Option<Started<T>> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut s = self.sessions.lock().ok()?;
        if s.len() >= self.max {
            let (idle, absolute) = (self.idle, self.absolute);
            s.retain(|_, e| e.seen.elapsed() < idle && e.created.elapsed() < absolute);
            if s.len() >= self.max {
                // Still full of live sessions: the oldest sign-in goes.
                let oldest = s
                    .iter()
                    .min_by_key(|(_, e)| e.created)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    s.remove(&k);
                }
            }
        }
        let now = Instant::now();
        s.insert(
            id.clone(),
            Entry {
                value: value.clone(),
                csrf: csrf.clone(),
                created: now,
                seen: now,
            },
        );
        Some(Started { id, csrf, value })
    }

    /// The live session `id`, touched; an expired one is removed and `None`.
    pub fn get(&self, id: &str) -> Option<Started<T>> {
        let mut s = self.sessions.lock().ok()?;
        let e = s.get_mut(id)?;
        if e.seen.elapsed() >= self.idle || e.created.elapsed() >= self.absolute {
            s.remove(id);
            return None;
        }
        e.seen = Instant::now();
        Some(Started {
            id: id.to_string(),
            csrf: e.csrf.clone(),
            value: e.value.clone(),
        })
    }

    pub fn end(&self, id: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_have_distinct_random_ids_and_tokens() {
        let store = SessionStore::new(Duration::from_secs(60), Duration::from_secs(600), 10);
        let a = store.start("alice").unwrap();
        let b = store.start("bob").unwrap();
        assert_eq!(a.id.len(), 64);
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, b.csrf);
        assert_ne!(a.id, a.csrf);
        assert_eq!(store.get(&a.id).unwrap().value, "alice");
        assert_eq!(store.get(&a.id).unwrap().csrf, a.csrf);
        store.end(&a.id);
        assert!(store.get(&a.id).is_none());
        assert!(store.get("not-a-session").is_none());
    }

    #[test]
    fn an_idle_session_ends() {
        let store = SessionStore::new(Duration::ZERO, Duration::from_secs(600), 10);
        let a = store.start(1).unwrap();
        assert!(store.get(&a.id).is_none());
    }

    #[test]
    fn a_full_store_drops_the_oldest_sign_in() {
        let store = SessionStore::new(Duration::from_secs(60), Duration::from_secs(600), 2);
        let a = store.start(1).unwrap();
        let b = store.start(2).unwrap();
        let c = store.start(3).unwrap();
        assert!(store.get(&a.id).is_none());
        assert!(store.get(&b.id).is_some() && store.get(&c.id).is_some());
    }

    #[test]
    fn csrf_comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("", "a"));
    }
}
