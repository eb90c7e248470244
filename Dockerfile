# The managed plugin's root file system, built from an image registry instead.
#
# The way pfs builds its plugin is scripts/build-plugin: no registry at all (a debootstrap
# base from the Debian mirror, cached; wheels built on the host), then `docker plugin
# create`. This file makes the same root file system where pulling debian:bookworm-slim
# is possible, for a CI or a host that would rather build with Docker: the same packages
# as the script's PACKAGES, the same /opt/pfs virtualenv, the same empty folders. Package
# registries may be out of reach from inside containers, so the wheels are built on the
# host first and installed from files:
#
#   .venv/bin/pip wheel --wheel-dir dist/wheels .
#   docker build -t pfs-rootfs .
#   mkdir -p plugin-build/rootfs && id=$(docker create pfs-rootfs true)
#   docker export "$id" | tar -x -C plugin-build/rootfs && docker rm "$id"
#   cp config.json plugin-build/    # driver "pfs", socket pfs.sock: as `build-plugin pfs`
#   docker plugin create pfs plugin-build
#
# config.json, not this file, says how the plugin runs (entrypoint, mounts, settings).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv btrfs-progs util-linux mount \
 && rm -rf /var/lib/apt/lists/*
COPY dist/wheels /tmp/wheels
RUN python3 -m venv /opt/pfs \
 && /opt/pfs/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels pfs \
 && rm -rf /tmp/wheels
RUN mkdir -p /run/docker/plugins /run/pfs /var/lib/pfs
