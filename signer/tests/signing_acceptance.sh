#!/usr/bin/env bash
# Code-signing acceptance (issue 5, items 1 and 2), with tools nobody here wrote:
#   1. `kagi sign --format cms` makes a detached CMS signature that
#      `openssl cms -verify -binary -inform DER -in app.p7s -content app.bin -CAfile root.pem
#      -purpose any` accepts, and rejects once a byte of app.bin changes; `certtool
#      --verify-purpose 1.3.6.1.5.5.7.3.3` accepts the signing certificate's chain;
#      with --timestamp the signature carries an RFC 3161 token, and openssl still verifies it;
#   2. a timestamp token from /tsa, requested with `openssl ts -query -data app.bin -sha256 -cert`
#      and posted with curl and a bearer token, passes `openssl ts -verify -data app.bin -in
#      resp.tsr -CAfile root.pem` (and fails for other data); anonymous requests get 401 until
#      `kagi serve --open-tsa`, after which they are answered over plain HTTP too.
# Needs ports 8443 and 8080 free (or those in KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT, see
# serve_lib.sh), openssl, curl and certtool (bash scripts/install-test-tools.sh);
# the binary must be built (cargo build --release -p signer). KEEP=1 keeps the work folder.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

need_tools openssl curl certtool

start_kagi
ok "kagi serve is up in $WORK"

"$KAGI" ca show root -o root.pem >/dev/null || fail "kagi ca show root"
head -c 1000000 /dev/urandom > app.bin

# ---------------------------------------------------------------------------------------------
# 1. CMS
for alg in ec-p256 ec-p384 rsa-2048; do
  key="release-$alg"
  "$KAGI" key create --name "$key" --alg "$alg" >/dev/null || fail "$alg: key create"
  "$KAGI" key certify "$key" --subject "CN=Release $alg,O=Acme" -o "$key.pem" --chain >/dev/null ||
    fail "$alg: key certify"
  "$KAGI" sign --key "$key" --format cms app.bin -o app.p7s >/dev/null || fail "$alg: sign --format cms"
  out="$(openssl cms -verify -binary -inform DER -in app.p7s -content app.bin -CAfile root.pem -purpose any -out /dev/null 2>&1)" ||
    fail "$alg: openssl cms -verify refused the signature: $out"
  grep -q "Verification successful" <<<"$out" || fail "$alg: openssl cms -verify said: $out"
  cp app.bin changed.bin
  printf '\x01' | dd of=changed.bin bs=1 seek=4242 conv=notrunc status=none
  cmp -s app.bin changed.bin && printf '\x02' | dd of=changed.bin bs=1 seek=4242 conv=notrunc status=none
  if openssl cms -verify -binary -inform DER -in app.p7s -content changed.bin -CAfile root.pem -purpose any -out /dev/null 2>/dev/null; then
    fail "$alg: openssl cms -verify accepted a changed file"
  fi
  # certtool: leaf, intermediate, root in that order; the purpose is code signing.
  cat "$key.pem" > chain.pem
  out="$(certtool --verify --verify-purpose 1.3.6.1.5.5.7.3.3 --load-ca-certificate root.pem --infile chain.pem 2>&1)" ||
    fail "$alg: certtool --verify-purpose codeSigning: $out"
  grep -q "Chain verification output: Verified" <<<"$out" || fail "$alg: certtool said: $out"
  ok "$alg: CMS signature verifies with openssl cms, fails for a changed file; certtool accepts the chain for codeSigning"
done

"$KAGI" sign --key release-ec-p256 --format cms --timestamp app.bin -o app-ts.p7s >/dev/null ||
  fail "sign --format cms --timestamp"
openssl cms -verify -binary -inform DER -in app-ts.p7s -content app.bin -CAfile root.pem -purpose any -out /dev/null 2>/dev/null ||
  fail "openssl cms -verify refused the timestamped signature"
openssl cms -cmsout -print -inform DER -in app-ts.p7s | grep -q "id-smime-aa-timeStampToken" ||
  fail "the timestamped signature carries no id-smime-aa-timeStampToken attribute"
