"""Keep-alive clients of stage 06's server, from Python's own libraries.

    python3 keepalive_client.py requests|http.client HOST:PORT

sends, on one connection, the requests below and prints one JSON line per
answer: method, target, status, Content-Type, the length of the body and,
for text answers, the body itself. requests.Session and
http.client.HTTPConnection both keep their connection open between
requests when the server lets them: the Go test counts the connections
the server accepted.
"""
import http.client
import json
import sys

CALLS = [
    ("GET", "/add?a=1&b=2", None),
    ("GET", "/api/v1.0/servers", None),
    ("GET", "/api/v1.0/servers/alpha", None),
    ("GET", "/api/v1.0/servers/nobody", None),
    ("POST", "/api/v1.0/servers/beta", b""),
    ("POST", "/time", b""),
    ("HEAD", "/", None),
    ("GET", "/style.css", None),
]


def report(method, target, status, content_type, body):
    line = {"method": method, "target": target, "status": status,
            "content_type": content_type, "length": len(body)}
    if content_type.startswith(("application/json", "text/plain")):
        line["body"] = body.decode("utf-8")
    print(json.dumps(line), flush=True)


def with_requests(addr):
    import requests

    with requests.Session() as session:
        for method, target, body in CALLS:
            answer = session.request(method, f"http://{addr}{target}", data=body, timeout=30)
            report(method, target, answer.status_code,
                   answer.headers.get("Content-Type", ""), answer.content)


def with_http_client(addr):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for method, target, body in CALLS:
            conn.request(method, target, body=body)
            answer = conn.getresponse()
            data = answer.read()  # read to its end, or the connection cannot be reused
            report(method, target, answer.status,
                   answer.getheader("Content-Type", ""), data)
    finally:
        conn.close()


if __name__ == "__main__":
    kind, addr = sys.argv[1], sys.argv[2]
    {"requests": with_requests, "http.client": with_http_client}[kind](addr)
