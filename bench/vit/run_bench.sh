#!/bin/bash
# The emulated board's compute for DeiT-tiny per core: the integer datapath
# (vit_bench, the HG-PIPE authors' model in models/deit_tiny) against
# PyTorch CPU fp32 DeiT-tiny (Debian python3-torch), both on one thread, in
# one run on this machine. Prints every measurement and the ratio of the
# best images per CPU-second of each.
#
#   bench/vit/run_bench.sh [BUILD_DIR]            (default: build)
#   env: IMAGES (32), BATCH (16), ROUNDS (5), STAGES (1: also time the
#        stage-by-stage path, HGPIPE_VIT_BLOCKS=stages)
#
# Per CPU-second, because the machine is shared: wall time counts the time
# a process waits for a core, CPU time does not. The datapath computes on
# one host thread with one OpenMP thread (VitKernel::Options::threads = 1,
# how an emulated board runs it); PyTorch on torch.set_num_threads(1). The
# two alternate for ROUNDS rounds so that load from other processes hits
# both alike, and the best round of each is compared. OMP_WAIT_POLICY=
# passive for both: spinning OpenMP threads would burn CPU time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
images=${IMAGES:-32}
batch=${BATCH:-16}
rounds=${ROUNDS:-5}
stages=${STAGES:-1}
bin=$build/bin/vit_bench
[ -x "$bin" ] || bin=$(find "$build" -name vit_bench -type f -perm -u+x | head -1)
[ -x "$bin" ] || { echo "vit_bench not found under $build (ninja vit_bench)" >&2; exit 1; }
export OMP_WAIT_POLICY=passive

per_cpu_s() { sed -n 's/.* \([0-9.]*\) images\/cpu-s.*/\1/p'; }
best() { sort -g | tail -1; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
     "(family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')" \
     "model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | tr -d ' '))"
lut=() ref=() pt=()
for r in $(seq "$rounds"); do
  out=$("$bin" --images="$images" --batch="$batch" --workers=1 --threads=1 --repeats=2)
  echo "$out"; lut+=("$(echo "$out" | per_cpu_s)")
  if [ "$stages" = 1 ]; then
    out=$(HGPIPE_VIT_BLOCKS=stages "$bin" --images="$images" --batch="$batch" --workers=1 \
          --threads=1 --repeats=2)
    echo "$out (stages)"; ref+=("$(echo "$out" | per_cpu_s)")
  fi
  out=$(/usr/bin/python3 "$here/torch_deit_bench.py" --threads 1 --images "$images" \
        --batch "$batch" --repeats 2)
  echo "$out"; pt+=("$(echo "$out" | per_cpu_s)")
done
bl=$(printf '%s\n' "${lut[@]}" | best)
bp=$(printf '%s\n' "${pt[@]}" | best)
br=0
[ "$stages" = 1 ] && br=$(printf '%s\n' "${ref[@]}" | best)
/usr/bin/python3 - "$bl" "$br" "$bp" <<'PY'
import sys
lut, ref, pt = map(float, sys.argv[1:4])
print(f"best of each, 1 thread: datapath {lut:.1f}, PyTorch fp32 {pt:.1f} images/cpu-s"
      + (f" (stage by stage: {ref:.1f})" if ref else ""))
print(f"ratio datapath / PyTorch fp32 per CPU-second: {lut / pt:.2f}x")
PY
