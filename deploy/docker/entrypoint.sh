#!/bin/sh
# Entrypoint of the hgpipe-serve image.
#
#   (no arguments)           hgpipe-server configured from the environment
#   -FLAGS...                the same, with these flags appended (a flag given
#                            twice takes its last value)
#   healthcheck              gRPC health check of the server in this container
#                            (hgpipe-client health, over TLS when it is on)
#   COMMAND ARGS...          runs COMMAND instead (e.g. hgpipe-client ...)
#
# Environment (defaults set in the Dockerfile):
#   HGPIPE_MODEL_REPOSITORY  model repository (bundled: /opt/hgpipe/models)
#   HGPIPE_BOARDS            boards per model: sim:N (emulated) or an XRT spec
#   HGPIPE_HOST              listen address (0.0.0.0)
#   HGPIPE_GRPC_PORT         KServe v2 gRPC + grpc.health.v1 port (8001)
#   HGPIPE_HTTP_PORT         KServe v2 REST port (8000)
#   HGPIPE_METRICS_PORT      Prometheus /metrics port (8002)
#   HGPIPE_LOG_LEVEL         log level (info)
#   HGPIPE_TLS_DIR           a mounted secret holding tls.crt and tls.key (and
#                            ca.crt): when tls.crt is there, gRPC and HTTP
#                            serve TLS with them (Kubernetes TLS secret keys)
#   HGPIPE_TLS_MUTUAL        "true": also require client certificates signed
#                            by ca.crt (mutual TLS)
# exec keeps the server as PID 1, so it receives SIGTERM and drains.
set -e
tls_dir="${HGPIPE_TLS_DIR:-/etc/hgpipe/tls}"
tls=""
if [ -f "$tls_dir/tls.crt" ]; then tls=1; fi

if [ "$1" = healthcheck ]; then
  if [ -n "$tls" ]; then
    # The client presents the server's own certificate: with mutual TLS it
    # must allow client authentication too (docs/deploy.md).
    exec /opt/hgpipe/bin/hgpipe-client --url "127.0.0.1:${HGPIPE_GRPC_PORT:-8001}" \
      --ssl --root-certificates "$tls_dir/ca.crt" \
      --certificate-chain "$tls_dir/tls.crt" --private-key "$tls_dir/tls.key" \
      --ssl-target-name "${HGPIPE_TLS_SERVER_NAME:-localhost}" health
  fi
  exec /opt/hgpipe/bin/hgpipe-client --url "127.0.0.1:${HGPIPE_GRPC_PORT:-8001}" health
fi

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  if [ -n "$tls" ]; then
    if [ "${HGPIPE_TLS_MUTUAL:-false}" = true ]; then
      set -- --grpc-use-ssl-mutual --grpc-root-cert "$tls_dir/ca.crt" \
             --http-use-ssl-mutual --http-root-cert "$tls_dir/ca.crt" "$@"
    else
      set -- --grpc-use-ssl --http-use-ssl "$@"
    fi
    set -- --grpc-server-cert "$tls_dir/tls.crt" --grpc-server-key "$tls_dir/tls.key" \
           --http-server-cert "$tls_dir/tls.crt" --http-server-key "$tls_dir/tls.key" "$@"
  fi
  exec /opt/hgpipe/bin/hgpipe-server \
    --model-repository "${HGPIPE_MODEL_REPOSITORY:-/opt/hgpipe/models}" \
    --boards "${HGPIPE_BOARDS:-sim:1}" \
    --host "${HGPIPE_HOST:-0.0.0.0}" \
    --grpc-port "${HGPIPE_GRPC_PORT:-8001}" \
    --http-port "${HGPIPE_HTTP_PORT:-8000}" \
    --metrics-port "${HGPIPE_METRICS_PORT:-8002}" \
    --log-level "${HGPIPE_LOG_LEVEL:-info}" \
    "$@"
fi
exec "$@"
