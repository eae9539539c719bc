#!/usr/bin/env bash
# hgpipe-plan's predictions against a real hgpipe-server on emulated boards
# at the same load (docs/planning.md, "Agreement with the server"):
#   1. hgpipe-server starts with --boards sim:N (the `verify` model alone,
#      HG-PIPE DeiT-tiny timing) on free loopback ports;
#   2. calibration: hgpipe-perf drives it at a low load (CAL_LOAD), where
#      nearly every request finds an idle board, and hgpipe-plan simulates
#      the same load with no host overhead; the server's latency quantiles
#      (p50, p90, p99, max) minus the simulation's are the distribution of
#      the host overhead per request (gRPC, request parsing, packing, thread
#      wake-ups), which the board model does not contain
#      (hgpipe-plan --host-overhead-us 50:A,90:B,99:C,100:D; with
#      HOST_MODEL=constant, the p50 difference alone);
#   3. for each load (a fraction of the N boards' capacity, Poisson
#      arrivals of IMAGES_PER_REQUEST-image requests) hgpipe-perf --rate R --json measures the
#      client's p50/p99, the server's /metrics give the boards' utilization
#      (hgpipe_board_busy_seconds_total over the run), and hgpipe-plan
#      --boards N simulates the same load with the calibrated host overhead;
#   4. a markdown table shows both and their ratio, and whether each figure
#      agrees within TOLERANCE (10 %).
#
# Usage: bench/plan_vs_server.sh [BUILD_DIR]      (default: ./build)
# Environment (defaults):
#   BOARDS=2                    emulated boards (hgpipe-server --boards sim:N)
#   LOADS="0.3 0.7"             loads, as fractions of the boards' capacity
#   IMAGES_PER_REQUEST=1        images per request (the host path costs per
#                               request: more images reach higher loads on a
#                               small machine)
#   DURATION=10 WARMUP=2        seconds per load, measured / not counted
#   CAL_LOAD=0.05 CAL_DURATION=10  calibration load and seconds
#   HOST_MODEL=distribution     or constant (see 2.)
#   BOARD_SLOTS=0               runs queued per board, server and plan (0: from
#                               the pipeline depth, both sides' default)
#   DISPATCH_LEAD_US=1000       scheduler dispatch lead (server and plan)
#   MAX_IMAGES_PER_RUN=32       the verify model's batching.max_images_per_run
#   SEED=1                      arrivals (hgpipe-perf and hgpipe-plan)
#   TOLERANCE=0.10
#   NICE=0                      nice value for the server and hgpipe-perf
#   HOST_QUEUE=0                1: also model the server's CPU as a queue: its CPU
#                               time per request, measured from /proc during
#                               the calibration, on as many cores as
#                               SERVER_CPUS lists (else all), passed as
#                               hgpipe-plan --host-cpu-us/--host-cores
#   SERVER_CPUS="" PERF_CPUS="" taskset CPU lists for the server and for
#                               hgpipe-perf (e.g. 0 and 1: the client's own
#                               threads then do not delay the server's)
#   SERVER_ARGS=""              more hgpipe-server flags
#   PLAN=BUILD_DIR/bin/hgpipe-plan
#   OUT=BUILD_DIR/bench-results/plan-vs-server-<timestamp>
# Exit status: 0 if every figure agrees within TOLERANCE, 3 if not, 1 on
# failure to run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD/bin
BOARDS=${BOARDS:-2}
LOADS=${LOADS:-"0.3 0.7"}
IMAGES_PER_REQUEST=${IMAGES_PER_REQUEST:-1}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CAL_LOAD=${CAL_LOAD:-0.05}
HOST_MODEL=${HOST_MODEL:-distribution}
CAL_DURATION=${CAL_DURATION:-10}
BOARD_SLOTS=${BOARD_SLOTS:-0}
DISPATCH_LEAD_US=${DISPATCH_LEAD_US:-1000}
MAX_IMAGES_PER_RUN=${MAX_IMAGES_PER_RUN:-32}
SEED=${SEED:-1}
TOLERANCE=${TOLERANCE:-0.10}
NICE=${NICE:-0}
SERVER_CPUS=${SERVER_CPUS:-}
HOST_QUEUE=${HOST_QUEUE:-0}
PERF_CPUS=${PERF_CPUS:-}
SERVER_ARGS=${SERVER_ARGS:-}
PLAN=${PLAN:-$BIN/hgpipe-plan}
OUT=${OUT:-$BUILD/bench-results/plan-vs-server-$(date +%Y%m%d-%H%M%S)}
# HG-PIPE DeiT-tiny on one board: 425 MHz / 57,624 cycles per image.
BOARD_IMAGES_PER_SECOND=$(awk 'BEGIN { printf "%.6f", 425e6 / 57624 }')

