"""A JSON-over-TCP RPC server in the style of the stage 02 articles.

    python3 article_server.py [PORT]

A registry of functions by name; for each connection, one recv(1024) is
taken as the whole request, the function is called with the request's
args and kwargs, the answer {"res": ...} is sent, and the connection is
closed. One client is served at a time. Like the articles' server, it does
not guard against bad input: a request that is cut, merged with another,
or not JSON raises, and the exception ends the server.

It binds 127.0.0.1 (the articles bind every interface) and prints
"listening on HOST:PORT", the line the course's tests wait for.
"""
import json
import socket
import sys


class Registry:
    def __init__(self):
        self.functions = {}

    def register_function(self, function, name=None):
        self.functions[name or function.__name__] = function

    def dispatch(self, raw):
        call = json.loads(raw.decode("utf-8"))
        name = call.get("method_name", "")
        if name not in self.functions:
            result = "Please use the correct function"
        else:
            result = self.functions[name](*call["method_args"], **call["method_kwargs"])
        return json.dumps({"res": result})


def add(a, b, c=10):
    return a + b + c


def test(*args, **kwargs):
    return "the test function has been called"


def echo(x):
    return x


def serve(port):
    registry = Registry()
    for function in (add, test, echo):
        registry.register_function(function)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen(5)
    host, port = listener.getsockname()
    print(f"listening on {host}:{port}", flush=True)
    while True:
        connection, _ = listener.accept()
        request = connection.recv(1024)
        connection.sendall(registry.dispatch(request).encode("utf-8"))
        connection.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
