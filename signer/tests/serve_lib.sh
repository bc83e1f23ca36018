# Shared by ca_acceptance.sh, est_acceptance.sh and signing_acceptance.sh (source it after
# `set -euo pipefail`): the release `kagi` binary, a work folder removed on exit (KEEP=1 keeps
# it), `fail`/`ok` reporting, and `start_kagi`, which runs `kagi serve` there on the default
# ports (8443 HTTPS, 8080 plain HTTP) and waits until it is healthy.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
KAGI="$TARGET/release/kagi"
HTTPS=https://127.0.0.1:8443
PUBLIC=http://127.0.0.1:8080
WORK="$(mktemp -d)"
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

fail() {
  echo "FAILED: $*" >&2
  [[ -f "$WORK/serve.log" ]] && { echo "--- last lines of serve.log:" >&2; tail -n 20 "$WORK/serve.log" >&2; }
  exit 1
}
ok() { echo "ok: $*"; }

# need_tools TOOL...: each on PATH, the binary built, the ports free.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (bash scripts/install-test-tools.sh)"
  done
  [[ -x "$KAGI" ]] || fail "$KAGI is not built (cargo build --release -p signer)"
  if curl -s -o /dev/null --max-time 2 -k "$HTTPS/healthz" || curl -s -o /dev/null --max-time 2 "$PUBLIC/healthz"; then
    fail "something already listens on 127.0.0.1:8443 or 127.0.0.1:8080"
  fi
}

# start_kagi: `kagi serve` in $WORK (the current folder from here on), healthy over HTTPS.
start_kagi() {
  cd "$WORK"
  "$KAGI" serve >serve.log 2>&1 &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 120); do
    kill -0 "$SERVER_PID" 2>/dev/null || fail "kagi serve exited"
    if [[ -f kagi-data/tls-ca.pem && -f kagi-data/admin.token ]] &&
       curl -sf --cacert kagi-data/tls-ca.pem "$HTTPS/healthz" >/dev/null; then
      break
    fi
    sleep 0.5
  done
  curl -sf --cacert kagi-data/tls-ca.pem "$HTTPS/healthz" >/dev/null || fail "the service never became healthy"
  unset KAGI_URL KAGI_CA KAGI_TOKEN
}
