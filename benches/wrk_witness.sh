#!/usr/bin/env bash
# What witnessing costs, under an external load generator (wrk, Debian's package) over real
# sockets: P-256 `POST /api/v1/sign` against two `kagi serve` instances in the same run, one
# with no witnesses and one with two `kagi witness serve` processes on loopback (quorum 2),
# rows interleaved so a noisy neighbour hits both. Beside them, the hardware limit measured in
# the same run (openssl speed -multi on every core).
#
# Run: benches/wrk_witness.sh   (KAGI_BIN=path/to/kagi, default target/release/kagi, built if
# missing; WRK_SECS=10 per row, WRK_ROUNDS=2, WRK_CONNECTIONS=64, WRK_PEAK_CONNECTIONS=512,
# WRK_KEYS=8, WRK_TOKENS=8). Installs wrk with apt when it is missing.
#
# Each round has four pairs of rows: a closed loop at WRK_CONNECTIONS; the peak, a closed
# loop at WRK_PEAK_CONNECTIONS, whose unwitnessed row runs again after the witnessed one; and
# both instances paced at the same offered rate, half and an eighth of that round's unwitnessed
# peak. The summary gives the witnessing goal's two numbers, the witnessed peak rate as a ratio
# of the unwitnessed one (here the mean of the rows before and after it; goal at least 0.9)
# and the p99 difference at the same paced rate (goal at most +2 ms), from the best round of
# each and from each round's own pair, with the median of the pairs; a goal is met only when
# every round's pair meets it. The two unwitnessed peak rows of a round also show how far the
# rate moves with nothing changed. In a closed loop with few connections rate and latency are
# one number (rate = connections / latency), so that row pair is printed too, but the goal is
# read from the others.
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
peak_conns=${WRK_PEAK_CONNECTIONS:-512}
nkeys=${WRK_KEYS:-8}
ntokens=${WRK_TOKENS:-8}
bench_init curl openssl python3

# setup NAME: an instance with keys k1..kN and N tokens (kept in its folder for paced scripts),
# and its unpaced wrk script.
setup() {
  local name=$1 dir="$work/$1"
  start_kagi "$dir"
  (
    export KAGI_URL="$kurl" KAGI_CA="$dir/kagi-data/tls-ca.pem"
    KAGI_TOKEN=$(cat "$dir/kagi-data/admin.token")
    export KAGI_TOKEN
    make_signers
    printf '%s\n' "${tokens[@]}" >"$dir/tokens"
    { sign_lua k 0; lua_done; } >"$dir/sign.lua"
  )
}

