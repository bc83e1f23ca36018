//! What kagi's integration tests share, in one crate instead of `#[path]` includes and copies
//! per crate. Every function here runs inside a test: it panics (fails the test) with the
//! reason instead of returning errors, which is why this crate unwraps freely.
//!
//! - [`pg`]: PostgreSQL databases cloned from a template migrated once per migration set.
//! - [`store`]: a fresh store on each backend, a development-style init, crash workers.
//! - [`openssl`]: the openssl CLI.
//! - [`server`]: the real `kagi` binary, one server per test or one shared per test binary.
#![forbid(unsafe_code)]

pub mod openssl;
pub mod pg;
pub mod server;
pub mod store;

/// `n` random bytes in hex, for names that must not collide between tests and suites.
pub fn hex_rand(n: usize) -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut b).unwrap();
    hex::encode(b)
}
