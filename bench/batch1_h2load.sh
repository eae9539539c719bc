#!/usr/bin/env bash
# Batch-1 at the transport's cost (issue 14): one image per request, the same
# independent client against hgpipe-echo-server (the transport ceiling) and
# hgpipe-server on one timing-only board, alternating, in one run.
#
#   bench/batch1_h2load.sh [BUILD_DIR]          (default: ./build)
#
# The client is h2load (Debian's nghttp2-client) sending identical gRPC
# ModelInfer calls for `verify` (INPUT INT8 [1, 196, 768], raw contents): the
# gRPC-framed request body is built once, so the client's cost is the same
# for both servers and nothing of ours is on the client side. Each server's
# CPU time comes from /proc/PID/stat (utime + stime, all threads) over the
# h2load run; its images from its own count (hgpipe_images_total for
# hgpipe-server, so errors cannot pass for speed; every echo answer is OK).
# images/s is h2load's requests/s. The ceiling is min(board, echo): the
# board's 7,375 images/s and the echo server's rate in the same round.
#
# MODES (default "bytes shm"):
#   bytes  the image travels in raw_input_contents (150,528 bytes per call)
#   shm    Triton's system shared memory: the image sits in a region the
#          client registered once (SystemSharedMemoryRegister), the call names
#          it (shared_memory_region / _offset / _byte_size) and the output
#          goes to a region too; only against hgpipe-server (the echo server
#          has no shared memory), compared with the bytes path of the same
#          round.
#   echo-thread  hgpipe-echo-server --answer-thread: the echo server
#          answering from one other thread, as any server whose answer
#          waits for a device must; compared with the plain echo server of
#          the same round (what answering off gRPC's thread costs by itself).
# MODES must include bytes: every ratio in the summary is taken against it.
#
# Environment (defaults): ROUNDS=5 REQUESTS=20000 CLIENTS=2 STREAMS=16
#   WARMUP=2000 NICE=0 MODES="bytes shm"
#   RPS="" (requests/s per connection, h2load --rps: every server is sent
#   the same steady rate instead of as many calls as it answers, so CPU per
#   image is compared at one load; images/s then only shows the rate held)
#   SERVER=BUILD_DIR/bin/hgpipe-server ECHO=BUILD_DIR/bin/hgpipe-echo-server
#   (point SERVER at another build to measure it: the baseline on main)
#   SERVER_FLAGS="" (more hgpipe-server flags, e.g. the --trace-* ones)
#   PER_THREAD=0 (1: also each thread's CPU and context switches per image,
#   with its name, and the machine's context switches per image, for every
#   measurement: where the server's cost lies against the echo server's;
#   written to OUT/threads-<server>-<round>.txt and printed on stderr)
#   OUT=BUILD_DIR/bench-results/batch1-<timestamp>
# Prints one line per round and server, then the ratios of each round and
# their medians.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-20000}
CLIENTS=${CLIENTS:-2}
STREAMS=${STREAMS:-16}
WARMUP=${WARMUP:-2000}
NICE=${NICE:-0}
MODES=${MODES:-"bytes shm"}
RPS=${RPS:-}
SERVER_FLAGS=${SERVER_FLAGS:-}
PER_THREAD=${PER_THREAD:-0}
SERVER=${SERVER:-$BUILD/bin/hgpipe-server}
ECHO=${ECHO:-$BUILD/bin/hgpipe-echo-server}
OUT=${OUT:-$BUILD/bench-results/batch1-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
BOARD_RATE=7375
TICK=$(getconf CLK_TCK)
for mode in $MODES; do
  case $mode in
    bytes | shm | echo-thread) ;;
    *) echo "batch1_h2load: unknown mode '$mode' (bytes, shm, echo-thread)" >&2; exit 2 ;;
  esac
done
[[ " $MODES " == *" bytes "* ]] ||
  { echo "batch1_h2load: MODES must include bytes (the summary's ratios are against it)" >&2; exit 2; }
command -v h2load > /dev/null ||
  { echo "batch1_h2load: h2load is missing (apt-get install nghttp2-client)" >&2; exit 1; }
for b in "$SERVER" "$ECHO"; do
  [[ -x $b ]] || { echo "batch1_h2load: build $b first" >&2; exit 1; }
done
mkdir -p "$OUT/models"
cp -r "$ROOT/models/verify" "$OUT/models/"
SHM_KEY=/hgpipe-batch1-$$
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cleanup() {
  bench_stop_all
  rm -f "/dev/shm${SHM_KEY}"
}
trap cleanup EXIT

