#!/usr/bin/env bash
# Acceptance items 1, 3 and 4 of the CA issue, run as a user would: `kagi serve` in an empty
# folder (the development hierarchy root -> devices / code-signing / services), the `kagi ca`
# CLI with no flags or environment, and third-party tools judging the result:
#   1. every built-in profile issues a certificate that openssl and GnuTLS certtool verify up to
#      the root and that pkilint (PKIX, at WARNING) finds nothing wrong with; the root, the
#      intermediates and the devices CRL lint clean too;
#   3. `kagi ca issue-batch` on 1,000 CSRs (990 good, 10 hostile: two each of bad signature,
#      wrong key type, subject outside the profile, oversize, garbage DER) issues exactly the 990,
#      refuses exactly the 10 with a fitting reason, exits 1, and stores nothing hostile;
#   4. a revoked device certificate is `revoked` over OCSP and listed on the new CRL, which
#      verifies against the issuing CA; a certificate not revoked is `good`.
# Needs ports 8443 and 8080 free (or those in KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT, see
# serve_lib.sh), openssl, curl, certtool and pkilint
# (bash scripts/install-test-tools.sh). The binary must be built: cargo build --release -p signer.
# KEEP=1 keeps the work folder. Prints one line per check; exits non-zero on the first failure.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"
TOOLS="$HOME/.cache/kagi-test-tools/venv/bin"
LINT_CERT="$TOOLS/lint_pkix_cert"
LINT_CRL="$TOOLS/lint_crl"
LINT_OCSP="$TOOLS/lint_ocsp_response"

need_tools openssl curl certtool
[[ -x "$LINT_CERT" && -x "$LINT_CRL" && -x "$LINT_OCSP" ]] || fail "pkilint is not installed in $TOOLS (bash scripts/install-test-tools.sh)"

# ---------------------------------------------------------------------------------------------
# helpers

