#!/usr/bin/env bash
# Sigstore acceptance (issue 5, item 3), with Sigstore's own client, fully offline:
#   sigstore-python (`pip install sigstore`) verifies a bundle from `kagi sign --format sigstore`
#   against the trust config kagi serves:
#     sigstore --trust-config kagi-trust.json verify identity --offline --bundle app.sigstore.json
#       --cert-identity <pipeline URI> --cert-oidc-issuer <kagi URL> app.bin
#   and rejects a changed file, a bundle signed by a different identity, and tampered log
#   entries (integrated time, index, body, inclusion proof, checkpoint, signed entry timestamp),
#   and an SCT checked against another CT key. `kagi verify` must agree on every case.
#   A bundle with an RFC 3161 timestamp from kagi's TSA verifies too.
#   A bundle whose checkpoint carries two witness cosignatures (C2SP tlog-cosignature, made
#   here in Python) still verifies with sigstore-python; kagi verify and kagi-verify check the
#   cosignatures against --witness keys and a --witness-quorum.
# Needs ports 8443 and 8080 free (or those in KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT, see
# serve_lib.sh), curl, python3 and sigstore-python in its virtualenv
# (bash scripts/install-test-tools.sh); the binaries must be built (cargo build --release -p
# signer -p kagi-verify). KEEP=1 keeps the work folder.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

SIGSTORE="$HOME/.cache/kagi-test-tools/sigstore-venv/bin/sigstore"
SIGSTORE_PY="$HOME/.cache/kagi-test-tools/sigstore-venv/bin/python"
# The relying party's binary, built beside kagi (scripts/test.sh: cargo build -p kagi-verify).
KAGI_VERIFY="${KAGI_VERIFY_BIN:-$(dirname "$KAGI")/kagi-verify}"
[[ -x "$KAGI_VERIFY" ]] || fail "$KAGI_VERIFY is not built (cargo build -p kagi-verify, beside $KAGI)"
[[ -x "$SIGSTORE" ]] || fail "sigstore-python is not installed (bash scripts/install-test-tools.sh)"
need_tools curl python3 openssl

start_kagi
ok "kagi serve is up in $WORK; $("$SIGSTORE" --version)"

head -c 1000000 /dev/urandom > app.bin
cp app.bin changed.bin
printf '\x01' | dd of=changed.bin bs=1 seek=777 conv=notrunc status=none
cmp -s app.bin changed.bin && printf '\x02' | dd of=changed.bin bs=1 seek=777 conv=notrunc status=none

curl -sf --cacert kagi-data/tls-ca.pem "$HTTPS/api/v1/sigstore/client_trust_config.json" -o kagi-trust.json ||
  fail "GET /api/v1/sigstore/client_trust_config.json"
curl -sf --cacert kagi-data/tls-ca.pem "$HTTPS/api/v1/sigstore/trusted_root.json" -o trusted_root.json ||
  fail "GET /api/v1/sigstore/trusted_root.json"
python3 -c 'import json,sys; a=json.load(open("kagi-trust.json"))["trustedRoot"]; b=json.load(open("trusted_root.json")); sys.exit(a!=b)' ||
  fail "the client trust config does not hold the served trusted root"

# Two CI pipelines, each with its own credential; one release key both may use.
"$KAGI" key create --name release --alg ec-p256 >/dev/null || fail "key create"
for p in ci-app ci-other; do
  "$KAGI" identity create --name "$p" --kind pipeline --roles user >"$p.token" 2>identity.err ||
    fail "identity create $p: $(cat identity.err)"
done
if KAGI_TOKEN="$(cat ci-app.token)" "$KAGI" sign --key release --format sigstore app.bin -o denied.json >denied.out 2>&1; then
  fail "a new pipeline signed on a fresh instance with no policy active"
fi
grep -q "policy_denied" denied.out || fail "the new pipeline was refused for another reason: $(cat denied.out)"
ok "a new pipeline is denied (policy_denied) while no policy is active"

