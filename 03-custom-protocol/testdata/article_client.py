"""A client stub in the style of the stage 03 article: each call is packed
as func:NAME@params:T-V,T-V (T: 1 int, 2 float, 3 str), sent with no end
mark and no escaping, and answered by whatever one recv(2048) returns. The
result is the second piece of the answer split on ":".

    python3 article_client.py HOST PORT demo      the article's three calls
    python3 article_client.py HOST PORT CALLS     CALLS in JSON: [["echo", ["a,b"]], ...]

For each call it prints the answer as it came off the socket, and what the
stub made of it: 'data:3' -> '3'.
"""
import json
import socket
import sys

TYPE_CODES = {int: 1, float: 2, str: 3}


class ClientStub:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.last_answer = None

    def pack(self, func, args):
        text = f"func:{func}"
        if args:
            text += "@params:" + ",".join(f"{TYPE_CODES[type(a)]}-{a}" for a in args)
        return text.encode("utf-8")

    def unpack(self, answer):
        pieces = answer.split(":")
        return pieces[1] if len(pieces) > 1 else None

    def get(self, func, args=None):
        self.sock.send(self.pack(func, args))
        self.last_answer = self.sock.recv(2048).decode("utf-8")
        return self.unpack(self.last_answer)


if __name__ == "__main__":
    host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    calls = [["sum", [1, 2]], ["sum", [1.1, 2]], ["get_time", []]] if what == "demo" else json.loads(what)
    stub = ClientStub(host, port)
    for func, args in calls:
        result = stub.get(func, args)
        print(repr(stub.last_answer), "->", repr(result))
