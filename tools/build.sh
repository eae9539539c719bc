#!/usr/bin/env bash
# Configures and builds one build tree: tools/build.sh DIR [cmake args...]
# Binaries land in DIR/bin.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=$1; shift
cmake -S "$src" -B "$dir" -G Ninja "$@" > "$dir.configure.log" 2>&1 ||
  { cat "$dir.configure.log"; exit 1; }
ninja -C "$dir" -j"${HGPIPE_JOBS:-2}"
