#!/bin/bash
# promtool (Debian's prometheus package) on deploy/prometheus/:
#   - the scrape configuration (and the rule files it loads) is valid;
#   - the alert rules are valid;
#   - the alert rules' unit tests pass: each alert fires on the series that
#     should trigger it and stays quiet otherwise (alerts_test.yml).
set -euo pipefail
src="${HGPIPE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
promtool="$(command -v promtool || true)"
if [[ -z "$promtool" ]]; then
  if [[ "${CI:-}" == true || "${HGPIPE_REQUIRE_DEPLOY_TOOLS:-}" == 1 ]]; then
    echo "FAIL: promtool not found (Debian package prometheus); CI must install it" >&2
    exit 1
  fi
  echo "SKIP: promtool not found (Debian package prometheus)"
  exit 77
fi
cd "$src/deploy/prometheus"
"$promtool" check config prometheus.yml
"$promtool" check rules alerts.yml
"$promtool" test rules alerts_test.yml
echo "promtool: config, rules and rule unit tests pass"
