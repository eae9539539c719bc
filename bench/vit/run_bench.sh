#!/bin/bash
# DeiT-tiny images/s through the integer datapath (C++, oneDNN) against
# PyTorch CPU fp32 DeiT-tiny (Debian python3-torch), same thread count, in
# one run on this machine. Prints every measurement and the ratio of the
# best of each.
#
#   bench/vit/run_bench.sh [BUILD_DIR] [THREADS]      (defaults: build 2)
#   env: IMAGES (64), BATCH (16), ROUNDS (3)
#
# The datapath runs THREADS host threads, each computing its own batches
# with one OpenMP thread (VitKernel::Options::threads = 1, how emulated
# boards run it); PyTorch runs THREADS intra-op threads. The two alternate
# for ROUNDS rounds so load from other processes hits both alike.
# OMP_WAIT_POLICY=passive for both: on a shared machine spinning OpenMP
# barriers cost PyTorch several times its speed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
images=${IMAGES:-64}
batch=${BATCH:-16}
rounds=${ROUNDS:-3}
bin=$build/bin/vit_bench
[ -x "$bin" ] || bin=$(find "$build" -name vit_bench -type f -perm -u+x | head -1)
[ -x "$bin" ] || { echo "vit_bench not found under $build (ninja vit_bench)" >&2; exit 1; }
export OMP_WAIT_POLICY=passive

rate() { sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'; }
best() { sort -g | tail -1; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
w3=() w8=() pt=()
for r in $(seq "$rounds"); do
  out=$("$bin" --model=deit_tiny --images="$images" --batch="$batch" \
        --workers="$threads" --threads=1 --repeats=2)
  echo "$out"; w3+=("$(echo "$out" | rate)")
  out=$("$bin" --model=deit_tiny_w8a8 --images="$images" --batch="$batch" \
        --workers="$threads" --threads=1 --repeats=2)
  echo "$out"; w8+=("$(echo "$out" | rate)")
  out=$(/usr/bin/python3 "$here/torch_deit_bench.py" --threads "$threads" \
        --images "$images" --batch "$batch" --repeats 2)
  echo "$out"; pt+=("$(echo "$out" | rate)")
done
b3=$(printf '%s\n' "${w3[@]}" | best)
b8=$(printf '%s\n' "${w8[@]}" | best)
bp=$(printf '%s\n' "${pt[@]}" | best)
/usr/bin/python3 - "$b3" "$b8" "$bp" "$threads" <<'PY'
import sys
w3, w8, pt = map(float, sys.argv[1:4])
t = sys.argv[4]
print(f"best of each, {t} threads: datapath W3A3 {w3:.1f}, W8A8 {w8:.1f}, "
      f"PyTorch fp32 {pt:.1f} images/s")
print(f"ratio datapath W3A3 / PyTorch fp32: {w3 / pt:.2f}x")
print(f"ratio datapath W8A8 / PyTorch fp32: {w8 / pt:.2f}x")
PY
