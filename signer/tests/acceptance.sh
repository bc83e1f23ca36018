#!/usr/bin/env bash
# Acceptance item 2 of issue 2, run exactly as a new user would:
#   shell 1, in an empty folder:  cargo run --release -p signer -- serve
#   shell 2, in the same folder:  kagi key create / sign / public, then openssl verifies
# for ec-p256, ec-p384, rsa-2048, rsa-3072 and ed25519. Exits non-zero on any failure.
# Needs port 8443 free (it is the default, and the point is to use no flags).
# scripts/test.sh sets KAGI_BIN to the binary its `cargo test` just built, so the suite compiles
# kagi once; shell 1 then runs that binary's `serve` instead of `cargo run --release`, which
# would compile all of kagi a second time in another profile. It also sets
# KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT so that suites side by side do not collide: then
# `serve` gets --listen/--public-listen and shell 2 gets KAGI_URL (see serve_lib.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
KAGI="${KAGI_BIN:-$TARGET/release/kagi}"
HTTPS_PORT="${KAGI_TEST_HTTPS_PORT:-8443}"
PUBLIC_PORT="${KAGI_TEST_PUBLIC_PORT:-8080}"
HTTPS=https://127.0.0.1:$HTTPS_PORT
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

fail() { echo "ACCEPTANCE FAILED: $*" >&2; [[ -f "$WORK/serve.log" ]] && tail -n 30 "$WORK/serve.log" >&2; exit 1; }

cd "$WORK"
if [[ -n "${KAGI_BIN:-}" ]]; then
  echo "== shell 1: $KAGI serve ${SERVE_FLAGS[*]}  (in $WORK; the binary scripts/test.sh built)"
  "$KAGI" serve ${SERVE_FLAGS[@]+"${SERVE_FLAGS[@]}"} >"$WORK/serve.log" 2>&1 &
else
  echo "== shell 1: cargo run --release -p signer -- serve ${SERVE_FLAGS[*]}  (in $WORK)"
  # --manifest-path because this folder is not the repository; everything else is the README command.
  cargo run --release --manifest-path "$REPO/Cargo.toml" -p signer -- serve ${SERVE_FLAGS[@]+"${SERVE_FLAGS[@]}"} >"$WORK/serve.log" 2>&1 &
fi
SERVER_PID=$!

# The first release build can take many minutes; wait while the process is alive.
for _ in $(seq 1 3600); do
  kill -0 "$SERVER_PID" 2>/dev/null || fail "kagi serve exited"
  if [[ -f kagi-data/tls-ca.pem && -f kagi-data/admin.token ]] &&
     curl -sf --cacert kagi-data/tls-ca.pem "$HTTPS/healthz" >/dev/null; then
    break
  fi
  sleep 1
done
curl -sf --cacert kagi-data/tls-ca.pem "$HTTPS/healthz" >/dev/null || fail "service never became healthy"
grep -q "DEVELOPMENT" serve.log || fail "no development-instance warning printed"
grep -q "$HTTPS/ui" serve.log || fail "console address not printed"
[[ "$(stat -c %a kagi-data/admin.token)" == 600 ]] || fail "admin.token is not mode 0600"

echo "== shell 2: kagi (from $KAGI) in the same folder, no flags, no environment"
[[ -x "$KAGI" ]] || fail "$KAGI not built"
unset KAGI_URL KAGI_CA KAGI_TOKEN
[[ "$HTTPS_PORT" == 8443 ]] || export KAGI_URL="$HTTPS"
head -c 300000 /dev/urandom > app.bin

for alg in ec-p256 ec-p384 rsa-2048 rsa-3072 ed25519; do
  key="fw-$alg"
  echo "-- $alg"
  "$KAGI" key create --name "$key" --alg "$alg" --usage-limit 3 >/dev/null || fail "$alg: key create"
  for i in 1 2 3; do
    "$KAGI" sign --key "$key" --format raw app.bin -o app.sig || fail "$alg: signature $i"
  done
  if "$KAGI" sign --key "$key" --format raw app.bin -o app4.sig 2>err.txt; then
    fail "$alg: a fourth signature was granted"
  fi
  grep -q usage_limit_reached err.txt || fail "$alg: fourth sign did not print usage_limit_reached: $(cat err.txt)"
  "$KAGI" key public "$key" > fw.pem || fail "$alg: key public"
  case "$alg" in
    ed25519)
      # Raw Ed25519 signs the SHA-256 digest bytes as the message (see README).
      openssl dgst -sha256 -binary -out app.sha256 app.bin
      out="$(openssl pkeyutl -verify -pubin -inkey fw.pem -rawin -in app.sha256 -sigfile app.sig)" ;;
    *) out="$(openssl dgst -sha256 -verify fw.pem -signature app.sig app.bin)" ;;
  esac || fail "$alg: openssl verification failed: $out"
  echo "$out"
  [[ "$out" == "Verified OK" || "$out" == "Signature Verified Successfully" ]] || fail "$alg: unexpected openssl output: $out"
  "$KAGI" key show "$key" | grep -q "usage count: *3" || fail "$alg: key show does not say 3 uses"
done

echo "-- ec-p384 with its full-strength digest"
"$KAGI" key create --name p384-strong --alg ec-p384 >/dev/null || fail "p384 key create"
"$KAGI" sign --key p384-strong --digest sha384 app.bin -o app384.sig || fail "p384 sha384 sign"
"$KAGI" key public p384-strong > p384.pem
[[ "$(openssl dgst -sha384 -verify p384.pem -signature app384.sig app.bin)" == "Verified OK" ]] || fail "p384 sha384 verify"

"$KAGI" audit verify || fail "audit verify"
echo "ACCEPTANCE PASSED"
