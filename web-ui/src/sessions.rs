//! Console sessions as the pages see them. This crate keeps no storage: the service implements
//! [`SessionStore`] (on hsm-core's `console_sessions` table, so sessions survive a restart and
//! every kagi process on one database shares them), and this crate says what a session is and
//! how long it lasts.
//!
//! A session is found by a random 256-bit id (the cookie) and carries a second token for
//! CSRF: every state-changing form echoes it, and the service compares it with the session's
//! own (a synchronizer token). A cross-site page can make the browser send the cookie (not
//! with SameSite=Strict, but older browsers) yet cannot read the token.

use rand_core::{OsRng, RngCore};
use std::time::Duration;

/// A console session ends after this long without a request...
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// ...and this long after sign-in, whatever happens (also the cookie's Max-Age).
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 60 * 60);

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

/// A live session as a request sees it.
#[derive(Clone)]
pub struct Started<T> {
    /// The cookie value.
    pub id: String,
    pub csrf: String,
    pub value: T,
}

/// Where console sessions live: started at sign-in, found by cookie on every request (an
/// expired or unknown one is `None`), ended at sign-out. Calls may block (a database).
pub trait SessionStore<T> {
    type Error;
    fn start(&self, value: &T) -> Result<Started<T>, Self::Error>;
    fn find(&self, id: &str) -> Result<Option<Started<T>>, Self::Error>;
    fn end(&self, id: &str) -> Result<(), Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_256_bit_hex_and_distinct() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn csrf_comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("", "a"));
    }
}
