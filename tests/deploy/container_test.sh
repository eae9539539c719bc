#!/bin/bash
# The container image, for real, with podman (no Docker engine here):
#   1. base images debian:bookworm(-slim): from podman's storage, else made
#      with debootstrap (deploy/scripts/make-base-image.sh);
#   2. build the image from deploy/docker/Dockerfile, as `docker build` would;
#   3. check the image's configuration (user, ports, healthcheck, entrypoint);
#   4. run it with --network=host on free loopback ports, emulated boards,
#      the bundled model repository, the default entrypoint;
#   5. run the image's HEALTHCHECK (gRPC health) with `podman healthcheck run`;
#   6. inferences with hgpipe-client: the image's own (podman exec) and, if
#      built, the host's (HGPIPE_BIN_DIR), both checking the verify digests;
#   7. read /metrics and check the images were counted;
#   8. stop with SIGTERM (podman stop) and check the server exited 0;
#   9. TLS from a mounted secret: a second container with mutual TLS, its
#      HEALTHCHECK, HTTPS and gRPC with and without a client certificate.
#
# ctest: deploy.container (label "container"). Podman storage and the base
# image tarball are cached in $HGPIPE_CONTAINER_CACHE (default
# /var/tmp/hgpipe-containers), so a second run reuses the apt layers and, if
# the sources did not change, the compiled layer.
set -euo pipefail
src="${HGPIPE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
bin_dir="${HGPIPE_BIN_DIR:-$src/build/bin}"
image="localhost/hgpipe-serve:ctest"
name="hgpipe-ctest-$$"