for b in "$BIN/hgpipe-server" "$BIN/hgpipe-perf" "$PLAN"; do
  if [[ ! -x $b ]]; then
    echo "plan_vs_server: $b is missing; build it first:" >&2
    echo "  ninja -C $BUILD hgpipe-server hgpipe-perf hgpipe-plan" >&2
    exit 1
  fi
done
for tool in jq curl awk; do
  if ! command -v "$tool" >/dev/null; then
    echo "plan_vs_server: needs $tool" >&2
    exit 1
  fi
done
mkdir -p "$OUT/models"
cp -r "$ROOT/models/verify" "$OUT/models/"

SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# shellcheck disable=SC2086  # SERVER_ARGS is a list of flags
${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} nice -n "$NICE" "$BIN/hgpipe-server" --host 127.0.0.1 --grpc-port 0 --metrics-port 0 \
  --boards "sim:$BOARDS" --model-repository "$OUT/models" \
  --board-slots "$BOARD_SLOTS" --dispatch-lead-us "$DISPATCH_LEAD_US" $SERVER_ARGS \
  >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
GRPC_PORT=
for _ in $(seq 1 600); do
  line=$(grep -m1 'ready: grpc=' "$OUT/server.log" || true)
  if [[ -n $line ]]; then
    GRPC_PORT=$(sed -n 's/.*ready: grpc=[^ ]*:\([0-9][0-9]*\) .*/\1/p' <<<"$line")
    METRICS_PORT=$(sed -n 's/.*metrics=[^ ]*:\([0-9][0-9]*\).*/\1/p' <<<"$line")
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "plan_vs_server: hgpipe-server exited at start-up:" >&2
    cat "$OUT/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z $GRPC_PORT || -z ${METRICS_PORT:-} ]]; then
  echo "plan_vs_server: hgpipe-server not ready (no ports in its log):" >&2
  cat "$OUT/server.log" >&2
  exit 1
fi
echo "hgpipe-server: pid $SERVER_PID, grpc 127.0.0.1:$GRPC_PORT, metrics 127.0.0.1:$METRICS_PORT, $BOARDS board(s)" >&2

# busy_seconds: the verify model's boards' input-stream busy time so far.
busy_seconds() {
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk '/^hgpipe_board_busy_seconds_total\{/ && /model="verify"/ { s += $NF } END { printf "%.9f", s }'
}

# perf NAME RATE SECONDS WARMUP: hgpipe-perf open loop, JSON to $OUT/NAME.json.
perf() {
  ${PERF_CPUS:+taskset -c "$PERF_CPUS"} nice -n "$NICE" "$BIN/hgpipe-perf" --url "127.0.0.1:$GRPC_PORT" --model verify \
    --rate "$2" --images-per-request "$IMAGES_PER_REQUEST" --arrivals poisson --duration "$3" --warmup "$4" --seed "$SEED" \
    --json --progress=false >"$OUT/$1.json" 2>"$OUT/$1.err" || {
    echo "plan_vs_server: hgpipe-perf ($1) failed:" >&2
    cat "$OUT/$1.err" >&2
    exit 1
  }
}

# hist: the verify model's request-duration histogram so far, one
# "LE COUNT" line per bucket (the server's own latency, receipt to answer).
hist() {
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk '/^hgpipe_request_duration_seconds_bucket\{/ && /model="verify"/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      print le, $NF }'
}

