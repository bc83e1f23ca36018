#!/usr/bin/env bash
# PKCS#11 acceptance with signing tools (issue 13, items 2 and 3), against a fresh `kagi serve
# --open-tsa`:
#   2. OpenSSL 3 with pkcs11-provider (PKCS11_PROVIDER_MODULE=libkagi_pkcs11.so), given the
#      pkcs11: URI of a kagi key (RSA-2048 and P-256): `openssl req -x509` makes a self-signed
#      certificate that `openssl verify` accepts and whose public key is the one kagi holds;
#      `openssl cms -sign` makes a signature `openssl cms -verify` accepts (and refuses for
#      changed content); kagi counts every signature;
#   3. osslsigncode signs a small PE file through the module (OpenSSL's pkcs11 engine,
#      libengine-pkcs11-openssl, loads libkagi_pkcs11.so; the key is a pkcs11: URI), with RSA-2048
#      and P-256 keys and the key's kagi certificate chain; `osslsigncode verify` accepts the
#      signature against kagi's root. With `-ts` pointing at kagi's /tsa (open, over the plain
#      HTTP listener) the RFC 3161 timestamp shows in the verify output and verifies too.
# The PE file is made by make_pe.py beside this script, field by field.
# Needs osslsigncode, OpenSSL's pkcs11 engine and pkcs11-provider, openssl, curl and python3 (bash
# scripts/install-test-tools.sh), the kagi binary and the module (cargo build -p kagi-pkcs11;
# KAGI_PKCS11_MODULE overrides its path). KEEP=1 keeps the work folder.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../../signer/tests/serve_lib.sh"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE="${KAGI_PKCS11_MODULE:-$TARGET/debug/libkagi_pkcs11.so}"
[[ -f "$MODULE" ]] || fail "$MODULE is not built (cargo build -p kagi-pkcs11)"
need_tools osslsigncode openssl curl python3
engines="$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')"
[[ -f "$engines/pkcs11.so" ]] || fail "OpenSSL's pkcs11 engine is not installed in $engines (bash scripts/install-test-tools.sh installs libengine-pkcs11-openssl)"
modules="$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')"
[[ -f "$modules/pkcs11.so" ]] || fail "pkcs11-provider is not installed in $modules (bash scripts/install-test-tools.sh installs it from bookworm-backports)"

SERVE_FLAGS+=(--open-tsa)
start_kagi
ok "kagi serve --open-tsa is up in $WORK"

"$KAGI" ca show root -o root.pem >/dev/null || fail "kagi ca show root"
python3 "$HERE/make_pe.py" app.exe || fail "make_pe.py"
# The unsigned file is a PE osslsigncode understands, with no signature yet.
out="$(osslsigncode verify -in app.exe 2>&1)" && fail "osslsigncode verified an unsigned file: $out"
grep -q "No signature found" <<<"$out" || fail "osslsigncode on the unsigned PE: $out"

uses() { "$KAGI" key show "$1" | awk '/usage count:/ { print $3 }'; }

# ---------------------------------------------------------------------------------------------
# 2. OpenSSL 3 with pkcs11-provider.
export PKCS11_PROVIDER_MODULE="$MODULE"
p11ssl() { openssl "$1" -provider pkcs11 -provider default "${@:2}" 2>&1; }
echo "signed with a kagi key through OpenSSL's pkcs11-provider" >data.txt
echo "other content" >other.txt
for spec in ossl-rsa:rsa-2048:sha256WithRSAEncryption ossl-ec:ec-p256:ecdsa-with-SHA256; do
  IFS=: read -r key alg sigalg <<<"$spec"
  "$KAGI" key create --name "$key" --alg "$alg" >/dev/null || fail "kagi key create $key"
  uri="pkcs11:token=kagi;object=$key;type=private"
  before="$(uses "$key")"
  out="$(p11ssl req -x509 -new -key "$uri" -subj "/CN=$key self-signed/O=Acme" -days 1 -sha256 -out "$key.crt")" ||
    fail "openssl req -x509 with $uri: $out"
  out="$(openssl verify -CAfile "$key.crt" "$key.crt" 2>&1)" || fail "openssl verify of $key's self-signed certificate: $out"
  openssl x509 -in "$key.crt" -noout -text | grep -q "Signature Algorithm: $sigalg" ||
    fail "$key's certificate is not signed with $sigalg"
  [[ "$(openssl x509 -in "$key.crt" -noout -pubkey)" == "$("$KAGI" key public "$key")" ]] ||
    fail "the certificate openssl made for $uri does not hold kagi's public key of $key"

  out="$(p11ssl cms -sign -binary -in data.txt -signer "$key.crt" -inkey "$uri" -md sha256 -outform DER -out "$key.p7s")" ||
    fail "openssl cms -sign with $uri: $out"
  out="$(openssl cms -verify -binary -inform DER -in "$key.p7s" -content data.txt -CAfile "$key.crt" -purpose any -out /dev/null 2>&1)" ||
    fail "openssl cms -verify refused the $key signature: $out"
  grep -q "CMS Verification successful" <<<"$out" || fail "openssl cms -verify ($key): $out"
  openssl cms -verify -binary -inform DER -in "$key.p7s" -content other.txt -CAfile "$key.crt" -purpose any -out /dev/null >/dev/null 2>&1 &&
    fail "openssl cms -verify accepted the $key signature for other content"
  after="$(uses "$key")"
  (( after >= before + 2 )) || fail "kagi did not count the certificate and CMS signatures of $key ($before, then $after)"
