#!/usr/bin/env bash
# Closed-loop capacity of hgpipe-server builds (or settings) against each
# other, alternating, in one run: verify on 2 timing-only emulated boards,
# 32 requests of IMAGES images outstanding for 8 s (after 2 s of warm-up),
# per round and server: images/s, the server's CPU ticks, its minor page
# faults (/proc/PID/stat) and its RSS at the end. Used to compare malloc
# settings (docs/BENCHMARKS.md, "Soak").
#
#   bench/capacity_ab.sh [BUILD_DIR] -- 'SERVER COMMAND' ['SERVER COMMAND' ...]
#   e.g. bench/capacity_ab.sh build -- build/bin/hgpipe-server \
#          'env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 build/bin/hgpipe-server'
# Environment: ROUNDS=3 IMAGES=4
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
shift || true
[[ ${1:-} == -- ]] && shift
[[ $# -gt 0 ]] || set -- "$BUILD/bin/hgpipe-server"
ROUNDS=${ROUNDS:-3}
IMAGES=${IMAGES:-4}
log=$(mktemp)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap 'bench_stop_all; rm -f "$log"' EXIT
for round in $(seq "$ROUNDS"); do
  for server in "$@"; do
    # shellcheck disable=SC2086  # the command is words on purpose
    bench_start "$log" $server --host 127.0.0.1 --grpc-port 0 --http-port -1 --metrics-port 0 \
      --boards sim:2 --model-control-mode explicit --load-model verify --canary=false
    pid=$BENCH_PID port=$BENCH_GRPC_PORT
    read -r t0 f0 < <(awk '{print $14 + $15, $10}' "/proc/$pid/stat")
    rate=$("$BUILD/bin/hgpipe-perf" --url "127.0.0.1:$port" --model verify \
      --images-per-request "$IMAGES" --concurrency 32 --duration 8 --warmup 2 --json \
      --progress=false | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])')
    read -r t1 f1 < <(awk '{print $14 + $15, $10}' "/proc/$pid/stat")
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    echo "round $round [$server] images/s $rate cpu_ticks $((t1 - t0)) minor_faults $((f1 - f0)) rss_kb $rss"
    bench_stop "$pid"
  done
done
