#!/bin/bash
# DeiT-tiny images/s through the integer datapath (C++, oneDNN) against
# PyTorch CPU fp32 DeiT-tiny (Debian python3-torch), same thread count, in
# one run on this machine. Prints both and the ratio.
#
#   bench/vit/run_bench.sh [BUILD_DIR] [THREADS]      (defaults: build 2)
#
# The datapath uses THREADS host threads each computing its own batches with
# one OpenMP thread (how emulated boards run it); PyTorch uses THREADS
# intra-op threads. OMP_WAIT_POLICY=passive for both: on a shared machine
# spinning OpenMP barriers cost PyTorch several times its speed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
images=${IMAGES:-64}
batch=${BATCH:-16}
bin=$build/bin/vit_bench
[ -x "$bin" ] || bin=$(find "$build" -name vit_bench -type f -perm -u+x | head -1)
[ -x "$bin" ] || { echo "vit_bench not found under $build (ninja vit_bench)" >&2; exit 1; }
export OMP_WAIT_POLICY=passive

rate() { sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
w3=$("$bin" --model=deit_tiny --images="$images" --batch="$batch" \
      --workers="$threads" --threads=1)
echo "$w3"
w8=$("$bin" --model=deit_tiny_w8a8 --images="$images" --batch="$batch" \
      --workers="$threads" --threads=1)
echo "$w8"
pt=$(/usr/bin/python3 "$here/torch_deit_bench.py" --threads "$threads" \
      --images "$images" --batch "$batch")
echo "$pt"
/usr/bin/python3 - "$(echo "$w3" | rate)" "$(echo "$w8" | rate)" \
    "$(echo "$pt" | rate)" <<'PY'
import sys
w3, w8, pt = map(float, sys.argv[1:])
print(f"ratio datapath W3A3 / PyTorch fp32: {w3 / pt:.2f}x")
print(f"ratio datapath W8A8 / PyTorch fp32: {w8 / pt:.2f}x")
PY
