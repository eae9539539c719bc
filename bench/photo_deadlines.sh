#!/usr/bin/env bash
# Deadlines when decoding, not the board, is the bottleneck: how a flood of
# photos with a short timeout is answered.
#
#   bench/photo_deadlines.sh JPEG BUILD_DIR...
#
# For each build: hgpipe-server with deit_tiny on one timing-only emulated
# board (7,000 images/s) and one preprocessing thread (about 700 photos/s
# here), so decoding bounds the rate. h2load (Debian's nghttp2-client)
# offers RATE ModelInfer calls a second over CLIENTS connections (open
# loop, up to STREAMS outstanding on each), each one JPEG with the KServe
# `timeout` parameter TIMEOUT_US. From the server's own metrics:
#   ok        answered with logits (hgpipe_images_total);
#   refused   DEADLINE_EXCEEDED at arrival, before queueing (the requests
#             answered DEADLINE_EXCEEDED less those that expired queued);
#   expired   queued, then answered DEADLINE_EXCEEDED when they could no
#             longer make it (hgpipe_deadline_expired_requests_total);
#   wasted    images computed whose request had already been answered late
#             (hgpipe_late_results_dropped_images_total): since cd4d5b9 only
#             those already on a board when their request was answered;
#   skipped   images of answered requests not decoded, computed on stale
#             slot data unless withheld (hgpipe_skipped_fill_images_total;
#             0 on builds without it);
#   withheld  images of answered requests not sent to the board at all
#             (hgpipe_withheld_images_total, not in `wasted`; 0 on builds
#             without it).
# and h2load's mean time per request and requests/s.
#
# Environment: REQUESTS (default 8000), RATE (default 1000), CLIENTS
# (default 4), STREAMS (default 64), TIMEOUT_US (default 20000), THREADS
# (default 1), MODELS (default this tree's models/).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
jpeg=$1
shift
requests=${REQUESTS:-8000}
rate=${RATE:-1000}
clients=${CLIENTS:-4}
streams=${STREAMS:-64}
timeout_us=${TIMEOUT_US:-20000}
threads=${THREADS:-1}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
source "$src/bench/lib.sh"
trap 'bench_stop_all; rm -rf "$work"' EXIT

/usr/bin/python3 "$src/bench/infer_body.py" "$jpeg" "$work/body.bin" deit_tiny "$timeout_us"

metric() {  # metric NAME [LABEL_REGEX]: the sum over deit_tiny's series
  curl -s "http://$metrics/metrics" |
    awk -v n="$1" -v l="${2:-}" '$1 ~ "^" n "\\{" && $1 ~ /model="deit_tiny"/ && $1 ~ l {s += $2}
      END {printf "%d\n", s}'
}
snapshot() {
  echo "$(metric hgpipe_images_total) $(metric hgpipe_requests_total 'code="DEADLINE_EXCEEDED"')" \
    "$(metric hgpipe_deadline_expired_requests_total) $(metric hgpipe_late_results_dropped_images_total)" \
    "$(metric hgpipe_skipped_fill_images_total) $(metric hgpipe_withheld_images_total)"
}

printf "%-24s %8s %8s %8s %8s %8s %8s %8s %10s %10s\n" build requests ok refused expired wasted \
  skipped withheld mean_ms req_per_s
for build in "$@"; do
  bench_start "$work/server.log" "$build/bin/hgpipe-server" \
    --model-repository "${MODELS:-$src/models}" \
    --model-control-mode explicit --load-model deit_tiny \
    --boards sim:1 --emulated-compute=false --preprocess-threads "$threads" \
    --host 127.0.0.1 --grpc-port 0 --http-port -1 --metrics-port 0
  grpc=$BENCH_GRPC
  metrics=$BENCH_METRICS
  url="http://$grpc/inference.GRPCInferenceService/ModelInfer"
  h2() {
    h2load -n "$1" -c "$clients" -m "$streams" --rps "$((rate / clients))" -H 'content-type: application/grpc' \
      -H 'te: trailers' -d "$work/body.bin" "$url" >"$work/h2load.log" 2>&1 ||
      { cat "$work/h2load.log"; exit 1; }
  }
  h2 1000  # warm up: threads, the learned fill time and decode cost
  read -r ok0 de0 ex0 wa0 sk0 wh0 < <(snapshot)
  h2 "$requests"
  read -r ok1 de1 ex1 wa1 sk1 wh1 < <(snapshot)
  read -r mean rps < <(awk '/^time for request:/ {m = $6}
    /^finished in/ {r = $4} END {print m, r}' "$work/h2load.log")
  printf "%-24s %8d %8d %8d %8d %8d %8d %8d %10s %10s\n" "$(basename "$(dirname "$build")")/$(basename "$build")" \
    "$requests" "$((ok1 - ok0))" "$(((de1 - de0) - (ex1 - ex0)))" "$((ex1 - ex0))" \
    "$((wa1 - wa0))" "$((sk1 - sk0))" "$((wh1 - wh0))" "$mean" "$rps"
  bench_stop_all
done
