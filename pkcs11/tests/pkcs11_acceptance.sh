#!/usr/bin/env bash
# PKCS#11 acceptance (issue 13, items 1, 4 and 5 with real tools; items 5 and 8 through the C
# ABI are the Rust tests next to this script), against a fresh `kagi serve`:
#   1. `pkcs11-tool --module libkagi_pkcs11.so` -L, -O, --keypairgen (P-256, P-384, RSA-2048,
#      Ed25519) and --sign with every mechanism; the signatures verify with `openssl dgst
#      -verify` (Ed25519: `openssl pkeyutl -verify -rawin`) against the public key kagi gives;
#      `--read-object --type privkey` gives nothing;
#   4. `p11tool --list-all` with the module shows the keys and a key's certificate, and
#      p11tool generates keys and checks their signatures (--test-sign);
#   5. a key with a usage limit signs exactly that often from parallel pkcs11-tool processes,
#      the rest get CKR_KEY_NOT_ACTIVE (CKR_VENDOR_DEFINED+0x136);
#   and with no token configured the user PIN is the partition's token.
# The module runs beside the dev instance with no configuration: it reads KAGI_URL, KAGI_CA and
# KAGI_TOKEN (or ./kagi-data/admin.token) like the `kagi` CLI.
# Needs pkcs11-tool (opensc), p11tool (gnutls-bin), openssl and curl (bash
# scripts/install-test-tools.sh), the kagi binary and the module (cargo build -p kagi-pkcs11;
# KAGI_PKCS11_MODULE overrides its path). KEEP=1 keeps the work folder.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../../signer/tests/serve_lib.sh"

MODULE="${KAGI_PKCS11_MODULE:-$TARGET/debug/libkagi_pkcs11.so}"
[[ -f "$MODULE" ]] || fail "$MODULE is not built (cargo build -p kagi-pkcs11)"
need_tools pkcs11-tool p11tool openssl curl

start_kagi
ok "kagi serve is up in $WORK"

p11() { pkcs11-tool --module "$MODULE" "$@" 2>&1; }
# CKA_ID of a key: the bytes of kagi's key id, in hex as pkcs11-tool --id takes it.
key_id() {
  local id
  id="$("$KAGI" key show "$1" | awk '$1 == "id:" { print $2 }')"
  [[ -n "$id" ]] || fail "no id for key $1"
  printf '%s' "$id" | od -An -tx1 | tr -d ' \n'
}

# ---------------------------------------------------------------------------------------------
# 1. pkcs11-tool: list, generate, sign; openssl verifies.
out="$(p11 -L)" || fail "pkcs11-tool -L: $out"
grep -q "token label *: kagi" <<<"$out" || fail "pkcs11-tool -L shows no kagi token: $out"
grep -q "kagi partition" <<<"$out" || fail "pkcs11-tool -L: $out"
out="$(p11 -M)" || fail "pkcs11-tool -M: $out"
for m in RSA-PKCS-PSS SHA256-RSA-PKCS ECDSA-SHA384 EDDSA EC-EDWARDS-KEY-PAIR-GEN; do
  grep -q "^ *$m," <<<"$out" || fail "pkcs11-tool -M does not list $m: $out"
done
ok "pkcs11-tool -L and -M show the kagi token and its mechanisms"

for spec in p256:EC:prime256v1 p384:EC:secp384r1 rsa2048:rsa:2048 ed:EC:edwards25519; do
  label="${spec%%:*}"
  out="$(p11 --keypairgen --key-type "${spec#*:}" --label "$label" --usage-sign)" ||
    fail "pkcs11-tool --keypairgen $spec: $out"
  grep -q "sensitive, always sensitive, never extractable, local" <<<"$out" ||
    fail "$label: the new private key is not sensitive and never extractable: $out"
  "$KAGI" key public "$label" >"$label.pub.pem" || fail "kagi key public $label"
done
ok "pkcs11-tool --keypairgen made P-256, P-384, RSA-2048 and Ed25519 keys in kagi"

out="$(p11 -O)" || fail "pkcs11-tool -O: $out"
for label in p256 p384 rsa2048 ed; do
  grep -q "label: *$label\$" <<<"$out" || fail "pkcs11-tool -O does not show $label: $out"
done
ok "pkcs11-tool -O lists the keys"

head -c 100000 /dev/urandom >data.bin
# sign LABEL MECHANISM DIGEST [extra pkcs11-tool args...]: sign data.bin, verify with openssl.
sign_verify() {
  local label=$1 mech=$2 digest=$3 id
  shift 3
  id="$(key_id "$label")"
  out="$(p11 --sign --id "$id" -m "$mech" -i data.bin -o sig.bin "$@")" ||
    fail "$label: pkcs11-tool --sign -m $mech: $out"
  local pss=()
  [[ "$mech" == *PSS ]] && pss=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1)
  out="$(openssl dgst "-$digest" -verify "$label.pub.pem" ${pss[@]+"${pss[@]}"} -signature sig.bin data.bin 2>&1)" ||
    fail "$label: openssl refused the $mech signature: $out"
  grep -q "Verified OK" <<<"$out" || fail "$label $mech: openssl said: $out"
}
for label in p256 p384; do
  for d in 256 384 512; do
    sign_verify "$label" "ECDSA-SHA$d" "sha$d" --signature-format openssl
  done