# A fresh instance denies pipelines every signature until a policy allows them; persons (the
# administrator below) keep acting by their roles, as under the bootstrap policy.
cat >ci.policy.toml <<'EOF'
description = "both pipelines sign releases as Sigstore bundles"
rules = '''
@id("ci-app-sigstore-release")
permit (principal == kagi::Pipeline::"ci-app", action == kagi::Action::"sign", resource == kagi::Key::"release")
when { context.format == "sigstore" };

@id("ci-other-sigstore-release")
permit (principal == kagi::Pipeline::"ci-other", action == kagi::Action::"sign", resource == kagi::Key::"release")
when { context.format == "sigstore" };

@id("persons-by-role")
permit (principal is kagi::Person, action, resource);
'''
EOF
version="$("$KAGI" policy submit ci.policy.toml 2>policy.err)" || fail "kagi policy submit: $(cat policy.err)"
"$KAGI" policy activate "${version##* }" >/dev/null 2>policy.err || fail "kagi policy activate: $(cat policy.err)"
ISSUER="$PUBLIC"
ID_APP="$PUBLIC/identities/default/ci-app"
ID_OTHER="$PUBLIC/identities/default/ci-other"

KAGI_TOKEN="$(cat ci-app.token)" "$KAGI" sign --key release --format sigstore app.bin -o app.sigstore.json >sign.out ||
  fail "kagi sign --format sigstore as ci-app: $(cat sign.out)"
grep -q -- "--cert-identity $ID_APP --cert-oidc-issuer $ISSUER" sign.out ||
  fail "kagi sign did not say how to verify: $(cat sign.out)"
KAGI_TOKEN="$(cat ci-other.token)" "$KAGI" sign --key release --format sigstore app.bin -o other.sigstore.json >/dev/null ||
  fail "kagi sign --format sigstore as ci-other"

# verify BUNDLE FILE IDENTITY: sigstore-python's verdict, offline, against kagi's trust config.
verify() {
  "$SIGSTORE" --trust-config kagi-trust.json verify identity --offline --bundle "$1" \
    --cert-identity "$3" --cert-oidc-issuer "$ISSUER" "$2" >verify.out 2>&1
}

verify app.sigstore.json app.bin "$ID_APP" || fail "sigstore-python refused kagi's bundle: $(cat verify.out)"
grep -q "OK: app.bin" verify.out || fail "sigstore-python said: $(cat verify.out)"
ok "sigstore verify identity --offline accepts the bundle of $ID_APP"

verify other.sigstore.json app.bin "$ID_OTHER" || fail "sigstore-python refused ci-other's bundle: $(cat verify.out)"
ok "the other pipeline's bundle verifies as $ID_OTHER"

if verify app.sigstore.json changed.bin "$ID_APP"; then fail "sigstore-python accepted a changed file"; fi
ok "a changed file is refused ($(grep -o 'ERROR.*' verify.out | head -1 | tr -s ' '))"

if verify other.sigstore.json app.bin "$ID_APP"; then fail "sigstore-python accepted ci-other's bundle as ci-app"; fi
grep -q "SANs do not match" verify.out || fail "wrong reason for the identity refusal: $(cat verify.out)"
ok "a bundle from a different identity is refused (SANs do not match)"

if "$SIGSTORE" --trust-config kagi-trust.json verify identity --offline --bundle app.sigstore.json \
  --cert-identity "$ID_APP" --cert-oidc-issuer "https://token.actions.githubusercontent.com" app.bin >verify.out 2>&1; then
  fail "sigstore-python accepted another OIDC issuer"
fi
ok "another issuer is refused"

# The bundle carries what a verifier needs; the log's entry bodies are not public.
INDEX="$(python3 -c 'import json; print(json.load(open("app.sigstore.json"))["verificationMaterial"]["tlogEntries"][0]["logIndex"])')"
for url in "$PUBLIC/log/entries/$INDEX" "$HTTPS/log/entries/$INDEX"; do
  code=$(curl -s --cacert kagi-data/tls-ca.pem -o entry.json -w '%{http_code}' "$url")
  [[ $code == 401 ]] || fail "an anonymous GET of $url answered $code: $(head -c 300 entry.json)"
