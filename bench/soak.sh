#!/usr/bin/env bash
# Soak: hgpipe-server at about 70 % of what it sustains on this machine, for
# a long time, with a mix of models, streams, cancellations and a load/unload
# cycle; every answer checked. Passes when the server's RSS and open file
# descriptors after the first --baseline-s grow by less than 5 % (below).
#
#   bench/soak.sh [--duration-s 1800] [--baseline-s 300] [--build build]
#                 [--verify-rate R]
#
# Load: verify at 65 % of its capacity (measured closed loop on this
# machine, beside the side traffic), 4 images a request, every answer
# checked against its digest (hgpipe-perf --verify), or at R requests/s
# (--verify-rate: the same load for two builds compared); beside it
# bench/soak_client.cc: fmnist_vit PNGs at 50 requests/s (every answer equal
# to the first, bit for bit), streams (every answer checked), cancelled
# calls, and verify_cycle loaded, used (checked) and unloaded every 60 s.
# The boards' canaries run every 5 s.
# Samples the server's VmRSS and /proc/PID/fd (and, to explain them, the
# load average, the server's threads and CPU seconds) every 10 s into
# soak.csv in the output directory; the last line says PASS or FAIL.
# PASS: each of RSS and descriptors grows by less than 5 % after
# --baseline-s, both in level (median of the last 5 minutes against the
# minute before --baseline-s) and in its highs (95th percentile of the
# samples after against before). It also needs the server to have kept up
# with verify's open loop (answered >= 97 % of the offered rate, no request
# sent late).
set -uo pipefail
cd "$(dirname "$0")/.."
duration=1800 baseline=300 build=build verify_rate=
while [ $# -gt 0 ]; do
  case $1 in
    --duration-s) duration=$2; shift 2 ;;
    --baseline-s) baseline=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --verify-rate) verify_rate=$2; shift 2 ;;
    *) echo "soak: unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=$build/bin
out=$(mktemp -d /tmp/hgpipe-soak.XXXXXX)
repo=$out/models
mkdir -p "$repo/verify_cycle"
cp -r models/verify "$repo/verify"
ln -s "$PWD/models/fmnist_vit" "$repo/fmnist_vit"
sed 's/name: *"verify"/name: "verify_cycle"/' models/verify/config.pbtxt \
  > "$repo/verify_cycle/config.pbtxt"

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_start "$out/server.log" "$bin/hgpipe-server" --model-repository "$repo" --boards sim:2 \
  --model-control-mode explicit --load-model verify,fmnist_vit \
  --canary-interval-s 5 --host 127.0.0.1 --grpc-port 0 --http-port 0 --metrics-port 0
server=$BENCH_PID url=$BENCH_GRPC metrics=${BENCH_METRICS##*:}
cleanup() {
  kill "${pv:-}" "${ps:-}" 2>/dev/null
  bench_stop_all
}
trap cleanup EXIT

# The side traffic first, for the whole run: verify's capacity is measured
# beside it, so that 65 % of it is 65 % of what is left on this machine.
"$bin/hgpipe-soak-client" --url "$url" --duration "$((duration + 20))" \
  --cycle_model verify_cycle --cycle_s 60 \
  --fmnist_png tests/preprocess/data/fmnist_t10k_0.png --fmnist_rate 50 \
  > "$out/side.txt" 2>&1 &
ps=$!
sleep 3
capacity() {  # capacity MODEL IMAGES_PER_REQUEST -> images/s, closed loop
  "$bin/hgpipe-perf" --url "$url" --model "$1" --images-per-request "$2" \
    --concurrency 32 --duration 10 --warmup 2 --json --progress=false |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])'
}
cap_v=$(capacity verify 4)
rate_v=${verify_rate:-$(/usr/bin/python3 -c "print(round(0.65 * $cap_v / 4, 1))")}
echo "soak: capacity verify $cap_v images/s; load verify $rate_v req/s x4" \
     "+ fmnist_vit 50 req/s + side traffic, for $duration s (output in $out)"

"$bin/hgpipe-perf" --url "$url" --model verify --images-per-request 4 --verify \
  --rate "$rate_v" --duration "$duration" --warmup 0 --json --progress=false \
  > "$out/perf_verify.json" 2> "$out/perf_verify.err" &
pv=$!