done
unset PKCS11_PROVIDER_MODULE
ok "OpenSSL 3 with pkcs11-provider: openssl req -x509 and openssl cms -sign with kagi keys (RSA-2048, P-256) verify, and kagi counted each signature"

# ---------------------------------------------------------------------------------------------
# 3. osslsigncode.
for spec in authenticode-rsa:rsa-2048 authenticode-ec:ec-p256; do
  key="${spec%%:*}"
  "$KAGI" key create --name "$key" --alg "${spec#*:}" >/dev/null || fail "kagi key create $key"
  "$KAGI" key certify "$key" --subject "CN=$key,O=Acme" --chain -o "$key.chain.pem" >/dev/null ||
    fail "kagi key certify $key"
  before="$(uses "$key")"

  out="$(osslsigncode sign -pkcs11module "$MODULE" -key "pkcs11:token=kagi;object=$key;type=private" \
    -certs "$key.chain.pem" -h sha256 -n "kagi PKCS#11 test" -in app.exe -out "$key.exe" 2>&1)" ||
    fail "osslsigncode sign through the module with $key: $out"
  out="$(osslsigncode verify -in "$key.exe" -CAfile root.pem 2>&1)" ||
    fail "osslsigncode verify refused the $key signature: $out"
  grep -q "Signature verification: ok" <<<"$out" || fail "osslsigncode verify ($key): $out"
  grep -q "CN=$key" <<<"$out" || fail "the signer is not $key's certificate: $out"
  after="$(uses "$key")"
  (( after > before )) || fail "kagi counted no use of $key for the signature ($before, then $after)"

  # A changed file no longer verifies.
  cp "$key.exe" tampered.exe
  printf '\x90' | dd of=tampered.exe bs=1 seek=$((0x201)) conv=notrunc status=none
  osslsigncode verify -in tampered.exe -CAfile root.pem >/dev/null 2>&1 &&
    fail "osslsigncode verify accepted a changed file ($key)"

  out="$(osslsigncode sign -pkcs11module "$MODULE" -key "pkcs11:token=kagi;object=$key;type=private" \
    -certs "$key.chain.pem" -h sha256 -ts "$PUBLIC/tsa" -in app.exe -out "$key.ts.exe" 2>&1)" ||
    fail "osslsigncode sign -ts $PUBLIC/tsa with $key: $out"
  out="$(osslsigncode verify -in "$key.ts.exe" -CAfile root.pem -TSA-CAfile root.pem 2>&1)" ||
    fail "osslsigncode verify refused the timestamped $key signature: $out"
  grep -q "Signature verification: ok" <<<"$out" || fail "osslsigncode verify ($key, timestamped): $out"
  grep -q "Timestamp time: " <<<"$out" || fail "no timestamp in the verify output ($key): $out"
  grep -q "Timestamp Server Signature verification: ok" <<<"$out" ||
    fail "the timestamp did not verify ($key): $out"
done
ok "osslsigncode signs a PE file through the module (RSA-2048 and P-256), verify accepts it, rejects a changed file, and shows kagi's /tsa timestamp"

echo "PKCS#11 signing tools acceptance: all passed"
