#!/usr/bin/env bash
# Acceptance item 2 of the CA issue: a factory line enrolls over EST (RFC 7030) with nothing but
# curl and openssl. Set-up (kagi serve in an empty folder, and the administrator creating the
# line's identity with the kagi CLI) is the only use of kagi itself, apart from counting the
# devices CA's certificates with `kagi ca certs devices`.
#   - GET cacerts gives the devices CA and the root (base64 PKCS#7 certs-only);
#   - simpleenroll with HTTP Basic (identity name, token) returns a device certificate that
#     openssl verifies up to the root from cacerts;
#   - a wrong password is 401 and issues nothing;
#   - simplereenroll of the same subject and key succeeds; another key for the same serial number
#     (a cloned device) is 409 serial_in_use; a subject never issued is refused.
# Needs ports 8443 and 8080 free (or those in KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT, see
# serve_lib.sh), openssl and curl; the binary must be built
# (cargo build --release -p signer). KEEP=1 keeps the work folder.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"
EST=$HTTPS/.well-known/est
LINE=line-7

need_tools openssl curl

devices_total() {
  local line
  line="$("$KAGI" ca certs devices --limit 1 | head -n 1)" || fail "kagi ca certs devices"
  [[ "$line" =~ ^([0-9]+)\ certificate\(s\)\ issued\ by\ \'devices\' ]] ||
    fail "unexpected first line of 'kagi ca certs devices': $line"
  echo "${BASH_REMATCH[1]}"
}

# ---------------------------------------------------------------------------------------------
# Set-up: the service, and the line's identity.
start_kagi
TOKEN="$("$KAGI" identity create --name "$LINE" --kind line --roles user 2>identity.err)" ||
  fail "kagi identity create: $(cat identity.err)"
[[ -n "$TOKEN" && "$TOKEN" != *$'\n'* ]] || fail "kagi identity create did not print exactly one token line"
ok "kagi serve is up in $WORK; identity $LINE (kind line, role user) created"
# A fresh instance denies lines every issuance until a policy allows it: the officer says so.
cat >line.policy.toml <<EOF
description = "line 7 enrolls devices"
rules = '''
@id("$LINE-devices")
permit (principal == kagi::Line::"$LINE", action == kagi::Action::"issue", resource == kagi::Profile::"device");
'''
EOF
version="$("$KAGI" policy submit line.policy.toml 2>policy.err)" || fail "kagi policy submit: $(cat policy.err)"
"$KAGI" policy activate "${version##* }" >/dev/null 2>policy.err || fail "kagi policy activate: $(cat policy.err)"
ok "policy ${version##* } lets $LINE issue device certificates"

# From here on: curl and openssl only. The TLS trust anchor is the service's CA file.
TLS=(--cacert kagi-data/tls-ca.pem)

# est POST-PATH OUT-FILE USER:PASSWORD BODY-FILE -> prints the HTTP status
est_post() {
  curl -sS "${TLS[@]}" -o "$2" -w '%{http_code}' -u "$3" \
    -H 'Content-Type: application/pkcs10' --data-binary "@$4" "$EST/$1"
}
# p7 IN-BASE64 OUT-PEM: base64 PKCS#7 certs-only -> PEM certificates
p7() {
  base64 -d <"$1" >"$1.p7" || fail "$1 is not base64: $(head -c 300 "$1")"
  openssl pkcs7 -inform DER -in "$1.p7" -print_certs -out "$2" 2>/dev/null || fail "$1 is not a PKCS#7 certs-only"
}
# csr SUBJECT NAME -> NAME.key, NAME.der (DER PKCS#10), NAME.b64
csr() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$2.key" -subj "$1" \
    -outform DER -out "$2.der" 2>/dev/null || fail "openssl req $1"
  openssl base64 -in "$2.der" -out "$2.b64" || fail "openssl base64"
}
# verify CERT: up to the root from cacerts, the devices CA as the intermediate
verify() {
  local out
  out="$(openssl verify -CAfile est-root.pem -untrusted est-devices.pem "$1" 2>&1)" || fail "openssl verify $1: $out"
  [[ "$out" == "$1: OK" ]] || fail "openssl verify $1: $out"
}
same_key() { # CERT KEY
  cmp -s <(openssl x509 -in "$1" -noout -pubkey) <(openssl pkey -in "$2" -pubout) ||
    fail "$1 does not carry the public key of $2"
}
subject_of() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'; }

# ---------------------------------------------------------------------------------------------
# cacerts
code=$(curl -sS "${TLS[@]}" -o cacerts.b64 -w '%{http_code}' "$EST/cacerts") || fail "curl $EST/cacerts"
[[ $code == 200 ]] || fail "GET cacerts answered $code: $(head -c 300 cacerts.b64)"
p7 cacerts.b64 cacerts.pem
# Split the bag: the self-signed one is the root, the other must be the devices CA.
awk '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > ("cacert-" n ".pem") }' cacerts.pem
count=$(ls cacert-*.pem 2>/dev/null | wc -l)
[[ $count == 2 ]] || fail "cacerts holds $count certificates, not 2 (devices CA and root)"
for f in cacert-*.pem; do
  if [[ "$(openssl x509 -in "$f" -noout -subject | sed 's/^subject=//')" == "$(openssl x509 -in "$f" -noout -issuer | sed 's/^issuer=//')" ]]; then
    cp "$f" est-root.pem
  else
    cp "$f" est-devices.pem
  fi
done
[[ -f est-root.pem && -f est-devices.pem ]] || fail "cacerts does not hold one root and one intermediate"
out="$(openssl verify -CAfile est-root.pem est-devices.pem 2>&1)" || fail "the devices CA from cacerts does not verify under its root: $out"
cmp -s <(openssl x509 -in est-root.pem -outform DER) <(openssl x509 -in kagi-data/tls-ca.pem -outform DER) ||
  fail "the root in cacerts is not kagi-data/tls-ca.pem"
ok "GET cacerts: base64 PKCS#7 with the devices CA ($(subject_of est-devices.pem)) and the root"

# ---------------------------------------------------------------------------------------------
# simpleenroll
before=$(devices_total)
SUBJ="/CN=line7-unit-1/serialNumber=L7-000001/O=Acme/C=DE"
csr "$SUBJ" dev1
code=$(est_post simpleenroll enroll.b64 "$LINE:$TOKEN" dev1.b64) || fail "curl simpleenroll"
[[ $code == 200 ]] || fail "simpleenroll answered $code: $(head -c 400 enroll.b64)"
p7 enroll.b64 dev1.pem
[[ $(grep -c 'BEGIN CERTIFICATE' dev1.pem) == 1 ]] || fail "simpleenroll returned $(grep -c 'BEGIN CERTIFICATE' dev1.pem) certificates, not 1"
verify dev1.pem
same_key dev1.pem dev1.key
subject_of dev1.pem | grep -q "serialNumber=L7-000001" || fail "the enrolled certificate's subject is $(subject_of dev1.pem)"
[[ "$(subject_of dev1.pem)" == "$(openssl x509 -in est-devices.pem -noout -subject -nameopt RFC2253 | sed 's/^subject=//')" ]] &&
  fail "the enrolled certificate is the CA's"
[[ "$(openssl x509 -in dev1.pem -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')" == "$(subject_of est-devices.pem)" ]] ||
  fail "the enrolled certificate was not issued by the devices CA"
openssl x509 -in dev1.pem -noout -enddate | grep -q "Dec 31 23:59:59 9999 GMT" || fail "the device certificate is not valid 'forever'"
after=$(devices_total)
[[ $((after - before)) == 1 ]] || fail "CA devices went from $before to $after certificates after one enrollment"
ok "simpleenroll as $LINE: 200, one device certificate ($(subject_of dev1.pem)), openssl verify OK to the cacerts root"

# ---------------------------------------------------------------------------------------------
# wrong credentials: 401, nothing issued
before=$(devices_total)
csr "/CN=line7-unit-2/serialNumber=L7-000002/O=Acme" dev2
code=$(est_post simpleenroll wrong.out "$LINE:not-the-token" dev2.b64) || fail "curl simpleenroll (wrong password)"
[[ $code == 401 ]] || fail "a wrong password answered $code, not 401: $(head -c 300 wrong.out)"
code=$(est_post simpleenroll wrong-user.out "line-8:$TOKEN" dev2.b64) || fail "curl simpleenroll (wrong user)"
[[ $code == 401 ]] || fail "the right token under another user name answered $code, not 401: $(head -c 300 wrong-user.out)"
code=$(curl -sS "${TLS[@]}" -o anon.out -w '%{http_code}' -H 'Content-Type: application/pkcs10' --data-binary @dev2.b64 "$EST/simpleenroll") ||
  fail "curl simpleenroll (no credentials)"
[[ $code == 401 ]] || fail "no credentials answered $code, not 401"
code=$(est_post simplereenroll wrong-re.out "$LINE:not-the-token" dev1.b64) || fail "curl simplereenroll (wrong password)"
[[ $code == 401 ]] || fail "simplereenroll with a wrong password answered $code, not 401"
after=$(devices_total)
[[ $after == "$before" ]] || fail "CA devices went from $before to $after certificates on refused requests"
ok "wrong password / wrong user / no credentials: 401; devices CA still holds $after certificates"

# ---------------------------------------------------------------------------------------------
# simplereenroll: the same subject with the same key renews; with another key (a clone of the
# device) it is refused, since the serial number has a live certificate; a subject never issued
# is refused.
before=$(devices_total)
openssl req -new -key dev1.key -subj "$SUBJ" -outform DER -out dev1b.der 2>/dev/null || fail "openssl req (same key)"
openssl base64 -in dev1b.der -out dev1b.b64 || fail "openssl base64"
cp dev1.key dev1b.key
code=$(est_post simplereenroll reenroll.b64 "$LINE:$TOKEN" dev1b.b64) || fail "curl simplereenroll"
[[ $code == 200 ]] || fail "simplereenroll of $SUBJ answered $code: $(head -c 400 reenroll.b64)"
p7 reenroll.b64 dev1b.pem
verify dev1b.pem
same_key dev1b.pem dev1b.key
[[ "$(subject_of dev1b.pem)" == "$(subject_of dev1.pem)" ]] || fail "re-enrollment changed the subject: $(subject_of dev1b.pem)"
[[ "$(openssl x509 -in dev1b.pem -noout -serial)" != "$(openssl x509 -in dev1.pem -noout -serial)" ]] ||
  fail "re-enrollment returned the old certificate"
ok "simplereenroll of the same subject with the same key: 200, a new certificate that verifies"

csr "$SUBJ" clone
for route in simplereenroll simpleenroll; do
  code=$(est_post "$route" clone.out "$LINE:$TOKEN" clone.b64) || fail "curl $route (clone)"
  [[ $code == 409 ]] || fail "$route of $SUBJ with another key answered $code, not 409: $(head -c 300 clone.out)"
  grep -q serial_in_use clone.out || fail "$route of a clone: $(head -c 300 clone.out)"
done
ok "the same serial number with another key (a clone): 409 serial_in_use on simpleenroll and simplereenroll"

csr "/CN=line7-unit-9/serialNumber=L7-NEVER-ISSUED/O=Acme" dev9
code=$(est_post simplereenroll never.out "$LINE:$TOKEN" dev9.b64) || fail "curl simplereenroll (never issued)"
[[ $code == 4?? ]] || fail "simplereenroll of a subject never issued answered $code, not 4xx: $(head -c 300 never.out)"
after=$(devices_total)
[[ $((after - before)) == 1 ]] || fail "CA devices went from $before to $after certificates (want +1: the renewal only)"
ok "simplereenroll of a subject never issued: $code ($(head -c 200 never.out | tr -d '\n')); nothing issued"

kill -0 "$SERVER_PID" 2>/dev/null || fail "kagi serve died during the run"
echo "EST ACCEPTANCE PASSED"