bench_start "$OUT/echo.log" nice -n "$NICE" "$ECHO" --host 127.0.0.1 --grpc-port 0
echo_pid=$BENCH_PID ECHO_GRPC=$BENCH_GRPC
if [[ " $MODES " == *" echo-thread "* ]]; then
  bench_start "$OUT/echo-thread.log" nice -n "$NICE" "$ECHO" --host 127.0.0.1 --grpc-port 0 \
    --answer-thread
  echo_thread_pid=$BENCH_PID ECHO_THREAD_GRPC=$BENCH_GRPC
fi
read -r -a server_flags <<< "$SERVER_FLAGS"
bench_start "$OUT/server.log" nice -n "$NICE" "$SERVER" --host 127.0.0.1 --grpc-port 0 \
  --http-port -1 --metrics-port 0 --model-repository "$OUT/models" --boards sim:1 \
  --emulated-compute=false --allow-client-shm=true "${server_flags[@]}"
server_pid=$BENCH_PID GRPC=$BENCH_GRPC METRICS=$BENCH_METRICS
echo "echo: $ECHO_GRPC (pid $echo_pid)  server: $GRPC (pid $server_pid, metrics $METRICS)"

# The gRPC-framed bodies (bench/kserve_wire.py, python3 only): ModelInfer
# with the image as raw contents; the same naming a shared memory region;
# and the region's registration.
$PY - "$OUT" "$SHM_KEY" "$ROOT/bench" <<'PYEOF'
import os, sys
out, key = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from kserve_wire import frame, ld, param_i64, param_str, tensor, vi
image = os.urandom(196 * 768)
inp = tensor("INPUT", "INT8", [1, 196, 768])
bytes_req = ld(1, b"verify") + ld(5, inp) + ld(7, image)
open(f"{out}/bytes.bin", "wb").write(frame(bytes_req))
# Region layout: the image at 0, the output (1000 int32) after it.
out_off, out_size = len(image), 4000
with open(f"/dev/shm{key}", "wb") as f:
    f.write(image + bytes(out_size))
shm_input = tensor("INPUT", "INT8", [1, 196, 768],
                   param_str("shared_memory_region", "batch1") +
                   param_i64("shared_memory_byte_size", len(image)) +
                   param_i64("shared_memory_offset", 0))
shm_output = tensor("OUTPUT", "", [],
                    param_str("shared_memory_region", "batch1") +
                    param_i64("shared_memory_byte_size", out_size) +
                    param_i64("shared_memory_offset", out_off))
shm_req = ld(1, b"verify") + ld(5, shm_input) + ld(6, shm_output)
open(f"{out}/shm.bin", "wb").write(frame(shm_req))
reg = ld(1, b"batch1") + ld(2, key.encode()) + vi(3, 0) + vi(4, len(image) + out_size)
open(f"{out}/register.bin", "wb").write(frame(reg))
PYEOF

h2() {  # h2 ADDR RPC BODY N -> h2load's log
  h2load -n "$4" -c "$CLIENTS" -m "$STREAMS" ${RPS:+--rps="$RPS"} \
    -H 'content-type: application/grpc' \
    -H 'te: trailers' -d "$3" "http://$1/inference.GRPCInferenceService/$2" 2>&1
}
images_ok() {
  curl -s "http://$METRICS/metrics" |
    awk '/^hgpipe_images_total\{.*model="verify"/ {s += $2} END {printf "%d\n", s}'
}
if [[ " $MODES " == *" shm "* ]]; then
  CLIENTS=1 h2 "$GRPC" SystemSharedMemoryRegister "$OUT/register.bin" 1 > "$OUT/register.log"
  grep -q "1 succeeded" "$OUT/register.log" || { cat "$OUT/register.log" >&2; exit 1; }
