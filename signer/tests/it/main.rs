//! The `kagi` binary's tests, in one test binary (each binary links the whole dependency tree).
//! They run the real binary Cargo built for this package, through kagi-testkit.

mod anonymous_cost;
mod audit_tamper;
mod auth;
mod backup;
mod ca;
mod cli_output;
mod console;
mod custodians;
mod deploy;
mod device_serials;
mod governance;
mod hostile_input;
mod http_api;
mod key_auth;
mod key_states;
mod lifecycle;
mod log;
mod openapi;
mod ops;
mod paging;
mod partitions_and_wrapped_keys;
mod policy;
mod postgres;
mod profiles;
mod rotation;
mod sign_and_verify;
mod sigstore;
mod soak;
mod strict_verify;
mod syslog;
mod tiles;
mod witness;
mod witness_verify;
mod witnessed;

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

    /// `openssl req` with a fresh P-256 key written to KEY in the server's folder, then ARGS
    /// (`-new -subj … -out x.csr` for a CSR, `-x509 …` for a self-signed certificate): keys and
    /// requests made with openssl, as a device's, a line's or a relying party's tooling would.
    pub fn openssl_req_p256(server: &Server, key: &str, args: &[&str]) {
        let mut all = vec![
            "openssl",
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
        ];
        all.extend_from_slice(args);
        let (ok, out) = run_in(server, &all);
        assert!(ok, "{all:?}: {out}");
    }

    /// A self-signed P-256 TLS client certificate and key per name, as NAME.pem and NAME.key
    /// in the server's folder.
    pub fn client_certificates(server: &Server, names: &[&str]) {
        for name in names {
            openssl_req_p256(
                server,
                &format!("{name}.key"),
                &[
                    "-x509",
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "30",
                    "-subj",
                    &format!("/CN={name}"),
                ],
            );
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
