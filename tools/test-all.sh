#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then
#  1. the normal build (RelWithDebInfo): every test label;
#  2. ASan + UBSan build: unit and integration tests;
#  3. TSan build: the scheduler's and clock's tests;
#  4. clang++ -Wthread-safety -Werror, configured without XRT: the annotated
#     libraries and the echo server must compile, and hgpipe-server must
#     build without XRT;
#  5. libFuzzer targets (tests/fuzz/, clang, ASan + UBSan), each run from its
#     seed corpus for HGPIPE_FUZZ_SECONDS (default 45); each counts as a test;
#  6. the C++ files formatted as .clang-format says (tools/check-format.sh;
#     one test).
# Builds and tests use min(cores, 4) jobs (HGPIPE_JOBS, HGPIPE_TEST_JOBS).
# Ends with one line "tests: N passed, M failed". Stages can be chosen:
#   tools/test-all.sh [normal] [asan] [tsan] [tsa] [fuzz] [format]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tools/install-deps.sh || exit 1
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(normal asan tsan tsa fuzz format)

passed=0 failed=0 broken=0
# Builds and tests use the machine's cores, at most 4 (memory: a g++ job
# of the ASan build takes about 1.5 GB). Tests run in parallel: most of them
# wait on a server or a board, and every one must pass on a loaded 2-core
# machine.
cores=$(nproc)
export HGPIPE_JOBS=${HGPIPE_JOBS:-$((cores < 4 ? cores : 4))}
test_jobs=${HGPIPE_TEST_JOBS:-$HGPIPE_JOBS}
run_ctest() {  # run_ctest DIR ctest-args...
  local dir=$1; shift
  local log; log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j "$test_jobs" "$@") 2>&1 | tee "$log" |
    grep -vE '^(I|W)[0-9]{8} ' || true
  local line; line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "test-all: ctest in $dir produced no summary"; broken=1
  else
    local f t; f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
    t=$(echo "$line" | sed -E 's/.* tests failed out of ([0-9]+).*/\1/')
    passed=$((passed + t - f)); failed=$((failed + f))
  fi
  # A suite whose SetUpTestSuite failed prints its tests as SKIPPED, and
  # ctest's gtest skip pattern wins over the exit code: it would pass as
  # skipped. Each such test counts as failed here, with its log.
  local setup_failed
  setup_failed=$(grep -cE '^\[  FAILED  \] .*: SetUpTestSuite or TearDownTestSuite' \
    "$dir/Testing/Temporary/LastTest.log" 2>/dev/null)
  setup_failed=${setup_failed:-0}
  if [ "$setup_failed" -gt 0 ]; then
    echo "test-all: $setup_failed test(s) in $dir skipped because their suite's set-up failed:"
    grep -B40 -E 'SetUpTestSuite or TearDownTestSuite' "$dir/Testing/Temporary/LastTest.log" |
      grep -E 'Failure|FAILED|Error|error' | head -40
    passed=$((passed - setup_failed)); failed=$((failed + setup_failed))
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
      stage "TSan build (scheduler, clocks, boards, the server's threaded rooms)"
      if ! { cmake -S . -B build-tsan -G Ninja -DHGPIPE_SANITIZE=thread \
        -DHGPIPE_BUILD_BENCH=OFF >/dev/null &&
        ninja -C build-tsan -j"$HGPIPE_JOBS" scheduler_test variant_router_test base_test accel_test \
          server_test; }; then
        broken=1; continue
      fi
      # Not RestJsonTest: Debian's libprotobuf is built without TSan, and its
      # headers compiled with it (PROTOBUF_TSAN) disagree with the library on
      # map reflection, which crashes in single-threaded code.
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tools/tsan.supp \
        run_ctest build-tsan -R "^(Scheduler|RequestQueue|RunSizing|VariantRouter|ChooseVariant|SplitBoards|SimClock|RealClock|EmulatedBoard|FaultyBoard|PipelineModel|RequestPipeline|ModelManager|Metrics|Statistics|ObserverFanout|SharedMemoryRegions|SharedMemoryTensors|HeapRelease|BoardFactory|LogRateLimiter|LogControl|LogSettings|TraceControl|TraceSettings|RequestTrace|Canary|WorkerPool|ThreadName)" ;;
    tsa)
      stage "clang++ -Wthread-safety -Werror, without XRT"
      CXX=clang++ cmake -S . -B build-tsa -G Ninja -DHGPIPE_THREAD_SAFETY=ON \
        -DHGPIPE_WITH_XRT=OFF -DHGPIPE_BUILD_TESTS=OFF -DHGPIPE_BUILD_BENCH=ON \
        > build-tsa.configure.log 2>&1 || { cat build-tsa.configure.log; broken=1; continue; }
      grep -q "building without the XRT board driver" build-tsa.configure.log ||
        { echo "test-all: the no-XRT configuration did not say so"; broken=1; }
      ninja -C build-tsa -j"$HGPIPE_JOBS" hgpipe-server hgpipe-client hgpipe-echo-server \
          hgpipe_preprocess ||
        { echo "test-all: thread-safety analysis or the no-XRT build failed"; broken=1; } ;;
    fuzz)
      stage "libFuzzer targets, ${HGPIPE_FUZZ_SECONDS:-45} s each"
      CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DHGPIPE_FUZZ=ON \
        -DHGPIPE_SANITIZE=fuzzer-no-link,address,undefined -DHGPIPE_WITH_XRT=OFF \
        -DHGPIPE_BUILD_BENCH=OFF > build-fuzz.configure.log 2>&1 ||
        { cat build-fuzz.configure.log; broken=1; continue; }
      ninja -C build-fuzz -j"$HGPIPE_JOBS" fuzz_targets || { broken=1; continue; }
      for target in build-fuzz/bin/*_fuzz; do
        name=$(basename "$target")
        work=$(mktemp -d)  # new inputs go here; the tree's seeds stay as they are
        if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$target" \
            -max_total_time="${HGPIPE_FUZZ_SECONDS:-45}" -rss_limit_mb=4096 -timeout=30 \
            -artifact_prefix="$work/" "$work" "tests/fuzz/corpus/$name" > "$work.log" 2>&1; then
          echo "fuzz $name: $(grep -E '^#[0-9]+.*(DONE|pulse)' "$work.log" | tail -1)"
          passed=$((passed + 1))
        else
          echo "fuzz $name: FAILED"; tail -40 "$work.log"
          failed=$((failed + 1))
        fi
        rm -rf "$work" "$work.log"
      done ;;
    format)
      stage "clang-format"
      if tools/check-format.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); fi ;;
    *) echo "test-all: unknown stage $s"; exit 2 ;;
  esac
done

echo
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$broken" -eq 0 ]
