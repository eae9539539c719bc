#!/usr/bin/env bash
# REST vs gRPC on one hgpipe-server, in one run (docs/BENCHMARKS.md):
# images/s and latency at 1 and 8 images per request, closed loop at the
# same concurrency. gRPC is driven by hgpipe-perf (HTTP/2, one connection,
# requests multiplexed); REST by wrk (Debian's wrk: HTTP/1.1 keep-alive, one
# connection per outstanding request, as HTTP/1.1 clients do), posting
# Triton's binary tensor format (Inference-Header-Content-Length, raw INT8
# images, binary output). The two alternate per point, REPEAT times, so
# background load hits both alike; the table shows the median run.
# The ceiling is the boards': 7,375 images/s per emulated HG-PIPE board.
#
# Usage: bench/rest_vs_grpc.sh [BUILD_DIR]        (default: ./build)
# Environment (defaults): DURATION=10 WARMUP=3 CONCURRENCY=16 REPEAT=3
#   IMAGES_PER_REQUEST="1 8" BOARDS=sim:2 HTTP_THREADS=2
#   NICE=0 (nice value of the server and both clients, e.g. -10 as root on a
#   machine shared with other jobs)
#   OUT=BUILD_DIR/bench-results/rest-vs-grpc-<timestamp>
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD/bin
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONCURRENCY=${CONCURRENCY:-16}
REPEAT=${REPEAT:-3}
IMAGES_PER_REQUEST=${IMAGES_PER_REQUEST:-"1 8"}
BOARDS=${BOARDS:-sim:2}
HTTP_THREADS=${HTTP_THREADS:-2}
NICE=${NICE:-0}
OUT=${OUT:-$BUILD/bench-results/rest-vs-grpc-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
command -v wrk > /dev/null || { echo "rest_vs_grpc: wrk is missing (apt-get install wrk)" >&2; exit 1; }
for b in hgpipe-server hgpipe-perf; do
  [[ -x $BIN/$b ]] || { echo "rest_vs_grpc: build $BIN/$b first" >&2; exit 1; }
done
mkdir -p "$OUT/models"
cp -r "$ROOT/models/verify" "$OUT/models/"

# Timing-only emulated boards: what is compared is the host's work per wire.
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_start "$OUT/server.log" nice -n "$NICE" "$BIN/hgpipe-server" --host 127.0.0.1 \
  --grpc-port 0 --http-port 0 --metrics-port 0 --model-repository "$OUT/models" \
  --boards "$BOARDS" --emulated-compute=false --http-thread-count "$HTTP_THREADS"
server=$BENCH_PID GRPC=$BENCH_GRPC HTTP=$BENCH_HTTP
echo "server: grpc=$GRPC http=$HTTP boards=$BOARDS"

# Request bodies: Triton's binary format, N random INT8 images, binary output.
for n in $IMAGES_PER_REQUEST; do
  $PY - "$OUT" "$n" "$HTTP" <<'PYEOF'
import json, os, sys, urllib.request
out, n, http = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = os.urandom(n * 196 * 768)
hdr = json.dumps({"inputs": [{"name": "INPUT", "datatype": "INT8", "shape": [n, 196, 768],
                              "parameters": {"binary_data_size": len(raw)}}],
                  "parameters": {"binary_data_output": True}}).encode()
open(f"{out}/body{n}.bin", "wb").write(hdr + raw)
open(f"{out}/body{n}.hlen", "w").write(str(len(hdr)))
# One request checked before measuring: 200, N rows of 1000 int32.
req = urllib.request.Request(f"http://{http}/v2/models/verify/infer", data=hdr + raw,
                             headers={"Inference-Header-Content-Length": str(len(hdr))})
r = urllib.request.urlopen(req, timeout=30)
body = r.read()
h = int(r.headers["Inference-Header-Content-Length"])
meta = json.loads(body[:h])
assert r.status == 200 and meta["outputs"][0]["shape"] == [n, 1000], meta
assert len(body) - h == n * 4000
PYEOF
done
cat > "$OUT/post.lua" <<'LUAEOF'
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Inference-Header-Content-Length"] = os.getenv("HLEN")
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
LUAEOF

TICK_HZ=$(getconf CLK_TCK)
run_grpc() {  # run_grpc N REP
  nice -n "$NICE" "$BIN/hgpipe-perf" --url "$GRPC" --model verify --images-per-request "$1" \
    --concurrency "$CONCURRENCY" --duration "$WARMUP" --warmup 0 --progress=false > /dev/null
  local t0; t0=$(cpu_ticks "$server")
  nice -n "$NICE" "$BIN/hgpipe-perf" --url "$GRPC" --model verify --images-per-request "$1" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup 0 \
    --progress=false --json > "$OUT/grpc-$1-$2.json"
  echo $(( $(cpu_ticks "$server") - t0 )) > "$OUT/grpc-$1-$2.ticks"
}
run_rest() {  # run_rest N REP
  BODY="$OUT/body$1.bin" HLEN=$(cat "$OUT/body$1.hlen") \
    nice -n "$NICE" wrk -t1 -c "$CONCURRENCY" -d "${WARMUP}s" -s "$OUT/post.lua" "http://$HTTP/v2/models/verify/infer" > /dev/null
  local t0; t0=$(cpu_ticks "$server")
  BODY="$OUT/body$1.bin" HLEN=$(cat "$OUT/body$1.hlen") \
    nice -n "$NICE" wrk -t1 -c "$CONCURRENCY" -d "${DURATION}s" --timeout 30s -s "$OUT/post.lua" \
    "http://$HTTP/v2/models/verify/infer" | tail -n1 > "$OUT/rest-$1-$2.json"
  echo $(( $(cpu_ticks "$server") - t0 )) > "$OUT/rest-$1-$2.ticks"
}
for rep in $(seq 1 "$REPEAT"); do
  for n in $IMAGES_PER_REQUEST; do
    echo "run $rep: $n image(s) per request, concurrency $CONCURRENCY"
    run_grpc "$n" "$rep"
    run_rest "$n" "$rep"
  done
done

$PY - "$OUT" "$REPEAT" "$BOARDS" "$CONCURRENCY" "$TICK_HZ" $IMAGES_PER_REQUEST <<'PYEOF' | tee "$OUT/table.md"
import json, statistics, sys
out, repeat, boards, conc, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
ns = [int(x) for x in sys.argv[6:]]
ceiling = 7375 * int(boards.split(":")[1])
print(f"| images/request | wire | images/s (median of {repeat}) | of ceiling | p50 ms | p99 ms | server CPU µs/image | errors |")
print("|---|---|---|---|---|---|---|---|")
for n in ns:
    rows = {}
    for wire in ("grpc", "rest"):
        runs = []
        for r in range(1, repeat + 1):
            j = json.load(open(f"{out}/{wire}-{n}-{r}.json"))
            ticks = int(open(f"{out}/{wire}-{n}-{r}.ticks").read())
            if wire == "grpc":
                images = j["images_ok"]
                runs.append((j["images_per_second"], j["latency_ms"]["p50"], j["latency_ms"]["p99"],
                             j["error_count"], ticks / hz * 1e6 / max(images, 1)))
            else:
                secs = j["duration_us"] / 1e6
                images = j["requests"] * n
                runs.append((images / secs, j["p50_ms"], j["p99_ms"],
                             j["non2xx"] + j["socket_errors"], ticks / hz * 1e6 / max(images, 1)))
        runs.sort(key=lambda x: x[0])
        med = runs[len(runs) // 2]
        rows[wire] = med
        errors = sum(r[3] for r in runs)
        print(f"| {n} | {'gRPC (hgpipe-perf)' if wire == 'grpc' else 'REST (wrk)'} | "
              f"{med[0]:,.0f} ({runs[0][0]:,.0f}-{runs[-1][0]:,.0f}) | {med[0] / ceiling:.0%} | "
              f"{med[1]:.2f} | {med[2]:.2f} | {med[4]:.0f} | {errors} |")
    print(f"| {n} | REST / gRPC | {rows['rest'][0] / rows['grpc'][0]:.2f} | | "
          f"{rows['rest'][1] / rows['grpc'][1]:.2f} | {rows['rest'][2] / rows['grpc'][2]:.2f} | "
          f"{rows['rest'][4] / rows['grpc'][4]:.2f} | |")
print(f"\nceiling {ceiling:,} images/s ({boards}, timing-only emulated boards); "
      f"closed loop, {conc} outstanding requests")
PYEOF
echo "results: $OUT"
