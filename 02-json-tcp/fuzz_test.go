package jsontcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
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
			i := bytes.Index(rest, msg)
			if i < 0 || len(bytes.TrimLeft(rest[:i], " \t\r\n")) > 0 {
				t.Fatalf("message %q is not the next piece of the stream %q", msg, rest)
			}
			rest = rest[i+len(msg):]
		}
	})
}

// FuzzHandle feeds the demo server's request handling arbitrary messages:
// decoding, looking up the method, binding the arguments, calling. Nothing
// may panic; each message gets a result that encodes, or an error.
func FuzzHandle(f *testing.F) {
	for _, seed := range []string{
		`{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}`,
		`{"method_name": "add", "method_args": [9223372036854775807, 1]}`,
		`{"method_name": "add", "method_kwargs": {"a": null, "b": [], "d": 1}}`,
		`{"method_name": "test", "method_args": [1, "x", null], "method_kwargs": {"k": {}}}`,
		`{"method_name": "echo", "method_args": [{"a": [1.5e300]}]}`,
		`{"method_name": "nosuch"}`, `{}`, `{"method_name": 1}`,
	} {
		f.Add([]byte(seed))
	}
	srv := NewDemoServer()
	f.Fuzz(func(t *testing.T, msg []byte) {
		res, err := srv.handle(msg)
		var out bytes.Buffer
		writeResponse(&out, res, err)
		if !json.Valid(out.Bytes()) {
			t.Fatalf("answer %q is not JSON", out.Bytes())
		}
		if err != nil && res != nil {
			t.Fatalf("both a result %v and an error %v", res, err)
		}
	})
}