done
code=$(curl -s --cacert kagi-data/tls-ca.pem -o entry.json -w '%{http_code}' \
  -H "Authorization: Bearer $(cat kagi-data/admin.token)" "$HTTPS/log/entries/$INDEX")
[[ $code == 200 ]] || fail "the auditor's GET of entry $INDEX answered $code: $(head -c 300 entry.json)"
code=$(curl -s --cacert kagi-data/tls-ca.pem -o entry.json -w '%{http_code}' \
  -H "Authorization: Bearer $(cat ci-other.token)" "$HTTPS/log/entries/$INDEX")
[[ $code == 404 ]] || fail "ci-other read ci-app's entry $INDEX: $code $(head -c 300 entry.json)"
ok "log entry $INDEX: anonymous 401 on both listeners, the auditor reads it, the other pipeline gets 404"

# Tampered log entries: each edit of the bundle's tlog entry must be caught.
python3 - <<'EOF'
import base64, json
b = json.load(open("app.sigstore.json"))
def edit(name, f):
    t = json.loads(json.dumps(b))
    f(t["verificationMaterial"]["tlogEntries"][0])
    json.dump(t, open(f"tampered-{name}.json", "w"))
def body(e):
    raw = base64.b64decode(e["canonicalizedBody"]).replace(b'"sha256"', b'"sha256" ')
    e["canonicalizedBody"] = base64.b64encode(raw).decode()
def proof(e):
    h = e["inclusionProof"]["hashes"]
    if h:
        h[0] = base64.b64encode(bytes(32)).decode()
    else:
        e["inclusionProof"]["rootHash"] = base64.b64encode(bytes(32)).decode()
def checkpoint(e):
    env = e["inclusionProof"]["checkpoint"]["envelope"].split("\n")
    env[1] = str(int(env[1]) + 1)
    e["inclusionProof"]["checkpoint"]["envelope"] = "\n".join(env)
def promise(e):
    s = bytearray(base64.b64decode(e["inclusionPromise"]["signedEntryTimestamp"]))
    s[10] ^= 1
    e["inclusionPromise"]["signedEntryTimestamp"] = base64.b64encode(bytes(s)).decode()
edit("time", lambda e: e.__setitem__("integratedTime", str(int(e["integratedTime"]) + 1)))
edit("index", lambda e: e.__setitem__("logIndex", str(int(e["logIndex"]) + 1)))
edit("body", body)
edit("proof", proof)
edit("checkpoint", checkpoint)
edit("promise", promise)
EOF
for t in time index body proof checkpoint promise; do
  if verify "tampered-$t.json" app.bin "$ID_APP"; then fail "sigstore-python accepted a bundle whose log entry's $t was changed"; fi
done
ok "tampered log entries are refused (integrated time, index, body, inclusion proof, checkpoint, signed entry timestamp)"

# kagi's own verifier agrees, pinned to the root certificate and the log key.
"$KAGI" ca show root -o root.pem >/dev/null || fail "kagi ca show root"
LOG_KEY="$(curl -sf "$PUBLIC/log/key")" || fail "GET /log/key"
kverify() {
  local bundle=$1 file=$2 identity=$3
  shift 3
  "$KAGI" verify "$file" -s "$bundle" --ca-file root.pem --log-key "$LOG_KEY" --trust-root kagi-trust.json \
    --cert-identity "$identity" --cert-oidc-issuer "$ISSUER" "$@" >kverify.out 2>&1
}
kverify app.sigstore.json app.bin "$ID_APP" || fail "kagi verify refused the bundle: $(cat kverify.out)"
if kverify app.sigstore.json changed.bin "$ID_APP"; then fail "kagi verify accepted a changed file"; fi
if kverify other.sigstore.json app.bin "$ID_APP"; then fail "kagi verify accepted ci-other's bundle as ci-app"; fi
for t in time index body proof checkpoint promise; do
  if kverify "tampered-$t.json" app.bin "$ID_APP"; then fail "kagi verify accepted a bundle whose log entry's $t was changed"; fi