# Beside RSS and descriptors, what explains an excursion: the machine's
# load (1-minute average), the server's threads and its CPU seconds so far.
echo "t_s,rss_kb,fds,load1,threads,cpu_s" > "$out/soak.csv"
start=$(date +%s)
tick=$(getconf CLK_TCK)
while kill -0 "$pv" 2>/dev/null || kill -0 "$ps" 2>/dev/null; do
  now=$(( $(date +%s) - start ))
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$server/status")
  fds=$(ls "/proc/$server/fd" | wc -l)
  load=$(cut -d' ' -f1 /proc/loadavg)
  # utime and stime: fields 14 and 15, counted after the ")" ending comm.
  cpu=$(sed 's/.*) //' "/proc/$server/stat" | awk -v t="$tick" '{printf "%.1f", ($12 + $13) / t}')
  echo "$now,$rss,$fds,$load,$threads,$cpu" >> "$out/soak.csv"
  sleep 10
done
wait "$pv"; rv=$?
wait "$ps"; rs=$?
curl -s "http://127.0.0.1:$metrics/metrics" > "$out/metrics.txt"

/usr/bin/python3 - "$out" "$baseline" "$rv" "$rs" <<'EOF'
import csv, json, statistics, sys
out, baseline = sys.argv[1], float(sys.argv[2])
rv, rs = (int(x) for x in sys.argv[3:5])
rows = [(float(r["t_s"]), int(r["rss_kb"]), int(r["fds"]))
        for r in csv.DictReader(open(f"{out}/soak.csv"))]
# Growth of the level and of the highs, so that a sample's noise (a burst of
# 64-request streams is 38 MB) is not taken for growth: the median of the
# last 5 minutes against the median of the minute before --baseline-s, and
# the 95th percentile of the samples after --baseline-s against that of
# those before. The highest sample is printed too.
first = [r for r in rows if r[0] <= baseline] or rows[:1]
base = [r for r in first if r[0] >= baseline - 60] or first[-1:]
after = [r for r in rows if r[0] > baseline] or rows[-1:]
last = [r for r in after if r[0] > rows[-1][0] - 300] or after[-1:]
def p95(rs, i):
    v = sorted(r[i] for r in rs)
    return v[min(len(v) - 1, int(0.95 * len(v)))]
def growth(i):
    b = statistics.median(r[i] for r in base)
    l = statistics.median(r[i] for r in last)
    p0, p1 = p95(first, i), p95(after, i)
    return b, l, (l - b) / b * 100, p0, p1, (p1 - p0) / p0 * 100, max(r[i] for r in after)
def perf(name):
    try:
        j = json.load(open(f"{out}/perf_{name}.json"))
        return j
    except Exception as e:
        return {"error": str(e)}
pv = perf("verify")
side = open(f"{out}/side.txt").read().strip().splitlines()
# A soak at 70 % load only if the server kept up: an open-loop client whose
# requests wait (late_requests: sent after their planned time because
# max_outstanding were in flight) measures a backlog, not the server.
offered = pv.get("settings", {}).get("rate", 0)
achieved = pv.get("requests_per_second", 0)
kept_up = offered > 0 and achieved >= 0.97 * offered and pv.get("late_requests", 1) == 0
lat = pv.get("latency_ms", {})
print(f"soak: verify offered {offered} req/s, answered {achieved} req/s, latency p50 "
      f"{lat.get('p50', '?')} ms p99 {lat.get('p99', '?')} ms max {lat.get('max', '?')} ms, "
      f"{pv.get('late_requests', '?')} requests sent late")
if not kept_up:
    print("soak: the server did not keep up with the offered load: not a 70 % soak")
rss = growth(1)
fds = growth(2)
ok = all(g < 5 for g in (rss[2], rss[5], fds[2], fds[5])) and rv == 0 and rs == 0 and kept_up
print(f"soak: verify {pv.get('requests_ok', '?')} requests checked OK of "
      f"{pv.get('requests_total', '?')} ({pv.get('images_per_second', '?')} images/s, "
      f"errors {pv.get('error_count', '?')}); side: {side[-1] if side else '?'}")
print(f"soak: RSS level {rss[0]/1024:.1f} MiB at {baseline:.0f} s, {rss[1]/1024:.1f} MiB in the last "
      f"5 minutes ({rss[2]:+.2f} %); 95th percentile {rss[3]/1024:.1f} MiB before {baseline:.0f} "
      f"s, {rss[4]/1024:.1f} MiB after ({rss[5]:+.2f} %); highest after {rss[6]/1024:.1f} MiB")
print(f"soak: FDs level {fds[0]:.0f} -> {fds[1]:.0f} ({fds[2]:+.2f} %); 95th percentile {fds[3]} "
      f"-> {fds[4]} ({fds[5]:+.2f} %); highest after {fds[6]}; clients exit {rv},{rs}")
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
EOF