# pkilint: success is exit 0 and no output at all.
lint_cert() { # FILE LABEL
  local out rc=0
  out="$("$LINT_CERT" lint -s WARNING "$1" 2>&1)" || rc=$?
  [[ $rc -eq 0 && -z "$out" ]] || fail "pkilint on $2 ($1): exit $rc: $out"
}
lint_crl() { # PEMFILE LABEL
  local out rc=0
  out="$("$LINT_CRL" lint -t CRL -p PKIX -s WARNING "$1" 2>&1)" || rc=$?
  [[ $rc -eq 0 && -z "$out" ]] || fail "pkilint on $2 ($1): exit $rc: $out"
}
lint_ocsp() { # DERFILE LABEL
  local out rc=0
  out="$("$LINT_OCSP" lint -s WARNING --document-format DER "$1" 2>&1)" || rc=$?
  [[ $rc -eq 0 && -z "$out" ]] || fail "pkilint on $2 ($1): exit $rc: $out"
}
# openssl, then certtool twice: the chain as given (leaf, intermediate, root; trusts the last)
# and against the root as the only trust anchor.
verify_chain() { # LEAF ICA LABEL [PURPOSE-OID]
  local leaf=$1 ica=$2 label=$3 purpose=${4:-} out
  out="$(openssl verify -CAfile root.pem -untrusted "$ica" "$leaf" 2>&1)" ||
    fail "openssl verify $label: $out"
  [[ "$out" == "$leaf: OK" ]] || fail "openssl verify $label: $out"
  cat "$leaf" "$ica" root.pem > "chain-$label.pem"
  out="$(certtool --verify-chain --infile "chain-$label.pem" 2>&1)" ||
    fail "certtool --verify-chain $label: $out"
  grep -q "Chain verification output: Verified" <<<"$out" || fail "certtool --verify-chain $label: $out"
  ! grep -qi "not verified" <<<"$out" || fail "certtool --verify-chain $label: $out"
  cat "$leaf" "$ica" > "path-$label.pem"
  local args=(--verify --load-ca-certificate root.pem --infile "path-$label.pem")
  [[ -n "$purpose" ]] && args+=(--verify-purpose "$purpose")
  out="$(certtool "${args[@]}" 2>&1)" || fail "certtool ${args[*]} ($label): $out"
  grep -q "Chain verification output: Verified" <<<"$out" || fail "certtool ${args[*]} ($label): $out"
  ! grep -qi "not verified" <<<"$out" || fail "certtool ${args[*]} ($label): $out"
}
devices_total() {
  local line
  line="$("$KAGI" ca certs devices --limit 1 | head -n 1)" || fail "kagi ca certs devices"
  [[ "$line" =~ ^([0-9]+)\ certificate\(s\)\ issued\ by\ \'devices\' ]] ||
    fail "unexpected first line of 'kagi ca certs devices': $line"
  echo "${BASH_REMATCH[1]}"
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
fetch_crl() { # CA OUT-DER
  curl -sSf -o "$2" "$PUBLIC/crl/$1.crl" || fail "curl $PUBLIC/crl/$1.crl"
  openssl crl -inform DER -in "$2" -out "${2%.crl}.crl.pem" 2>/dev/null || fail "$PUBLIC/crl/$1.crl is not a DER CRL"
}

# ---------------------------------------------------------------------------------------------
start_kagi
curl -sf -o /dev/null "$PUBLIC/ca/root.crt" || fail "the plain-HTTP listener does not answer on $PUBLIC"
ok "kagi serve is up in $WORK"

# ---------------------------------------------------------------------------------------------
# Item 1: one certificate per built-in profile, verified by openssl and certtool, linted.

"$KAGI" ca show root -o root.pem >/dev/null || fail "kagi ca show root"
cmp -s <(openssl x509 -in root.pem -outform DER) <(openssl x509 -in kagi-data/tls-ca.pem -outform DER) ||
  fail "kagi-data/tls-ca.pem is not the certificate of CA 'root'"
lint_cert root.pem "root CA"
for ca in devices code-signing services; do
  "$KAGI" ca show "$ca" -o "ca-$ca.pem" >/dev/null || fail "kagi ca show $ca"
  curl -sSf -o "ca-$ca.der" "$PUBLIC/ca/$ca.crt" || fail "curl $PUBLIC/ca/$ca.crt"
  cmp -s "ca-$ca.der" <(openssl x509 -in "ca-$ca.pem" -outform DER) ||
    fail "$PUBLIC/ca/$ca.crt differs from 'kagi ca show $ca'"
  out="$(openssl verify -CAfile root.pem "ca-$ca.pem" 2>&1)" || fail "openssl verify CA $ca: $out"
  lint_cert "ca-$ca.pem" "CA $ca"
done
ok "root and intermediates (devices, code-signing, services) verify and lint clean"

# profile | issuing CA | key | subject | -addext (optional)
PROFILES=(
  "device|devices|ec:P-256|/CN=sensor-1/serialNumber=SN-0001/O=Acme|"
  "code-signing|code-signing|rsa:3072|/CN=Acme Release Signing/O=Acme/C=DE|"
  "tls-server|services|ec:P-384|/CN=kagi.example.com/O=Acme|subjectAltName=DNS:kagi.example.com,DNS:www.kagi.example.com,IP:192.0.2.10"
  "timestamping|code-signing|ec:P-256|/CN=Acme TSA/O=Acme|"
  "ocsp-signing|services|rsa:2048|/CN=Acme OCSP Responder/O=Acme|"
)
for entry in "${PROFILES[@]}"; do
  IFS='|' read -r profile ca key subj addext <<<"$entry"
  case "$key" in
    ec:*) keyopts=(-newkey ec -pkeyopt "ec_paramgen_curve:${key#ec:}") ;;
    rsa:*) keyopts=(-newkey "$key") ;;
  esac
  extra=()
  [[ -n "$addext" ]] && extra=(-addext "$addext")
  openssl req -new "${keyopts[@]}" -nodes -keyout "$profile.key" -subj "$subj" "${extra[@]}" \
    -out "$profile.csr" 2>/dev/null || fail "openssl req for $profile"
  "$KAGI" ca issue "$profile.csr" --profile "$profile" -o "$profile.pem" 2>issue.err ||
    fail "kagi ca issue --profile $profile: $(cat issue.err)"
  # The issuer is the CA the contract names as the profile's default.
  [[ "$(openssl x509 -in "$profile.pem" -noout -issuer -nameopt RFC2253)" == \
     "$(openssl x509 -in "ca-$ca.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=/issuer=/')" ]] ||
    fail "$profile certificate was not issued by CA '$ca'"
  cmp -s <(openssl x509 -in "$profile.pem" -noout -pubkey) <(openssl pkey -in "$profile.key" -pubout) ||
    fail "$profile certificate does not carry the CSR's public key"
  purpose=""
  [[ "$profile" == code-signing ]] && purpose=1.3.6.1.5.5.7.3.3
  verify_chain "$profile.pem" "ca-$ca.pem" "$profile" "$purpose"
  lint_cert "$profile.pem" "$profile certificate"
  ok "profile $profile: issued by $ca, openssl + certtool verify to the root${purpose:+ (purpose codeSigning)}, pkilint clean"
done

# Profile specifics the third-party tools do not insist on.
txt="$(openssl x509 -in device.pem -noout -text -dates)"
grep -q "notAfter=Dec 31 23:59:59 9999 GMT" <<<"$txt" || fail "device certificate does not expire 99991231235959Z"
grep -q "serialNumber *= *SN-0001\|serialNumber=SN-0001" < <(openssl x509 -in device.pem -noout -subject -nameopt multiline,sname) ||
  fail "device certificate subject lacks serialNumber=SN-0001"
txt="$(openssl x509 -in code-signing.pem -noout -ext extendedKeyUsage)"
grep -q "Code Signing" <<<"$txt" || fail "code-signing certificate lacks EKU codeSigning: $txt"
txt="$(openssl x509 -in tls-server.pem -noout -ext extendedKeyUsage,subjectAltName)"
grep -q "TLS Web Server Authentication" <<<"$txt" && grep -q "DNS:kagi.example.com" <<<"$txt" && grep -q "IP Address:192.0.2.10" <<<"$txt" ||
  fail "tls-server certificate lacks serverAuth or its SANs: $txt"
txt="$(openssl x509 -in timestamping.pem -noout -ext extendedKeyUsage)"
grep -q "critical" <<<"$txt" && grep -q "Time Stamping" <<<"$txt" || fail "timestamping EKU is not critical timeStamping: $txt"
txt="$(openssl x509 -in ocsp-signing.pem -noout -text)"
grep -q "OCSP Signing" <<<"$txt" && grep -q "OCSP No Check" <<<"$txt" || fail "ocsp-signing certificate lacks OCSPSigning or ocsp-nocheck"
out="$(certtool --verify --load-ca-certificate root.pem --infile path-tls-server.pem --verify-purpose 1.3.6.1.5.5.7.3.3 2>&1)" &&
  grep -q "Chain verification output: Verified" <<<"$out" && fail "certtool accepted a tls-server certificate for codeSigning"
ok "profile extensions: device never expires, EKUs codeSigning / serverAuth / critical timeStamping / OCSPSigning + nocheck"

fetch_crl devices devices.crl
lint_crl devices.crl.pem "devices CRL"
out="$(openssl crl -inform DER -in devices.crl -CAfile ca-devices.pem -verify -noout 2>&1)" || fail "devices CRL: $out"
[[ "$out" == "verify OK" ]] || fail "devices CRL does not verify: $out"
fetch_crl root root.crl
lint_crl root.crl.pem "root CRL"
ok "CRLs of devices and root (from $PUBLIC/crl/) verify and lint clean"

# ---------------------------------------------------------------------------------------------
# Item 3: issue-batch of 1,000 CSRs, ten of them hostile.

mkdir batch
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out batch.key 2>/dev/null || fail "openssl genpkey"
# Where the hostile ones go: spread over the CLI's chunks of 100, first and last included.
declare -A HOSTILE=(
  [0000]=badsig [0417]=badsig
  [0101]=keytype-rsa1024 [0555]=keytype-p521
  [0233]=subject-no-serial [0678]=subject-bad-attr
  [0350]=oversize-9k [0799]=oversize-20k
  [0499]=garbage [0999]=garbage
)
make_good() { # N: a PEM CSR, subject serialNumber SN-B<N>
  openssl req -new -key batch.key -subj "/CN=unit-$1/serialNumber=SN-B$1/O=Acme/C=DE" -out "batch/$1.csr" 2>/dev/null
}
export -f make_good
t0=$(now)
for i in $(seq 0 999); do n=$(printf %04d "$i"); [[ -n "${HOSTILE[$n]:-}" ]] || echo "$n"; done |
  (cd "$WORK" && xargs -P 4 -n 50 bash -c 'for n in "$@"; do make_good "$n" || exit 1; done' _) ||
  fail "openssl req for the good batch CSRs"

# bad signature: a valid DER CSR with the last byte of its signature changed.
flip_last_byte() { # IN OUT
  local size last
  cp "$1" "$2"
  size=$(stat -c %s "$2")
  last=$(od -An -tu1 -j $((size - 1)) -N1 "$2" | tr -d ' ')
  printf "$(printf '\\%03o' $(((last ^ 0x01) & 0xff)))" |
    dd of="$2" bs=1 seek=$((size - 1)) count=1 conv=notrunc status=none
}
for n in 0000 0417; do
  openssl req -new -key batch.key -subj "/CN=unit-$n/serialNumber=SN-B$n/O=Acme" -outform DER -out "good-$n.der" 2>/dev/null
  flip_last_byte "good-$n.der" "batch/$n.der"
  cmp -s "good-$n.der" "batch/$n.der" && fail "the signature byte was not changed"
  openssl req -inform DER -in "batch/$n.der" -noout 2>/dev/null || fail "the bad-signature CSR $n is not well-formed DER"
  # (openssl 3.0's req -verify exits 0 either way: read what it says.)
  openssl req -inform DER -in "batch/$n.der" -noout -verify 2>&1 | grep -q "verify failure" ||
    fail "openssl still verifies the bad-signature CSR $n"
done
# wrong key type
openssl req -new -newkey rsa:1024 -nodes -keyout /dev/null -subj "/CN=unit-0101/serialNumber=SN-B0101" -out batch/0101.csr 2>/dev/null ||
  fail "openssl req RSA-1024"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes -keyout /dev/null -subj "/CN=unit-0555/serialNumber=SN-B0555" -out batch/0555.csr 2>/dev/null ||
  fail "openssl req P-521"
# subject outside the profile: no serialNumber; an attribute (L) the profile does not name
openssl req -new -key batch.key -subj "/CN=unit-0233/O=Acme" -out batch/0233.csr 2>/dev/null || fail "openssl req 0233"
openssl req -new -key batch.key -subj "/CN=unit-0678/serialNumber=SN-B0678/L=Berlin" -out batch/0678.csr 2>/dev/null || fail "openssl req 0678"
# oversize: valid, well signed CSRs over 8 KiB of DER, made big with subjectAltName DNS names
big_san() { # COUNT
  local i s="DNS:host-0000000000.oversize.kagi.example.com"
  for ((i = 1; i < $1; i++)); do s+=",DNS:host-$(printf %010d "$i").oversize.kagi.example.com"; done
  echo "$s"
}
openssl req -new -key batch.key -subj "/CN=unit-0350/serialNumber=SN-B0350" -addext "subjectAltName=$(big_san 200)" \
  -outform DER -out batch/0350.der 2>/dev/null || fail "openssl req oversize 9k"
openssl req -new -key batch.key -subj "/CN=unit-0799/serialNumber=SN-B0799" -addext "subjectAltName=$(big_san 450)" \
  -out batch/0799.csr 2>/dev/null || fail "openssl req oversize 20k"
for f in batch/0350.der batch/0799.csr; do
  inform=PEM; [[ $f == *.der ]] && inform=DER
  size=$(openssl req -inform "$inform" -in "$f" -outform DER | wc -c)
  ((size > 8192)) || fail "$f is only $size bytes of DER"
  openssl req -inform "$inform" -in "$f" -noout -verify 2>&1 | grep -q "verify OK" || fail "$f does not verify (it must be a valid CSR)"
done
# garbage DER: random bytes (one that starts like a SEQUENCE, one that does not)
{ printf '\x30\x82\x01\x00'; head -c 256 /dev/urandom; } > batch/0499.der
head -c 700 /dev/urandom > batch/0999.der
[[ $(find batch -maxdepth 1 -type f | wc -l) == 1000 ]] || fail "the batch folder does not hold 1,000 CSRs"
ok "1,000 CSRs in batch/ (990 good, 10 hostile) made in $(elapsed "$t0") s"

before=$(devices_total)
t0=$(now)
rc=0
"$KAGI" ca issue-batch batch --profile device >batch.out 2>batch.err || rc=$?
batch_secs=$(elapsed "$t0")
[[ $rc == 1 ]] || fail "kagi ca issue-batch exited $rc, not 1: $(cat batch.out batch.err)"
grep -q "^990 issued, 10 refused" batch.out || fail "issue-batch did not say '990 issued, 10 refused': $(head -n 3 batch.out)"
[[ $(grep -c '^refused ' batch.out) == 10 ]] || fail "issue-batch listed $(grep -c '^refused ' batch.out) refusals, not 10: $(cat batch.out)"
for n in "${!HOSTILE[@]}"; do
  kind=${HOSTILE[$n]}
  line="$(grep -E "^refused batch/$n\.(csr|der): " batch.out)" || fail "hostile CSR $n ($kind) was not refused: $(cat batch.out)"
  case "$kind" in
    badsig) want='bad_csr: bad signature' ;;
    keytype-*) want='not_allowed_by_profile: .*wrong key type' ;;
    subject-no-serial) want='not_allowed_by_profile: .*serialNumber.*subject outside the profile' ;;
    subject-bad-attr) want='not_allowed_by_profile: .*subject attribute L .*subject outside the profile' ;;
    oversize-*) want='bad_csr: the CSR(.s PEM)? is [0-9]+ bytes(; kagi accepts at most 8192|, more than a 8192-byte DER request)' ;;
    garbage) want='bad_csr: ' ;;
  esac
  grep -qE "$want" <<<"$line" || fail "hostile CSR $n ($kind) refused for the wrong reason (want /$want/): $line"
  [[ ! -e batch/$n.crt ]] || fail "a certificate was written for hostile CSR $n ($kind)"
