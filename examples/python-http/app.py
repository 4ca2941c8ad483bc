"""A small Flask service for edgetrim's examples, probed with `--http-probe 8080/`.

GET / returns a fixed line of text. GET /health returns JSON that describes the Python runtime
and the platform. None of its values change between runs of the same image.
"""

import importlib.metadata
import platform
import signal
import sys

from flask import Flask, jsonify

HOST = "127.0.0.1"
PORT = 8080
GREETING = "Hello from the edgetrim python-http example.\n"

app = Flask(__name__)


@app.get("/")
def index():
    """Return the fixed greeting as plain text."""
    return GREETING, 200, {"Content-Type": "text/plain; charset=utf-8"}


@app.get("/health")
def health():
    """Return the status with the Python, Flask and platform versions, which are fixed per image."""
    return jsonify(
        status="ok",
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        flask=importlib.metadata.version("flask"),
        system=platform.system(),
        machine=platform.machine(),
    )


def stop(signum, frame):
    """Exit with status 0, because Python ignores SIGTERM when it runs as a container's PID 1."""
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    app.run(host=HOST, port=PORT)
