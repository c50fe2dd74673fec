"""A client of the stage 03 server's framed form, the one our Go client
speaks. A frame is the payload's length in bytes, a space, the payload and
a newline. In the payload, "%", ",", "@" and control bytes are written %XX,
and every value carries its type code, answers included.

    python3 framed_client.py HOST PORT CALLS      CALLS in JSON: [["sum", [1, 2]], ...]

Each result is printed as one line of JSON: the value, or {"error": "..."}.
"""
import json
import socket
import sys

TYPE_CODES = {int: "1", float: "2", str: "3"}
READERS = {"1": int, "2": float, "3": str}


def escape(text):
    out = []
    for byte in text.encode("utf-8"):
        if byte in b"%,@" or byte < 0x20 or byte == 0x7F:
            out.append(f"%{byte:02X}".encode())
        else:
            out.append(bytes([byte]))
    return b"".join(out)


def unescape(data):
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] == ord("%"):
            out.append(int(data[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return out.decode("utf-8")


class RemoteError(Exception):
    pass


class FramedClient:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.reader = self.sock.makefile("rb")

    def call(self, func, *args):
        payload = b"func:" + escape(func)
        if args:
            payload += b"@params:" + b",".join(TYPE_CODES[type(a)].encode() + b"-" + escape(self.text(a)) for a in args)
        self.sock.sendall(b"%d %s\n" % (len(payload), payload))
        return self.answer(self.read_frame())

    @staticmethod
    def text(value):
        return value if isinstance(value, str) else repr(value)

    def read_frame(self):
        length = b""
        while not length.endswith(b" "):
            byte = self.reader.read(1)
            if not byte:
                raise ConnectionError("the server closed the connection")
            length += byte
        payload = self.reader.read(int(length))
        if self.reader.read(1) != b"\n":
            raise ValueError("a frame does not end with a newline")
        return payload

    @staticmethod
    def answer(payload):
        kind, _, rest = payload.partition(b":")
        if kind == b"error":
            raise RemoteError(unescape(rest))
        code, _, value = rest.partition(b"-")
        return READERS[code.decode()](unescape(value))


if __name__ == "__main__":
    host, port, calls = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    client = FramedClient(host, port)
    for func, args in calls:
        try:
            print(json.dumps(client.call(func, *args), ensure_ascii=False))
        except RemoteError as e:
            print(json.dumps({"error": str(e)}, ensure_ascii=False))