# quantiles BEFORE AFTER: p50 p90 p99 (ms) of the requests between two hist
# snapshots, interpolated inside buckets as Prometheus' histogram_quantile.
quantiles() {
  awk -v before="$1" -v after="$2" 'BEGIN {
    n = split(after, a, "\n"); split(before, b, "\n")
    for (i = 1; i <= n; i++) {
      split(a[i], x, " "); split(b[i], y, " ")
      le[i] = (x[1] == "+Inf") ? 1e9 : x[1]; c[i] = x[2] - y[2]
    }
    total = c[n]; split("0.5 0.9 0.99", q, " "); out = ""
    for (k = 1; k <= 3; k++) {
      rank = q[k] * total; prev_le = 0; prev_c = 0
      for (i = 1; i <= n; i++) {
        if (c[i] >= rank) {
          v = prev_le + (le[i] - prev_le) * (c[i] > prev_c ? (rank - prev_c) / (c[i] - prev_c) : 0)
          break
        }
        prev_le = le[i]; prev_c = c[i]
      }
      out = out (k > 1 ? " " : "") sprintf("%.4f", v * 1000)
    }
    print out }'
}

# cpu_ticks: the server's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# plan NAME RATE SECONDS WARMUP HOST_US [HOST_CPU_US]: hgpipe-plan --boards N, JSON to
# $OUT/NAME.json.
plan() {
  local status=0
  "$PLAN" --boards "$BOARDS" --workload "verify:rate=$2:images=$IMAGES_PER_REQUEST" --seconds "$(awk "BEGIN { print $3 + $4 }")" \
    --warmup-seconds "$4" --host-overhead-us "$5" --dispatch-lead-us "$DISPATCH_LEAD_US" \
    --board-slots "$BOARD_SLOTS" --max-images-per-run "$MAX_IMAGES_PER_RUN" --seed "$SEED" \
    ${6:+--host-cpu-us "$6" --host-cores "$HOST_CORES"} \
    --json >"$OUT/$1.json" 2>"$OUT/$1.err" || status=$?
  # 3: objectives not met (e.g. failed requests): still a result.
  if [[ $status -ne 0 && $status -ne 3 ]]; then
    echo "plan_vs_server: hgpipe-plan ($1) failed:" >&2
    cat "$OUT/$1.err" >&2
    exit 1
  fi
}

# 1. Calibration at a low load: (nearly) every request finds an idle board,
# so the server's latency minus the simulated one is its host path.
CAL_RATE=$(awk "BEGIN { printf \"%.1f\", $CAL_LOAD * $BOARDS * $BOARD_IMAGES_PER_SECOND / $IMAGES_PER_REQUEST }")
echo "calibration: $CAL_RATE requests/s for ${CAL_DURATION}s" >&2
t0=$(cpu_ticks)
h0=$(hist)
perf calibration "$CAL_RATE" "$CAL_DURATION" 1
h1=$(hist)
t1=$(cpu_ticks)
CAL_SERVER_SIDE=$(quantiles "$h0" "$h1")
# The server's CPU time per request (warmup second included in both).
CAL_REQUESTS=$(awk "BEGIN { print $CAL_RATE * ($CAL_DURATION + 1) }")
HOST_CPU_US=$(awk "BEGIN { printf \"%.1f\", ($t1 - $t0) / $(getconf CLK_TCK) * 1e6 / $CAL_REQUESTS }")
if [[ -n $SERVER_CPUS ]]; then
  HOST_CORES=$(taskset -c "$SERVER_CPUS" nproc)
else
  HOST_CORES=$(nproc)
fi
[[ $HOST_QUEUE == 1 ]] || HOST_CPU_US=""
plan calibration-plan "$CAL_RATE" "$CAL_DURATION" 1 0
SERVER_Q=$(jq -r '.latency_ms | "\(.p50) \(.p90) \(.p99) \(.max)"' "$OUT/calibration.json")
PLAN_Q=$(jq -r '.models[0].tried[0].result.latency_ms | "\(.p50) \(.p90) \(.p99) \(.max)"' \
  "$OUT/calibration-plan.json")