ok "CMS signature with an RFC 3161 timestamp token (unsigned attribute) verifies"

# ---------------------------------------------------------------------------------------------
# 2. RFC 3161 with openssl ts and curl. The TSA answers identities: a user sends their token
# over HTTPS. Anonymous requests are refused (401) until the operator turns on the open TSA.
TOKEN="$(cat kagi-data/admin.token)"
openssl ts -query -data app.bin -sha256 -cert -out req.tsq 2>/dev/null || fail "openssl ts -query"
code="$(curl -s -o resp.tsr -w '%{http_code}' --cacert kagi-data/tls-ca.pem -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/timestamp-query' --data-binary @req.tsq "$HTTPS/tsa")"
[[ "$code" == 200 ]] || fail "POST /tsa with a token answered $code"
out="$(openssl ts -verify -data app.bin -in resp.tsr -CAfile root.pem 2>&1)" || fail "openssl ts -verify: $out"
grep -q "Verification: OK" <<<"$out" || fail "openssl ts -verify said: $out"
if openssl ts -verify -data changed.bin -in resp.tsr -CAfile root.pem >/dev/null 2>&1; then
  fail "openssl ts -verify accepted the token for other data"
fi
for url in "$HTTPS/tsa" "$PUBLIC/tsa"; do
  code="$(curl -s -o anon.out -w '%{http_code}' --cacert kagi-data/tls-ca.pem \
    -H 'Content-Type: application/timestamp-query' --data-binary @req.tsq "$url")"
  [[ "$code" == 401 ]] || fail "anonymous POST $url answered $code, not 401"
  grep -q "open_tsa" anon.out || fail "the 401 from $url does not say how to get a timestamp: $(cat anon.out)"
done
ok "openssl ts: a token from /tsa (with a credential) verifies for app.bin and not for other data; anonymous requests get 401"

# The operator turns on the open TSA: anonymous requests over the plain-HTTP listener, without
# a nonce, are answered.
kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
SERVE_FLAGS+=(--open-tsa)
start_kagi
openssl ts -query -data app.bin -sha256 -cert -no_nonce -out req2.tsq 2>/dev/null
curl -sf -o resp2.tsr -H 'Content-Type: application/timestamp-query' --data-binary @req2.tsq "$PUBLIC/tsa" ||
  fail "POST $PUBLIC/tsa (open TSA)"
openssl ts -verify -data app.bin -in resp2.tsr -CAfile root.pem 2>&1 | grep -q "Verification: OK" ||
  fail "openssl ts -verify (open TSA, no nonce, plain HTTP)"
ok "kagi serve --open-tsa: an anonymous token from $PUBLIC/tsa (no nonce) verifies"

# ---------------------------------------------------------------------------------------------
# 5. A 1 GiB file: the client hashes it streaming, in constant memory (measured, not assumed).
[[ -x /usr/bin/time ]] || fail "/usr/bin/time is not installed (bash scripts/install-test-tools.sh)"
truncate -s 1G big.bin
/usr/bin/time -v "$KAGI" sign --key release-ec-p256 --format cms big.bin -o big.p7s >/dev/null 2>time.txt ||
  fail "signing the 1 GiB file: $(tail -n 5 time.txt)"
rss_kb="$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' time.txt)"
[[ -n "$rss_kb" ]] || fail "no maximum resident set size in /usr/bin/time's output"
(( rss_kb < 65536 )) || fail "signing a 1 GiB file took ${rss_kb} KiB of memory (limit 64 MiB)"
openssl cms -verify -binary -inform DER -in big.p7s -content big.bin -CAfile root.pem -purpose any -out /dev/null 2>/dev/null ||
  fail "openssl cms -verify refused the 1 GiB file's signature"
ok "signing a 1 GiB file: the client's maximum resident set was ${rss_kb} KiB (under 64 MiB)"

"$KAGI" audit verify >/dev/null || fail "kagi audit verify"
echo "SIGNING ACCEPTANCE PASSED"
