"""A client stub in the style of the stage 01 article: a class whose add
method hides the URL, built with requests.

    python3 article_client.py URL A B [A B ...]

prints add(A, B) for each pair, one result a line. The arguments go into the
URL as they are typed, so "x" can be sent where a number belongs. Like the
article's stub, it takes a missing "result" for 0, and it opens a new
connection for every call (requests.get without a Session).
"""
import json
import sys

import requests


class Client:
    def __init__(self, url):
        self.url = url

    def add(self, a, b):
        answer = requests.get(f"{self.url}?a={a}&b={b}", timeout=30)
        return json.loads(answer.text).get("result", 0)


if __name__ == "__main__":
    client = Client(sys.argv[1])
    numbers = sys.argv[2:]
    for a, b in zip(numbers[0::2], numbers[1::2]):
        print(client.add(a, b))
