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
#      arrivals of IMAGES_PER_REQUEST-image requests) hgpipe-perf --rate R
#      --json measures the client's p50/p99, the server's /metrics give its
#      own p50/p99 (hgpipe_request_duration_seconds, receipt to answer) and
#      the boards' utilization (hgpipe_board_busy_seconds_total over the
#      run), and hgpipe-plan --boards N simulates the same load with the
#      host overhead calibrated the same way (from the client's latency for
#      the client-side table, from the server's for the server-side one);
#   4. a markdown table shows both and their ratio, and whether each figure
#      agrees within TOLERANCE (10 %).
# With REPEAT=K, steps 1-3 run K times, each with a fresh server and its own
# calibration, interleaved (all loads of one repeat, then the next), and the
# tables compare the medians over the repeats, with the server's range
# (min-max) beside them; every repeat's figures are in OUT/runs.md. A p99
# over a few thousand requests on a shared machine moves by tens of percent
# between identical runs (docs/planning.md): one run is a sample, not the
# server's p99.
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
#   SEED=1                      arrivals (hgpipe-perf and hgpipe-plan; repeat r
#                               uses SEED + r - 1)
#   REPEAT=1                    independent repeats (see above)
#   TOLERANCE=0.10
#   NICE=0                      nice value for the server and hgpipe-perf
#   EMULATED_COMPUTE=0          1: the emulated boards also compute the verify
#                               kernel on the server's CPU (0: timing only,
#                               hgpipe-server --emulated-compute=false: a real
#                               board's computation does not load the host)
#   HOST_QUEUE=off              profile or calibration: the server's CPU as a
#                               queue in the plan (hgpipe-plan --host-cpu-us US --host-cores
#                               C, C = the cores SERVER_CPUS lists, else
#                               all): each request holds a host core for US,
#                               so requests wait for the CPU as load grows.
#                               US is the server's CPU time per request
#                               (from /proc), which falls with load (thread
#                               wake-ups are shared): "profile" measures it
#                               at each load in a separate run before the
#                               measured ones (PROFILE_DURATION=5 s);
#                               "calibration" uses the calibration load's
#                               for every load; "off": no host queue. On
#                               this server a FIFO of whole requests'
#                               CPU overstates the wait (docs/planning.md)
#   SERVER_CPUS="" PERF_CPUS="" taskset CPU lists for the server and for
#                               hgpipe-perf (e.g. 0 and 1: the client's own
#                               threads then do not delay the server's)
#   SERVER_ARGS=""              more hgpipe-server flags
#   PLAN=BUILD_DIR/bin/hgpipe-plan
#   OUT=BUILD_DIR/bench-results/plan-vs-server-<timestamp>
# Exit status: 0 if utilization and the server-side p50 and p99 agree
# within TOLERANCE at every load (the client-side latency, which also holds
# hgpipe-perf's own host path, is shown but not judged), 3 if not, 1 on
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
REPEAT=${REPEAT:-1}
TOLERANCE=${TOLERANCE:-0.10}
NICE=${NICE:-0}
SERVER_CPUS=${SERVER_CPUS:-}
HOST_QUEUE=${HOST_QUEUE:-off}
PROFILE_DURATION=${PROFILE_DURATION:-5}
case $HOST_QUEUE in profile | calibration | off) ;; *)
  echo "plan_vs_server: HOST_QUEUE must be profile, calibration or off" >&2
  exit 1 ;;
esac
PERF_CPUS=${PERF_CPUS:-}
SERVER_ARGS=${SERVER_ARGS:-}
EMULATED_COMPUTE=${EMULATED_COMPUTE:-0}
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

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SERVER_PID=

# start_server LOG: hgpipe-server on free ports; sets SERVER_PID, GRPC_PORT,
# METRICS_PORT.
start_server() {
  local log=$1
  # shellcheck disable=SC2086  # SERVER_ARGS is a list of flags
  bench_start "$log" ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} nice -n "$NICE" \
    "$BIN/hgpipe-server" --host 127.0.0.1 --grpc-port 0 --http-port 0 --metrics-port 0 \
    --boards "sim:$BOARDS" --model-repository "$OUT/models" \
    --board-slots "$BOARD_SLOTS" --dispatch-lead-us "$DISPATCH_LEAD_US" \
    --emulated-compute="$([[ $EMULATED_COMPUTE == 1 ]] && echo true || echo false)" $SERVER_ARGS
  SERVER_PID=$BENCH_PID GRPC_PORT=$BENCH_GRPC_PORT METRICS_PORT=${BENCH_METRICS##*:}
  if [[ -z $BENCH_METRICS ]]; then
    echo "plan_vs_server: hgpipe-server named no metrics port:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "hgpipe-server: pid $SERVER_PID, grpc 127.0.0.1:$GRPC_PORT, metrics 127.0.0.1:$METRICS_PORT, $BOARDS board(s)" >&2
}