done
[[ $(find batch -name '*.crt' | wc -l) == 990 ]] || fail "$(find batch -name '*.crt' | wc -l) .crt files, not 990"
after=$(devices_total)
[[ $((after - before)) == 990 ]] || fail "CA devices went from $before to $after certificates, not +990"
ok "issue-batch: 990 issued, 10 refused each for its own reason, exit 1, 990 .crt files, devices $before -> $after (+990), ${batch_secs} s"
sed -n 's/^refused /   refused /p' batch.out | sort

# Every certificate written verifies; spot checks that each is the one its CSR asked for.
out="$(cd batch && openssl verify -CAfile ../root.pem -untrusted ../ca-devices.pem ./*.crt 2>&1)" ||
  fail "openssl verify on the batch certificates: $(grep -v ': OK$' <<<"$out" | head)"
[[ $(grep -c ': OK$' <<<"$out") == 990 ]] || fail "openssl verified $(grep -c ': OK$' <<<"$out") batch certificates, not 990"
for n in 0001 0100 0500 0998; do
  subj="$(openssl x509 -in "batch/$n.crt" -noout -subject -nameopt RFC2253)"
  grep -q "serialNumber=SN-B$n" <<<"$subj" || fail "batch/$n.crt has subject $subj, not serialNumber=SN-B$n"
  verify_chain "batch/$n.crt" ca-devices.pem "batch-$n"
