# Sourced (not run) by the deploy scripts and tests: a podman set up for a
# machine with no Docker engine, no systemd and no registry (see
# shared/containers.md).
#
# After `source deploy/scripts/podman-env.sh`:
#   HGPIPE_CONTAINER_CACHE  the directory that holds podman's storage, the
#                           base-image tarball and containers.conf. Defaults
#                           to /var/tmp/hgpipe-containers: outside the work
#                           tree, so CI's fresh clones reuse the layers.
#   CONTAINERS_CONF         exported, pointing at that containers.conf.
#   hgpipe_podman ARGS...   podman with that storage and configuration.
#
# Why each setting: runc because crun fails here ("cgroups in hybrid mode not
# supported"); explicit ulimits because the defaults fail with "setrlimit ...
# Operation not permitted"; cgroupfs and file events because there is no
# systemd or journald; chroot isolation for builds avoids the runtime.

: "${HGPIPE_CONTAINER_CACHE:=/var/tmp/hgpipe-containers}"
export HGPIPE_CONTAINER_CACHE
mkdir -p "$HGPIPE_CONTAINER_CACHE/storage" "$HGPIPE_CONTAINER_CACHE/run" \
         "$HGPIPE_CONTAINER_CACHE/tmp"

HGPIPE_CONTAINERS_CONF="$HGPIPE_CONTAINER_CACHE/containers.conf"
cat > "$HGPIPE_CONTAINERS_CONF.$$" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
image_copy_tmp_dir = "$HGPIPE_CONTAINER_CACHE/tmp"
EOF
mv -f "$HGPIPE_CONTAINERS_CONF.$$" "$HGPIPE_CONTAINERS_CONF"
export CONTAINERS_CONF="$HGPIPE_CONTAINERS_CONF"
export BUILDAH_ISOLATION=chroot

hgpipe_podman() {
  podman --root "$HGPIPE_CONTAINER_CACHE/storage" \
         --runroot "$HGPIPE_CONTAINER_CACHE/run" "$@"
}
