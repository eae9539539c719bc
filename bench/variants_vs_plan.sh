#!/usr/bin/env bash
# Deadlines under overload (issue 16) against the real server, and
# hgpipe-plan's prediction of the same run (docs/BENCHMARKS.md, "Deadlines
# under overload"):
#   1. bench/variants_repo.py builds a model repository in OUT: fmnist_vit's
#      variants (those models/fmnist_vit/config.pbtxt lists, else the full
#      weights alone plus an illustrative `fast` variant running the full
#      weights), with HG-PIPE DeiT-tiny's timing scaled by SCALE (every
#      interval, latency, deadline and reprogramming time x SCALE, rates /
#      SCALE: the server's host cost per request stays small against the
#      boards' times on a small machine), one variant made FAST_SPEEDUP
#      times faster (illustrative), taking pixels (input_format PIXELS);
#   2. per policy, a fresh hgpipe-server with BOARDS emulated boards
#      computing the real datapath, and hgpipe-perf in open loop (Poisson)
#      at LOAD x the full variant's capacity, every request with the
#      deadline (Triton's `timeout`) and, for `variants`, min_accuracy,
#      sending the Fashion-MNIST test images with their labels: goodput,
#      the mix of variants that answered (the response's `variant`), the
#      declared mean accuracy (the manifests') and the measured accuracy of
#      what was answered;
#      `reject`: no min_accuracy (the most accurate variant only, what
#      servers do today); `variants`: min_accuracy MIN_ACCURACY;
#   3. hgpipe-plan simulates the same (variants, boards, rate, deadline,
#      floor, reprogramming time, warmup and window, seed);
#   4. a markdown table of both and their ratio: goodput, mean accuracy and
#      p99 judged within TOLERANCE (10 %), the mix shown.
# The first WARMUP seconds (boards moving between variants) are not
# measured, on either side.
#
# Usage: bench/variants_vs_plan.sh [BUILD_DIR]      (default: ./build)
# Environment (defaults):
#   SCALE=50                 HG-PIPE's times x SCALE (rates / SCALE)
#   BOARDS=4 LOAD=2          emulated boards; offered load, x the full
#                            variant's capacity on BOARDS boards
#   DEADLINE_MS=5            HG-PIPE's deadline (sent x SCALE)
#   PROGRAM_MS=1000          reprogramming a board, HG-PIPE's (x SCALE)
#   MIN_ACCURACY=            the `variants` floor (default: the illustrative
#                            fast variant's top-1, so that it is accepted)
#   FAST_SPEEDUP=3           the illustrative variant's interval divisor
#   FAST_VARIANT=taylor      which listed variant gets it (absent: the least
#                            accurate)
#   FULL_TOP1=0.8833         the full model's top-1 when its manifest states
#                            none (measured through the server)
#   FAST_DROP=0.02           with no variants listed: `fast` is declared
#                            FULL_TOP1 - FAST_DROP (a placeholder)
#   WARMUP=                  seconds not measured (default: 2 x the scaled
#                            reprogramming time + 10)
#   DURATION=20              measured seconds
#   POLICIES="reject variants"
#   SEED=1 TOLERANCE=0.10
#   IMAGES=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
#   LABELS=/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
#   SERVER, PERF, PLAN=BUILD_DIR/bin/hgpipe-{server,perf,plan}
#   OUT=BUILD_DIR/bench-results/variants-vs-plan-<timestamp>
# Exit status: 0 if every judged figure agrees within TOLERANCE, 3 if not,
# 1 on failure to run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD/bin
SCALE=${SCALE:-50}
BOARDS=${BOARDS:-4}
LOAD=${LOAD:-2}
DEADLINE_MS=${DEADLINE_MS:-5}
PROGRAM_MS=${PROGRAM_MS:-1000}
MIN_ACCURACY=${MIN_ACCURACY:-}
FAST_SPEEDUP=${FAST_SPEEDUP:-3}
FAST_VARIANT=${FAST_VARIANT:-taylor}
FULL_TOP1=${FULL_TOP1:-0.8833}
FAST_DROP=${FAST_DROP:-0.02}
DURATION=${DURATION:-20}
POLICIES=${POLICIES:-"reject variants"}
SEED=${SEED:-1}
TOLERANCE=${TOLERANCE:-0.10}
IMAGES=${IMAGES:-/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz}
LABELS=${LABELS:-/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz}
OUT=${OUT:-$BUILD/bench-results/variants-vs-plan-$(date +%Y%m%d-%H%M%S)}
SERVER=${SERVER:-$BIN/hgpipe-server}
PERF=${PERF:-$BIN/hgpipe-perf}
PLAN=${PLAN:-$BIN/hgpipe-plan}

for b in "$SERVER" "$PERF" "$PLAN"; do
  if [[ ! -x $b ]]; then
    echo "variants_vs_plan: $b is missing; build it first:" >&2
    echo "  ninja -C $BUILD hgpipe-server hgpipe-perf hgpipe-plan" >&2
    exit 1
  fi