done
lint_cert batch/0500.crt "batch certificate 0500"
ok "all 990 batch certificates verify with openssl; spot checks (subject, certtool, pkilint) pass"

# ---------------------------------------------------------------------------------------------
# Item 4: revoke one device certificate; OCSP and the new CRL say so.

cp batch/0042.crt dev.pem
cp batch/0043.crt other.pem
serial=$(openssl x509 -in dev.pem -noout -serial | cut -d= -f2)
"$KAGI" ca revoke "$serial" --reason keyCompromise >revoke.out 2>&1 || fail "kagi ca revoke $serial: $(cat revoke.out)"
"$KAGI" ca certs devices --limit 2000 | grep -i "^$serial " | grep -q revoked ||
  fail "kagi ca certs devices does not show $serial as revoked"

ocsp() { # CERT
  openssl ocsp -issuer ca-devices.pem -cert "$1" -url "$PUBLIC/ocsp" -CAfile root.pem -respout "${1%.pem}.ocsp" 2>&1
}
out="$(ocsp dev.pem)" || fail "openssl ocsp (revoked cert): $out"
grep -q "^Response verify OK" <<<"$out" || fail "OCSP response does not verify: $out"
grep -q "^dev.pem: revoked" <<<"$out" || fail "OCSP does not say revoked: $out"
grep -q "Reason: keyCompromise" <<<"$out" || fail "OCSP does not give reason keyCompromise: $out"
lint_ocsp dev.ocsp "OCSP response (revoked)"
out="$(ocsp other.pem)" || fail "openssl ocsp (good cert): $out"
grep -q "^Response verify OK" <<<"$out" && grep -q "^other.pem: good" <<<"$out" || fail "OCSP does not say good: $out"
lint_ocsp other.ocsp "OCSP response (good)"
ok "OCSP at $PUBLIC/ocsp: $serial revoked (keyCompromise), another certificate good; responses verify and lint clean"

