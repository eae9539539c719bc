#!/usr/bin/env bash
# Server CPU per image with Triton's system shared memory against the
# gRPC-bytes path (issue 14: at most 0.5x), at one image per request, on a
# timing-only board (docs/BENCHMARKS.md, "System shared memory").
#
# One hgpipe-server (--boards sim:1 --emulated-compute=false
# --allow-client-shm=true, the verify model alone) serves both; hgpipe-perf
# drives it with identical settings in each mode, the modes alternating run
# by run so that background load hits them alike. The server process's CPU
# time (user + system, every thread) is read from /proc/PID/stat around each
# run and divided by the images answered in that run (warmup included, as
# the CPU is): the machine is shared, so CPU time, not throughput, is what
# is compared.
#
# Usage: bench/shm_cpu.sh [BUILD_DIR]       (default: ./build)
# Environment (defaults):
#   DURATION=5 WARMUP=1        seconds per run, measured / not counted
#   CONCURRENCY=4              closed-loop requests outstanding
#   REPEAT=5                   runs per mode; the median is reported
#   MODES="bytes shm"          also: stream, stream-shm (ModelStreamInfer)
#   NICE=0                     nice value for the server and hgpipe-perf
#   OUT=BUILD_DIR/bench-results/shm-<timestamp>
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD/bin
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONCURRENCY=${CONCURRENCY:-4}
REPEAT=${REPEAT:-5}
MODES=${MODES:-"bytes shm"}
NICE=${NICE:-0}
OUT=${OUT:-$BUILD/bench-results/shm-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3

for b in hgpipe-server hgpipe-perf; do
  if [[ ! -x $BIN/$b ]]; then
    echo "shm_cpu: $BIN/$b is missing; build it first: ninja -C $BUILD hgpipe-server hgpipe-perf" >&2
    exit 1
  fi
done
mkdir -p "$OUT/models"
cp -r "$ROOT/models/verify" "$OUT/models/"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_start "$OUT/server.log" nice -n "$NICE" "$BIN/hgpipe-server" --host 127.0.0.1 \
  --grpc-port 0 --http-port -1 --metrics-port 0 --boards sim:1 --emulated-compute=false \
  --allow-client-shm=true --model-repository "$OUT/models"
SERVER_PID=$BENCH_PID PORT=$BENCH_GRPC_PORT
CLK_TCK=$(getconf CLK_TCK)

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cores: $(nproc), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "command: $0 $* (DURATION=$DURATION WARMUP=$WARMUP CONCURRENCY=$CONCURRENCY REPEAT=$REPEAT MODES='$MODES' NICE=$NICE)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

run() {  # run MODE REPETITION
  local mode=$1 out=$OUT/$1-r$2.json args=()
  case $mode in
    bytes) ;;
    shm) args=(--shared-memory=system) ;;
    stream) args=(--streaming) ;;
    stream-shm) args=(--streaming --shared-memory=system) ;;
    *) echo "shm_cpu: unknown mode $mode" >&2; exit 2 ;;
  esac
  local t0 t1 w0 w1
  t0=$(cpu_ticks "$SERVER_PID")
  w0=$(date +%s.%N)
  nice -n "$NICE" "$BIN/hgpipe-perf" --url "127.0.0.1:$PORT" --model verify \
    --images-per-request 1 --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --warmup "$WARMUP" --json --progress=false "${args[@]}" >"$out" 2>"${out%.json}.err" ||
    { cat "${out%.json}.err" >&2; exit 1; }
  t1=$(cpu_ticks "$SERVER_PID")
  w1=$(date +%s.%N)
  echo "$(( t1 - t0 ))" >"${out%.json}.ticks"
  $PY -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$w0" "$w1" >"${out%.json}.wall"
  $PY - "$out" "${out%.json}.ticks" "$CLK_TCK" "$mode" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
ticks, tck = float(open(sys.argv[2]).read()), float(sys.argv[3])
images = r["requests_total"] - r["error_count"]
print("  %-10s %8.1f images/s  server %6.1f us CPU/image  client %.2f cores  errors %d"
      % (sys.argv[4], r["images_per_second"], ticks / tck / images * 1e6,
         r["client_cpu_cores"], r["error_count"]))
EOF
}

# The server's CPU with no requests (board timers, watchdog, metrics), to
# tell fixed costs from per-request ones.
t0=$(cpu_ticks "$SERVER_PID")
sleep "$DURATION"
t1=$(cpu_ticks "$SERVER_PID")
$PY -c 'import sys; t,tck,d=map(float,sys.argv[1:]); print("%.4f" % (t/tck/d))' \
  "$(( t1 - t0 ))" "$CLK_TCK" "$DURATION" >"$OUT/idle_cores"
echo "  idle server: $(cat "$OUT/idle_cores") cores" >&2

for r in $(seq 1 "$REPEAT"); do
  for m in $MODES; do run "$m" "$r"; done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

$PY - "$OUT" "$CLK_TCK" $MODES <<'EOF' | tee "$OUT/results.md"
import glob, json, statistics, sys
out, tck, modes = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
idle = float(open(f"{out}/idle_cores").read())
per = {}
for m in modes:
    rows = []
    for f in sorted(glob.glob(f"{out}/{m}-r*.json")):
        r = json.load(open(f))
        ticks = float(open(f[:-5] + ".ticks").read())
        wall = float(open(f[:-5] + ".wall").read())
        images = r["requests_total"] - r["error_count"]
        cpu = ticks / tck
        rows.append((cpu / images * 1e6, (cpu - idle * wall) / images * 1e6,
                     r["images_per_second"], r["client_cpu_cores"]))
    per[m] = rows
med = lambda m, i: statistics.median(x[i] for x in per[m])
print("Idle server: %.3f cores." % idle)
print()
print("| mode | server CPU µs/image, median (range) | vs %s | net of idle, µs/image | vs %s | images/s | client cores |" % (modes[0], modes[0]))
print("|---|---|---|---|---|---|---|")
for m in modes:
    us = [x[0] for x in per[m]]
    print("| %s | %.1f (%.1f-%.1f) | %.2fx | %.1f | %.2fx | %.0f | %.2f |" % (
        m, med(m, 0), min(us), max(us), med(m, 0) / med(modes[0], 0), med(m, 1),
        med(m, 1) / med(modes[0], 1), med(m, 2), med(m, 3)))
EOF
