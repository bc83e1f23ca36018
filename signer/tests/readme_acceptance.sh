#!/usr/bin/env bash
# The README is a test. Every ```sh block of README.md runs, in the order written, in one bash
# session (so a variable a block sets is there for the next), in a fresh folder beside a fresh
# `kagi serve` started there, with `kagi` on PATH. The walkthrough fails at the first command
# that fails, naming the block, its line in README.md and the command.
#
# A block right after the line `<!-- readme-test: skip ... -->` is not run; the comment says
# why (the set-up commands: this script is what they do). ```toml, ```text and other blocks are
# never run. Off the default ports (KAGI_TEST_HTTPS_PORT/KAGI_TEST_PUBLIC_PORT, see
# serve_lib.sh) the addresses 127.0.0.1:8443 and 127.0.0.1:8080 in the blocks are replaced
# by this run's; nothing else is changed.
#
# Needs curl, openssl, python3 and sigstore-python (bash scripts/install-test-tools.sh); the
# binary must be built. KEEP=1 keeps the work folder, with the script it ran (walkthrough.sh).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

SIGSTORE_BIN="$HOME/.cache/kagi-test-tools/sigstore-venv/bin"
[[ -x "$SIGSTORE_BIN/sigstore" ]] || fail "sigstore-python is not installed (bash scripts/install-test-tools.sh)"
need_tools curl openssl python3

# The blocks, as one script: each is preceded by a line that records where it comes from.
extract_blocks() {
  awk -v https_port="$HTTPS_PORT" -v public_port="$PUBLIC_PORT" '
    function emit(line) {
      gsub(/127\.0\.0\.1:8443/, "127.0.0.1:" https_port, line)
      gsub(/127\.0\.0\.1:8080/, "127.0.0.1:" public_port, line)
      print line
    }
    /^[[:space:]]*```/ {
      if (inblock) { inblock = 0; print "README_BLOCK_END"; next }
      if ($0 ~ /^[[:space:]]*```sh[[:space:]]*$/ && !skip_next) {
        inblock = 1
        n++
        match($0, /^[[:space:]]*/)
        indent = RLENGTH
        printf "README_BLOCK %d %d\n", n, NR
        next
      }
      skip_next = 0
      fence = !fence
      next
    }
    inblock { emit(substr($0, indent + 1)); next }
    /<!-- readme-test: skip/ { skip_next = 1; next }
    /[^[:space:]]/ { if (!fence) skip_next = 0 }
  ' README.md
}

mkdir -p "$WORK/bin"
ln -s "$KAGI" "$WORK/bin/kagi"
export PATH="$WORK/bin:$SIGSTORE_BIN:$PATH"

blocks=$(cd "$REPO" && extract_blocks)
count=$(grep -c '^README_BLOCK ' <<<"$blocks" || true)
((count > 0)) || fail "README.md has no \`\`\`sh block"

start_kagi
ok "kagi serve is up in $WORK; running $count README blocks"

{
  echo 'set -eEuo pipefail'
  echo 'trap '\''echo "README.md block $README_BLOCK (line $README_LINE) failed: $BASH_COMMAND" >&2'\'' ERR'
  while IFS= read -r line; do
    if [[ "$line" =~ ^README_BLOCK\ ([0-9]+)\ ([0-9]+)$ ]]; then
      printf 'README_BLOCK=%s README_LINE=%s\necho "--- README.md block %s (line %s)"\n' \
        "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    elif [[ "$line" == README_BLOCK_END ]]; then
      :
    else
      printf '%s\n' "$line"
    fi
  done <<<"$blocks"
  echo 'echo "--- all README blocks passed"'
} >walkthrough.sh

if ! bash walkthrough.sh >walkthrough.log 2>&1; then
  echo "--- last lines of the walkthrough's output:" >&2
  tail -n 30 walkthrough.log >&2
  fail "the README walkthrough failed (KEEP=1 keeps $WORK/walkthrough.sh)"
fi
ok "all $count README blocks ran, in order, from a fresh folder"
