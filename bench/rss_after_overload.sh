#!/bin/bash
# RSS of hgpipe-server before, at the peak of an overload (hgpipe-perf, 256
# requests of 8 images outstanding against one emulated board, 15 s) and 5 s
# after it drains:  bench/rss_after_overload.sh [SERVER_BIN] [PERF_BIN]
# With UNDER_LOAD=1 a light load (4 requests outstanding) runs from before
# the overload to 20 s after it, so calls never stop (a service whose
# backlog has cleared), and the last figure is taken 20 s after the overload.
server=${1:-build/bin/hgpipe-server} perf=${2:-build/bin/hgpipe-perf}
log=$(mktemp)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap 'bench_stop_all; rm -f "$log"' EXIT
bench_start "$log" $server --boards sim:1 --model-control-mode explicit --load-model verify \
  --host 127.0.0.1 --grpc-port 0 --http-port 0 --metrics-port 0
pid=$BENCH_PID port=$BENCH_GRPC_PORT
rss() { awk '/^VmRSS:/ {print int($2/1024)}' /proc/$pid/status; }
before=$(rss)
if [ "${UNDER_LOAD:-0}" = 1 ]; then
  $perf --url 127.0.0.1:$port --model verify --images-per-request 8 --concurrency 4 --duration 45 --warmup 0 --progress=false > /dev/null 2>&1 &
  light=$!
  sleep 5
fi
$perf --url 127.0.0.1:$port --model verify --images-per-request 8 --concurrency 256 --duration 15 --warmup 0 --progress=false --allow_errors > /dev/null 2>&1 &
pp=$!
peak=0
while kill -0 $pp 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.5; done
if [ -n "${light:-}" ]; then
  sleep 20
  after=$(rss)
  wait $light
  echo "RSS MiB: before $before, peak $peak, 20 s after the overload (light load throughout) $after"
else
  sleep 5
  after=$(rss)
  echo "RSS MiB: before $before, peak $peak, 5 s after the overload $after"
fi
