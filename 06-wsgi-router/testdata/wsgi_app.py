"""A WSGI application in the style of the stage 06 article, served by
Python's reference WSGI server, wsgiref.simple_server.

    python3 wsgi_app.py

listens on a free port of 127.0.0.1 and prints "listening on HOST:PORT".
Its route table: /time, /user, /stream (a body in two pieces, so wsgiref
sends no Content-Length), and /api/v1.0/servers/<name>, which answers the
JSON 404 of the article's Flask API for a name it does not know.
"""
import json
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

SERVERS = {"alpha": {"name": "alpha", "host": "10.0.0.1", "port": 8080, "status": "up"}}


def page_time(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [time.ctime().encode("utf-8")]


def page_user(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<h2>the user page</h2>"]


def page_stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"first piece, ", b"second piece\n"]


def api_server(environ, start_response, name):
    if name not in SERVERS:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [json.dumps({"data": "Not Found", "status": 404}).encode("utf-8")]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"infos": [SERVERS[name]]}).encode("utf-8")]


ROUTES = {"/time": page_time, "/user": page_user, "/stream": page_stream}
API = "/api/v1.0/servers/"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ROUTES:
        return ROUTES[path](environ, start_response)
    if path.startswith(API) and "/" not in path[len(API):]:
        return api_server(environ, start_response, path[len(API):])
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"404 Not Found"]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass  # keep the test output quiet


if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, application, handler_class=QuietHandler)
    host, port = server.server_address
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()
