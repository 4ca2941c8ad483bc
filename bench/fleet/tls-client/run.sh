#!/bin/sh
# Start the HTTPS server, fetch one page with curl and one with Python, print both, stop the server.
# Both clients connect to the IP address 127.0.0.1, which the server certificate names, so no
# host name lookup is involved.
set -eu

url=https://127.0.0.1:18110
python3 /opt/tls-client/server.py &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

# Wait up to 10 s for the server. This readiness check alone skips verification (-k), so that a
# broken trust store shows up below as a verification error instead of a timeout here.
tries=0
until curl -sk -o /dev/null "$url/ready"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 100 ]; then
        echo "the HTTPS server did not answer on $url within 10 s" >&2
        exit 1
    fi
    sleep 0.1
done

body=$(curl -sS --fail "$url/curl")
printf 'curl: %s\n' "$body"
python3 /opt/tls-client/client.py "$url/python"
