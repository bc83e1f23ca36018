#!/usr/bin/env bash
# The console (issue 14) in a real browser: Debian's chromium driven by playwright-core, against
# a fresh `kagi serve`. What it proves is listed in console.spec.mjs beside this file; here the
# instance gets its people (three officers who form a 2-of-3 quorum, an auditor, and a person
# whose password the test locks), each setting their own console password with their token.
# Screenshots land in target/console-screenshots/ (their paths are printed).
# Needs curl, node, python3, /usr/bin/chromium and playwright-core (bash
# scripts/install-test-tools.sh installs the last two); ports as in serve_lib.sh. KEEP=1 keeps
# the work folder.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../../signer/tests/serve_lib.sh"

PLAYWRIGHT_DIR="$HOME/.cache/kagi-test-tools/playwright"
if [[ ! -x /usr/bin/chromium || ! -f "$PLAYWRIGHT_DIR/node_modules/playwright-core/package.json" ]]; then
  bash "$REPO/scripts/install-test-tools.sh"
fi
need_tools curl node python3

start_kagi
ok "kagi serve is up in $WORK"

# People, each with their own token and the console password they set with it.
person() {
  local name="$1" roles="$2" password="$3" token
  token="$("$KAGI" identity create --name "$name" --kind person --roles "$roles" 2>/dev/null)" ||
    fail "identity create $name"
  printf '%s\n' "$password" | KAGI_TOKEN="$token" "$KAGI" identity set-password >/dev/null ||
    fail "$name could not set a console password"
}
person olga officer,user olga-passphrase-1
person oscar officer,user oscar-passphrase-2
person otto officer,user otto-passphrase-3
person aude auditor aude-passphrase-4
person lars officer,user lars-passphrase-5
ok "five people set their console passwords with their tokens"
ci_token="$("$KAGI" identity create --name ci-build --kind pipeline 2>/dev/null)" || fail "identity create ci-build"
"$KAGI" key create --name build --alg ec-p256 >/dev/null || fail "key create build"

# The three officers form a 2-of-3 quorum (a key's destruction waits for it); people may sign,
# and the pipeline ci-build may sign with key build, 10 times in all and 5 a day.
cat > quorum.toml <<'EOF'
rules = '''
@id("people")
permit (principal is kagi::Person, action, resource);

@id("ci-build-signs")
permit (
  principal == kagi::Pipeline::"ci-build",
  action == kagi::Action::"sign",
  resource == kagi::Key::"build"
);
'''

[[quota]]
name = "ci-build-signs"
identity = "ci-build"
action = "sign"
resource = "build"
total = 10
per_day = 5

[quorum]
approvers = ["olga", "oscar", "otto"]
required = 2
EOF
version="$("$KAGI" policy submit quorum.toml 2>/dev/null | awk '{print $NF}')" || fail "policy submit"
"$KAGI" policy activate "$version" >/dev/null || fail "policy activate $version"
ok "policy $version with a 2-of-3 quorum is active"
echo "built" > build.bin
for _ in 1 2; do
  KAGI_TOKEN="$ci_token" "$KAGI" sign --key build build.bin -o build.sig >/dev/null || fail "ci-build could not sign"
done
ok "pipeline ci-build signed twice under its quota"
"$KAGI" key certify build -o build.pem >/dev/null || fail "key certify build"
ok "the administrator certified key build (one certificate for the per-line chart)"

SHOTS="$TARGET/console-screenshots"
mkdir -p "$SHOTS"
BASE="$HTTPS" WORK="$WORK" KAGI="$KAGI" SHOTS="$SHOTS" PLAYWRIGHT_DIR="$PLAYWRIGHT_DIR" \
  node "$REPO/web-ui/tests/console.spec.mjs" || fail "the browser test failed"
ok "console browser acceptance passed"
