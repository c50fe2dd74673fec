"""A server in the style of the stage 03 article: a route table of the
public methods of a service object (from dir()), one client at a time, a
message taken to be whatever one recv(2048) returns, arguments cut out of
it with split(), and every answer, errors included, sent as data:VALUE.

    python3 article_server.py PORT

It listens on 127.0.0.1 (port 0 picks a free port) and prints
"listening on HOST:PORT" once it accepts connections.
"""
import socket
import sys
import time


class Service:
    def sum(self, a, b):
        return a + b

    def get_time(self):
        return time.ctime()

    def echo(self, s):
        return s

    def add(self, a, b):
        return a + b


CONVERTERS = {"1": int, "2": float, "3": str}


class ServerStub:
    def __init__(self, service):
        self.routes = {name: getattr(service, name) for name in dir(service) if not name.startswith("_")}

    def unpack(self, message):
        head, *rest = message.split("@")
        func = head.split(":")[1]
        args = []
        if rest:
            for item in rest[0].split(":")[1].split(","):
                code, value = item.split("-")[:2]
                args.append(CONVERTERS[code](value))
        return func, args

    def handle(self, conn):
        while True:
            data = conn.recv(2048)
            if not data:
                return
            try:
                func, args = self.unpack(data.decode("utf-8"))
                result = self.routes[func](*args)
            except Exception:
                result = "RPC Server Function Error"
            conn.send(f"data:{result}".encode("utf-8"))


if __name__ == "__main__":
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen()
    host, port = listener.getsockname()
    print(f"listening on {host}:{port}", flush=True)
    stub = ServerStub(Service())
    while True:
        conn, _ = listener.accept()
        with conn:
            stub.handle(conn)
