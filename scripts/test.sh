#!/usr/bin/env bash
# Runs every kagi test, the way CI does. Installs what the tests need (idempotently, quietly;
# as root or with sudo): openssl, curl and python3-venv, the interop tools, and a PostgreSQL
# server with trust auth and a `test` database for the store tests.
#
# kagi is compiled once, clippy included (below): the acceptance scripts run the
# target/debug/kagi that `cargo test` built (KAGI_BIN), not a release build of their own (the
# dev profile in the root Cargo.toml keeps that binary fast enough for them).
# Servers listen on ports picked here (or given in KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT),
# so two suites can run side by side. Each phase line says how many seconds the run has taken.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
log() { printf '==> [+%ss] %s\n' "$(($(date +%s) - started))" "$*"; }

# What the tests need from the machine: packages, the interop tools, a PostgreSQL with trust
# auth and a `test` database. Both scripts install only what is missing.
bash scripts/install-test-prereqs.sh
bash scripts/install-test-tools.sh

log "cargo fmt --check"
cargo fmt --all -- --check

# `cargo clippy` is `cargo check` with clippy-driver as the compiler of the workspace's own crates
# (RUSTC_WORKSPACE_WRAPPER, arguments in CLIPPY_ARGS). Set the same way on the test build, it
# lints every target `cargo clippy --workspace --all-targets -- -D warnings` lints while
# compiling it, so the dependencies are compiled once instead of also type-checked separately.
# The test run below keeps the same settings, or Cargo would rebuild the workspace's crates.
clippy_driver="$(command -v clippy-driver)" || { echo "clippy-driver is not installed (rustup component add clippy)" >&2; exit 1; }
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

log "cargo clippy -D warnings, in the test build (cargo test --workspace --all-targets --no-run)"
cargo test --workspace --all-targets --no-run --quiet

log "cargo test"
cargo test --workspace

export KAGI_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/kagi"
# A port nobody answers on (below Linux's ephemeral range, which outgoing connections use).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        [[ "$p" != "${1:-}" ]] || continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
export KAGI_TEST_HTTPS_PORT="${KAGI_TEST_HTTPS_PORT:-$(free_port)}"
export KAGI_TEST_PUBLIC_PORT="${KAGI_TEST_PUBLIC_PORT:-$(free_port "$KAGI_TEST_HTTPS_PORT")}"

log "acceptance: the README's run command and the CLI, as a new user ($KAGI_BIN, ports $KAGI_TEST_HTTPS_PORT and $KAGI_TEST_PUBLIC_PORT)"
bash signer/tests/acceptance.sh

log "acceptance: the CA with openssl, certtool and pkilint"
bash signer/tests/ca_acceptance.sh

log "acceptance: EST enrollment with curl and openssl only"
bash signer/tests/est_acceptance.sh

log "acceptance: CMS signatures and RFC 3161 timestamps with openssl and certtool"
bash signer/tests/signing_acceptance.sh

log "acceptance: Sigstore bundles verified offline by sigstore-python"
# `cargo test` builds kagi for the signer's tests but not the kagi-verify binary the script also runs.
cargo build -p kagi-verify --quiet
bash signer/tests/sigstore_acceptance.sh

log "acceptance: the log as C2SP tlog-tiles, its root recomputed by a standard-library Python client written from the spec"
bash signer/tests/tiles_acceptance.sh

log "acceptance: the README walkthrough, every sh block in order, from a fresh folder"
bash signer/tests/readme_acceptance.sh

log "acceptance: the PKCS#11 module with pkcs11-tool, p11tool and openssl"
# `cargo test` links the module into its tests but leaves target/debug/libkagi_pkcs11.so to a build.
cargo build -p kagi-pkcs11 --quiet
bash pkcs11/tests/pkcs11_acceptance.sh

log "acceptance: the PKCS#11 module with OpenSSL's pkcs11-provider (req -x509, cms) and osslsigncode (Authenticode, /tsa timestamp)"
bash pkcs11/tests/pkcs11_signing_tools.sh

log "acceptance: the console in Debian's chromium driven by playwright-core (screenshots in target/console-screenshots/)"
bash web-ui/tests/console_acceptance.sh

log "all tests passed"
