#!/bin/sh
# Start a Docker engine on a private socket for edgetrim's tests and examples, unless one is
# already answering there. It leaves any system-wide engine alone.
#   Socket: /run/edgetrim-docker/docker.sock (export DOCKER_HOST=unix://<that path> to use it)
#   Data:   /var/lib/edgetrim-docker
# This machine has no bridge networking for containers, so the engine runs with
# --iptables=false --bridge=none and containers use --network=host or none.
set -eu

run_dir=/run/edgetrim-docker
socket="$run_dir/docker.sock"
export DOCKER_HOST="unix://$socket"

if docker version >/dev/null 2>&1; then
    exit 0
fi
mkdir -p "$run_dir" /var/lib/edgetrim-docker
nohup dockerd \
    --host "$DOCKER_HOST" \
    --data-root /var/lib/edgetrim-docker \
    --exec-root "$run_dir/exec" \
    --pidfile "$run_dir/dockerd.pid" \
    --iptables=false --bridge=none \
    >"$run_dir/dockerd.log" 2>&1 &

tries=0
until docker version >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
        echo "start-docker: dockerd did not answer on $socket within 60 s; see $run_dir/dockerd.log" >&2
        exit 1
    fi
    sleep 1
done
