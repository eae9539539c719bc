#!/usr/bin/env bash
# Server CPU per photo, end to end, against a bare full-size libjpeg-turbo
# decode of the same file on the same machine (issue 15).
#
#   bench/preprocess/server_cpu_per_image.sh BUILD_DIR JPEG...
#
# Starts hgpipe-server with deit_tiny on one timing-only emulated board
# (--boards sim:1 --emulated-compute=false: the board costs no host CPU
# beyond the server's own bookkeeping), sends each JPEG as a KServe v2
# ModelInfer (one image per request, BYTES input) with h2load (Debian's
# nghttp2-client), and reads the server's CPU time from /proc/PID/stat
# before and after. Successful images come from the server's own
# hgpipe_images_total, so errors cannot pass for speed. The ceiling is
# hgpipe-jpeg-decode-baseline on the same file, run before and after the
# load (the mean of the two is used); it also times a decode at 1/8 scale,
# about the entropy decoding alone: the floor under any libjpeg-turbo
# server (floor column, as a ratio to the full decode).
#
# ROUNDS rounds (default 3) go over the files in turn, so that a host's
# slow minutes hit every file alike; each file's median ratio ends the
# output (the rounds' spread beside it).
#
# Environment: ROUNDS (default 3), REQUESTS (default 3000), CLIENTS (h2load -c, default 2),
# STREAMS (h2load -m, default 8), THREADS (--preprocess-threads, default 0
# = one per core), SERVER (default BUILD_DIR/bin/hgpipe-server) and
# MODELS (default this tree's models/), e.g. to measure another build.
set -euo pipefail
build=$(cd "$1" && pwd); shift
src=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-3}
requests=${REQUESTS:-3000}
clients=${CLIENTS:-2}
streams=${STREAMS:-8}
threads=${THREADS:-0}
tick=$(getconf CLK_TCK)
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
source "$src/bench/lib.sh"
trap 'bench_stop_all; rm -rf "$work"' EXIT

bench_start "$work/server.log" "${SERVER:-$build/bin/hgpipe-server}" \
  --model-repository "${MODELS:-$src/models}" \
  --model-control-mode explicit --load-model deit_tiny \
  --boards sim:1 --emulated-compute=false --preprocess-threads "$threads" \
  --host 127.0.0.1 --grpc-port 0 --http-port -1 --metrics-port 0
server_pid=$BENCH_PID
grpc=$BENCH_GRPC
metrics=$BENCH_METRICS

images_ok() {
  curl -s "http://$metrics/metrics" |
    awk '/^hgpipe_images_total\{.*model="deit_tiny"/ {s += $2} END {printf "%d\n", s}'
}

# A gRPC-framed ModelInferRequest carrying one file as a BYTES element.
make_body() { /usr/bin/python3 "$src/bench/infer_body.py" "$1" "$2" deit_tiny; }

url="http://$grpc/inference.GRPCInferenceService/ModelInfer"
h2() {  # h2 BODY N
  h2load -n "$2" -c "$clients" -m "$streams" -H 'content-type: application/grpc' \
    -H 'te: trailers' -d "$1" "$url" >"$work/h2load.log" 2>&1 ||
    { cat "$work/h2load.log"; exit 1; }
}
# Each file's request body, once for all rounds.
files=("$@")
for i in "${!files[@]}"; do make_body "${files[i]}" "$work/body-$i.bin"; done

printf "%-5s %-28s %12s %14s %8s %8s\n" round file baseline_us server_us ratio floor |
  tee "$work/results.txt"
for round in $(seq 1 "$rounds"); do
  for i in "${!files[@]}"; do
    jpeg=${files[i]} body=$work/body-$i.bin
    h2 "$body" 200  # warm up: threads, scratch buffers, connection
    read -r b1 f1 < <("$build/bin/hgpipe-jpeg-decode-baseline" "$jpeg" 4 | awk '{print $3, $4}')
    ok0=$(images_ok); t0=$(cpu_ticks "$server_pid")
    h2 "$body" "$requests"
    t1=$(cpu_ticks "$server_pid"); ok1=$(images_ok)
    read -r b2 f2 < <("$build/bin/hgpipe-jpeg-decode-baseline" "$jpeg" 4 | awk '{print $3, $4}')
    images=$((ok1 - ok0))
    if (( images < requests )); then
      echo "$jpeg: only $images of $requests images answered OK" >&2
      grep -E "status codes|requests:" "$work/h2load.log" >&2
      exit 1
    fi
    awk -v r="$round" -v f="$(basename "$jpeg")" -v b1="$b1" -v b2="$b2" -v f1="$f1" -v f2="$f2" \
      -v ticks="$((t1 - t0))" -v tick="$tick" -v n="$images" 'BEGIN {
        base = (b1 + b2) / 2; server = ticks / tick / n * 1e6;
        printf "%-5d %-28s %12.0f %14.0f %7.2fx %7.2fx\n", r, f, base, server, server / base,
               (f1 + f2) / 2 / base }' | tee -a "$work/results.txt"
  done
done
echo
awk 'NR > 1 { n[$2]++; v[$2, n[$2]] = $5 + 0; if (!($2 in seen)) { seen[$2] = 1; order[++files] = $2 } }
  END {
    printf "%-28s %13s %16s\n", "file", "median ratio", "range of rounds"
    for (k = 1; k <= files; k++) {
      f = order[k]; m = n[f]
      for (i = 1; i <= m; i++) a[i] = v[f, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      med = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
      printf "%-28s %12.2fx %9.2fx-%.2fx\n", f, med, a[1], a[m]
    }
  }' "$work/results.txt"
