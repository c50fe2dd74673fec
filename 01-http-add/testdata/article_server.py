"""An add server in the style of the stage 01 article: http.server, the
operands read from the query string, a missing one counting as 0.

    python3 article_server.py [PORT]

It binds 127.0.0.1 (the article binds every interface) and prints
"listening on HOST:PORT", the line the course's tests wait for. Like the
article's server, it does not check its input: a value that is not an
integer raises inside do_GET, and the client gets no answer at all.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qsl, urlparse


class AddHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        query = dict(parse_qsl(urlparse(self.path).query))
        a = int(query.get("a", 0))
        b = int(query.get("b", 0))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"result": a + b}).encode("utf-8"))

    def log_message(self, format, *args):
        pass  # keep the test output quiet


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8003
    server = HTTPServer(("127.0.0.1", port), AddHandler)
    host, port = server.server_address
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()
