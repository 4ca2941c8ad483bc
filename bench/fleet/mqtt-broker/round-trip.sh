#!/bin/sh
# Start the broker, send one retained message through it and print what a subscriber receives.
set -eu

port=18104
mosquitto -c /etc/mosquitto/mosquitto.conf &
broker=$!

# Wait up to 10 s for the broker to accept connections.
tries=0
until mosquitto_pub -h 127.0.0.1 -p "$port" -t fleet/ready -n 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 100 ]; then
        echo "mosquitto did not listen on 127.0.0.1:$port within 10 s" >&2
        kill "$broker" 2>/dev/null || true
        exit 1
    fi
    sleep 0.1
done

mosquitto_pub -h 127.0.0.1 -p "$port" -t fleet/sensors/t1 -r -q 1 -m 'temperature=21.5'
message=$(mosquitto_sub -h 127.0.0.1 -p "$port" -t fleet/sensors/t1 -C 1 -W 10 -v)
echo "received: $message"

kill "$broker"
wait "$broker" || true
