# The root file system of pfs as a managed Docker plugin (config.json beside it).
#
# Package registries are not reachable over TLS from inside containers here, so wheels
# are built on the host first and installed from files:
#   .venv/bin/pip wheel --wheel-dir dist/wheels .
#   docker build -t pfs-rootfs .
#   id=$(docker create pfs-rootfs true) && mkdir -p plugin-build/rootfs
#   docker export "$id" | tar -x -C plugin-build/rootfs && cp config.json plugin-build/
#   docker plugin create pfs plugin-build
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends btrfs-progs util-linux python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY dist/wheels /tmp/wheels
RUN python3 -m venv /opt/pfs \
 && /opt/pfs/bin/pip install --no-index --find-links /tmp/wheels pfs \
 && rm -rf /tmp/wheels
RUN mkdir -p /run/docker/plugins /run/pfs /var/lib/pfs
ENTRYPOINT ["/opt/pfs/bin/pfs", "serve"]
