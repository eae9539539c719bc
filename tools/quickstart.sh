#!/usr/bin/env bash
# Quick start: installs what is missing, builds, starts hgpipe-server on its
# embedded default (emulated HG-PIPE boards, the bundled model repository),
# shows it serving a request with hgpipe-client, and keeps serving on
# :8001 (gRPC) and :8002 (/metrics) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh build -DCMAKE_BUILD_TYPE=Release -DHGPIPE_BUILD_TESTS=OFF \
  -DHGPIPE_BUILD_BENCH=OFF

build/bin/hgpipe-server "$@" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM
for _ in $(seq 1 100); do
  build/bin/hgpipe-client --url localhost:8001 ready >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "hgpipe-server did not start"; exit 1; }
  sleep 0.1
done
echo
echo "== hgpipe-client infer verify --random 4"
build/bin/hgpipe-client --url localhost:8001 infer verify --random 4
echo
echo "hgpipe-server is serving: gRPC localhost:8001, metrics http://localhost:8002/metrics"
echo "(Ctrl-C stops it)"
wait $server
