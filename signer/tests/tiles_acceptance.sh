#!/usr/bin/env bash
# The transparency log as C2SP tlog-tiles (issue 15, acceptance 6): kagi signs enough digests
# to fill more than one full tile (> 256 entries), then signer/tests/tiles_check.py, written
# from the C2SP tlog-tiles spec with Python's standard library only, fetches /log/checkpoint
# and the tiles and recomputes the checkpoint's root, over HTTPS and over the plain-HTTP
# listener, and checks the entry bundles with an auditor's token. Entry bundles follow the
# rule of /log/entries: refused without a credential, 404 to an identity that is not named by
# every entry in the bundle.
# Needs ports 8443 and 8080 free (or those in KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT, see
# serve_lib.sh), curl and python3; the binary must be built (cargo build --release -p signer).
# KEEP=1 keeps the work folder.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"
CHECK="$REPO/signer/tests/tiles_check.py"
need_tools curl python3 xargs

start_kagi
ok "kagi serve is up in $WORK"
CA=kagi-data/tls-ca.pem
ADMIN="$(cat kagi-data/admin.token)"

"$KAGI" key create --name tiles --alg ec-p256 >/dev/null || fail "key create"
# 300 signatures of distinct digests, 8 at a time: 300 log entries, one full level-0 tile and a
# partial one of width 44, and a partial level-1 tile of width 1.
seq 1 300 | xargs -P 8 -I{} sh -c '
  d="$(printf "tiles %s" "$1" | sha256sum | cut -c1-64)"
  curl -sf --cacert "$2" -H "Authorization: Bearer $3" -H "Content-Type: application/json" \
    -d "{\"key\":\"tiles\",\"digest\":\"$d\"}" "$4/api/v1/sign" >/dev/null || { echo "sign $1 failed" >&2; exit 255; }
' _ {} "$CA" "$ADMIN" "$HTTPS" || fail "signing 300 digests"
size="$(curl -sf --cacert "$CA" "$HTTPS/log/checkpoint" | sed -n 2p)"
[[ "$size" -ge 300 ]] || fail "the log has $size entries after 300 signatures"
ok "300 signatures logged (checkpoint size $size)"

VKEY="$(curl -sf --cacert "$CA" "$HTTPS/log/key")" || fail "GET /log/key"
"$KAGI" identity create --name tiles-auditor --kind person --roles auditor >auditor.token 2>identity.err ||
  fail "identity create tiles-auditor: $(cat identity.err)"
"$KAGI" identity create --name tiles-ci --kind pipeline --roles user >ci.token 2>identity.err ||
  fail "identity create tiles-ci: $(cat identity.err)"

python3 "$CHECK" "$HTTPS/log" --ca "$CA" --vkey "$VKEY" --token "$(cat auditor.token)" ||
  fail "tiles_check.py over HTTPS"
ok "tiles_check.py recomputed the root and checked the entry bundles over HTTPS"
python3 "$CHECK" "$PUBLIC/log" --vkey "$VKEY" || fail "tiles_check.py over plain HTTP"
ok "tiles_check.py recomputed the root over the plain-HTTP listener"

# Entry bundles are private like /log/entries.
code="$(curl -s -o body.txt -w '%{http_code}' --cacert "$CA" "$HTTPS/log/tile/entries/000")"
[[ "$code" == 401 ]] || fail "an entry bundle without a credential was answered $code: $(cat body.txt)"
code="$(curl -s -o body.txt -w '%{http_code}' "$PUBLIC/log/tile/entries/000")"
[[ "$code" == 401 ]] || fail "an entry bundle on plain HTTP was answered $code: $(cat body.txt)"
code="$(curl -s -o body.txt -w '%{http_code}' --cacert "$CA" -H "Authorization: Bearer $(cat ci.token)" "$HTTPS/log/tile/entries/000")"
[[ "$code" == 404 ]] || fail "an entry bundle for an identity it does not name was answered $code: $(cat body.txt)"
grep -q "every entry in it names it" body.txt || fail "the 404 does not say why: $(cat body.txt)"
ok "entry bundles: 401 without a credential, 404 to an identity not named by every entry"

# Malformed tile paths say what the form is.
code="$(curl -s -o body.txt -w '%{http_code}' --cacert "$CA" "$HTTPS/log/tile/0/1")"
[[ "$code" == 400 ]] && grep -q "x001/234" body.txt || fail "tile/0/1 was answered $code: $(cat body.txt)"
code="$(curl -s -o body.txt -w '%{http_code}' --cacert "$CA" "$HTTPS/log/tile/0/x000/001")"
[[ "$code" == 400 ]] || fail "a non-canonical index was answered $code: $(cat body.txt)"
ok "malformed tile paths are refused with the form to use"
