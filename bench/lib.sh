# shellcheck shell=bash
# shellcheck disable=SC2034  # BENCH_* are for the scripts that source this
# What the bench scripts share: starting a server that prints hgpipe's ready
# line, stopping what was started, and reading a process's CPU time.
# Source it (after `set -euo pipefail`):
#
#   bench_start LOG CMD...
#       Starts CMD in the background, its stdout and stderr in LOG, waits up
#       to 60 s for its "ready: grpc=HOST:PORT [http=...] [metrics=...]"
#       line (hgpipe-server, hgpipe-echo-server), and sets BENCH_PID,
#       BENCH_GRPC (HOST:PORT), BENCH_GRPC_PORT, BENCH_HTTP and BENCH_METRICS
#       (HOST:PORT, or empty when the line names none or "off"). If CMD
#       exits first or never gets ready, prints LOG and exits the script.
#   bench_stop PID
#       SIGTERM to a process bench_start started, then waits for it.
#   bench_stop_all
#       bench_stop for every process still running; installed as the EXIT
#       trap here (a script with its own EXIT trap calls it from there).
#   cpu_ticks PID
#       The process's user + system CPU time so far, in clock ticks
#       (getconf CLK_TCK per second), all threads.
#   thread_ticks PID
#       The same per thread, a line each, sorted: "TID NAME TICKS SWITCHES"
#       (spaces in a name become _; SWITCHES: the thread's context switches
#       so far, voluntary and not, about how often it slept and woke).
#   context_switches
#       Context switches on the whole machine since boot (/proc/stat ctxt).

BENCH_PIDS=()

bench_start() {
  local log=$1 line='' name=${0##*/}
  shift
  "$@" >"$log" 2>&1 &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
  for _ in $(seq 1 600); do
    line=$(grep -m1 'ready: grpc=' "$log" || true)
    [[ -n $line ]] && break
    if ! kill -0 "$BENCH_PID" 2>/dev/null; then
      echo "$name: $* exited at start-up:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [[ -z $line ]]; then
    echo "$name: $* not ready after 60 s:" >&2
    cat "$log" >&2
    exit 1
  fi
  BENCH_GRPC=$(sed -n 's/.*ready: grpc=\([^ ]*\).*/\1/p' <<<"$line")
  BENCH_GRPC_PORT=${BENCH_GRPC##*:}
  BENCH_HTTP=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$line")
  BENCH_METRICS=$(sed -n 's/.* metrics=\([^ ]*\).*/\1/p' <<<"$line")
  [[ $BENCH_HTTP == off ]] && BENCH_HTTP=
  [[ $BENCH_METRICS == off ]] && BENCH_METRICS=
  return 0
}

bench_stop() {
  local pid kept=()
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  # Forgotten, so that bench_stop_all never signals a reused pid.
  for pid in "${BENCH_PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
  BENCH_PIDS=("${kept[@]}")
}

bench_stop_all() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  BENCH_PIDS=()
}
trap bench_stop_all EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    echo "${t##*/} $(tr ' ' _ < "$t/comm") $(awk '{print $14 + $15}' "$t/stat")" \
      "$(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status")"
  done 2> /dev/null | sort
}

context_switches() { awk '$1 == "ctxt" {print $2}' /proc/stat; }
