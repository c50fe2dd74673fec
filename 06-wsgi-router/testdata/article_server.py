"""A web server in the style of the stage 06 article, written over a bare
socket, with its flaws kept on purpose so that flaws_test.go can show each.

    python3 article_server.py PORT [HOST]

Run it in a folder that holds www/: it serves files from ./www, imports
pages from ./www/bin. HOST defaults to "", every interface, as the article
binds; the tests pass 127.0.0.1 except where they check that default. It
prints "listening on HOST:PORT", the line the course's tests wait for.

What it does as the article does, and what goes wrong with it:

- one recv(2048) is taken as the whole request: a longer head is cut, and a
  head that comes in two writes is answered after the first;
- the head is split on CR LF and the empty strings are filtered out, so the
  blank line that ends the head is lost, and a body line that looks like a
  field becomes one;
- a path ending in .py names a module to __import__: the client chooses
  the code that runs;
- any other path is opened as "./www" + path: "/../x" is outside ./www;
- it serves one connection at a time: a client that says nothing holds
  every other client;
- start_response may be called again, and the last call wins.
"""
import re
import socket
import sys
import time


def echo(env, start_response):
    """Answers with what the server understood of the request, one
    name=value a line: what the parser took for header fields."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    lines = [f"{name}={value}\n" for name, value in env.items()
             if name not in ("method", "path")]
    return "".join(lines).encode("utf-8")


def twice(env, start_response):
    """Starts a 201, then tries to start a 404: a page that changed its
    mind. The second call should be refused, and the page says whether it
    was."""
    start_response("201 Created", [("X-Start", "first")])
    try:
        start_response("404 Not Found", [("X-Start", "second")])
    except Exception:
        return b"second start refused\n"
    return b"second start accepted\n"


def now(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return time.ctime().encode("utf-8")


def user(env, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return b"<h2>the user page</h2>"


# The route table; a path that is not in it is a module or a file.
ROUTES = {"/echo": echo, "/twice": twice, "/time": now, "/user": user}


def application(env, start_response):
    path = env["path"]
    if path in ROUTES:
        return ROUTES[path](env, start_response)
    try:
        if path.endswith(".py"):
            # The flaw: the URL names the module, and importing a module
            # runs its code.
            module = __import__(path[1:-3])
            body = module.application().encode("utf-8")
        else:
            # The flaw: the path is joined to ./www as it came.
            with open("./www" + path, "rb") as f:
                body = f.read()
    except Exception:
        start_response("404 Not Found")
        return b"404 Not Found"
    start_response("200 OK", [("Content-Type", "text/html")])
    return body


class ArticleServer:
    def __init__(self, host, port):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen()
        self.env = {}
        self.head = ""

    def start_response(self, status, fields=()):
        # The flaw: each call replaces what the last one set.
        self.head = f"HTTP/1.1 {status}\r\n"
        for name, value in fields:
            self.head += f"{name}:{value}\r\n"

    def parse(self, text):
        # The flaw: filtering the empty strings drops the blank line that
        # separates the head from the body.
        lines = list(filter(None, text.split("\r\n")))
        found = re.match(r"^(\w+) (/[^ ]*) .+$", lines[0]) if lines else None
        if not found:
            return False
        self.env = {"method": found.group(1), "path": found.group(2)}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.env[name.lower()] = value.strip()
        return True

    def serve_forever(self):
        while True:
            # The flaw: one connection at a time, to its end.
            client, _ = self.listener.accept()
            with client:
                try:
                    self.handle(client)
                except OSError:
                    pass  # a client that left; unlike the article's, this server goes on

    def handle(self, client):
        data = client.recv(2048)  # the flaw: taken as the whole request
        if not data:
            return
        if self.parse(data.decode("utf-8", "replace")):
            body = application(self.env, self.start_response)
        else:
            self.start_response("400 Bad Request")
            body = b""
        client.sendall((self.head + "\r\n").encode("utf-8") + body)


if __name__ == "__main__":
    sys.path.insert(1, "./www/bin")  # where the article keeps its pages
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    host = sys.argv[2] if len(sys.argv) > 2 else ""
    server = ArticleServer(host, port)
    bound_host, bound_port = server.listener.getsockname()
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    server.serve_forever()