# paced_lua NAME RATE: instance NAME's wrk script offering RATE requests/s in all.
paced_lua() {
  local dir="$work/$1"
  mapfile -t tokens <"$dir/tokens"
  { sign_lua k "$2"; lua_done; } >"$dir/paced.lua"
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
rounds_done() { grep -c "cosigned '" "$work/witness-w1.err" || true; } # checkpoints witness 1 cosigned
# The committer's batches so far: "operations batches", from the instance's /metrics.
batches() {
  curl -sf --cacert "$work/$1/kagi-data/tls-ca.pem" "$(cat "$work/$1/url")/metrics" |
    awk '/^kagi_commit_batch_operations_sum/ {s = $2} /^kagi_commit_batch_operations_count/ {c = $2}
      END {printf "%d %d\n", s, c}'
}
run() { # run NAME SECS [CONNS [SCRIPT]]: one wrk row against instance NAME; prints its ROW line and CPU use
  local dir="$work/$1" c=${3:-$conns} script=${4:-sign.lua} k w0 w1 i0 k1 x1 y1 i1 b0 b1
  k=$(cat "$dir/pid")
  read -r -a b0 < <(batches "$1")
  k0=$(ticks "$k"); x0=$(ticks "${wpids[0]}"); y0=$(ticks "${wpids[1]}"); i0=$(idle); c0=$(rounds_done)
  if [ -n "${WRK_PERF:-}" ]; then # WRK_PERF=DIR: also profile the whole machine during each row
    # (-a: kagi's blocking-pool threads come and go, and the witnesses and wrk share the cores)
    mkdir -p "$WRK_PERF"
    perf record -F 999 -g -a -o "$WRK_PERF/$1-$c-${script%.lua}.data" -- sleep "$2" >/dev/null 2>&1 &
  fi
  # lua_done's RESULT line as "ROW rate p50 p99 max requests errors".
  wrk -t "$((c < cores ? c : cores))" -c "$c" -d "${2}s" -s "$dir/$script" "$(cat "$dir/url")/api/v1/sign" |
    awk '/^RESULT/ {for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
      printf "ROW %s %s %s %s %d %d ", v["rate"], v["p50"], v["p99"], v["max"], v["requests"],
        v["non2xx"] + v["sockerr"] + v["timeout"]}'
  k1=$(ticks "$k"); x1=$(ticks "${wpids[0]}"); y1=$(ticks "${wpids[1]}"); i1=$(idle)
  read -r -a b1 < <(batches "$1")
  echo "$((k1 - k0)) $((x1 - x0 + y1 - y0)) $((i1 - i0)) $(($(rounds_done) - c0)) $((b1[0] - b0[0])) $((b1[1] - b0[1]))"
}
# row KIND LABEL NAME [CONNS [SCRIPT]]: run and print one table row; KIND goes to the summary.
row() {
  local kind=$1 label=$2 name=$3 rate p50 p99 max n errs kt wt it wr bo bn
  read -r _ rate p50 p99 max n errs kt wt it wr bo bn < <(run "$name" "$secs" "${4:-$conns}" "${5:-sign.lua}")
  local who="0 witnesses"
  [ "$name" = witnessed ] && who="2 witnesses, quorum 2"
  printf '| %s: %s | %.0f | %.3f | %.2f | %.2f | %.2f | %d | %d | %s | %s | %s | %s |\n' "$label" "$who" "$rate" \
    "$(python3 -c "print($rate/$hw if $hw else 0)")" "$p50" "$p99" "$max" "$n" "$errs" \
    "$(python3 -c "print(f'{$kt/$hz/$n*1e6:.0f} + {$wt/$hz/$n*1e6:.0f}' if $n else '-')")" \
    "$(python3 -c "print(f'{$it/$hz/($cores*$secs)*100:.0f}%')")" \
    "$([ "$name" = witnessed ] && python3 -c "print(f'{$wr/$secs:.0f} ({$n/$wr:.1f})' if $wr else '0')" || echo -)" \
    "$(python3 -c "print(f'{$bo/$bn:.1f}' if $bn else '-')")"
  echo "$kind $name $rate $p99 $errs" >>"$work/rows"
}
# Warm-up (TLS handshakes, the tokens' first logins), not measured.
run plain 3 >/dev/null
run witnessed 3 >/dev/null
printf '\n| row | signatures/s | / hardware | p50 ms | p99 ms | max ms | requests | errors | CPU µs per signature: kagi serve + witnesses | machine idle | witness rounds/s (signatures per round) | operations per commit batch |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n'
for r in $(seq 1 "$rounds"); do
  # Closed loop at $conns: rate and latency are tied (Little's law), so added latency shows
  # up as lost rate whenever the connections are too few to keep the cores busy.
  for name in plain witnessed; do row closed "round $r, $conns connections" "$name"; done
  # Peak: enough connections that the cores, not the connections, bound the rate.
  # The unwitnessed peak runs again after the witnessed one: the witnessed rate is compared
  # with the mean of the two around it, which cancels a drift of the machine's speed, and the
  # two unwitnessed rows measure how far the rate moves with nothing changed.
  for name in plain witnessed; do row peak "round $r, peak ($peak_conns connections)" "$name" "$peak_conns"; done
  row peak_again "round $r, peak again" plain "$peak_conns"
  # Paced: both offered the same rate, half of this round's unwitnessed peak, so p99 compares
  # the latency witnessing adds at equal load rather than queues of different lengths.
  target=$(awk -v r="$r" '$1 == "peak" && $2 == "plain" {x = $3} END {printf "%d", x / 2}' "$work/rows")
  for name in plain witnessed; do
    paced_lua "$name" "$target"
    row paced "round $r, paced at $target/s" "$name" "$peak_conns" paced.lua
  done
  # Light: an eighth of the peak, where the cores have room and p99 is not a queue's tail.
  light=$((target / 4))
  for name in plain witnessed; do
    paced_lua "$name" "$light"
    row light "round $r, light at $light/s" "$name" "$peak_conns" paced.lua
  done
