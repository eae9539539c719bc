#!/usr/bin/env bash
# Quick start: installs what is missing, builds, starts hgpipe-server on its
# embedded default (emulated HG-PIPE boards, the bundled model repository),
# shows it serving a request with hgpipe-client, and keeps serving (gRPC on
# :8001, /metrics on :8002 unless flags say otherwise) until Ctrl-C.
# Arguments go to hgpipe-server. HGPIPE_QUICKSTART_EXIT=1 stops the server
# after the demo request (the test suite runs the Quick start that way).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
# The same build tree and configuration as the test suite, two targets only.
cmake -S . -B build -G Ninja > build.configure.log 2>&1 || { cat build.configure.log; exit 1; }
ninja -C build -j"${HGPIPE_JOBS:-2}" hgpipe-server hgpipe-client

log=$(mktemp)
build/bin/hgpipe-server "$@" > >(tee "$log") 2>&1 &
server=$!
stop() { kill -TERM $server 2>/dev/null || true; wait $server; }
trap stop INT TERM
ready=""
for _ in $(seq 1 600); do
  ready=$(grep -o 'ready: grpc=[^ ]*' "$log" || true)
  [ -n "$ready" ] && break
  kill -0 $server 2>/dev/null || { echo "quickstart: hgpipe-server did not start"; exit 1; }
  sleep 0.1
done
[ -n "$ready" ] || { echo "quickstart: hgpipe-server not ready"; stop; exit 1; }
port=${ready##*:}
echo
echo "== build/bin/hgpipe-client --url localhost:$port infer verify --random 4"
status=0
build/bin/hgpipe-client --url "localhost:$port" infer verify --random 4 || status=$?
echo
if [ "${HGPIPE_QUICKSTART_EXIT:-0}" = 1 ] || [ $status -ne 0 ]; then
  stop
  rm -f "$log"
  exit $status
fi
echo "hgpipe-server is serving on localhost:$port (Ctrl-C stops it)"
wait $server
