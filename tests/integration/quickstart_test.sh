#!/usr/bin/env bash
# Runs the README's first Quick start command on free ports and checks that
# it exits 0 having shown four images that match their own input digests.
set -uo pipefail
src=$1
out=$(HGPIPE_QUICKSTART_EXIT=1 "$src/tools/quickstart.sh" \
  --grpc-port=0 --http-port=0 --metrics-port=0 --host=127.0.0.1 2>&1)
status=$?
echo "$out" | grep -vE '^[IW][0-9]{8} '
[ $status -eq 0 ] || { echo "quickstart exited $status"; exit 1; }
matches=$(echo "$out" | grep -c 'matches its input digest')
[ "$matches" -eq 4 ] || { echo "expected 4 matching images, saw $matches"; exit 1; }
echo "quickstart: OK"