fi
# measure NAME PID ADDR BODY: one h2load run; prints "rps cpu_us_per_image images".
measure() {
  local name=$1 pid=$2 addr=$3 body=$4 ok0 ok1 t0 t1 log rps n cs0
  h2 "$addr" ModelInfer "$body" "$WARMUP" > /dev/null
  [[ $name == echo* ]] || ok0=$(images_ok)
  if [[ $PER_THREAD == 1 ]]; then
    thread_ticks "$pid" > "$OUT/threads0"
    cs0=$(context_switches)
  fi
  t0=$(cpu_ticks "$pid")
  log=$(h2 "$addr" ModelInfer "$body" "$REQUESTS")
  t1=$(cpu_ticks "$pid")
  if [[ $PER_THREAD == 1 ]]; then
    # Threads that started during the run count from zero.
    thread_ticks "$pid" | join -a 2 -e 0 -o 2.1,2.2,1.3,2.3,1.4,2.4 "$OUT/threads0" - |
      awk -v tick="$TICK" -v n="$REQUESTS" -v who="$name" '$4 > $3 || $6 > $5 {
          printf "%-11s %8s %-16s %7.1f us/image %6.2f switches/image\n", who, $1, $2,
            ($4 - $3) / tick / n * 1e6, ($6 - $5) / n }' |
      sort -k4 -n -r > "$OUT/threads-$name-$round.txt"
    # Machine-wide, so the client's and the kernel's count too: compare
    # the two servers under the same client.
    awk -v c="$(($(context_switches) - cs0))" -v n="$REQUESTS" -v who="$name" \
      'BEGIN { printf "%-11s context switches (machine): %.1f per image\n", who, c / n }' \
      >> "$OUT/threads-$name-$round.txt"
    cat "$OUT/threads-$name-$round.txt" >&2
  fi
  echo "$log" > "$OUT/h2load-$name-$round.log"
  rps=$(echo "$log" | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p')
  if [[ $name == echo* ]]; then
    n=$REQUESTS
  else
    ok1=$(images_ok)
    n=$((ok1 - ok0))
  fi
  if (( n < REQUESTS )); then
    echo "batch1_h2load: $name: only $n of $REQUESTS images answered OK" >&2
    echo "$log" | grep -E "requests:|status codes" >&2
    exit 1
  fi
  awk -v t="$((t1 - t0))" -v tick="$TICK" -v n="$n" -v rps="$rps" \
    'BEGIN { printf "%.1f %.1f %d\n", rps, t / tick / n * 1e6, n }'
}

printf "%-6s %-11s %10s %14s\n" round server images/s cpu_us/image | tee "$OUT/results.txt"
for round in $(seq 1 "$ROUNDS"); do
  for mode in echo $MODES; do
    case $mode in
      echo) read -r rps cpu _ < <(measure echo "$echo_pid" "$ECHO_GRPC" "$OUT/bytes.bin") ;;
      bytes) read -r rps cpu _ < <(measure bytes "$server_pid" "$GRPC" "$OUT/bytes.bin") ;;
      shm) read -r rps cpu _ < <(measure shm "$server_pid" "$GRPC" "$OUT/shm.bin") ;;
      echo-thread)
        read -r rps cpu _ < <(measure echo-thread "$echo_thread_pid" "$ECHO_THREAD_GRPC" \
          "$OUT/bytes.bin")
        ;;
    esac
    printf "%-6s %-11s %10.1f %14.1f\n" "$round" "$mode" "$rps" "$cpu" | tee -a "$OUT/results.txt"
  done
done
awk -v board="$BOARD_RATE" '
  NR > 1 { rps[$1, $2] = $3; cpu[$1, $2] = $4; if ($1 > rounds) rounds = $1; modes[$2] = 1 }
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    et = ("echo-thread" in modes)
    printf "\nround  cpu bytes/echo  images/s bytes/min(board,echo)%s%s\n", ("shm" in modes) ? "  cpu shm/bytes" : "",
      et ? "  cpu echo-thread/echo  cpu bytes/echo-thread" : ""
    for (r = 1; r <= rounds; r++) {
      ceiling = rps[r, "echo"] < board ? rps[r, "echo"] : board
      c[r] = cpu[r, "bytes"] / cpu[r, "echo"]; t[r] = rps[r, "bytes"] / ceiling
      line = sprintf("%-6d %14.2f %29.3f", r, c[r], t[r])
      if ("shm" in modes) { s[r] = cpu[r, "shm"] / cpu[r, "bytes"]; line = line sprintf(" %14.2f", s[r]) }
      if (et) {
        e[r] = cpu[r, "echo-thread"] / cpu[r, "echo"]; b[r] = cpu[r, "bytes"] / cpu[r, "echo-thread"]
        line = line sprintf(" %21.2f %22.2f", e[r], b[r])
      }
      print line
    }
    line = sprintf("median %14.2f %29.3f", median(c, rounds), median(t, rounds))
    if ("shm" in modes) line = line sprintf(" %14.2f", median(s, rounds))
    if (et) line = line sprintf(" %21.2f %22.2f", median(e, rounds), median(b, rounds))
    print line
  }' "$OUT/results.txt" | tee -a "$OUT/results.txt"
echo "results: $OUT/results.txt"