done
for tool in jq awk /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "variants_vs_plan: needs $tool" >&2; exit 1; }
done
for f in "$IMAGES" "$LABELS"; do
  [[ -r $f ]] || { echo "variants_vs_plan: $f is missing (Debian's dataset-fashion-mnist)" >&2; exit 1; }
done
mkdir -p "$OUT"

# 1. The repository and the scenario.
/usr/bin/python3 "$ROOT/bench/variants_repo.py" "$ROOT/models/fmnist_vit" "$OUT/models" "$SCALE" \
  "$FAST_SPEEDUP" "$FULL_TOP1" "$FAST_DROP" "$FAST_VARIANT" >"$OUT/scenario.json"
PROGRAM_SCALED_MS=$(awk "BEGIN { print $PROGRAM_MS * $SCALE }")
DEADLINE_SCALED_MS=$(awk "BEGIN { print $DEADLINE_MS * $SCALE }")
DEADLINE_US=$(awk "BEGIN { printf \"%d\", $DEADLINE_SCALED_MS * 1000 }")
WARMUP=${WARMUP:-$(awk "BEGIN { print 2 * $PROGRAM_SCALED_MS / 1000 + 10 }")}
# The full variant's capacity: its clock over its interval, per board.
RATE=$(jq -r --argjson b "$BOARDS" --argjson l "$LOAD" \
  '.variants[0] | $l * $b * .clock_hz / .interval_cycles | . * 10 | round / 10' "$OUT/scenario.json")
[[ -n $MIN_ACCURACY ]] ||
  MIN_ACCURACY=$(jq -r '[.variants[] | select(.illustrative) | .top1] | min' "$OUT/scenario.json")
PLAN_VARIANTS=$(jq -r '[.variants[] | "\(.name):top1=\(.top1):ii_cycles=\(.interval_cycles):latency_cycles=\(.latency_cycles):clock_mhz=\(.clock_hz / 1e6)"] | join(",")' "$OUT/scenario.json")
MAX_IMAGES_PER_RUN=$(sed -n 's/.*max_images_per_run: *\([0-9][0-9]*\).*/\1/p' "$OUT/models/fmnist_vit/config.pbtxt" | head -1)
MAX_IMAGES_PER_RUN=${MAX_IMAGES_PER_RUN:-32}
echo "scenario: $BOARDS boards, $RATE requests/s (load $LOAD), deadline $DEADLINE_SCALED_MS ms, reprogramming $PROGRAM_SCALED_MS ms, floor $MIN_ACCURACY, warmup ${WARMUP}s + ${DURATION}s; variants $PLAN_VARIANTS" >&2

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SERVER_PID=
cleanup() {
  [[ -n $SERVER_PID ]] && bench_stop "$SERVER_PID"
  SERVER_PID=
}