done
# A trust root whose CT key is another P-256 key: the SCT no longer verifies.
openssl ecparam -genkey -name prime256v1 2>/dev/null | openssl ec -pubout -outform DER -out other-ct.der 2>/dev/null ||
  fail "openssl: a P-256 key for the wrong trust root"
python3 - <<'EOF'
import base64, json
t = json.load(open("kagi-trust.json"))
t["trustedRoot"]["ctlogs"][0]["publicKey"]["rawBytes"] = base64.b64encode(open("other-ct.der", "rb").read()).decode()
json.dump(t, open("wrong-ct.json", "w"))
EOF
if "$KAGI" verify app.bin -s app.sigstore.json --ca-file root.pem --log-key "$LOG_KEY" --trust-root wrong-ct.json \
  --cert-identity "$ID_APP" --cert-oidc-issuer "$ISSUER" >kverify.out 2>&1; then
  fail "kagi verify accepted an SCT under a CT key the trust root does not hold"
fi
grep -q "SCT" kverify.out || fail "wrong reason for the SCT refusal: $(cat kverify.out)"
if "$SIGSTORE" --trust-config wrong-ct.json verify identity --offline --bundle app.sigstore.json \
  --cert-identity "$ID_APP" --cert-oidc-issuer "$ISSUER" app.bin >verify.out 2>&1; then
  fail "sigstore-python accepted an SCT under a CT key the trust config does not hold"
fi
grep -q "SCT" verify.out || fail "sigstore-python refused the other CT key for another reason: $(cat verify.out)"
# Without the expected identity (or issuer), kagi verify refuses, as sigstore-python does.
if "$KAGI" verify app.bin -s app.sigstore.json --ca-file root.pem --log-key "$LOG_KEY" --trust-root kagi-trust.json \
  --cert-oidc-issuer "$ISSUER" >kverify.out 2>&1; then
  fail "kagi verify accepted a bundle without --cert-identity"
fi
grep -q -- "--cert-identity" kverify.out || fail "wrong reason for refusing a bundle without --cert-identity: $(cat kverify.out)"
if "$KAGI" verify app.bin -s app.sigstore.json --ca-file root.pem --log-key "$LOG_KEY" --trust-root kagi-trust.json \
  --cert-identity "$ID_APP" >kverify.out 2>&1; then
  fail "kagi verify accepted a bundle without --cert-oidc-issuer"
fi
ok "kagi verify agrees: accepts the bundle (SCT included), refuses the changed file, the other identity, every tampered entry, a trust root with another CT key, and a bundle checked without an expected identity or issuer"

# Witness cosignatures (C2SP tlog-cosignature) on the bundle's checkpoint: extra signature
# lines, which signed-note allows. sigstore-python must still accept the bundle (it checks the
# log's line and skips the others); kagi verify checks them against --witness keys. The
# cosignatures are made here from the spec with Python's cryptography (sigstore-python's own
# dependency) by two test witnesses; a third witness signs nothing.
"$SIGSTORE_PY" - <<'EOF'
import base64, hashlib, json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
b = json.load(open("app.sigstore.json"))
cp = b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
text = cp["envelope"][: cp["envelope"].rindex("\n\n") + 1]
lines = ""
for name in ["witness.example/w1", "witness.example/w2", "witness.example/w3"]:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n\x04" + pub).digest()[:4]
    vkey = name + "+" + key_id.hex() + "+" + base64.b64encode(b"\x04" + pub).decode()
    open(name.rsplit("/", 1)[1] + ".vkey", "w").write(vkey)
    if name.endswith("w3"):
        continue
    t = 1790000000
    sig = key.sign(("cosignature/v1\ntime %d\n" % t + text).encode())
    blob = key_id + t.to_bytes(8, "big") + sig
    lines += "\u2014 " + name + " " + base64.b64encode(blob).decode() + "\n"
