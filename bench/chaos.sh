#!/usr/bin/env bash
# Chaos: hgpipe-server under careless and unlucky clients at once
# (bench/chaos.py: millisecond deadlines, broken images, streams cancelled
# between request and answer, models loaded and unloaded while in use,
# shared-memory regions shrunk under a request). Where bench/soak.sh checks
# every answer of an orderly load for half an hour, this looks for crashes,
# hangs and leaks on the paths where calls end early. Run it on a sanitizer
# build too: it found a use-after-free in the stream reactor that 1,500
# tests and the soak had not (docs/BENCHMARKS.md, "Chaos").
#
#   bench/chaos.sh [--duration-s 120] [--build build] [--seed 1]
#
# Starts the server (all three default models, two emulated boards,
# explicit model control, clients' shared memory allowed), runs the
# clients, and prints "chaos: PASS" or "chaos: FAIL ...". It fails when a
# call ends with a status a client cannot act on, the server dies or stops
# serving, or its RSS in the second half exceeds the first half's by 25 %.
# With an ASan build (--build build-asan) the server's own report, if any,
# is printed from its log. Needs python3-grpcio, python3-protobuf,
# python3-pil and protoc (tools/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=120 build=build seed=1
while [ $# -gt 0 ]; do
  case $1 in
    --duration-s) duration=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d /tmp/hgpipe-chaos.XXXXXX)
protoc -I. --python_out="$out" proto/grpc_service.proto proto/triton_model_config.proto

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_start "$out/server.log" env ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1}" \
  "$build/bin/hgpipe-server" --boards sim:2 --model-control-mode explicit \
  --load-model verify,fmnist_vit,deit_tiny --allow-client-shm=true \
  --host 127.0.0.1 --grpc-port 0 --http-port 0 --metrics-port 0
server=$BENCH_PID
rc=0
CHAOS_SEED=$seed /usr/bin/python3 bench/chaos.py "$BENCH_GRPC" "$duration" "$server" "$out" || rc=$?
if ! kill -0 "$server" 2>/dev/null; then
  echo "chaos: the server exited; the end of its log ($out/server.log):"
  grep -v '^I[0-9]' "$out/server.log" | tail -60
  rc=1
fi
echo "chaos: log and generated protos in $out"
exit "$rc"
