#!/usr/bin/env bash
# Installs the external tools the CA interop tests check certificates with, idempotently and quietly:
#   - certtool (GnuTLS, Debian package gnutls-bin), only if it is not on PATH;
#   - /usr/bin/time (Debian package time), for the client memory measurement;
#   - pkilint, in its own virtualenv at $HOME/.cache/kagi-test-tools/venv (tests run
#     $HOME/.cache/kagi-test-tools/venv/bin/lint_pkix_cert and .../lint_crl);
#   - sigstore-python, in $HOME/.cache/kagi-test-tools/sigstore-venv (Sigstore bundle checks);
#   - openapi-spec-validator and prometheus-client, in $HOME/.cache/kagi-test-tools/ops-venv
#     (the served OpenAPI document is validated, /metrics is parsed).
#   - osslsigncode, libengine-pkcs11-openssl and pkcs11-provider (bookworm-backports), for the
#     PKCS#11 module with signing tools;
#   - softhsm2, the peer of the PKCS#11 signing bench;
#   - chromium (Debian package) and playwright-core (npm, in
#     $HOME/.cache/kagi-test-tools/playwright), for the console's browser test;
#   - rsyslog and rsyslog-gnutls, the syslog collector audit forwarding is tested against.
# Prints nothing when everything is already there, one "==> installing X" line per install,
# and exits non-zero with a message on stderr when an install fails.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() { printf 'install-test-tools: %s\n' "$*" >&2; exit 1; }

if ! command -v certtool >/dev/null 2>&1; then
    log "installing gnutls-bin (certtool)"
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnutls-bin; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "could not install gnutls-bin (certtool) with apt-get"
    fi
    rm -f "$apt_log"
    command -v certtool >/dev/null 2>&1 || die "gnutls-bin installed but certtool is not on PATH"
fi

# /usr/bin/time -v measures the client's memory while it signs a 1 GiB file.
if [ ! -x /usr/bin/time ]; then
    log "installing time (/usr/bin/time)"
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "could not install time (/usr/bin/time) with apt-get"
    fi
    rm -f "$apt_log"
fi