stop_server() {
  [[ -n $SERVER_PID ]] && bench_stop "$SERVER_PID"
  SERVER_PID=
}

# busy_seconds: the verify model's boards' input-stream busy time so far.
busy_seconds() {
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk '/^hgpipe_board_busy_seconds_total\{/ && /model="verify"/ { s += $NF } END { printf "%.9f", s }'
}

# perf NAME RATE SECONDS WARMUP: hgpipe-perf open loop, JSON to $OUT/NAME.json.
perf() {
  ${PERF_CPUS:+taskset -c "$PERF_CPUS"} nice -n "$NICE" "$BIN/hgpipe-perf" --url "127.0.0.1:$GRPC_PORT" --model verify \
    --rate "$2" --images-per-request "$IMAGES_PER_REQUEST" --arrivals poisson --duration "$3" --warmup "$4" --seed "$RUN_SEED" \
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

# cpu_us_per_request T0 T1 NAME: the server's CPU us per request between two
# cpu_ticks readings that bracket the hgpipe-perf run NAME (warmup included
# in both).
cpu_us_per_request() {
  awk -v t0="$1" -v t1="$2" -v tck="$(getconf CLK_TCK)" -v n="$(jq '.requests_total' "$OUT/$3.json")" \
    'BEGIN { printf "%.1f", (t1 - t0) / tck * 1e6 / n }'
}

# plan NAME RATE SECONDS WARMUP HOST_US [HOST_CPU_US]: hgpipe-plan --boards N, JSON to
# $OUT/NAME.json.
plan() {
  local status=0
  "$PLAN" --boards "$BOARDS" --workload "verify:rate=$2:images=$IMAGES_PER_REQUEST" --seconds "$(awk "BEGIN { print $3 + $4 }")" \
    --warmup-seconds "$4" --host-overhead-us "$5" --dispatch-lead-us "$DISPATCH_LEAD_US" \
    --board-slots "$BOARD_SLOTS" --max-images-per-run "$MAX_IMAGES_PER_RUN" --seed "$RUN_SEED" \
    ${6:+--host-cpu-us "$6" --host-cores "$HOST_CORES"} \
    --json >"$OUT/$1.json" 2>"$OUT/$1.err" || status=$?
  # 3: objectives not met (e.g. failed requests): still a result.
  if [[ $status -ne 0 && $status -ne 3 ]]; then
    echo "plan_vs_server: hgpipe-plan ($1) failed:" >&2
    cat "$OUT/$1.err" >&2
    exit 1
  fi
}

# host_overhead SERVER PLAN PERCENTILES [constant]: per percentile, the
# server's latency quantile minus the simulation's, in us, kept >= 0 and
# non-decreasing: "P:US,..." for hgpipe-plan --host-overhead-us (constant:
# the first difference alone).
host_overhead() {
  awk -v s="$1" -v p="$2" -v pcts="$3" -v model="${4:-distribution}" 'BEGIN {
    n = split(pcts, pct, " "); split(s, sq, " "); split(p, pq, " ")
    prev = 0; out = ""
    for (i = 1; i <= n; i++) {
      h = (sq[i] - pq[i]) * 1000
      if (h < prev) h = prev
      prev = h
      if (model == "constant") { printf "%.1f", h; exit }
      out = out (i > 1 ? "," : "") pct[i] ":" sprintf("%.1f", h)
    }
    print out }'
}