fetch_crl devices new.crl
out="$(openssl crl -inform DER -in new.crl -CAfile ca-devices.pem -verify -noout 2>&1)" || fail "new CRL: $out"
[[ "$out" == "verify OK" ]] || fail "new CRL does not verify: $out"
txt="$(openssl crl -inform DER -in new.crl -noout -text)"
grep -qi "Serial Number: $serial\$" <<<"$txt" || fail "the new CRL does not list $serial: $txt"
grep -A4 -i "Serial Number: $serial\$" <<<"$txt" | grep -q "Key Compromise" || fail "the new CRL does not give reason keyCompromise for $serial"
n_old=$(openssl crl -inform DER -in devices.crl -noout -crlnumber | cut -d= -f2)
n_new=$(openssl crl -inform DER -in new.crl -noout -crlnumber | cut -d= -f2)
((n_new > n_old)) || fail "the CRL number did not grow ($n_old -> $n_new)"
lint_crl new.crl.pem "devices CRL after the revocation"
out="$(certtool --verify-crl --load-ca-certificate ca-devices.pem --infile new.crl.pem 2>&1)" || fail "certtool --verify-crl: $out"
grep -q "Verification output: Verified" <<<"$out" || fail "certtool --verify-crl: $out"
ok "new devices CRL (number $n_old -> $n_new) lists $serial with keyCompromise; openssl and certtool verify it, pkilint clean"

kill -0 "$SERVER_PID" 2>/dev/null || fail "kagi serve died during the run"
echo "CA ACCEPTANCE PASSED"
