//! The `kagi` binary's tests, in one test binary (each binary links the whole dependency tree).
//! They run the real binary Cargo built for this package, through kagi-testkit.

mod anonymous_cost;
mod audit_tamper;
mod auth;
mod ca;
mod device_serials;
mod governance;
mod hostile_input;
mod http_api;
mod lifecycle;
mod log;
mod partitions_and_wrapped_keys;
mod policy;
mod postgres;
mod sign_and_verify;
mod sigstore;
mod strict_verify;

/// What the test modules know as `common`.
mod common {
    pub use kagi_testkit::pg::Database;
    pub use kagi_testkit::server::*;

    pub const KAGI: &str = env!("CARGO_BIN_EXE_kagi");

    /// kagi-testkit finds the binary by where Cargo puts it; it must be the one Cargo built
    /// for these tests.
    #[test]
    fn testkit_runs_the_binary_cargo_built() {
        assert_eq!(
            kagi_bin().canonicalize().unwrap(),
            std::path::Path::new(KAGI).canonicalize().unwrap()
        );
    }
}