# Per quantile, server minus simulation in us, kept >= 0 and non-decreasing.
HOST_US=$(awk -v s="$SERVER_Q" -v p="$PLAN_Q" -v model="$HOST_MODEL" 'BEGIN {
  split(s, sq, " "); split(p, pq, " "); split("50 90 99 100", pct, " ")
  prev = 0; out = ""
  for (i = 1; i <= 4; i++) {
    h = (sq[i] - pq[i]) * 1000
    if (h < prev) h = prev
    prev = h
    if (model == "constant") { printf "%.1f", h; exit }
    out = out (i > 1 ? "," : "") pct[i] ":" sprintf("%.1f", h)
  }
  print out }')
# The same from the server's own histogram (receipt to answer: no client,
# no network), for the server-side comparison: p50/p90/p99 differences.
PLAN_Q3=$(cut -d' ' -f1-3 <<<"$PLAN_Q")
HOST_US_SERVER=$(awk -v s="$CAL_SERVER_SIDE" -v p="$PLAN_Q3" 'BEGIN {
  split(s, sq, " "); split(p, pq, " "); split("50 90 99", pct, " ")
  prev = 0; out = ""
  for (i = 1; i <= 3; i++) {
    h = (sq[i] - pq[i]) * 1000
    if (h < prev) h = prev
    prev = h
    out = out (i > 1 ? "," : "") pct[i] ":" sprintf("%.1f", h)
  }
  print out ",100:" sprintf("%.1f", prev) }')
echo "calibration (server side): server p50/p90/p99 $CAL_SERVER_SIDE ms -> host overhead $HOST_US_SERVER us" >&2
echo "calibration: server p50/p90/p99/max $SERVER_Q ms, simulated $PLAN_Q ms -> host overhead $HOST_US us; server CPU ${HOST_CPU_US:-(not modelled)} us per request on $HOST_CORES core(s)" >&2

