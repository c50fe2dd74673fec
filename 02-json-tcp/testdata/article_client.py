"""A JSON-over-TCP RPC client in the style of the stage 02 articles: a stub
whose __getattr__ turns any method call into a request, on a plain TCP
socket that sends the JSON with no delimiter and reads the answer with one
recv(1024).

    python3 article_client.py HOST PORT demo      the articles' calls
    python3 article_client.py HOST PORT echo N    echo a string of N bytes

Each answer is printed as it came off the socket, one a line.
"""
import json
import socket
import sys


class TCPClient:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def connect(self, host, port):
        self.sock.connect((host, port))

    def send(self, data):
        self.sock.sendall(data.encode("utf-8"))

    def receive(self, length):
        return self.sock.recv(length).decode("utf-8", errors="replace")


class RPCStub:
    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.send(json.dumps({"method_name": name, "method_args": args, "method_kwargs": kwargs}))
            return self.receive(1024)

        setattr(self, name, call)
        return call


class RPCClient(TCPClient, RPCStub):
    pass


if __name__ == "__main__":
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = RPCClient()
    client.connect(host, port)
    if mode == "demo":
        print(client.add(1, 2, c=3))
        print(client.add(1, 2))
        print(client.test("测试项", kw1="1"))
    elif mode == "echo":
        print(client.echo("x" * int(sys.argv[4])))