# calibrate R: the host-overhead distributions for repeat R (client side:
# HOST_US, server side: HOST_US_SERVER), measured at a low load where
# (nearly) every request finds an idle board, so the server's latency minus
# the simulated one is its host path.
calibrate() {
  local r=$1 t0 t1 h0 h1 cal_server_side plan_q3 server_q plan_q
  echo "repeat $r: calibration: $CAL_RATE requests/s for ${CAL_DURATION}s" >&2
  t0=$(cpu_ticks)
  h0=$(hist)
  perf "r$r-calibration" "$CAL_RATE" "$CAL_DURATION" 1
  h1=$(hist)
  t1=$(cpu_ticks)
  cal_server_side=$(quantiles "$h0" "$h1")
  CAL_CPU_US=$(cpu_us_per_request "$t0" "$t1" "r$r-calibration")
  # The simulation of the calibration has the host queue too, so the host
  # overhead is what remains beyond it.
  plan "r$r-calibration-plan" "$CAL_RATE" "$CAL_DURATION" 1 0 "$(host_cpu_us "$CAL_CPU_US")"
  server_q=$(jq -r '.latency_ms | "\(.p50) \(.p90) \(.p99) \(.max)"' "$OUT/r$r-calibration.json")
  plan_q=$(jq -r '.models[0].tried[0].result.latency_ms | "\(.p50) \(.p90) \(.p99) \(.max)"' \
    "$OUT/r$r-calibration-plan.json")
  HOST_US=$(host_overhead "$server_q" "$plan_q" "50 90 99 100" "$HOST_MODEL")
  # The same from the server's own histogram (receipt to answer: no client,
  # no network), for the server-side comparison: p50/p90/p99 differences,
  # the largest standing for the maximum.
  plan_q3=$(cut -d' ' -f1-3 <<<"$plan_q")
  HOST_US_SERVER=$(host_overhead "$cal_server_side" "$plan_q3" "50 90 99")
  HOST_US_SERVER="$HOST_US_SERVER,100:${HOST_US_SERVER##*:}"
  echo "repeat $r: calibration (server side): server p50/p90/p99 $cal_server_side ms -> host overhead $HOST_US_SERVER us" >&2
  echo "repeat $r: calibration: server p50/p90/p99/max $server_q ms, simulated $plan_q ms -> host overhead $HOST_US us; server CPU $CAL_CPU_US us per request on $HOST_CORES core(s)" >&2
  echo "| $r | $server_q | $plan_q | $HOST_US | $cal_server_side | $HOST_US_SERVER | $CAL_CPU_US |" >>"$OUT/calibrations.md"
}

# host_cpu_us US: what the plan gets for --host-cpu-us (nothing: no host
# queue).
host_cpu_us() { [[ $HOST_QUEUE == off ]] || echo "$1"; }

# profile R: the server's CPU us per request at each load (PROFILE_CPU_US),
# each from its own run before the measured ones.
declare -A PROFILE_CPU_US
profile() {
  local r=$1 load rate t0 t1
  for load in $LOADS; do
    rate=$(awk "BEGIN { printf \"%.1f\", $load * $BOARDS * $BOARD_IMAGES_PER_SECOND / $IMAGES_PER_REQUEST }")
    t0=$(cpu_ticks)
    perf "r$r-profile-$load" "$rate" "$PROFILE_DURATION" 1
    t1=$(cpu_ticks)
    PROFILE_CPU_US[$load]=$(cpu_us_per_request "$t0" "$t1" "r$r-profile-$load")
    echo "repeat $r: server CPU at load $load: ${PROFILE_CPU_US[$load]} us per request" >&2
  done
}

