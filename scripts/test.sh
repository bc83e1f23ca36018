#!/usr/bin/env bash
# Runs every kagi test, the way CI does. Installs what the tests need (idempotently, quietly):
# the openssl CLI for interop checks, and a running PostgreSQL for the store tests.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql-client)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# certtool (GnuTLS), pkilint and sigstore-python, for the interop tests.
bash scripts/install-test-tools.sh

# The store tests use the machine's PostgreSQL (trust auth, user postgres, database test).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    if [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not running on 127.0.0.1:5432 and could not be started" >&2; exit 1; }
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "cargo test"
cargo test --workspace

log "acceptance: the README's run command and the CLI, as a new user"
bash signer/tests/acceptance.sh

log "acceptance: the CA with openssl, certtool and pkilint"
bash signer/tests/ca_acceptance.sh

log "acceptance: EST enrollment with curl and openssl only"
bash signer/tests/est_acceptance.sh

log "acceptance: CMS signatures and RFC 3161 timestamps with openssl and certtool"
bash signer/tests/signing_acceptance.sh

log "acceptance: Sigstore bundles verified offline by sigstore-python"
bash signer/tests/sigstore_acceptance.sh

log "all tests passed"
