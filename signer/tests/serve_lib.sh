# Shared by the acceptance scripts (source it after `set -euo pipefail`): the `kagi` binary, a
# work folder removed on exit (KEEP=1 keeps it), `fail`/`ok` reporting, and `start_kagi`, which
# runs `kagi serve` there and waits until it is healthy.
#
# Run by hand they use the release binary on the default ports (8443 HTTPS, 8080 plain HTTP)
# with no flags and no client settings, as a new user would. scripts/test.sh sets
#   KAGI_BIN                the binary its `cargo test` built, so the suite compiles kagi once;
#   KAGI_TEST_HTTPS_PORT    ports of its own, so two suites (or a suite and a kagi someone
#   KAGI_TEST_PUBLIC_PORT   runs) can share a machine: then `kagi serve` gets --listen and
#                           --public-listen, and client commands get KAGI_URL.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
KAGI="${KAGI_BIN:-$TARGET/release/kagi}"
HTTPS_PORT="${KAGI_TEST_HTTPS_PORT:-8443}"
PUBLIC_PORT="${KAGI_TEST_PUBLIC_PORT:-8080}"
HTTPS=https://127.0.0.1:$HTTPS_PORT
PUBLIC=http://127.0.0.1:$PUBLIC_PORT
# The flags `kagi serve` needs for these ports: none for the defaults.
SERVE_FLAGS=()
[[ "$HTTPS_PORT" == 8443 ]] || SERVE_FLAGS+=(--listen "127.0.0.1:$HTTPS_PORT")
[[ "$PUBLIC_PORT" == 8080 ]] || SERVE_FLAGS+=(--public-listen "127.0.0.1:$PUBLIC_PORT")
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
    fail "something already listens on 127.0.0.1:$HTTPS_PORT or 127.0.0.1:$PUBLIC_PORT"
  fi
}

# start_kagi: `kagi serve` in $WORK (the current folder from here on), healthy over HTTPS.
start_kagi() {
  cd "$WORK"
  "$KAGI" serve ${SERVE_FLAGS[@]+"${SERVE_FLAGS[@]}"} >serve.log 2>&1 &
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
  # Off the default port the client needs the address; everything else stays the defaults.
  [[ "$HTTPS_PORT" == 8443 ]] || export KAGI_URL="$HTTPS"
}
