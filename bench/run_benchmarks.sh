#!/usr/bin/env bash
# Serving benchmarks on this machine, in one run (docs/BENCHMARKS.md):
#   1. hgpipe-echo-server (the gRPC transport ceiling) and hgpipe-server with
#      emulated boards are started on free loopback ports;
#   2. hgpipe-perf drives each with identical settings, alternating echo and
#      server for each setting so that background load hits both alike
#      (a sweep over images per request and concurrency);
#   3. a short --verify run checks the server's answers under load;
#   4. hgpipe-bench-board measures the emulated board alone at saturation,
#      and hgpipe-scheduler-bench (when built) the scheduler's cost per image
#      as a discrete-event simulation on 1, 8 and 64 boards;
#   5. a markdown table of server images/s against min(board ceiling, echo
#      ceiling at the same settings) is printed and written to the results.
#
# Usage: bench/run_benchmarks.sh [BUILD_DIR]       (default: ./build)
# Environment (defaults):
#   DURATION=10 WARMUP=3            seconds per point, measured / not counted
#   CONCURRENCY="1 4 16 32 64"      closed-loop concurrency sweep
#   IMAGES_PER_REQUEST="1 8"        images per request sweep
#   REPEAT=1                        runs per point; the table shows the median
#                                   run (and the range when REPEAT > 1)
#   NICE=0                          nice value for the servers, hgpipe-perf
#                                   and hgpipe-bench-board (e.g. -10 as root
#                                   on a machine shared with other jobs)
#   BOARDS=sim:1                    hgpipe-server --boards
#   MODEL_REPOSITORY=OUT/models     hgpipe-server --model-repository; by
#                                   default a copy of models/verify alone, so
#                                   no other model's boards share the CPU
#   SERVER_ARGS=""                  more hgpipe-server flags
#   SERVER_ENV=""                   environment for hgpipe-server, e.g.
#     GLIBC_TUNABLES=glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=268435456
#   PERF_ARGS=""                    more hgpipe-perf flags (both targets)
#   OUT=BUILD_DIR/bench-results/<timestamp>   where logs and JSON go
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD/bin
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONCURRENCY=${CONCURRENCY:-"1 4 16 32 64"}
IMAGES_PER_REQUEST=${IMAGES_PER_REQUEST:-"1 8"}
REPEAT=${REPEAT:-1}
NICE=${NICE:-0}
BOARDS=${BOARDS:-sim:1}
SERVER_ARGS=${SERVER_ARGS:-}
SERVER_ENV=${SERVER_ENV:-}
PERF_ARGS=${PERF_ARGS:-}
OUT=${OUT:-$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3

for b in hgpipe-echo-server hgpipe-server hgpipe-perf hgpipe-bench-board; do
  if [[ ! -x $BIN/$b ]]; then
    echo "run_benchmarks: $BIN/$b is missing; build it first:" >&2
    echo "  ninja -C $BUILD hgpipe-echo-server hgpipe-server hgpipe-perf hgpipe-bench-board" >&2
    exit 1
  fi
done
mkdir -p "$OUT"
if [[ -z ${MODEL_REPOSITORY:-} ]]; then
  MODEL_REPOSITORY=$OUT/models
  mkdir -p "$MODEL_REPOSITORY"
  cp -r "$ROOT/models/verify" "$MODEL_REPOSITORY/"
fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# start_server NAME BINARY ARGS...: starts it logging to $OUT/NAME.log and
# sets PORT to its gRPC port, SERVER_PID to its pid.
start_server() {
  local name=$1
  shift
  bench_start "$OUT/$name.log" nice -n "$NICE" "$@"
  PORT=$BENCH_GRPC_PORT SERVER_PID=$BENCH_PID
  echo "$name: pid $SERVER_PID, grpc 127.0.0.1:$PORT" >&2
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm)"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "cores: $(nproc)"
  echo "load_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "command: $0 $* (REPEAT=$REPEAT NICE=$NICE DURATION=$DURATION WARMUP=$WARMUP CONCURRENCY='$CONCURRENCY' IMAGES_PER_REQUEST='$IMAGES_PER_REQUEST' BOARDS=$BOARDS MODEL_REPOSITORY=$MODEL_REPOSITORY SERVER_ARGS='$SERVER_ARGS' SERVER_ENV='$SERVER_ENV' PERF_ARGS='$PERF_ARGS')"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

start_server echo "$BIN/hgpipe-echo-server" --host 127.0.0.1 --grpc-port 0
ECHO_PORT=$PORT
ECHO_PID=$SERVER_PID
# shellcheck disable=SC2086  # SERVER_ARGS is a list of flags
start_server server env $SERVER_ENV "$BIN/hgpipe-server" --host 127.0.0.1 --grpc-port 0 --http-port 0 \
  --metrics-port 0 --boards "$BOARDS" --model-repository "$MODEL_REPOSITORY" \
  $SERVER_ARGS
SERVER_PORT=$PORT
HGPIPE_SERVER_PID=$SERVER_PID
CLK_TCK=$(getconf CLK_TCK)


perf() {  # perf TARGET_NAME PORT SERVER_PID IPR CONCURRENCY REPETITION
  local name=$1 port=$2 pid=$3
  shift 3
  local out=$OUT/perf-$name-n$1-c$2-r$3.json
  local t0 w0
  t0=$(cpu_ticks "$pid")
  w0=$(date +%s.%N)
  # shellcheck disable=SC2086  # PERF_ARGS is a list of flags
  if ! nice -n "$NICE" "$BIN/hgpipe-perf" --url "127.0.0.1:$port" --model verify \
      --images-per-request "$1" --concurrency "$2" --duration "$DURATION" \
      --warmup "$WARMUP" --json --progress=false --allow-errors $PERF_ARGS \
      >"$out" 2>"${out%.json}.err"; then
    echo "run_benchmarks: hgpipe-perf against $name failed:" >&2
    cat "${out%.json}.err" >&2
    exit 1
  fi
  # The server's CPU over the whole hgpipe-perf run (warmup included), in
  # cores, next to the client's own figure in the JSON.
  local t1 w1
  t1=$(cpu_ticks "$pid")
  w1=$(date +%s.%N)
  $PY -c 'import sys; t0,t1,tck,w0,w1=map(float,sys.argv[1:]); print("%.4f" % ((t1-t0)/tck/(w1-w0)))' \
    "$t0" "$t1" "$CLK_TCK" "$w0" "$w1" >"${out%.json}.server_cpu"
  $PY -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  %-6s n=%-2s c=%-3s %9.1f images/s  p50 %7.3f ms  p99 %7.3f ms  errors %d  CPU: client %.2f, server %s cores" % (sys.argv[2], sys.argv[3], sys.argv[4], r["images_per_second"], r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["error_count"], r["client_cpu_cores"], open(sys.argv[5]).read().strip()))' \
    "$out" "$name" "$1" "$2" "${out%.json}.server_cpu" >&2
}

for r in $(seq 1 "$REPEAT"); do
  for n in $IMAGES_PER_REQUEST; do
    for c in $CONCURRENCY; do
      perf echo "$ECHO_PORT" "$ECHO_PID" "$n" "$c" "$r"
      perf server "$SERVER_PORT" "$HGPIPE_SERVER_PID" "$n" "$c" "$r"
    done
  done
done

# Correctness under load: every response checked against its input digest.
echo "verify run against hgpipe-server (16 x 1 image, 3 s)" >&2
nice -n "$NICE" "$BIN/hgpipe-perf" --url "127.0.0.1:$SERVER_PORT" --model verify \
  --concurrency 16 --duration 3 --warmup 0.5 --verify --json --progress=false \
  >"$OUT/verify.json" 2>"$OUT/verify.err" || {
  echo "run_benchmarks: the --verify run failed:" >&2
  cat "$OUT/verify.err" >&2
  exit 1
}

# The servers are idle from here on; stop them before measuring the board.
bench_stop_all

echo "hgpipe-bench-board" >&2
nice -n "$NICE" "$BIN/hgpipe-bench-board" --json --images-per-run 1,16,64 --slots 8 \
  --duration 3 >"$OUT/board.json"

if [[ -x $BIN/hgpipe-scheduler-bench ]]; then
  echo "hgpipe-scheduler-bench" >&2
  nice -n "$NICE" "$BIN/hgpipe-scheduler-bench" --benchmark_format=json \
    >"$OUT/scheduler.json" 2>"$OUT/scheduler.err"
fi

echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

$PY - "$OUT" <<'EOF'
import glob, json, os, re, sys

out = sys.argv[1]
machine = open(os.path.join(out, "machine.txt")).read()
board = json.load(open(os.path.join(out, "board.json")))["results"]
ceiling = board[0]["ceiling_images_per_second"]
verify = json.load(open(os.path.join(out, "verify.json")))

runs = {}
for path in glob.glob(os.path.join(out, "perf-*.json")):
    m = re.match(r"perf-(echo|server)-n(\d+)-c(\d+)-r(\d+)\.json",
                 os.path.basename(path))
    result = json.load(open(path))
    result["server_cpu_cores"] = float(open(path[:-len(".json")] + ".server_cpu").read())
    runs.setdefault((m.group(1), int(m.group(2)), int(m.group(3))), []).append(result)

def median_run(results):
    """The run with the median images/s, and the range over all runs."""
    ordered = sorted(results, key=lambda r: r["images_per_second"])
    return (ordered[(len(ordered) - 1) // 2], ordered[0]["images_per_second"],
            ordered[-1]["images_per_second"], sum(r["error_count"] for r in results))

def ips(value, low, high):
    return "%.0f" % value if low == high else "%.0f (%.0f-%.0f)" % (value, low, high)

def cpu_us_per_image(r):
    """Client + server CPU time per image, µs."""
    if r["images_per_second"] <= 0:
        return float("nan")
    return 1e6 * (r["client_cpu_cores"] + r["server_cpu_cores"]) / r["images_per_second"]

lines = []
lines.append("| images/request | concurrency | echo images/s | server images/s "
             "| server p50 / p99 ms | ceiling min(board, echo) | server / ceiling "
             "| CPU cores client + server (echo run) | CPU cores client + server (server run) "
             "| CPU µs/image echo / server | errors |")
lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
best = None
for (kind, n, c) in sorted(k for k in runs if k[0] == "server"):
    s, s_low, s_high, s_errors = median_run(runs[(kind, n, c)])
    echo_ips, e_low, e_high, e_errors = float("nan"), 0, 0, 0
    e = None
    if ("echo", n, c) in runs:
        e, e_low, e_high, e_errors = median_run(runs[("echo", n, c)])
        echo_ips = e["images_per_second"]
    limit = min(ceiling, echo_ips)
    ratio = s["images_per_second"] / limit if limit > 0 else float("nan")
    if best is None or ratio > best[0]:
        best = (ratio, n, c, s["images_per_second"], limit)
    echo_cpu = "%.2f + %.2f" % (e["client_cpu_cores"], e["server_cpu_cores"]) if e else "-"
    echo_us = "%.0f" % cpu_us_per_image(e) if e else "-"
    lines.append("| %d | %d | %s | %s | %.2f / %.2f | %.0f | %.1f%% | %s | %.2f + %.2f | %s / %.0f | %d |" % (
        n, c, ips(echo_ips, e_low, e_high), ips(s["images_per_second"], s_low, s_high),
        s["latency_ms"]["p50"], s["latency_ms"]["p99"], limit, 100 * ratio,
        echo_cpu, s["client_cpu_cores"], s["server_cpu_cores"], echo_us,
        cpu_us_per_image(s), s_errors + e_errors))

lines.append("")
lines.append("Board ceiling (1/II): %.0f images/s. Emulated board alone "
             "(hgpipe-bench-board, saturated, RealClock):" % ceiling)
lines.append("")
lines.append("| kernel | slots x images/run | images/s | of ceiling | timing model allows | CPU |")
lines.append("|---|---:|---:|---:|---:|---:|")
for b in board:
    lines.append("| %s | %d x %d | %.0f | %.1f%% | %.0f | %.2f cores |" % (
        b["kernel"], b["slots"], b["images_per_run"], b["images_per_second"],
        100 * b["ratio_to_ceiling"], b["model_images_per_second"], b["cpu_cores"]))
scheduler_path = os.path.join(out, "scheduler.json")
if os.path.exists(scheduler_path):
    lines.append("")
    lines.append("Scheduler cost per image (hgpipe-scheduler-bench: discrete-event "
                 "simulation, SimClock, timing-only emulated boards):")
    lines.append("")
    lines.append("| benchmark | images simulated per wall second | wall ns/image | simulated / wall time | utilization |")
    lines.append("|---|---:|---:|---:|---:|")
    for b in json.load(open(scheduler_path))["benchmarks"]:
        lines.append("| %s | %.0f | %.0f | %.2f | %.1f%% |" % (
            b["name"], b["items_per_second"], b["ns_per_image"],
            b["sim_speedup"], 100 * b["utilization"]))
lines.append("")
lines.append("Verify run (16 x 1 image, every response checked): %.0f images/s, "
             "%d ok, %d errors." % (verify["images_per_second"],
                                    verify["requests_ok"], verify["error_count"]))
if best:
    lines.append("")
    lines.append("Best: %.1f%% of min(board, echo) = %.0f of %.0f images/s at "
                 "%d image(s)/request, concurrency %d (acceptance bar: 95%%)." % (
                     100 * best[0], best[3], best[4], best[1], best[2]))
lines.append("")
lines.append("```")
lines.append(machine.strip())
lines.append("```")
table = "\n".join(lines) + "\n"
open(os.path.join(out, "results.md"), "w").write(table)
print(table)
EOF
echo "results in $OUT (results.md, perf-*.json, board.json, logs)" >&2
