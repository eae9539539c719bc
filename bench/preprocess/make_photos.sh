#!/usr/bin/env bash
# Makes the photos issue 15's benchmarks use (docs/BENCHMARKS.md, "Photos at
# the state of the art"), from scikit-image's sample data (Debian's
# python3-skimage; coffee.png and astronaut.png, both free of copyright):
#
#   bench/preprocess/make_photos.sh [DIR]     (default: ./bench-photos)
#
# writes into DIR, each saved by Pillow at quality 90:
#   coffee_600x400_q90.jpg     coffee.png as it is (600x400, 72 KB)
#   coffee_1920x1080_q90.jpg   the same enlarged (bicubic) to 1920x1080
#   astronaut_500x375_q90.jpg  astronaut.png resized (bicubic) to 500x375
# and prints their paths, for bench/preprocess/server_cpu_per_image.sh and
# hgpipe-bench-preprocess (HGPIPE_BENCH_JPEGS, colon-separated).
#
# Uses the installed python3-skimage's data if there is one; otherwise
# fetches the package with apt-get download and unpacks it in a temporary
# directory (nothing is installed). Needs python3-pil (tools/install-deps.sh).
set -euo pipefail
out=${1:-bench-photos}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

data=/usr/lib/python3/dist-packages/skimage/data
if [[ ! -f $data/coffee.png ]]; then
  # (As root apt-get warns that its _apt user cannot write here: harmless.)
  (cd "$work" && apt-get download python3-skimage > "$work/apt.log" 2>&1) ||
    { cat "$work/apt.log" >&2; echo "make_photos: cannot download python3-skimage" >&2; exit 1; }
  dpkg -x "$work"/python3-skimage_*.deb "$work/root"
  data=$work/root$data
fi
for f in coffee.png astronaut.png; do
  [[ -f $data/$f ]] || { echo "make_photos: $data/$f is missing" >&2; exit 1; }
done

/usr/bin/python3 - "$data" "$out" <<'EOF'
import sys
from PIL import Image
data, out = sys.argv[1], sys.argv[2]
coffee = Image.open(f"{data}/coffee.png").convert("RGB")
coffee.save(f"{out}/coffee_600x400_q90.jpg", quality=90)
coffee.resize((1920, 1080), Image.BICUBIC).save(f"{out}/coffee_1920x1080_q90.jpg", quality=90)
astronaut = Image.open(f"{data}/astronaut.png").convert("RGB")
astronaut.resize((500, 375), Image.BICUBIC).save(f"{out}/astronaut_500x375_q90.jpg", quality=90)
EOF
for f in coffee_600x400_q90.jpg coffee_1920x1080_q90.jpg astronaut_500x375_q90.jpg; do
  echo "$out/$f"
done
