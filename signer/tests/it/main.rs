//! The `kagi` binary's tests, in one test binary (each binary links the whole dependency tree).
//! They run the real binary Cargo built for this package, through kagi-testkit.

mod anonymous_cost;
mod audit_tamper;
mod auth;
mod ca;
mod cli_output;
mod console;
mod custodians;
mod deploy;
mod device_serials;
mod governance;
mod hostile_input;
mod http_api;
mod lifecycle;
mod log;
mod openapi;
mod ops;
mod partitions_and_wrapped_keys;
mod policy;
mod postgres;
mod profiles;
mod sign_and_verify;
mod sigstore;
mod strict_verify;

/// What the test modules know as `common`.
mod common {
    pub use kagi_testkit::pg::Database;
    pub use kagi_testkit::server::*;

    pub const KAGI: &str = env!("CARGO_BIN_EXE_kagi");

    /// Run a program in the server's folder: whether it succeeded, and its stdout.
    pub fn run_in(server: &Server, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(server.root())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// A self-signed P-256 TLS client certificate and key per name, as NAME.pem and NAME.key
    /// in the server's folder (openssl, as a line's own tooling would make them).
    pub fn client_certificates(server: &Server, names: &[&str]) {
        for name in names {
            let (ok, _) = run_in(
                server,
                &[
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "30",
                    "-subj",
                    &format!("/CN={name}"),
                ],
            );
            assert!(ok, "openssl req for {name}");
        }
    }

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
