#!/usr/bin/env bash
# Makes the photos issue 15's benchmarks use (docs/BENCHMARKS.md, "Photos at
# the state of the art"), from scikit-image's sample data (Debian's
# python3-skimage; each image used is public domain, CC0 or "no known
# copyright restrictions", as skimage/data/_fetchers.py states):
#
#   bench/preprocess/make_photos.sh [DIR]     (default: ./bench-photos)
#
# writes into DIR, each saved by Pillow at quality 90:
#   coffee_600x400_q90.jpg     coffee.png as it is (600x400, 72 KB)
#   coffee_1920x1080_q90.jpg   the same enlarged (bicubic) to 1920x1080
#   astronaut_500x375_q90.jpg  astronaut.png resized (bicubic) to 500x375
#   NAME_500x375_q90.jpg       ImageNet's typical size from six more of its
#                              colour photos (chelsea, coffee, ihc, rocket,
#                              hubble_deep_field, retina): the centre 4:3,
#                              resized (bicubic)
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
others=(chelsea.png coffee.png ihc.png rocket.jpg hubble_deep_field.jpg retina.jpg)
for f in astronaut.png "${others[@]}"; do
  [[ -f $data/$f ]] || { echo "make_photos: $data/$f is missing" >&2; exit 1; }
done

/usr/bin/python3 - "$data" "$out" "${others[@]}" <<'EOF'
import sys
from PIL import Image
data, out, others = sys.argv[1], sys.argv[2], sys.argv[3:]
coffee = Image.open(f"{data}/coffee.png").convert("RGB")
coffee.save(f"{out}/coffee_600x400_q90.jpg", quality=90)
coffee.resize((1920, 1080), Image.BICUBIC).save(f"{out}/coffee_1920x1080_q90.jpg", quality=90)
astronaut = Image.open(f"{data}/astronaut.png").convert("RGB")
astronaut.resize((500, 375), Image.BICUBIC).save(f"{out}/astronaut_500x375_q90.jpg", quality=90)
for name in others:
    im = Image.open(f"{data}/{name}").convert("RGB")
    w, h = im.size
    cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
    box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
    stem = name.rsplit(".", 1)[0]
    im.resize((500, 375), Image.BICUBIC, box=box).save(f"{out}/{stem}_500x375_q90.jpg", quality=90)
EOF
for f in coffee_600x400_q90.jpg coffee_1920x1080_q90.jpg astronaut_500x375_q90.jpg \
  "${others[@]/%.*/_500x375_q90.jpg}"; do
  echo "$out/$f"
done
