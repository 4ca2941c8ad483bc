#!/bin/sh
# Build the Debian 12 base image that edgetrim's examples and tests start FROM, with mmdebstrap
# and `docker import`, because no public registry is reachable from the build machines.
#   Usage: scripts/build-base-image.sh [TAG]     (default edgetrim/debian:bookworm)
# The rootfs tarball is cached in /var/cache/edgetrim and reused on later runs.
set -eu

tag="${1:-edgetrim/debian:bookworm}"
cache=/var/cache/edgetrim
tarball="$cache/bookworm-base.tar"
export DOCKER_HOST="${DOCKER_HOST:-unix:///run/edgetrim-docker/docker.sock}"

if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
    # The apt variant keeps apt-get usable in `docker build`; ca-certificates lets it use https mirrors.
    printf '%s\n' \
        'deb http://deb.debian.org/debian bookworm main' \
        'deb http://deb.debian.org/debian bookworm-updates main' \
        'deb http://deb.debian.org/debian-security bookworm-security main' |
        mmdebstrap --quiet --variant=apt --include=ca-certificates bookworm "$tarball.tmp" -
    mv "$tarball.tmp" "$tarball"
fi
docker import --change 'CMD ["/bin/bash"]' "$tarball" "$tag" >/dev/null
