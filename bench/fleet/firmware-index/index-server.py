"""A firmware update server on 127.0.0.1:18112.

GET / returns JSON with the sorted names of the files in /srv/firmware. GET /firmware/NAME
returns the file NAME from that directory.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

FIRMWARE_DIR = "/srv/firmware"
ADDRESS = ("127.0.0.1", 18112)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            names = sorted(os.listdir(FIRMWARE_DIR))
            self._send(200, "application/json", json.dumps({"firmware": names}).encode() + b"\n")
            return
        name = self.path.removeprefix("/firmware/")
        if self.path.startswith("/firmware/") and name in os.listdir(FIRMWARE_DIR):
            with open(os.path.join(FIRMWARE_DIR, name), "rb") as stream:
                self._send(200, "application/octet-stream", stream.read())
            return
        self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def stop(signum, frame):
    """Exit with status 0, because Python ignores SIGTERM when it runs as a container's PID 1."""
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    HTTPServer(ADDRESS, Handler).serve_forever()