done
python3 - "$work/rows" <<'PY'
import sys
rate, p99, errors = {}, {}, 0
for line in open(sys.argv[1]):
    kind, name, r, p, e = line.split()
    errors += int(e)
    rate.setdefault(kind, {}).setdefault(name, []).append(float(r))
    p99.setdefault(kind, {}).setdefault(name, []).append(float(p))
def ratio(kind):
    return max(rate[kind]["witnessed"]) / max(rate[kind]["plain"] + rate.get(kind + "_again", {}).get("plain", []))
c, pk = ratio("closed"), ratio("peak")
dp = min(p99["paced"]["witnessed"]) - min(p99["paced"]["plain"])
dc = min(p99["closed"]["witnessed"]) - min(p99["closed"]["plain"])
# The best of each configuration can pair a lucky row with an unlucky one; the rounds' own
# pairs (rows next to each other in time) show how far the noise reaches. A goal counts as met
# only when every round's own pair meets it.
pairs = lambda d, kind: list(zip(d[kind]["witnessed"], d[kind]["plain"]))
plain_peaks = list(zip(rate["peak"]["plain"], rate["peak_again"]["plain"]))
peaks = [w / ((a + b) / 2) for w, (a, b) in zip(rate["peak"]["witnessed"], plain_peaks)]
same = [b / a for a, b in plain_peaks]
paced = [w - p for w, p in pairs(p99, "paced")]
light = [w - p for w, p in pairs(p99, "light")]
peak_p99 = [w - p for w, p in pairs(p99, "peak")]
def verdict(ok):
    n = sum(ok)
    return "met" if n == len(ok) else f"missed, met in {n} of {len(ok)} rounds"
print(f"\nbest rounds, 2 witnesses against 0: peak rate {pk:.3f}x, p99 at the same paced rate {dp:+.2f} ms")
print(f"goal, round by round: peak rate at least 0.9x: {verdict([x >= 0.9 for x in peaks])}; "
      f"paced p99 at most +2 ms: {verdict([x <= 2 for x in paced])}")
print(f"closed loop at the base connection count: {c:.3f}x the rate, p99 {dc:+.2f} ms; {errors} failed requests in all")
med = lambda xs: sorted(xs)[len(xs) // 2] if len(xs) % 2 else sum(sorted(xs)[len(xs) // 2 - 1:len(xs) // 2 + 1]) / 2
print(f"median of the rounds' pairs: peak rate {med(peaks):.3f}x; p99 paced {med(paced):+.2f} ms, "
      f"light {med(light):+.2f} ms, peak {med(peak_p99):+.2f} ms")
print("per round: peak rate (against the mean of the unwitnessed rows before and after) "
      + ", ".join(f"{x:.3f}x" for x in peaks)
      + "; unwitnessed peak after against before (nothing changed) " + ", ".join(f"{x:.3f}x" for x in same)
      + "; paced p99 " + ", ".join(f"{x:+.2f} ms" for x in paced)
      + "; light p99 " + ", ".join(f"{x:+.2f} ms" for x in light)
      + "; peak p99 " + ", ".join(f"{x:+.2f} ms" for x in peak_p99))
PY
for w in w1 w2; do
  echo "witness bench-$w: $(grep -c "cosigned '" "$work/witness-$w.err" || true) checkpoints cosigned in all"
done
for name in plain witnessed; do
  read -r ops n < <(batches "$name") || true
  [ "${n:-0}" -gt 0 ] &&
    echo "$name: $n commit batches, $(python3 -c "print(f'{$ops/$n:.1f}')") operations per batch on average (warm-up included)"
  echo "$name: kagi serve $(grep VmHWM "/proc/$(cat "$work/$name/pid")/status" 2>/dev/null | tr -s ' ')"
done