{
  echo "| load | rate req/s | utilization server / plan | p50 ms server / plan | p99 ms server / plan | within $(awk "BEGIN { print 100 * $TOLERANCE }") % |"
  echo "|---:|---:|---:|---:|---:|:---|"
} >"$OUT/table.md"
{
  echo "| load | rate req/s | server-side p50 ms server / plan | server-side p99 ms server / plan | within $(awk "BEGIN { print 100 * $TOLERANCE }") % |"
  echo "|---:|---:|---:|---:|:---|"
} >"$OUT/table-server-side.md"
ALL_AGREE=1
for load in $LOADS; do
  rate=$(awk "BEGIN { printf \"%.1f\", $load * $BOARDS * $BOARD_IMAGES_PER_SECOND / $IMAGES_PER_REQUEST }")
  echo "load $load: $rate requests/s for ${WARMUP}+${DURATION}s" >&2
  b0=$(busy_seconds)
  h0=$(hist)
  perf "perf-$load" "$rate" "$DURATION" "$WARMUP"
  h1=$(hist)
  b1=$(busy_seconds)
  plan "plan-$load" "$rate" "$DURATION" "$WARMUP" "$HOST_US" "$HOST_CPU_US"
  plan "plan-server-side-$load" "$rate" "$DURATION" "$WARMUP" "$HOST_US_SERVER" "$HOST_CPU_US"
  # Server side: the histogram counts warmup requests too.
  read -r ss_p50 _ ss_p99 <<<"$(quantiles "$h0" "$h1")"
  r='.models[0].tried[0].result'
  ps_p50=$(jq "$r.latency_ms.p50" "$OUT/plan-server-side-$load.json")
  ps_p99=$(jq "$r.latency_ms.p99" "$OUT/plan-server-side-$load.json")
  sline=$(awk -v s5="$ss_p50" -v p5="$ps_p50" -v s9="$ss_p99" -v p9="$ps_p99" \
    -v tol="$TOLERANCE" -v load="$load" -v rate="$rate" '
    function rel(p, s) { return (p - s) / s }
    function ok(p, s) { d = rel(p, s); return (d <= tol && d >= -tol) ? "yes" : "no" }
    BEGIN {
      printf "| %.0f %% | %s | %.3f / %.3f (%+.1f %%) | %.3f / %.3f (%+.1f %%) | %s, %s |",
        100 * load, rate, s5, p5, 100 * rel(p5, s5), s9, p9, 100 * rel(p9, s9),
        ok(p5, s5), ok(p9, s9)
    }')
  echo "$sline" >>"$OUT/table-server-side.md"
  # Busy time is counted per run at dispatch, over the whole hgpipe-perf run
  # (warmup included); arrivals spanned WARMUP + DURATION seconds.
  s_util=$(awk "BEGIN { printf \"%.4f\", ($b1 - $b0) / ($BOARDS * ($WARMUP + $DURATION)) }")
  s_p50=$(jq '.latency_ms.p50' "$OUT/perf-$load.json")
  s_p99=$(jq '.latency_ms.p99' "$OUT/perf-$load.json")
  s_err=$(jq '.error_count' "$OUT/perf-$load.json")
  r='.models[0].tried[0].result'
  p_util=$(jq "$r.utilization" "$OUT/plan-$load.json")
  p_p50=$(jq "$r.latency_ms.p50" "$OUT/plan-$load.json")
  p_p99=$(jq "$r.latency_ms.p99" "$OUT/plan-$load.json")
  line=$(awk -v su="$s_util" -v pu="$p_util" -v s5="$s_p50" -v p5="$p_p50" \
    -v s9="$s_p99" -v p9="$p_p99" -v tol="$TOLERANCE" -v load="$load" -v rate="$rate" '
    function rel(p, s) { return (p - s) / s }
    function ok(p, s) { d = rel(p, s); return (d <= tol && d >= -tol) ? "yes" : "no" }
    BEGIN {
      printf "| %.0f %% | %s | %.3f / %.3f (%+.1f %%) | %.3f / %.3f (%+.1f %%) | %.3f / %.3f (%+.1f %%) | %s, %s, %s |",
        100 * load, rate, su, pu, 100 * rel(pu, su), s5, p5, 100 * rel(p5, s5),
        s9, p9, 100 * rel(p9, s9), ok(pu, su), ok(p5, s5), ok(p9, s9)
    }')
  echo "$line" >>"$OUT/table.md"
  if [[ $line == *no* ]]; then ALL_AGREE=0; fi
  if [[ $s_err != 0 ]]; then
    echo "plan_vs_server: $s_err request(s) failed at load $load (see $OUT/perf-$load.json)" >&2
    ALL_AGREE=0
  fi
done

{
  echo
  echo "Boards: $BOARDS emulated (sim:$BOARDS), board slots $BOARD_SLOTS, dispatch lead $DISPATCH_LEAD_US us, max $MAX_IMAGES_PER_RUN images per run; Poisson arrivals, $IMAGES_PER_REQUEST image(s) per request, ${WARMUP} s warmup + ${DURATION} s measured."
  echo "Calibration at $CAL_RATE requests/s (${CAL_LOAD} of capacity): server p50/p90/p99/max $SERVER_Q ms, simulated $PLAN_Q ms: hgpipe-plan --host-overhead-us $HOST_US${HOST_CPU_US:+ --host-cpu-us $HOST_CPU_US --host-cores $HOST_CORES}."
  echo "Utilization: server from hgpipe_board_busy_seconds_total over the run; plan over its window. Latency: hgpipe-perf (client) and the simulation (arrival to answer)."
  echo "Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >>"$OUT/table.md"
cat "$OUT/table.md"
echo
echo "Server side (hgpipe_request_duration_seconds, receipt to answer; host overhead calibrated the same way from it: $HOST_US_SERVER us):"
echo
cat "$OUT/table-server-side.md"
echo "results in $OUT" >&2
[[ $ALL_AGREE == 1 ]] && exit 0 || exit 3