start_server() {
  bench_start "$1" "$SERVER" --host 127.0.0.1 --grpc-port 0 --http-port 0 --metrics-port 0 \
    --boards "sim:$BOARDS" --model-repository "$OUT/models" --canary=false \
    --emulated-program-ms "$PROGRAM_SCALED_MS"
  SERVER_PID=$BENCH_PID GRPC_PORT=$BENCH_GRPC_PORT METRICS_PORT=${BENCH_METRICS##*:}
}

# 2 and 3, per policy.
for policy in $POLICIES; do
  floor_perf=() floor_plan=()
  if [[ $policy == variants ]]; then
    floor_perf=(--min-accuracy "$MIN_ACCURACY")
    floor_plan=(--min-accuracy "$MIN_ACCURACY")
  fi
  echo "$policy: hgpipe-server and hgpipe-perf, ${WARMUP}+${DURATION}s" >&2
  start_server "$OUT/server-$policy.log"
  # Which variant each board serves, every 5 s (hgpipe_board_images_total
  # and the boards' phases), to see the router's moves beside the result.
  (while kill -0 "$SERVER_PID" 2>/dev/null; do
     echo "== $(date +%T)"
     curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
       grep -E '^hgpipe_board_(images_total|phase)\{' | grep -v ' 0$' || true
     sleep 5
   done) >"$OUT/boards-$policy.log" 2>&1 &
  "$PERF" --url "127.0.0.1:$GRPC_PORT" --model fmnist_vit --rate "$RATE" \
    --arrivals poisson --duration "$DURATION" --warmup "$WARMUP" --seed "$SEED" \
    --timeout-us "$DEADLINE_US" --timeout "$(awk "BEGIN { print 4 * $DEADLINE_SCALED_MS / 1000 }")" \
    --max-outstanding 100000 --images "$IMAGES" --labels "$LABELS" "${floor_perf[@]}" \
    --allow-errors --json --progress=false >"$OUT/perf-$policy.json" 2>"$OUT/perf-$policy.err" || {
    echo "variants_vs_plan: hgpipe-perf ($policy) failed:" >&2
    cat "$OUT/perf-$policy.err" >&2
    exit 1
  }
  cleanup
  echo "$policy: hgpipe-plan" >&2
  status=0
  "$PLAN" --variants "$PLAN_VARIANTS" --policy "$policy" --boards "$BOARDS" \
    --rate "$RATE" --deadline-ms "$DEADLINE_SCALED_MS" "${floor_plan[@]}" \
    --program-ms "$PROGRAM_SCALED_MS" --seconds "$(awk "BEGIN { print $WARMUP + $DURATION }")" \
    --warmup-seconds "$WARMUP" --seed "$SEED" --max-images-per-run "$MAX_IMAGES_PER_RUN" \
    --json >"$OUT/plan-$policy.json" 2>"$OUT/plan-$policy.err" || status=$?
  if [[ $status -ne 0 && $status -ne 3 ]]; then
    echo "variants_vs_plan: hgpipe-plan ($policy) failed:" >&2
    cat "$OUT/plan-$policy.err" >&2
    exit 1
  fi
done

# 4. The table.
within() {
  awk -v s="$1" -v p="$2" -v tol="$TOLERANCE" 'BEGIN {
    if (s == 0) { print (p == 0) ? "yes" : "no"; exit }
    d = (p - s) / s; print (d <= tol && d >= -tol) ? "yes" : "no" }'
}
cell() {
  awk -v s="$1" -v p="$2" -v f="$3" 'BEGIN {
    printf f " / " f, s, p
    if (s != 0) printf " (%+.1f %%)", 100 * (p - s) / s }'
}
ALL_AGREE=1
{
  echo "| policy | goodput server / plan | mean accuracy (declared) server / plan | p99 ms server / plan | within $(awk "BEGIN { print 100 * $TOLERANCE }") % | answered server / plan (server: of which late at the client) | measured accuracy of the answers (server) | mix server / plan |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$OUT/table.md"
for policy in $POLICIES; do
  perf=$OUT/perf-$policy.json plan=$OUT/plan-$policy.json
  sg=$(jq '.goodput' "$perf") pg=$(jq '.goodput' "$plan")
  sa=$(jq '.declared_accuracy // 0' "$perf") pa=$(jq '.mean_accuracy' "$plan")
  s9=$(jq '.latency_ms.p99' "$perf") p9=$(jq '.p99_ms' "$plan")
  ok=()
  for pair in "$sg $pg" "$sa $pa" "$s9 $p9"; do
    # shellcheck disable=SC2086  # two numbers
    o=$(within $pair)
    ok+=("$o")
    [[ $o == yes ]] || ALL_AGREE=0
  done
  answered=$(jq -r --slurpfile p "$plan" '"\(.answered / .offered * 10000 | round / 100) % / \($p[0].tried[-1].result | .requests_ok / .requests * 10000 | round / 100) % (\((.answered - .within_deadline) / ([.answered, 1] | max) * 1000 | round / 10) % late)"' "$perf")
  measured=$(jq -r '"\(.measured_accuracy) (\([.variants[].correct] | add) of \([.variants[].images] | add) images)"' "$perf")
  mix=$(jq -r --slurpfile p "$plan" '[.variants | to_entries[] | "\(.key) \(.value.share * 1000 | round / 10) % / \(($p[0].mix[.key] // 0) * 1000 | round / 10) %"] | join(", ")' "$perf")
  echo "| $policy | $(cell "$sg" "$pg" "%.4f") | $(cell "$sa" "$pa" "%.4f") | $(cell "$s9" "$p9" "%.1f") | ${ok[0]}, ${ok[1]}, ${ok[2]} | $answered | $measured | $mix |" >>"$OUT/table.md"
done
FULL_WEIGHTS=$(jq -r '[.variants[] | select(.full_weights) | .name] | join(", ")' "$OUT/scenario.json")
ILLUSTRATIVE=$(jq -r '[.variants[] | select(.illustrative) | .name] | join(", ")' "$OUT/scenario.json")
FULL_NOTE=
[[ -z $FULL_WEIGHTS ]] || FULL_NOTE=" (their measured accuracy is the full model's)"
{
  echo
  echo "Scenario: $BOARDS emulated boards computing fmnist_vit (HG-PIPE's integer datapath), HG-PIPE's timing x $SCALE: $RATE requests/s Poisson (load $LOAD of the full variant), deadline $DEADLINE_SCALED_MS ms (Triton's timeout), reprogramming $PROGRAM_SCALED_MS ms, \`variants\` floor $MIN_ACCURACY; ${WARMUP} s warmup (not measured) + ${DURATION} s; seed $SEED. Variants: $PLAN_VARIANTS."
  echo "Illustrative timing (no bitstream we have): ${ILLUSTRATIVE:-none}. Running the full model's weights in place of their own: ${FULL_WEIGHTS:-none}$FULL_NOTE."
  echo "Server: hgpipe-perf --images/--labels (the 10,000 Fashion-MNIST test images in turn, as pixels), goodput = answered within the deadline (at the client, from the scheduled send) / offered in the window, p99 of the answered (client side); answered = not refused (the server's deadline runs from its receipt of the request; an answer it admits can still reach the client late). Plan: hgpipe-plan --variants (mean accuracy from the manifests' top-1; no host overhead)."
  echo "Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >>"$OUT/table.md"
cat "$OUT/table.md"
echo "results in $OUT" >&2
[[ $ALL_AGREE == 1 ]] && exit 0 || exit 3
