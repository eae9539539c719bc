#!/usr/bin/env bash
# Installs, from Debian bookworm's packages, everything hgpipe-serve needs to
# build, test, benchmark and package. Idempotent: installs only what is
# missing. Run as root (CI and the Quick start do).
set -euo pipefail

# Build and run.
pkgs=(
  build-essential g++ cmake ninja-build pkg-config ccache git
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libabsl-dev prometheus-cpp-dev libgoogle-glog-dev
  libxrt-dev libxrt-utils uuid-dev
  libjpeg62-turbo-dev libturbojpeg0-dev libspng-dev libhwy-dev zlib1g-dev
  libdnnl-dev
  libboost-dev rapidjson-dev libssl-dev
)
# Tests, sanitizers, the clang thread-safety build, benchmarks.
pkgs+=(
  libgtest-dev libgmock-dev libbenchmark-dev libcurl4-openssl-dev
  clang clang-format libclang-rt-14-dev curl jq openssl wrk nghttp2-client
)
# Python tooling (Debian's python3 only) and the data set it trains on.
pkgs+=(python3 python3-numpy python3-torch python3-grpcio python3-yaml python3-pil python3-protobuf libopenblas0-openmp
       dataset-fashion-mnist)
# Deployment tests: a real Prometheus, kubectl, podman for the image.
pkgs+=(prometheus docker-compose
       podman buildah runc crun fuse-overlayfs slirp4netns uidmap debootstrap)

# kubectl: Debian's kubernetes-client, unless some other package has one.
command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