cp["envelope"] += lines
json.dump(b, open("cosigned.sigstore.json", "w"))
EOF
envelope_lines() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"].count("\u2014"))' "$1"
}
[[ $(envelope_lines cosigned.sigstore.json) == $(($(envelope_lines app.sigstore.json) + 2)) ]] ||
  fail "the cosigned bundle's checkpoint does not carry the log's lines and two cosignatures"
verify cosigned.sigstore.json app.bin "$ID_APP" || fail "sigstore-python refused a bundle whose checkpoint carries witness cosignatures: $(cat verify.out)"
grep -q "OK: app.bin" verify.out || fail "sigstore-python said: $(cat verify.out)"
kverify cosigned.sigstore.json app.bin "$ID_APP" --witness "$(cat w1.vkey)" --witness "$(cat w2.vkey)" ||
  fail "kagi verify refused the cosigned bundle with both witnesses: $(cat kverify.out)"
grep -q "cosigned by witness.example/w1, witness.example/w2" kverify.out || fail "kagi verify said: $(cat kverify.out)"
if kverify cosigned.sigstore.json app.bin "$ID_APP" --witness "$(cat w1.vkey)" --witness "$(cat w3.vkey)" --witness-quorum 2; then
  fail "kagi verify accepted 2 of {w1, w3} when only w1 cosigned"
fi
grep -q "missing: witness.example/w3" kverify.out || fail "wrong reason for the missing witness: $(cat kverify.out)"
if kverify app.sigstore.json app.bin "$ID_APP" --witness "$(cat w1.vkey)"; then
  fail "kagi verify accepted a bundle without cosignatures under --witness"
fi
# The relying party's own binary, kagi-verify, runs the same checks.
kagi_verify() {
  "$KAGI_VERIFY" verify app.bin -s cosigned.sigstore.json --ca-file root.pem --log-key "$LOG_KEY" \
    --trust-root kagi-trust.json --cert-identity "$ID_APP" --cert-oidc-issuer "$ISSUER" "$@" >kverify.out 2>&1
}
kagi_verify --witness "$(cat w1.vkey)" --witness "$(cat w2.vkey)" || fail "kagi-verify refused the cosigned bundle: $(cat kverify.out)"
grep -q "cosigned by witness.example/w1, witness.example/w2" kverify.out || fail "kagi-verify said: $(cat kverify.out)"
if kagi_verify --witness "$(cat w1.vkey)" --witness "$(cat w3.vkey)" --witness-quorum 2; then
  fail "kagi-verify accepted 2 of {w1, w3} when only w1 cosigned"
fi
grep -q "but 2 are needed" kverify.out || fail "wrong reason from kagi-verify: $(cat kverify.out)"
ok "a checkpoint with two witness cosignatures: sigstore-python accepts the bundle; kagi verify and kagi-verify accept 2 of 2, refuse 2 of {w1, unknown w3}; kagi verify refuses an uncosigned bundle"

KAGI_TOKEN="$(cat ci-app.token)" "$KAGI" sign --key release --format sigstore --timestamp app.bin -o ts.sigstore.json >/dev/null ||
  fail "kagi sign --format sigstore --timestamp"
python3 -c 'import json,sys; b=json.load(open("ts.sigstore.json")); sys.exit(not b["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"])' ||
  fail "the --timestamp bundle carries no RFC 3161 timestamp"
verify ts.sigstore.json app.bin "$ID_APP" || fail "sigstore-python refused the timestamped bundle: $(cat verify.out)"
ok "a bundle with an RFC 3161 timestamp from kagi's TSA verifies"

# An RSA key cannot make a bundle Sigstore clients accept; kagi says so and signs nothing.
"$KAGI" key create --name release-rsa --alg rsa-2048 >/dev/null || fail "key create rsa"
if "$KAGI" sign --key release-rsa --format sigstore app.bin -o rsa.json >rsa.out 2>&1; then fail "an RSA key made a Sigstore bundle"; fi
grep -q "ECDSA" rsa.out || fail "the RSA refusal does not say why: $(cat rsa.out)"
ok "an RSA key is refused with: $(tail -1 rsa.out)"

echo "SIGSTORE ACCEPTANCE PASSED"
