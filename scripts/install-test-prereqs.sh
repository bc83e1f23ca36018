#!/usr/bin/env bash
# Makes a fresh Debian machine ready for kagi's tests, idempotently and quietly (scripts/test.sh
# runs it first; it prints one "==>" line per thing it installs or changes, nothing otherwise):
#   - the packages: openssl, curl, postgresql-client, python3 and python3-venv;
#   - a PostgreSQL server on 127.0.0.1:5432: when none answers there it installs Debian's
#     postgresql, creates a cluster if there is none, makes it trust 127.0.0.1 (pg_hba.conf),
#     and starts it;
#   - user postgres let in from 127.0.0.1 without a password, and a database `test`.
# Installing needs root, or sudo without a password.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }

# Everything below needs root (apt-get, the PostgreSQL cluster): as root it runs directly,
# otherwise through `sudo -n` (never a password prompt in CI).
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "test.sh must install or configure something ($*) and needs root or sudo for it" >&2
        return 1
    fi
}
apt_updated=0
apt_install() {
    log "installing $*"
    local apt_log
    apt_log=$(mktemp)
    if ! { { [ "$apt_updated" = 1 ] || as_root apt-get update -qq; } &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        echo "could not install $* with apt-get (needs root or sudo and Debian's package mirrors)" >&2
        exit 1
    fi
    apt_updated=1
    rm -f "$apt_log"
}

# The CLI tools the tests run: openssl and curl for the interop and acceptance checks, psql and
# pg_isready for the store tests, python3 with venv for pkilint, sigstore-python and the
# Prometheus and OpenAPI parsers (scripts/install-test-tools.sh).
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql-client)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Debian's python3 makes virtualenvs only with python3-venv (which brings ensurepip).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi

# The store tests use a PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres and a
# database `test`. When none answers there, this installs the server (Debian's postgresql),
# makes its cluster trust 127.0.0.1, starts it, and creates the database.
pg_url_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_cluster_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n1; }
pg_trust_loopback() {
    local hba
    hba="/etc/postgresql/$1/main/pg_hba.conf"
    [ -f "$hba" ] || return 0
    # pg_hba.conf is read top down and the first matching line wins, so the trust line goes first.
    if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        log "PostgreSQL $1: trust auth for 127.0.0.1 (pg_hba.conf)"
        as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        return 1
    fi
}
if ! pg_url_ready; then
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        apt_install postgresql
    fi
    version=$(pg_cluster_version)
    if [ -z "$version" ]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
        log "creating PostgreSQL $version cluster main"
        as_root pg_createcluster "$version" main >/dev/null
    fi
    pg_trust_loopback "$version" || true
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do pg_url_ready && break; sleep 1; done
    pg_url_ready || { echo "PostgreSQL is not running on 127.0.0.1:5432 and could not be started (pg_ctlcluster $version main start)" >&2; exit 1; }
fi
# A server that answers but asks for a password: make the local cluster trust 127.0.0.1.
if ! psql -h 127.0.0.1 -p 5432 -U postgres -w -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    version=$(pg_cluster_version)
    if [ -n "$version" ] && ! pg_trust_loopback "$version"; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null
        sleep 1
    fi
    psql -h 127.0.0.1 -p 5432 -U postgres -w -d postgres -Atqc 'select 1' >/dev/null || {
        echo "PostgreSQL on 127.0.0.1:5432 does not let user postgres in without a password: the tests need trust auth for 127.0.0.1 (pg_hba.conf)" >&2
        exit 1
    }
fi
if [ "$(psql -h 127.0.0.1 -p 5432 -U postgres -w -d postgres -Atqc "select 1 from pg_database where datname = 'test'")" != 1 ]; then
    log "creating the PostgreSQL database test"
    psql -h 127.0.0.1 -p 5432 -U postgres -w -d postgres -qc 'create database test' >/dev/null
fi
