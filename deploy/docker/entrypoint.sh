#!/bin/sh
# Entrypoint of the hgpipe-serve image.
#
#   (no arguments)           hgpipe-server configured from the environment
#   -FLAGS...                the same, with these flags appended (a flag given
#                            twice takes its last value)
#   COMMAND ARGS...          runs COMMAND instead (e.g. hgpipe-client ...)
#
# Environment (defaults set in the Dockerfile):
#   HGPIPE_MODEL_REPOSITORY  model repository (bundled: /opt/hgpipe/models)
#   HGPIPE_BOARDS            boards per model: sim:N (emulated) or an XRT spec
#   HGPIPE_HOST              listen address (0.0.0.0)
#   HGPIPE_GRPC_PORT         KServe v2 gRPC + grpc.health.v1 port (8001)
#   HGPIPE_METRICS_PORT      Prometheus /metrics port (8002)
#   HGPIPE_LOG_LEVEL         log level (info)
# exec keeps the server as PID 1, so it receives SIGTERM and drains.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  exec /opt/hgpipe/bin/hgpipe-server \
    --model-repository "${HGPIPE_MODEL_REPOSITORY:-/opt/hgpipe/models}" \
    --boards "${HGPIPE_BOARDS:-sim:1}" \
    --host "${HGPIPE_HOST:-0.0.0.0}" \
    --grpc-port "${HGPIPE_GRPC_PORT:-8001}" \
    --metrics-port "${HGPIPE_METRICS_PORT:-8002}" \
    --log-level "${HGPIPE_LOG_LEVEL:-info}" \
    "$@"
fi
exec "$@"
