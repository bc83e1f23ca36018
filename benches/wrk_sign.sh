#!/usr/bin/env bash
# P-256 signing under an external load generator (wrk, Debian's package) over real sockets:
# many keys and tokens, for long enough to cross the login cache's 60 s expiry, beside the
# hardware limit measured in the same run (openssl speed -multi on every core).
#
# Run: benches/wrk_sign.sh   (KAGI_BIN=path/to/kagi, default target/release/kagi, built if
# missing; WRK_SECS=70, WRK_CONNECTIONS=64, WRK_KEYS=8, WRK_TOKENS=8, WRK_WARMUP_SECS=5: a
# warm-up run before the measured one, 0 for none). Installs wrk with apt
# when it is missing. Prints wrk's latency distribution (p50/p75/p90/p99 and max), the rate,
# the rate as a ratio of openssl's, every non-2xx answer, and kagi's resident memory.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$bench_root"
secs=${WRK_SECS:-70}
conns=${WRK_CONNECTIONS:-64}
nkeys=${WRK_KEYS:-8}
ntokens=${WRK_TOKENS:-8}
warm=${WRK_WARMUP_SECS:-5}
bench_init curl openssl python3

start_kagi "$work"
pid=$kpid
cd "$work"
export KAGI_URL="$kurl" KAGI_CA="$work/kagi-data/tls-ca.pem"
KAGI_TOKEN=$(cat kagi-data/admin.token)
export KAGI_TOKEN

make_signers

# Each request signs with the next token and key: all of them in use all the time.
{
  sign_lua k 0
  cat <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("max latency: %.2f ms\n", latency.max / 1000))
  io.write(string.format("requests: %d, errors: connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
LUA
} >sign.lua

hw=$(openssl speed -multi "$cores" -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1)}' | tail -1)
echo "kagi wrk signing benchmark: $cores cores, $conns connections, $nkeys keys, $ntokens tokens, $secs s"
echo "hardware: openssl speed -multi $cores ecdsap256: ${hw} signatures/s"
# A warm-up first, not measured: the connections' TLS handshakes and the tokens' first
# Argon2id logins all land in its first second. The measured run that follows still crosses
# the login cache's expiry (the logins were made at the warm-up's start).
if [ "$warm" -gt 0 ]; then
  wrk -t "$cores" -c "$conns" -d "${warm}s" -s sign.lua "$KAGI_URL/api/v1/sign" >warm.out
  echo "warm-up (${warm} s, not measured): $(awk '/Requests\/sec/ {print $2 " requests/s"}' warm.out), $(grep 'max latency' warm.out)"
fi
wrk -t "$cores" -c "$conns" -d "${secs}s" --latency -s sign.lua "$KAGI_URL/api/v1/sign" | tee wrk.out
rate=$(awk '/Requests\/sec/ {print $2}' wrk.out)
python3 - "$rate" "$hw" <<'PY'
import sys
rate, hw = float(sys.argv[1]), float(sys.argv[2] or 0)
print(f"kagi / hardware: {rate/hw:.3f}" if hw else "kagi / hardware: (openssl speed gave no number)")
PY
grep -E "^(VmHWM|VmRSS)" "/proc/$pid/status" | sed 's/^/kagi serve /'
# The commit thread's slow batches (warm-up included): a stall there holds every request.
curl -sf --cacert "$KAGI_CA" "$KAGI_URL/metrics" | python3 -c '
import re, sys
b = {}
for line in sys.stdin:
    m = re.match(r"kagi_commit_batch_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)", line)
    if m:
        b[m.group(1)] = int(m.group(2))
total = b.get("+Inf", 0)
slow = [(float(le), total - n) for le, n in b.items() if le != "+Inf" and float(le) >= 0.004]
print("commit batches: %d in all; " % total + ", ".join("%d over %g ms" % (over, le * 1000) for le, over in sorted(slow)))
' || echo "commit batches: /metrics not read"
uses=$("$kagi" key list | awk 'NR==1 {for (i = 1; i <= NF; i++) if ($i == "USES") c = i; next} $1 ~ /^k[0-9]+$/ {split($c,u,"/"); s+=u[1]} END {print s}')
echo "uses counted on the $nkeys keys: $uses"