# measure R LOAD: one load of repeat R, server and plan; appends a row to
# $OUT/results.tsv.
measure() {
  local r=$1 load=$2 rate b0 b1 h0 h1 t0 t1 ss_p50 ss_p99 res cpu
  rate=$(awk "BEGIN { printf \"%.1f\", $load * $BOARDS * $BOARD_IMAGES_PER_SECOND / $IMAGES_PER_REQUEST }")
  echo "repeat $r, load $load: $rate requests/s for ${WARMUP}+${DURATION}s" >&2
  b0=$(busy_seconds)
  h0=$(hist)
  t0=$(cpu_ticks)
  perf "r$r-perf-$load" "$rate" "$DURATION" "$WARMUP"
  t1=$(cpu_ticks)
  h1=$(hist)
  b1=$(busy_seconds)
  case $HOST_QUEUE in
    profile) cpu=${PROFILE_CPU_US[$load]} ;;
    calibration) cpu=$CAL_CPU_US ;;
    off) cpu= ;;
  esac
  plan "r$r-plan-$load" "$rate" "$DURATION" "$WARMUP" "$HOST_US" "$cpu"
  plan "r$r-plan-server-side-$load" "$rate" "$DURATION" "$WARMUP" "$HOST_US_SERVER" "$cpu"
  # Server side: the histogram counts warmup requests too.
  read -r ss_p50 _ ss_p99 <<<"$(quantiles "$h0" "$h1")"
  res='.models[0].tried[0].result'
  # Busy time is counted per run at dispatch, over the whole hgpipe-perf run
  # (warmup included); arrivals spanned WARMUP + DURATION seconds.
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$load" "$rate" \
    "$(awk "BEGIN { printf \"%.4f\", ($b1 - $b0) / ($BOARDS * ($WARMUP + $DURATION)) }")" \
    "$(jq "$res.utilization" "$OUT/r$r-plan-$load.json")" \
    "$(jq '.latency_ms.p50' "$OUT/r$r-perf-$load.json")" \
    "$(jq "$res.latency_ms.p50" "$OUT/r$r-plan-$load.json")" \
    "$(jq '.latency_ms.p99' "$OUT/r$r-perf-$load.json")" \
    "$(jq "$res.latency_ms.p99" "$OUT/r$r-plan-$load.json")" \
    "$ss_p50" "$(jq "$res.latency_ms.p50" "$OUT/r$r-plan-server-side-$load.json")" \
    "$ss_p99" "$(jq "$res.latency_ms.p99" "$OUT/r$r-plan-server-side-$load.json")" \
    "$(jq '.error_count' "$OUT/r$r-perf-$load.json")" \
    "$(cpu_us_per_request "$t0" "$t1" "r$r-perf-$load")" "${cpu:--}" \
    >>"$OUT/results.tsv"
}

CAL_RATE=$(awk "BEGIN { printf \"%.1f\", $CAL_LOAD * $BOARDS * $BOARD_IMAGES_PER_SECOND / $IMAGES_PER_REQUEST }")
if [[ -n $SERVER_CPUS ]]; then
  HOST_CORES=$(taskset -c "$SERVER_CPUS" nproc)
else
  HOST_CORES=$(nproc)
fi
: >"$OUT/results.tsv"
{
  echo "| repeat | client p50/p90/p99/max ms | simulated ms | --host-overhead-us (client side) | server-side p50/p90/p99 ms | --host-overhead-us (server side) | server CPU µs/request |"
  echo "|---:|---|---|---|---|---|---:|"
} >"$OUT/calibrations.md"
for r in $(seq 1 "$REPEAT"); do
  RUN_SEED=$((SEED + r - 1))
  start_server "$OUT/server-r$r.log"
  calibrate "$r"
  [[ $HOST_QUEUE != profile ]] || profile "$r"
  for load in $LOADS; do measure "$r" "$load"; done
  stop_server
done

# Columns of results.tsv: 1 repeat, 2 load, 3 rate, 4/5 utilization
# server/plan, 6/7 client p50 server/plan, 8/9 client p99, 10/11 server-side
# p50, 12/13 server-side p99, 14 failed requests, 15 the server's CPU us per
# request in the measured run, 16 the plan's --host-cpu-us.
# over_repeats LOAD COL median|min|max: the column over the repeats of LOAD.
over_repeats() {
  awk -F'\t' -v load="$1" -v col="$2" '$2 == load { print $col }' "$OUT/results.tsv" | sort -g |
    awk -v what="$3" '{ v[NR] = $1 } END {
      if (what == "min") x = v[1]
      else if (what == "max") x = v[NR]
      else x = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      print x }'
}

# cell LOAD SERVER_COL PLAN_COL: "yes|no<TAB>server / plan (+x %)" from the
# medians (within TOLERANCE or not), with the server's range when there are
# repeats.
cell() {
  local s p lo hi
  s=$(over_repeats "$1" "$2" median); p=$(over_repeats "$1" "$3" median)
  lo=$(over_repeats "$1" "$2" min); hi=$(over_repeats "$1" "$2" max)
  awk -v s="$s" -v p="$p" -v lo="$lo" -v hi="$hi" -v rep="$REPEAT" -v tol="$TOLERANCE" 'BEGIN {
    d = (p - s) / s
    printf "%s\t%.3f / %.3f (%+.1f %%)", (d <= tol && d >= -tol) ? "yes" : "no", s, p, 100 * d
    if (rep > 1) printf " [%.3f-%.3f]", lo, hi }'
}

