#!/usr/bin/env bash
# What witnessing costs, under an external load generator (wrk, Debian's package) over real
# sockets: P-256 `POST /api/v1/sign` against two `kagi serve` instances in the same run, one
# with no witnesses and one with two `kagi witness serve` processes on loopback (quorum 2),
# rows interleaved so a noisy neighbour hits both. Beside them, the hardware limit measured in
# the same run (openssl speed -multi on every core).
#
# Run: benches/wrk_witness.sh   (KAGI_BIN=path/to/kagi, default target/release/kagi, built if
# missing; WRK_SECS=10 per row, WRK_ROUNDS=2, WRK_CONNECTIONS=64, WRK_KEYS=8, WRK_TOKENS=8).
# Installs wrk with apt when it is missing. Prints each row's rate, p50/p99/max and errors,
# then the comparison the witnessing goal asks for: the witnessed rate as a ratio of the unwitnessed one (goal at
# least 0.9) and the p99 difference (goal at most +2 ms), from the best round of each.
#
# wrk runs two threads on epoll, as clients on other hosts would load a server: a client
# thread per connection on the same two cores would queue before the witnesses' threads and
# measure the scheduler rather than kagi.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$bench_root"
secs=${WRK_SECS:-10}
rounds=${WRK_ROUNDS:-2}
conns=${WRK_CONNECTIONS:-64}
nkeys=${WRK_KEYS:-8}
ntokens=${WRK_TOKENS:-8}
bench_init curl openssl python3

# setup NAME: an instance with keys k1..kN and N tokens, and its wrk script.
setup() {
  local name=$1 dir="$work/$1"
  start_kagi "$dir"
  (
    export KAGI_URL="$kurl" KAGI_CA="$dir/kagi-data/tls-ca.pem"
    KAGI_TOKEN=$(cat "$dir/kagi-data/admin.token")
    export KAGI_TOKEN
    make_signers
    {
      sign_lua k 0
      cat <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("ROW %.1f %.3f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA
    } >"$dir/sign.lua"
  )
}

setup plain
setup witnessed

# The witnessed instance is restarted with two witnesses that know its log's key, as an
# operator would add them.
wdir="$work/witnessed"
log_key=$(curl -sf --cacert "$wdir/kagi-data/tls-ca.pem" "$(cat "$wdir/url")/log/key")
kill "$(cat "$wdir/pid")"
wait "$(cat "$wdir/pid")" 2>/dev/null || true
flags=()
wpids=()
for w in w1 w2; do
  wd="$work/witness-$w"
  vkey=$("$kagi" witness init --data "$wd" --name "bench-$w" 2>/dev/null | tr ' ' '\n' | grep "^bench-$w+")
  "$kagi" witness serve --data "$wd" --listen 127.0.0.1:0 --log "$log_key" >"$wd.out" 2>"$wd.err" &
  pids+=("$!")
  wpids+=("$!")
  url=""
  for _ in $(seq 1 100); do
    url=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$wd.out" 2>/dev/null | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "kagi witness serve did not start:" >&2; cat "$wd.err" >&2; exit 1; }
  flags+=(--witness "$url=$vkey")
done
start_kagi "$wdir" "${flags[@]}" --witness-quorum 2
hz=$(getconf CLK_TCK)

hw=$(openssl speed -multi "$cores" -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1)}' | tail -1)
echo "kagi witnessing benchmark (wrk): $cores cores, $conns connections, $nkeys keys, $ntokens tokens, $secs s per row, $rounds rounds"
echo "hardware: openssl speed -multi $cores ecdsap256: ${hw} signatures/s"

# CPU ticks (user + system) a process has used, and the machine's idle ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
run() { # run NAME SECS: one wrk row against instance NAME; prints its ROW line and CPU use
  local dir="$work/$1" k w0 w1 i0 k1 x1 y1 i1
  k=$(cat "$dir/pid")
  k0=$(ticks "$k"); x0=$(ticks "${wpids[0]}"); y0=$(ticks "${wpids[1]}"); i0=$(idle)
  if [ -n "${WRK_PERF:-}" ]; then # WRK_PERF=DIR: also profile kagi serve during each row
    mkdir -p "$WRK_PERF"
    perf record -F 999 -g -p "$k" -o "$WRK_PERF/$1.data" -- sleep "$2" >/dev/null 2>&1 &
  fi
  wrk -t "$cores" -c "$conns" -d "${2}s" -s "$dir/sign.lua" "$(cat "$dir/url")/api/v1/sign" | grep '^ROW' | tr '\n' ' '
  k1=$(ticks "$k"); x1=$(ticks "${wpids[0]}"); y1=$(ticks "${wpids[1]}"); i1=$(idle)
  echo "$((k1 - k0)) $((x1 - x0 + y1 - y0)) $((i1 - i0))"
}
# Warm-up (TLS handshakes, the tokens' first logins), not measured.
run plain 3 >/dev/null
run witnessed 3 >/dev/null
printf '\n| row | signatures/s | / hardware | p50 ms | p99 ms | max ms | requests | errors | CPU µs per signature: kagi serve + witnesses | machine idle |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n'
for r in $(seq 1 "$rounds"); do
  for name in plain witnessed; do
    read -r _ rate p50 p99 max n errs kt wt it < <(run "$name" "$secs")
    label="0 witnesses"
    [ "$name" = witnessed ] && label="2 witnesses, quorum 2"
    printf '| round %d: %s | %.0f | %.3f | %.2f | %.2f | %.2f | %d | %d | %s | %s |\n' "$r" "$label" "$rate" \
      "$(python3 -c "print($rate/$hw if $hw else 0)")" "$p50" "$p99" "$max" "$n" "$errs" \
      "$(python3 -c "print(f'{$kt/$hz/$n*1e6:.0f} + {$wt/$hz/$n*1e6:.0f}' if $n else '-')")" \
      "$(python3 -c "print(f'{$it/$hz/($cores*$secs)*100:.0f}%')")"
    echo "$name $rate $p99 $errs" >>"$work/rows"
  done
done
python3 - "$work/rows" <<'PY'
import sys
best = {}
errors = 0
for line in open(sys.argv[1]):
    name, rate, p99, errs = line.split()
    errors += int(errs)
    if name not in best or float(rate) > best[name][0]:
        best[name] = (float(rate), float(p99))
(pr, pp), (wr, wp) = best["plain"], best["witnessed"]
print(f"\nbest rounds: 2 witnesses / 0 witnesses = {wr/pr:.3f}x the rate (goal >= 0.9); "
      f"p99 {wp-pp:+.2f} ms (goal <= +2 ms); {errors} failed requests in all")
PY
for w in w1 w2; do
  echo "witness bench-$w: $(grep -c "cosigned '" "$work/witness-$w.err" || true) checkpoints cosigned in all"
done
for name in plain witnessed; do
  dir="$work/$name"
  curl -sf --cacert "$dir/kagi-data/tls-ca.pem" "$(cat "$dir/url")/metrics" |
    awk -v n="$name" '/^kagi_commit_batch_operations_sum/ {s = $2} /^kagi_commit_batch_operations_count/ {c = $2}
      END {if (c) printf "%s: %d commit batches, %.1f operations per batch on average (warm-up included)\n", n, c, s / c}' || true
  echo "$name: kagi serve $(grep VmHWM "/proc/$(cat "$dir/pid")/status" 2>/dev/null | tr -s ' ')"
done
