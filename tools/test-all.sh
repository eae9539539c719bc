#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then
#  1. the normal build (RelWithDebInfo): every test label;
#  2. ASan + UBSan build: unit and integration tests;
#  3. TSan build: the scheduler's and clock's tests;
#  4. clang++ -Wthread-safety -Werror, configured without XRT: the annotated
#     libraries must compile, and hgpipe-server must build without XRT.
# Ends with one line "tests: N passed, M failed". Stages can be chosen:
#   tools/test-all.sh [normal] [asan] [tsan] [tsa]
set -uo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh || exit 1
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(normal asan tsan tsa)

passed=0 failed=0 broken=0
run_ctest() {  # run_ctest DIR ctest-args...
  local dir=$1; shift
  local log; log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure --timeout 900 "$@") 2>&1 | tee "$log" |
    grep -vE '^(I|W)[0-9]{8} ' || true
  local line; line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "test-all: ctest in $dir produced no summary"; broken=1
  else
    local f t; f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
    t=$(echo "$line" | sed -E 's/.* tests failed out of ([0-9]+).*/\1/')
    passed=$((passed + t - f)); failed=$((failed + f))
  fi
  rm -f "$log"
}
stage() { echo; echo "==== test-all: $*"; }

for s in "${stages[@]}"; do
  case $s in
    normal)
      stage "normal build"
      tools/build.sh build || { broken=1; continue; }
      run_ctest build ;;
    asan)
      stage "ASan + UBSan build"
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        tools/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug \
        -DHGPIPE_SANITIZE=address,undefined -DHGPIPE_BUILD_BENCH=OFF ||
        { broken=1; continue; }
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_ctest build-asan -L "unit|integration|xrt" ;;
    tsan)
      stage "TSan build (scheduler, clocks, boards)"
      cmake -S . -B build-tsan -G Ninja -DHGPIPE_SANITIZE=thread \
        -DHGPIPE_BUILD_BENCH=OFF >/dev/null &&
        ninja -C build-tsan -j"${HGPIPE_JOBS:-2}" scheduler_test base_test accel_test ||
        { broken=1; continue; }
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        run_ctest build-tsan -R "^(Scheduler|SimClock|RealClock|EmulatedBoard|PipelineModel)" ;;
    tsa)
      stage "clang++ -Wthread-safety -Werror, without XRT"
      CXX=clang++ cmake -S . -B build-tsa -G Ninja -DHGPIPE_THREAD_SAFETY=ON \
        -DHGPIPE_WITH_XRT=OFF -DHGPIPE_BUILD_TESTS=OFF -DHGPIPE_BUILD_BENCH=OFF \
        > build-tsa.configure.log 2>&1 || { cat build-tsa.configure.log; broken=1; continue; }
      grep -q "building without the XRT board driver" build-tsa.configure.log ||
        { echo "test-all: the no-XRT configuration did not say so"; broken=1; }
      ninja -C build-tsa -j"${HGPIPE_JOBS:-2}" hgpipe-server hgpipe-client \
          hgpipe_preprocess ||
        { echo "test-all: thread-safety analysis or the no-XRT build failed"; broken=1; } ;;
    *) echo "test-all: unknown stage $s"; exit 2 ;;
  esac
done

echo
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$broken" -eq 0 ]