TOL_PCT=$(awk "BEGIN { print 100 * $TOLERANCE }")
WHAT=$([[ $REPEAT -gt 1 ]] && echo "median of $REPEAT runs server / plan [server min-max]" || echo "server / plan")
{
  echo "| load | rate req/s | utilization $WHAT | p50 ms $WHAT | p99 ms $WHAT | within $TOL_PCT % |"
  echo "|---:|---:|---:|---:|---:|:---|"
} >"$OUT/table.md"
{
  echo "| load | rate req/s | server-side p50 ms $WHAT | server-side p99 ms $WHAT | within $TOL_PCT % |"
  echo "|---:|---:|---:|---:|:---|"
} >"$OUT/table-server-side.md"
{
  echo "| repeat | load | utilization server / plan | p50 ms server / plan | p99 ms server / plan | server-side p50 ms server / plan | server-side p99 ms server / plan | failed | server CPU µs/request: measured run / plan's host queue |"
  echo "|---:|---:|---|---|---|---|---|---:|---:|"
  awk -F'\t' '{ printf "| %s | %.0f %% | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f | %s | %s / %s |\n",
    $1, 100 * $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 }' "$OUT/results.tsv"
} >"$OUT/runs.md"
ALL_AGREE=1
for load in $LOADS; do
  rate=$(over_repeats "$load" 3 median)
  IFS=$'\t' read -r ok_u u <<<"$(cell "$load" 4 5)"
  IFS=$'\t' read -r ok_c5 c5 <<<"$(cell "$load" 6 7)"
  IFS=$'\t' read -r ok_c9 c9 <<<"$(cell "$load" 8 9)"
  IFS=$'\t' read -r ok_s5 s5 <<<"$(cell "$load" 10 11)"
  IFS=$'\t' read -r ok_s9 s9 <<<"$(cell "$load" 12 13)"
  pct=$(awk "BEGIN { printf \"%.0f\", 100 * $load }")
  echo "| $pct % | $rate | $u | $c5 | $c9 | $ok_u, $ok_c5, $ok_c9 |" >>"$OUT/table.md"
  echo "| $pct % | $rate | $s5 | $s9 | $ok_s5, $ok_s9 |" >>"$OUT/table-server-side.md"
  # Judged: what the plan predicts (the boards, the scheduler, the server's
  # host path as calibrated); the client-side figures add hgpipe-perf's own
  # host path, which shares this machine, and are shown for reference.
  for ok in $ok_u $ok_s5 $ok_s9; do [[ $ok == yes ]] || ALL_AGREE=0; done
  errors=$(awk -F'\t' -v load="$load" '$2 == load { s += $14 } END { print s + 0 }' "$OUT/results.tsv")
  if [[ $errors != 0 ]]; then
    echo "plan_vs_server: $errors request(s) failed at load $load (see $OUT/r*-perf-$load.json)" >&2
    ALL_AGREE=0
  fi
done

{
  echo
  echo "Boards: $BOARDS emulated (sim:$BOARDS), board slots $BOARD_SLOTS, dispatch lead $DISPATCH_LEAD_US us, max $MAX_IMAGES_PER_RUN images per run; Poisson arrivals, $IMAGES_PER_REQUEST image(s) per request, ${WARMUP} s warmup + ${DURATION} s measured; $REPEAT repeat(s), each with a fresh server calibrated at $CAL_RATE requests/s (${CAL_LOAD} of capacity) for ${CAL_DURATION} s; host queue: $HOST_QUEUE ($HOST_CORES core(s)); emulated boards $([[ $EMULATED_COMPUTE == 1 ]] && echo "computing the kernel" || echo "timing only")."
  echo "Utilization: server from hgpipe_board_busy_seconds_total over the run; plan over its window. Latency: hgpipe-perf (client) and the simulation (arrival to answer)."
  echo "Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)${SERVER_CPUS:+, server on CPUs $SERVER_CPUS}${PERF_CPUS:+, hgpipe-perf on CPUs $PERF_CPUS}"
} >>"$OUT/table.md"
echo "Client side (hgpipe-perf; host overhead calibrated from the client's latency):"
echo
cat "$OUT/table.md"
echo
echo "Server side (hgpipe_request_duration_seconds, receipt to answer; host overhead calibrated the same way from it):"
echo
cat "$OUT/table-server-side.md"
echo
echo "Calibrations:"
echo
cat "$OUT/calibrations.md"
if [[ $REPEAT -gt 1 ]]; then
  echo
  echo "Every run:"
  echo
  cat "$OUT/runs.md"
fi
echo "results in $OUT" >&2
[[ $ALL_AGREE == 1 ]] && exit 0 || exit 3
