#!/bin/bash
# Makes the base images deploy/docker/Dockerfile starts FROM (debian:bookworm
# and debian:bookworm-slim) in the podman storage of podman-env.sh, on a
# machine where no container registry answers.
#
#   deploy/scripts/make-base-image.sh [--force]
#
# Order: the images already in storage; else a cached rootfs tarball
# ($HGPIPE_CONTAINER_CACHE/debian-bookworm-minbase.tar); else a registry pull,
# tried briefly (it works on a connected machine); else debootstrap
# --variant=minbase from this machine's Debian mirror (about 30 s, 200 MB).
#
# The debootstrapped rootfs gets this machine's apt sources and Acquire
# settings, so `RUN apt-get ...` in the Dockerfile reaches the same mirror the
# host uses, and the dpkg/apt settings of Docker's official slim image (no
# docs, man pages or locales; apt caches cleaned), so sizes are comparable.
# Both tags name the same image: the build stage installs all it needs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/podman-env.sh"

force=0
[[ "${1:-}" == "--force" ]] && force=1

have_images() {
  hgpipe_podman image exists debian:bookworm-slim &&
    hgpipe_podman image exists debian:bookworm
}

if [[ $force == 0 ]] && have_images; then
  echo "make-base-image: debian:bookworm and debian:bookworm-slim are in storage"
  exit 0
fi

tarball="$HGPIPE_CONTAINER_CACHE/debian-bookworm-minbase.tar"

import_tarball() {
  hgpipe_podman import \
    --change 'CMD ["bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    "$tarball" docker.io/library/debian:bookworm-slim
  hgpipe_podman tag docker.io/library/debian:bookworm-slim \
    docker.io/library/debian:bookworm
  echo "make-base-image: imported $tarball as debian:bookworm and debian:bookworm-slim"
}

if [[ $force == 0 && -s "$tarball" ]]; then
  import_tarball
  exit 0
fi

# A registry, where one answers (bounded: an unreachable one can hang).
if [[ $force == 0 ]] &&
   timeout 60 podman --root "$HGPIPE_CONTAINER_CACHE/storage" \
     --runroot "$HGPIPE_CONTAINER_CACHE/run" pull -q \
     docker.io/library/debian:bookworm-slim >/dev/null 2>&1 &&
   timeout 60 podman --root "$HGPIPE_CONTAINER_CACHE/storage" \
     --runroot "$HGPIPE_CONTAINER_CACHE/run" pull -q \
     docker.io/library/debian:bookworm >/dev/null 2>&1; then
  echo "make-base-image: pulled debian:bookworm and debian:bookworm-slim"
  exit 0
fi

command -v debootstrap >/dev/null ||
  { echo "make-base-image: no registry answered and debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

# The host's Debian mirror: the first URIs: of a deb822 source (or the first
# deb line of a one-line source) that serves bookworm.
mirror="${HGPIPE_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' \
              /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
fi
if [[ -z "$mirror" ]]; then
  mirror="$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' \
              /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
fi
: "${mirror:=http://deb.debian.org/debian}"

rootfs="$HGPIPE_CONTAINER_CACHE/rootfs.$$"
trap 'rm -rf "$rootfs" "$tarball.$$"' EXIT
rm -rf "$rootfs"
echo "make-base-image: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
  > "$HGPIPE_CONTAINER_CACHE/debootstrap.log" 2>&1 ||
  { tail -20 "$HGPIPE_CONTAINER_CACHE/debootstrap.log" >&2; exit 1; }

# apt inside the image: the host's sources and Acquire settings.
rm -f "$rootfs/etc/apt/sources.list"
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/"
else
  echo "deb $mirror bookworm main" > "$rootfs/etc/apt/sources.list"
fi
grep -rhE '^[[:space:]]*Acquire::(Check-Valid-Until|Check-Date|http::Proxy|https::Proxy)' \
  /etc/apt/apt.conf /etc/apt/apt.conf.d 2>/dev/null \
  > "$rootfs/etc/apt/apt.conf.d/99host-acquire" || true

# What Docker's debian:bookworm-slim sets up.
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

tar --numeric-owner -C "$rootfs" -cf "$tarball.$$" .
mv -f "$tarball.$$" "$tarball"
import_tarball
