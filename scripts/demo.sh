#!/bin/sh
# Minimize the bundled Flask example and compare the sizes of the two images. Run it as root
# after scripts/setup-debian.sh:
#   scripts/demo.sh
# It builds examples/python-http as edgetrim-example/python-http:latest, runs `edgetrim minimize`
# with an HTTP probe on port 8080, writes ./python-http-min.tar in the current folder, loads that
# archive into the engine as edgetrim-example/python-http:min and lists both images.
# Exit status: 0, or that of edgetrim minimize when it fails (see README.md, Exit codes).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
source_tag=edgetrim-example/python-http:latest
minimized_tag=edgetrim-example/python-http:min
archive=./python-http-min.tar
export DOCKER_HOST=unix:///run/edgetrim-docker/docker.sock

if [ ! -x "$repo/.venv/bin/edgetrim" ]; then
    echo "demo: $repo/.venv/bin/edgetrim is missing; run scripts/setup-debian.sh first" >&2
    exit 2
fi
"$repo/scripts/start-docker.sh"
"$repo/scripts/build-base-image.sh"

# Without the buildx plugin, the Docker CLI (checked with 28.2.2) prints "DEPRECATED: The legacy
# builder is deprecated ..." on every build, and DOCKER_BUILDKIT=0 only swaps it for another
# DEPRECATED notice. The demo needs only the legacy builder, so that notice is dropped from the
# build's stderr and everything else, errors included, is printed.
drop_legacy_builder_notice() {
    awk '
        /^DEPRECATED: The legacy builder is deprecated/ { in_notice = 1; next }
        in_notice && /^[ \t]/ { next }
        in_notice && /^$/ { in_notice = 0; next }
        { in_notice = 0; print }
    '
}

echo "demo: building $source_tag from examples/python-http"
build_errors=$(mktemp "${TMPDIR:-/tmp}/edgetrim-demo.XXXXXX")
trap 'rm -f "$build_errors"' EXIT
build_status=0
docker build --network=host -q -t "$source_tag" "$repo/examples/python-http" \
    >/dev/null 2>"$build_errors" || build_status=$?
drop_legacy_builder_notice <"$build_errors" >&2
if [ "$build_status" -ne 0 ]; then
    echo "demo: docker build failed with exit status $build_status; its message is above" >&2
    exit "$build_status"
fi
source_id=$(docker image inspect -f '{{.Id}}' "$source_tag")

echo "demo: edgetrim minimize docker-daemon:$source_tag docker-archive:$archive --http-probe 8080/"
status=0
"$repo/.venv/bin/edgetrim" minimize "docker-daemon:$source_tag" "docker-archive:$archive" \
    --http-probe 8080/ || status=$?
if [ "$status" -ne 0 ]; then
    echo "demo: edgetrim minimize failed with exit status $status; its message is above" >&2
    exit "$status"
fi

# The archive may carry a tag or only an image ID, and its tag may even be the source's, which
# `docker load` would move away from the original. Tagging both by ID afterwards covers all three.
loaded=$(docker load -i "$archive" | sed -n 's/^Loaded image\( ID\)\{0,1\}: //p' | tail -n 1)
if [ -z "$loaded" ]; then
    echo "demo: docker load -i $archive reported no image" >&2
    exit 2
fi
docker tag "$(docker image inspect -f '{{.Id}}' "$loaded")" "$minimized_tag"
docker tag "$source_id" "$source_tag"

echo "demo: $archive is $(du -h "$archive" | cut -f1); the two images in the engine:"
docker images edgetrim-example/python-http
echo "demo: try it with: docker run --rm --network=host $minimized_tag and open http://127.0.0.1:8080/"
