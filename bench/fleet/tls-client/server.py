"""An HTTPS server on 127.0.0.1:18110 that answers every GET with one fixed line."""

import http.server
import ssl

ADDRESS = ("127.0.0.1", 18110)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"tls-client: hello over TLS, path {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # The job's stdout is its answer, so request logs stay out of it.


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/etc/tls-client/server.crt", "/etc/tls-client/server.key")
server = http.server.HTTPServer(ADDRESS, Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
