"""A Flask service for the edgetrim fleet on 127.0.0.1:18101.

GET / returns a fixed greeting. GET /report imports sqlite3 and uuid only when it runs, queries an
in-memory SQLite database and returns JSON whose values depend only on the image.
"""

import importlib.metadata
import signal
import sys

from flask import Flask, jsonify

HOST = "127.0.0.1"
PORT = 18101

app = Flask(__name__)


@app.get("/")
def index():
    """Return the fixed greeting as plain text."""
    return "python-web: hello from Flask\n", 200, {"Content-Type": "text/plain; charset=utf-8"}


@app.get("/report")
def report():
    """Return Flask's version, a sum computed by SQLite and a name-based UUID."""
    # Imported here on purpose: a trace that stops before the first request never sees them.
    import sqlite3
    import uuid

    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE readings (sensor TEXT, value INTEGER)")
        db.executemany("INSERT INTO readings VALUES (?, ?)", [("a", 3), ("b", 4), ("a", 5)])
        (total,) = db.execute("SELECT SUM(value) FROM readings WHERE sensor = 'a'").fetchone()
    return jsonify(
        flask=importlib.metadata.version("flask"),
        sensor_a_total=total,
        device_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, "python-web.fleet.edgetrim")),
    )


def stop(signum, frame):
    """Exit with status 0, because Python ignores SIGTERM when it runs as a container's PID 1."""
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    app.run(host=HOST, port=PORT)