done
for d in 256 384 512; do
  sign_verify rsa2048 "SHA$d-RSA-PKCS" "sha$d"
  sign_verify rsa2048 "SHA$d-RSA-PKCS-PSS" "sha$d" --mgf "MGF1-SHA$d" --salt-len -1
done
ok "ECDSA-SHA256/384/512 (P-256, P-384), SHA256/384/512-RSA-PKCS and -PSS signatures verify with openssl"

# The raw mechanisms take a digest (CKM_RSA_PKCS: a DigestInfo) the caller made.
openssl dgst -sha256 -binary data.bin >digest.bin
sign_raw() {
  local label=$1 mech=$2 input=$3
  shift 3
  out="$(p11 --sign --id "$(key_id "$label")" -m "$mech" -i "$input" -o sig.bin "$@")" ||
    fail "$label: pkcs11-tool --sign -m $mech: $out"
}
sign_raw p256 ECDSA digest.bin --signature-format openssl
openssl dgst -sha256 -verify p256.pub.pem -signature sig.bin data.bin >/dev/null 2>&1 ||
  fail "openssl refused the CKM_ECDSA signature"
{ printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20'; cat digest.bin; } >digestinfo.bin
sign_raw rsa2048 RSA-PKCS digestinfo.bin
openssl dgst -sha256 -verify rsa2048.pub.pem -signature sig.bin data.bin >/dev/null 2>&1 ||
  fail "openssl refused the CKM_RSA_PKCS signature"
sign_raw rsa2048 RSA-PKCS-PSS digest.bin --hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len -1
openssl dgst -sha256 -verify rsa2048.pub.pem -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 \
  -signature sig.bin data.bin >/dev/null 2>&1 || fail "openssl refused the CKM_RSA_PKCS_PSS signature"
# kagi signs Ed25519 messages of 32, 48 or 64 bytes: a digest.
sign_raw ed EDDSA digest.bin
out="$(openssl pkeyutl -verify -pubin -inkey ed.pub.pem -rawin -in digest.bin -sigfile sig.bin 2>&1)" ||
  fail "openssl refused the CKM_EDDSA signature: $out"
out="$(p11 --sign --id "$(key_id ed)" -m EDDSA -i data.bin -o sig.bin)" &&
  fail "CKM_EDDSA signed a 100 kB message, which kagi cannot: $out"
grep -q "CKR_DATA_LEN_RANGE" <<<"$out" || fail "CKM_EDDSA on a long message: $out"
ok "CKM_ECDSA, CKM_RSA_PKCS (DigestInfo), CKM_RSA_PKCS_PSS and CKM_EDDSA signatures verify with openssl"

rm -f priv.out
out="$(p11 --read-object --type privkey --id "$(key_id p256)" -o priv.out)" || true
[[ ! -s priv.out ]] || fail "pkcs11-tool --read-object --type privkey wrote a private key: $out"
ok "pkcs11-tool --read-object --type privkey gives nothing ($(tail -n1 <<<"$out"))"

# ---------------------------------------------------------------------------------------------
# 4. p11tool sees the keys, and a certificate once kagi issued one.
"$KAGI" key certify p256 -o p256.crt.pem >/dev/null || fail "kagi key certify p256"
out="$(p11tool --provider "$MODULE" --list-all 2>&1)" || fail "p11tool --list-all: $out"
for label in p256 p384 rsa2048 ed; do
  grep -q "object=$label;type=private" <<<"$out" || fail "p11tool --list-all does not show private key $label: $out"
  grep -q "object=$label;type=public" <<<"$out" || fail "p11tool --list-all does not show public key $label: $out"
done
grep -q "object=p256;type=cert" <<<"$out" || fail "p11tool --list-all does not show p256's certificate: $out"
out="$(p11tool --provider "$MODULE" --export "pkcs11:object=p256;type=cert" 2>&1)" ||
  fail "p11tool --export of the certificate: $out"
[[ "$(openssl x509 -noout -fingerprint -sha256 <<<"$out")" == "$(openssl x509 -noout -fingerprint -sha256 -in p256.crt.pem)" ]] ||
  fail "the certificate p11tool exports is not the one kagi issued"
ok "p11tool --list-all shows the keys and p256's certificate, which is the one kagi issued"

# GnuTLS makes keys with templates of its own (its own CKA_ID, encrypt/decrypt usages), and
# its --test-sign signs and checks the signature against the token's public key.
for spec in "ecdsa --curve=secp256r1:gnutls-ec" "rsa --bits=2048:gnutls-rsa"; do
  label="${spec#*:}"
  # shellcheck disable=SC2086 # the algorithm and its size are two words
  out="$(p11tool --provider "$MODULE" --generate-privkey=${spec%%:*} --label "$label" "pkcs11:token=kagi" 2>&1)" ||
    fail "p11tool --generate-privkey for $label: $out"
  out="$(p11tool --provider "$MODULE" --test-sign "pkcs11:object=$label;type=private" 2>&1)" ||
    fail "p11tool --test-sign with $label: $out"
  [[ "$(grep -c '\.\.\. ok' <<<"$out")" == 3 ]] || fail "p11tool --test-sign with $label: $out"
done
"$KAGI" key show gnutls-rsa >/dev/null || fail "the key p11tool generated is not in kagi"
ok "p11tool --generate-privkey makes EC and RSA keys in kagi, and its --test-sign verifies their signatures"

# ---------------------------------------------------------------------------------------------
# 5. A usage limit, enforced by the service, shows as CKR_KEY_NOT_ACTIVE.
"$KAGI" key create --name limited --alg ec-p256 --usage-limit 4 >/dev/null || fail "kagi key create limited"
id="$(key_id limited)"
signers=()
for i in 1 2 3 4 5 6 7 8; do
  (pkcs11-tool --module "$MODULE" --sign --id "$id" -m ECDSA-SHA256 -i data.bin -o "lim.$i.sig" >"lim.$i.log" 2>&1 &&
    echo ok >"lim.$i.rc" || echo failed >"lim.$i.rc") &
  signers+=($!)
done
# Not a bare `wait`: that would wait for the server too.
wait "${signers[@]}"
good=0
for i in 1 2 3 4 5 6 7 8; do
  if [[ "$(cat "lim.$i.rc")" == ok ]]; then
    good=$((good + 1))
  else
    grep -q "0x80000136" "lim.$i.log" || fail "a refused signature did not get CKR_KEY_NOT_ACTIVE: $(cat "lim.$i.log")"
  fi
done
[[ "$good" == 4 ]] || fail "8 parallel signers with a limit of 4 made $good signatures"
"$KAGI" key show limited | grep -q "usage count: *4$" || fail "kagi does not count 4 uses: $("$KAGI" key show limited)"
ok "8 parallel pkcs11-tool signers with a usage limit of 4: exactly 4 signatures, the rest CKR_KEY_NOT_ACTIVE"

# ---------------------------------------------------------------------------------------------
# Without KAGI_TOKEN (and away from kagi-data/admin.token) the user PIN is the partition token.
token="$(cat kagi-data/admin.token)"
mkdir -p elsewhere
out="$(cd elsewhere && KAGI_CA="$WORK/kagi-data/tls-ca.pem" pkcs11-tool --module "$MODULE" -L 2>&1)" ||
  fail "pkcs11-tool -L without a token: $out"
grep -q "login required" <<<"$out" || fail "without a token the token does not ask for a login: $out"
out="$(cd elsewhere && KAGI_CA="$WORK/kagi-data/tls-ca.pem" pkcs11-tool --module "$MODULE" -O --type privkey 2>&1)" || true
grep -q "label: *p256" <<<"$out" && fail "private keys are visible without a login: $out"
out="$(cd elsewhere && KAGI_CA="$WORK/kagi-data/tls-ca.pem" pkcs11-tool --module "$MODULE" --login --pin "$token" -O --type privkey 2>&1)" ||
  fail "pkcs11-tool --login with the token as PIN: $out"
grep -q "label: *p256" <<<"$out" || fail "after C_Login with the token the keys are not visible: $out"
out="$(cd elsewhere && KAGI_CA="$WORK/kagi-data/tls-ca.pem" pkcs11-tool --module "$MODULE" --login --pin wrong -O 2>&1)" &&
  fail "a wrong PIN was accepted: $out"
grep -q "CKR_PIN_INCORRECT" <<<"$out" || fail "a wrong PIN: $out"
ok "without a configured token, C_Login takes the partition token as the user PIN (and refuses others)"

# ---------------------------------------------------------------------------------------------
# KAGI_PKCS11_CONF: a file names the service, its CA and a slot per partition with its token.
cat >elsewhere/kagi-pkcs11.toml <<TOML
url = "$HTTPS"
ca = "$WORK/kagi-data/tls-ca.pem"
[[slots]]
partition = "default"
token_file = "$WORK/kagi-data/admin.token"
TOML
conf() { (cd elsewhere && KAGI_PKCS11_CONF="$PWD/kagi-pkcs11.toml" pkcs11-tool --module "$MODULE" "$@" 2>&1); }
out="$(conf -L)" || fail "pkcs11-tool -L with KAGI_PKCS11_CONF: $out"
grep -q "token label *: default" <<<"$out" || fail "the configured slot is not labelled with its partition: $out"
out="$(conf --sign --id "$(key_id p384)" -m ECDSA-SHA384 -i "$WORK/data.bin" -o "$WORK/sig.bin" --signature-format openssl)" ||
  fail "signing through the configured slot: $out"
openssl dgst -sha384 -verify p384.pub.pem -signature sig.bin data.bin >/dev/null 2>&1 ||
  fail "openssl refused the signature made through the configured slot"
ok "KAGI_PKCS11_CONF maps a slot to a partition and its token, and signs through it"

# ---------------------------------------------------------------------------------------------
# Issue 17: a key with its own password (kagi key create --key-auth) shows CKA_ALWAYS_AUTHENTICATE
# in pkcs11-tool, which then asks for the context-specific PIN before each signature. pkcs11-tool
# reads that PIN from a terminal only, so `script` gives it one.
command -v script >/dev/null 2>&1 || fail "script (util-linux) is not installed"
printf 'correct horse battery\n' >keypw.txt
"$KAGI" key create --name owned --alg ec-p256 --key-auth --key-auth-file keypw.txt >/dev/null ||
  fail "kagi key create --key-auth"
"$KAGI" key public owned >owned.pub.pem || fail "kagi key public owned"
out="$(p11 -O)" || fail "pkcs11-tool -O: $out"
grep -A4 "label: *owned\$" <<<"$out" | grep -q "Access: *always authenticate" ||
  fail "pkcs11-tool -O does not show CKA_ALWAYS_AUTHENTICATE for the key with its own password: $out"
# p11_typed PASSWORD ARGS...: pkcs11-tool on a terminal, the password typed at its prompt.
p11_typed() {
  local password=$1
  shift
  (sleep 2; printf '%s\n' "$password") |
    script -qec "pkcs11-tool --module '$MODULE' $*" /dev/null 2>&1
}
rm -f owned.sig
out="$(p11_typed 'correct horse battery' --sign --id "$(key_id owned)" -m ECDSA-SHA256 -i data.bin -o owned.sig --signature-format openssl || true)"
grep -q "context specific PIN" <<<"$out" || fail "pkcs11-tool did not ask for the context-specific PIN: $out"
openssl dgst -sha256 -verify owned.pub.pem -signature owned.sig data.bin >/dev/null 2>&1 ||
  fail "no signature after the context-specific login: $out"
rm -f owned.sig
out="$(p11_typed 'not the password' --sign --id "$(key_id owned)" -m ECDSA-SHA256 -i data.bin -o owned.sig --signature-format openssl || true)"
grep -q "CKR_PIN_INCORRECT" <<<"$out" || fail "a wrong key password was not CKR_PIN_INCORRECT: $out"
[[ ! -s owned.sig ]] || fail "a wrong key password made a signature"
out="$(p11 --sign --id "$(key_id owned)" -m ECDSA-SHA256 -i data.bin -o owned.sig </dev/null)" &&
  fail "the key signed without its context-specific login: $out"
ok "pkcs11-tool shows CKA_ALWAYS_AUTHENTICATE; the key signs after a context-specific login with its password, not with a wrong one or none"

# A module that cannot find the service's CA says so, and which setting to fix.
out="$(cd elsewhere && KAGI_CA=/nonexistent/tls-ca.pem pkcs11-tool --module "$MODULE" -L 2>&1)" &&
  fail "the module started without its CA: $out"
grep -q "kagi-pkcs11: cannot read the service's TLS CA certificate /nonexistent/tls-ca.pem.*KAGI_CA" <<<"$out" ||
  fail "a missing CA is not explained: $out"
ok "a missing CA fails C_Initialize with a message naming KAGI_CA"

echo "PKCS#11 acceptance: all passed"