# pip_install VENV PACKAGE BIN...: PACKAGE in its own virtualenv VENV, unless every BIN is
# already there; a virtualenv missing one is made afresh.
pip_install() {
    local venv=$1 package=$2 bin missing=0
    shift 2
    for bin in "$@"; do
        [ -x "$venv/bin/$bin" ] || missing=1
    done
    [ "$missing" = 1 ] || return 0
    log "installing $package into $venv"
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to install $package"
    rm -rf "$venv"
    pip_log=$(mktemp)
    if ! { python3 -m venv "$venv" &&
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$package"; } >"$pip_log" 2>&1; then
        cat "$pip_log" >&2
        rm -f "$pip_log"
        die "could not install $package into $venv (python3 -m venv / pip install $package)"
    fi
    rm -f "$pip_log"
    for bin in "$@"; do
        [ -x "$venv/bin/$bin" ] || die "$package installed but $venv/bin/$bin is missing"
    done
}

pip_install "$HOME/.cache/kagi-test-tools/venv" pkilint lint_pkix_cert lint_crl
# sigstore-python verifies kagi's Sigstore bundles offline (issue 5). It gets its own virtualenv
# so its pinned cryptography and pydantic versions cannot disturb pkilint's.
pip_install "$HOME/.cache/kagi-test-tools/sigstore-venv" sigstore sigstore
# The operations tests (signer ops:: and openapi::) check the served OpenAPI document with an
# independent validator and read /metrics with Prometheus's own Python client's parser.
ops_venv="$HOME/.cache/kagi-test-tools/ops-venv"
pip_install "$ops_venv" openapi-spec-validator openapi-spec-validator
if ! "$ops_venv/bin/python" -c 'import prometheus_client' >/dev/null 2>&1; then
    log "installing prometheus-client into $ops_venv"
    pip_log=$(mktemp)
    if ! "$ops_venv/bin/python" -m pip install -q --disable-pip-version-check prometheus-client >"$pip_log" 2>&1; then
        cat "$pip_log" >&2
        rm -f "$pip_log"
        die "could not install prometheus-client into $ops_venv (pip install prometheus-client)"
    fi
    rm -f "$pip_log"
fi

# pkcs11-tool (Debian package opensc) and p11tool (gnutls-bin, above) drive the PKCS#11 module
# (pkcs11/tests/pkcs11_acceptance.sh).
if ! command -v pkcs11-tool >/dev/null 2>&1; then
    log "installing opensc (pkcs11-tool)"
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opensc; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "could not install opensc (pkcs11-tool) with apt-get"
    fi
    rm -f "$apt_log"
    command -v pkcs11-tool >/dev/null 2>&1 || die "opensc installed but pkcs11-tool is not on PATH"
fi

# SoftHSM2 (Debian softhsm2: libsofthsm2.so and softhsm2-util) is the peer the PKCS#11 signing
# bench measures kagi's module beside (benches/benches/pkcs11_sign.rs).
if ! command -v softhsm2-util >/dev/null 2>&1; then
    log "installing softhsm2"
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "could not install softhsm2 with apt-get"
    fi
    rm -f "$apt_log"
    command -v softhsm2-util >/dev/null 2>&1 || die "softhsm2 installed but softhsm2-util is not on PATH"
fi

# osslsigncode signs a PE file through the PKCS#11 module with OpenSSL's pkcs11 engine
# (libengine-pkcs11-openssl); OpenSSL 3's pkcs11-provider (Debian bookworm has it in backports
# only, so the backports suite is added when missing) signs certificates and CMS through it
# (pkcs11/tests/pkcs11_signing_tools.sh).
engines_dir="$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')"
modules_dir="$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')"
p11_packages=()
command -v osslsigncode >/dev/null 2>&1 || p11_packages+=(osslsigncode)
[ -f "$engines_dir/pkcs11.so" ] || p11_packages+=(libengine-pkcs11-openssl)
if [ ! -f "$modules_dir/pkcs11.so" ]; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    if [ "$codename" = bookworm ] &&
        ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding the bookworm-backports suite to apt (for pkcs11-provider)"
        printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm-backports" \
            "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
            >/etc/apt/sources.list.d/bookworm-backports.sources || die "cannot add the bookworm-backports apt source"
    fi
    if [ "$codename" = bookworm ]; then
        p11_packages+=(pkcs11-provider/bookworm-backports)
    else
        p11_packages+=(pkcs11-provider)
    fi
fi
if [ "${#p11_packages[@]}" -gt 0 ]; then
    log "installing ${p11_packages[*]}"
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${p11_packages[@]}"; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "could not install ${p11_packages[*]} with apt-get"
    fi
    rm -f "$apt_log"
    command -v osslsigncode >/dev/null 2>&1 || die "osslsigncode installed but not on PATH"
    [ -f "$engines_dir/pkcs11.so" ] || die "libengine-pkcs11-openssl installed but $engines_dir/pkcs11.so is missing"
    [ -f "$modules_dir/pkcs11.so" ] || die "pkcs11-provider installed but $modules_dir/pkcs11.so is missing"
fi

# The console's browser test (web-ui/tests/console_acceptance.sh): Debian's chromium, driven by
# playwright-core from npm in $HOME/.cache/kagi-test-tools/playwright (playwright-core brings no
# browser of its own; `npx playwright install` downloads one and cannot work here).
if [ ! -x /usr/bin/chromium ]; then
    log "installing chromium"
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "could not install chromium with apt-get"
    fi
    rm -f "$apt_log"
fi
pw_dir="$HOME/.cache/kagi-test-tools/playwright"
if [ ! -f "$pw_dir/node_modules/playwright-core/package.json" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        log "installing npm"
        apt_log=$(mktemp)
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; } >"$apt_log" 2>&1; then
            cat "$apt_log" >&2
            rm -f "$apt_log"
            die "could not install npm with apt-get"
        fi
        rm -f "$apt_log"
    fi
    log "installing playwright-core into $pw_dir"
    mkdir -p "$pw_dir"
    npm_log=$(mktemp)
    if ! npm install --prefix "$pw_dir" --no-audit --no-fund --silent playwright-core@1 >"$npm_log" 2>&1; then
        cat "$npm_log" >&2
        rm -f "$npm_log"
        die "could not install playwright-core with npm"
    fi
    rm -f "$npm_log"
fi

# Audit forwarding (signer/tests/it/syslog.rs) is tested against Debian's rsyslog with its GnuTLS
# stream driver (RFC 5425), which the test runs as its own process in a temporary folder.
syslog_packages=()
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || syslog_packages+=(rsyslog)
[ -f /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 ||
    syslog_packages+=(rsyslog-gnutls)
if [ "${#syslog_packages[@]}" -gt 0 ]; then
    log "installing ${syslog_packages[*]}"
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${syslog_packages[@]}"; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "could not install ${syslog_packages[*]} with apt-get"
    fi
    rm -f "$apt_log"
    [ -x /usr/sbin/rsyslogd ] || die "rsyslog installed but /usr/sbin/rsyslogd is missing"
    ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || die "rsyslog-gnutls installed but its lmnsd_gtls.so is missing"
fi
