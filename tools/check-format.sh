#!/usr/bin/env bash
# Every C++ file git tracks is formatted as .clang-format says (Debian's
# clang-format 14). Lists the files that are not and exits 1; with --fix,
# formats them in place.
#   tools/check-format.sh [--fix]
set -uo pipefail
cd "$(dirname "$0")/.."
command -v clang-format > /dev/null || { echo "check-format: clang-format is not installed"; exit 2; }
bad=()
while IFS= read -r f; do
  if [ "${1:-}" = --fix ]; then
    clang-format -i "$f"
  elif ! clang-format --dry-run --Werror "$f" > /dev/null 2>&1; then
    bad+=("$f")
  fi
done < <(git ls-files '*.cc' '*.h')
if [ ${#bad[@]} -gt 0 ]; then
  echo "check-format: ${#bad[@]} files differ from .clang-format (tools/check-format.sh --fix):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