say() { echo "[container_test $(date +%T)] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

for tool in podman:podman runc:runc; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    if [[ "${CI:-}" == true || "${HGPIPE_REQUIRE_DEPLOY_TOOLS:-}" == 1 ]]; then
      fail "${tool%%:*} not found (Debian package ${tool##*:}); CI must install it"
    fi
    echo "SKIP: ${tool%%:*} not found (Debian package ${tool##*:})"
    exit 77
  fi
done

source "$src/deploy/scripts/podman-env.sh"

# One run at a time per cache: a second one (another checkout's ctest) waits,
# so that its image prune cannot remove layers of a build in progress.
exec 9> "$HGPIPE_CONTAINER_CACHE/container_test.lock"
if ! flock -n 9; then
  say "waiting for another container test using $HGPIPE_CONTAINER_CACHE"
  flock 9
fi

cleanup() {
  local c
  for c in "$name" "$name-idle" "$name-tls"; do
    hgpipe_podman rm --force --ignore -t 5 "$c" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

t0=$SECONDS
say "base images"
"$src/deploy/scripts/make-base-image.sh"
t_base=$((SECONDS - t0))

say "podman build -f deploy/docker/Dockerfile (BUILD_JOBS=2)"
t1=$SECONDS
build_log="$HGPIPE_CONTAINER_CACHE/last-build.log"
build() {
  hgpipe_podman build --format docker --isolation chroot \
    -f "$src/deploy/docker/Dockerfile" --build-arg BUILD_JOBS=2 "$@" "$src" \
    >> "$build_log" 2>&1 ||
    { tail -60 "$build_log" >&2; fail "image build failed (full log: $build_log)"; }
}
: > "$build_log"
# The deps stage (toolchain, -dev packages) is tagged so that pruning the
# images this run replaces keeps it as build cache.
build --target deps -t localhost/hgpipe-serve-deps:cache
build -t "$image"
t_build=$((SECONDS - t1))
awk '/^runtime packages:/ {p=1; printf "  runtime packages:"; next}
     p && /^(STEP|-->|COMMIT|\[)/ {p=0}
     p {printf " %s", $0} END {print ""}' "$build_log" || true
if [[ "$(grep -m1 -A1 'RUN apt-get update' "$build_log")" == *"Using cache"* ]]; then
  say "deps stage: from cache"
else
  say "deps stage: rebuilt (no cache, or build-packages.txt changed)"
fi
# Images this run replaced are dangling now; tagged ones and their layers stay.
hgpipe_podman image prune -f >/dev/null 2>&1 || true

say "image configuration"
inspect() { hgpipe_podman image inspect --format "$1" "$image"; }
[[ "$(inspect '{{.Config.User}}')" == hgpipe:hgpipe ]] || fail "image user: $(inspect '{{.Config.User}}')"
ports="$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')"
[[ "$ports" == *8000/tcp* && "$ports" == *8001/tcp* && "$ports" == *8002/tcp* ]] ||
  fail "exposed ports: $ports"
health="$(inspect '{{json .Config.Healthcheck}}')"
[[ "$health" == *entrypoint.sh* && "$health" == *healthcheck* ]] || fail "healthcheck: $health"
[[ "$(inspect '{{json .Config.Entrypoint}}')" == *entrypoint.sh* ]] || fail "entrypoint"
size="$(hgpipe_podman image inspect --format '{{.Size}}' "$image")"
say "image size: $((size / 1000000)) MB"

read -r grpc_port metrics_port http_port < <(/usr/bin/python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)

say "podman run: grpc=127.0.0.1:$grpc_port http=127.0.0.1:$http_port metrics=127.0.0.1:$metrics_port"
# --health-interval=disable: no periodic timers (they need systemd); the
# HEALTHCHECK itself is run below with `podman healthcheck run`.
# (podman still complains that it cannot reach systemd for the timers: its
# stderr is shown only on failure.)
hgpipe_podman run -d --name "$name" --network=host --health-interval=disable \
  -e HGPIPE_HOST=127.0.0.1 -e HGPIPE_GRPC_PORT="$grpc_port" \
  -e HGPIPE_HTTP_PORT="$http_port" \
  -e HGPIPE_METRICS_PORT="$metrics_port" -e HGPIPE_BOARDS=sim:2 \
  "$image" > "$HGPIPE_CONTAINER_CACHE/tmp/run.out" 2>&1 ||
  { cat "$HGPIPE_CONTAINER_CACHE/tmp/run.out"; fail "podman run failed"; }

# (Logs are read into a variable: `podman logs | grep -q` fails under
# pipefail when grep stops reading early.)
server_log() { hgpipe_podman logs "$name" 2>&1; }
ready=""
for _ in $(seq 1 240); do
  log="$(server_log)"
  if [[ "$log" == *"hgpipe-server ready: grpc=127.0.0.1:$grpc_port"* ]]; then
    ready=1; break
  fi
  [[ "$(hgpipe_podman inspect --format '{{.State.Running}}' "$name")" == true ]] || break
  sleep 0.5
done
log="$(server_log)"
sed 's/^/  server: /' <<< "$log"
[[ -n "$ready" ]] || fail "the server in the container did not become ready"
[[ "$log" =~ models=[^[:space:]]*verify ]] || fail "bundled model 'verify' not served"

say "KServe v2 REST on the HTTP port"
rest="$(/usr/bin/python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$http_port/v2/models/verify', timeout=10).read().decode())")" ||
  fail "GET /v2/models/verify failed"
[[ "$rest" == *'"platform":"hgpipe/verify"'* ]] || fail "REST model metadata: $rest"

say "HEALTHCHECK (podman healthcheck run)"
hgpipe_podman healthcheck run "$name" || fail "the image's HEALTHCHECK reported unhealthy"
# ... and it really probes: with no server behind its port it fails.
idle_port=$(/usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
hgpipe_podman run -d --name "$name-idle" --network=host --health-interval=disable \
  -e HGPIPE_GRPC_PORT="$idle_port" --entrypoint sleep "$image" 120 > /dev/null 2>&1 ||
  fail "podman run (idle container) failed"
if hgpipe_podman healthcheck run "$name-idle" > /dev/null 2>&1; then
  fail "the HEALTHCHECK passes with no server listening"
fi
hgpipe_podman rm --force --ignore -t 0 "$name-idle" > /dev/null 2>&1 || true

say "runs as the non-root user"
uid="$(hgpipe_podman exec "$name" id -u)"
[[ "$uid" == 10001 ]] || fail "server runs as uid $uid"

say "inference with the image's hgpipe-client"
hgpipe_podman exec "$name" hgpipe-client --url "127.0.0.1:$grpc_port" ready verify
hgpipe_podman exec "$name" hgpipe-client --url "127.0.0.1:$grpc_port" \
  infer verify --random 8 > "$HGPIPE_CONTAINER_CACHE/tmp/infer.out" ||
  { cat "$HGPIPE_CONTAINER_CACHE/tmp/infer.out"; fail "inference (in-container client) failed"; }
[[ "$(grep -c 'matches its input digest' "$HGPIPE_CONTAINER_CACHE/tmp/infer.out")" == 8 ]] ||
  { cat "$HGPIPE_CONTAINER_CACHE/tmp/infer.out"; fail "not every image matched its digest"; }
expected=8
if [[ -x "$bin_dir/hgpipe-client" ]]; then
  say "inference with the host's hgpipe-client ($bin_dir)"
  out="$("$bin_dir/hgpipe-client" --url "127.0.0.1:$grpc_port" infer verify --random 4 --seed 7)" ||
    fail "inference (host client) failed: $out"
  [[ "$(grep -c 'matches its input digest' <<< "$out")" == 4 ]] || fail "host client: $out"
  expected=12
fi

say "/metrics"
metrics="$(/usr/bin/python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics', timeout=10).read().decode())")"
images="$(awk '/^hgpipe_images_total\{.*model="verify"/ {print $2}' <<< "$metrics")"
[[ -n "$images" ]] || fail "no hgpipe_images_total{model=\"verify\"} in /metrics"
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$images') == $expected else 1)" ||
  fail "hgpipe_images_total{model=\"verify\"} = $images, expected $expected"
[[ "$metrics" =~ hgpipe_board_healthy\{[^}]*\}\ 1 ]] || fail "no healthy board in /metrics"
say "hgpipe_images_total{model=\"verify\"} = $images"

say "podman stop (SIGTERM) and a clean exit"
hgpipe_podman stop -t 60 "$name" > "$HGPIPE_CONTAINER_CACHE/tmp/stop.out" 2>&1 ||
  { cat "$HGPIPE_CONTAINER_CACHE/tmp/stop.out"; fail "podman stop failed"; }
code="$(hgpipe_podman inspect --format '{{.State.ExitCode}}' "$name")"
log="$(server_log)"
tail -3 <<< "$log" | sed 's/^/  server: /'
[[ "$code" == 0 ]] || fail "the server exited with $code after SIGTERM"
[[ "$log" == *draining* ]] || fail "no drain on SIGTERM"

say "TLS from a mounted secret (tls.crt, tls.key, ca.crt), mutual TLS"
tls_dir="$HGPIPE_CONTAINER_CACHE/tmp/tls"
rm -rf "$tls_dir" && mkdir -p "$tls_dir"
(
  cd "$tls_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ctest-ca -keyout ca.key -out ca.crt
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout tls.key -out tls.csr
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > ext
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out tls.crt
  chmod 644 tls.key  # readable by the image's user
) > "$HGPIPE_CONTAINER_CACHE/tmp/openssl.out" 2>&1 ||
  { cat "$HGPIPE_CONTAINER_CACHE/tmp/openssl.out"; fail "openssl failed"; }
read -r tls_grpc tls_http tls_metrics < <(/usr/bin/python3 - <<'EOF2'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF2
)
hgpipe_podman run -d --name "$name-tls" --network=host --health-interval=disable \
  -v "$tls_dir:/etc/hgpipe/tls:ro" -e HGPIPE_TLS_MUTUAL=true \
  -e HGPIPE_HOST=127.0.0.1 -e HGPIPE_GRPC_PORT="$tls_grpc" -e HGPIPE_HTTP_PORT="$tls_http" \
  -e HGPIPE_METRICS_PORT="$tls_metrics" "$image" > /dev/null 2>&1 ||
  fail "podman run (TLS) failed"
ready=""
for _ in $(seq 1 240); do
  if [[ "$(hgpipe_podman logs "$name-tls" 2>&1)" == *"hgpipe-server ready: grpc=127.0.0.1:$tls_grpc"* ]]; then
    ready=1; break
  fi
  sleep 0.5
done
[[ -n "$ready" ]] || { hgpipe_podman logs "$name-tls" 2>&1 | tail -20; fail "the TLS server did not become ready"; }
hgpipe_podman healthcheck run "$name-tls" || fail "the HEALTHCHECK fails over mutual TLS"
https_status() {  # https_status CERT KEY: the HTTP status of GET v2/health/ready, or "refused"
  /usr/bin/python3 - "$tls_dir" "$tls_http" "$1" "$2" <<'EOF2'
import ssl, sys, urllib.request
d, port, cert, key = sys.argv[1:]
ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")
if cert:
    ctx.load_cert_chain(f"{d}/{cert}", f"{d}/{key}")
try:
    print(urllib.request.urlopen(f"https://localhost:{port}/v2/health/ready", context=ctx, timeout=10).status)
except Exception:
    print("refused")
EOF2
}
[[ "$(https_status tls.crt tls.key)" == 200 ]] || fail "HTTPS with a trusted client certificate"
[[ "$(https_status "" "")" == refused ]] || fail "HTTPS without a client certificate was served"
if [[ -x "$bin_dir/hgpipe-client" ]]; then
  "$bin_dir/hgpipe-client" --url "localhost:$tls_grpc" --ssl --root-certificates "$tls_dir/ca.crt" \
    --certificate-chain "$tls_dir/tls.crt" --private-key "$tls_dir/tls.key" \
    infer verify --random 2 > /dev/null || fail "gRPC inference over mutual TLS"
  if "$bin_dir/hgpipe-client" --url "localhost:$tls_grpc" --ssl \
       --root-certificates "$tls_dir/ca.crt" --timeout 5 live > /dev/null 2>&1; then
    fail "gRPC without a client certificate was served"
  fi
fi
hgpipe_podman rm --force --ignore -t 10 "$name-tls" > /dev/null 2>&1 || true

total=$((SECONDS - t0))
say "PASS: base images ${t_base}s, image build ${t_build}s, total ${total}s"
