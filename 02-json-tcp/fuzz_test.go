package jsontcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzFrameReader feeds the frame reader arbitrary streams. It must never
// panic or read a message past its limit, and every message it returns
// must be a piece of the stream that starts with '{' and ends with '}'.
func FuzzFrameReader(f *testing.F) {
	for _, seed := range []string{
		`{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}`,
		`{"a":1}{"b":2}`, ` {"s":"}{\"\\"} `, `{"a":[1}`, `hello`, `{"a":`, `[]`, "{\"\x00\"}",
	} {
		f.Add([]byte(seed))
	}
	const max = 256
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := newFrameReader(bytes.NewReader(stream), max)
		rest := stream
		for {
			msg, err := r.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, errTooLarge) && !errors.Is(err, errMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(msg) > max || msg[0] != '{' || msg[len(msg)-1] != '}' {
				t.Fatalf("bad message %q", msg)
			}
			if cap(r.buf) > max {
				t.Fatalf("a buffer of %d bytes for a limit of %d", cap(r.buf), max)
			}
			i := bytes.Index(rest, msg)
			if i < 0 || len(bytes.TrimLeft(rest[:i], " \t\r\n")) > 0 {
				t.Fatalf("message %q is not the next piece of the stream %q", msg, rest)
			}
			rest = rest[i+len(msg):]
		}
	})
}

// FuzzHandle feeds the demo server's request handling arbitrary messages,
// as the server does: framing, decoding, looking up the method, binding the
// arguments, calling, encoding the answer. Nothing may panic; each message
// gets an answer that is valid UTF-8 and JSON, with a result or an error;
// and what it allocates is bounded by a few bytes per byte of the message
// plus a fixed amount for its at most maxValues values. (Framing and
// decoding 349,000 {} arguments in a 1 MiB message used to cost 145 bytes
// per byte: no oracle of so many bytes per byte could catch that.)
func FuzzHandle(f *testing.F) {
	many := func(elem string, n int) string {
		return `{"method_name": "test", "method_args": [` + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + `]}`
	}
	for _, seed := range []string{
		`{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}`,
		`{"method_name": "add", "method_args": [9223372036854775807, 1]}`,
		`{"method_name": "add", "method_kwargs": {"a": null, "b": [], "d": 1}}`,
		`{"method_name": "test", "method_args": [1, "x", null], "method_kwargs": {"k": {}}}`,
		`{"method_name": "echo", "method_args": [{"a": [1.5e300]}]}`,
		`{"method_name": "echo", "method_args": ["\ud800", "\ud83d\ude00"]}`,
		"{\"method_name\": \"echo\", \"method_args\": [\"\xff\"]}",
		"{\"method_name\": \"ad\xffd\"}",
		`{"method_name": "nosuch"}`, `{}`, `{"method_name": 1}`,
		many("{}", maxValues-1), many("{}", 20000), many("1", 20000),
	} {
		f.Add([]byte(seed))
	}
	srv := NewDemoServer()
	f.Fuzz(func(t *testing.T, stream []byte) {
		var out bytes.Buffer
		var err error
		spent := allocated(func() {
			var msg []byte
			msg, err = newFrameReader(bytes.NewReader(stream), DefaultMaxMessageBytes).next()
			if err != nil {
				return
			}
			res, callErr := srv.handle(msg)
			if callErr != nil && res != nil {
				t.Fatalf("both a result %v and an error %v", res, callErr)
			}
			writeResponse(&out, res, callErr)
		})
		if err != nil {
			return
		}
		if !utf8.Valid(out.Bytes()) || !json.Valid(out.Bytes()) {
			t.Fatalf("answer %q is not UTF-8 JSON", out.Bytes())
		}
		if limit := 8*uint64(len(stream)) + maxValues<<10 + 64<<10; spent > limit {
			t.Fatalf("a %d-byte message allocated %d bytes, more than %d", len(stream), spent, limit)
		}
	})
}
