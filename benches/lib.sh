# Shared by the load scripts in benches/ (wrk_sign.sh, wrk_witness.sh, perf.sh): sourced, not run.
#
# bench_init PACKAGE...   installs what is missing with apt-get (wrk always), finds or builds
#                         kagi ($kagi: KAGI_BIN, default target/release/kagi), and makes $work,
#                         a scratch folder removed at exit with every process in $pids.
# free_port               a free TCP port on 127.0.0.1.
# start_kagi DIR [ARG...] `kagi serve` in DIR on a free port, waiting until it listens; sets
#                         $kpid and $kurl, and writes them to DIR/pid and DIR/url.
# make_signers            against the server $KAGI_URL/$KAGI_CA/$KAGI_TOKEN name: P-256 keys
#                         k1..k$nkeys, and $ntokens person identities whose tokens go in $tokens.
# sign_lua PREFIX RATE    a wrk script's request part: P-256 `POST /api/v1/sign`, each
#                         request with the next of $tokens and the next key PREFIX1..PREFIX$nkeys
#                         (all of them in use all the time); RATE requests/s paces the whole run
#                         over $cores wrk threads (0: as fast as it goes). The caller appends
#                         lua_done, or a `done` function of its own.
# lua_done                a wrk script's `done` part: one machine-readable line, "RESULT
#                         requests= secs= rate= p50= p99= max= non2xx= sockerr= timeout="
#                         (latencies in ms).

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cores=$(nproc)

bench_init() {
  local need=() p
  for p in wrk "$@"; do
    case $p in
      golang-cfssl) command -v cfssl >/dev/null && command -v cfssljson >/dev/null || need+=("$p") ;;
      softhsm2) command -v softhsm2-util >/dev/null || need+=("$p") ;;
      *) command -v "$p" >/dev/null || need+=("$p") ;;
    esac
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; } ||
      echo "apt-get could not install ${need[*]}" >&2
  fi
  command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
  kagi=${KAGI_BIN:-$bench_root/target/release/kagi}
  if [ ! -x "$kagi" ]; then
    (cd "$bench_root" && cargo build --release -p signer --quiet)
  fi
  work=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

lua_done() {
  cat <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d secs=%.3f rate=%.1f p50=%.3f p99=%.3f max=%.3f non2xx=%d sockerr=%d timeout=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write, e.timeout))
end
LUA
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_kagi() {
  local dir=$1 port
  shift
  port=$(free_port)
  mkdir -p "$dir"
  (cd "$dir" && exec "$kagi" serve --listen "127.0.0.1:$port" --public-listen off "$@" >serve.log 2>&1) &
  kpid=$!
  pids+=("$kpid")
  for _ in $(seq 1 150); do
    [ -s "$dir/kagi-data/admin.token" ] && grep -q "listening on" "$dir/serve.log" && break
    sleep 0.2
  done
  grep -q "listening on" "$dir/serve.log" || { echo "kagi serve did not start:" >&2; cat "$dir/serve.log" >&2; exit 1; }
  kurl="https://127.0.0.1:$port"
  echo "$kurl" >"$dir/url"
  echo "$kpid" >"$dir/pid"
}

make_signers() {
  local i
  for i in $(seq 1 "$nkeys"); do
    "$kagi" key create --name "k$i" --alg ec-p256 >/dev/null
  done
  tokens=()
  for i in $(seq 1 "$ntokens"); do
    tokens+=("$("$kagi" identity create --name "signer$i" --kind person --roles user 2>/dev/null | tr -d '[:space:]')")
  done
}

sign_lua() {
  echo 'local tokens = {'
  for t in "${tokens[@]}"; do echo "  \"$t\","; done
  echo '}'
  echo "local nkeys, prefix, target, threads = $nkeys, \"$1\", $2, $cores"
  cat <<'LUA'
local digest = string.rep("ab", 32)
local n = 0
request = function()
  n = n + 1
  local body = '{"key":"' .. prefix .. ((n % nkeys) + 1) .. '","digest":"' .. digest .. '"}'
  return wrk.format("POST", "/api/v1/sign",
    { ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1], ["Content-Type"] = "application/json" }, body)
end
if target > 0 then
  -- Each wrk thread hands out send slots at its share of the target rate; a connection waits
  -- for the next free slot. When the server falls behind, the slots restart from now (no burst).
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long sec; long nsec; } perf_timespec;
    int clock_gettime(int clk, perf_timespec *ts);
  ]]
  local ts = ffi.new("perf_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.sec) * 1000 + tonumber(ts.nsec) / 1e6
  end
  local interval = threads * 1000 / target
  local slot = 0
  delay = function()
    local t = now_ms()
    slot = math.max(slot + interval, t)
    return slot - t
  end
end
LUA
}
