package customproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

// FuzzFrameReader feeds the frame reader arbitrary streams, with a small
// limit or the default one. It must never panic, return a payload past its
// limit, or make room past the limit or past twice the stream's size (or
// smallPayloadBytes): room grows with the bytes that arrive, not with the
// length a header claims. And every payload it returns, framed again, must
// be exactly the next piece of the stream: what it reads is what
// appendFrame writes, and nothing else.
func FuzzFrameReader(f *testing.F) {
	for _, seed := range []string{
		"23 func:sum@params:1-1,1-2\n", "8 data:1-3\n10 data:2-3.1\n", "0 \n", "5 a\nb\nc\n",
		"99999999999999999999 x", "257 x", "131072 x", "131073 x", "08 data:1-3\n", "8 data:1-3", "func:get_time",
		"7 data:1-3\n", "",
	} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, stream []byte, small bool) {
		max := DefaultMaxMessageBytes
		if small {
			max = 256
		}
		room := min(max, 2*len(stream)+smallPayloadBytes)
		r := newFrameReader(bytes.NewReader(stream), max)
		rest := stream
		for {
			msg, err := r.next()
			if len(msg) > max || cap(r.buf) > room {
				t.Fatalf("a payload of %d bytes, room for %d, from a stream of %d bytes with a limit of %d",
					len(msg), cap(r.buf), len(stream), max)
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, errTooLarge) && !errors.Is(err, errMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			frame := appendFrame(nil, msg)
			if !bytes.HasPrefix(rest, frame) {
				t.Fatalf("payload %q is not the next frame of the stream %q", msg, rest)
			}
			rest = rest[len(frame):]
		}
	})
}

// FuzzParseCall feeds the call parser arbitrary payloads, in both forms.
// It must never panic; what it accepts must be values the wire carries;
// and in the framed form a call it accepts, encoded again, must parse to
// the same call.
func FuzzParseCall(f *testing.F) {
	for _, seed := range []string{
		"func:sum@params:1-1,1-2", "func:sum@params:2-1.1,1-2", "func:get_time", "func:echo@params:3-a%2Cb%40%25",
		"func:sum@params:1--5,2--1e-05", "func:%zz", "func:x@params:", "func:x@params:4-1,", "func:e@params:3-%FF",
		"func:a%40b@params:3-@", "GET / HTTP/1.1",
	} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, msg []byte, escaped bool) {
		var (
			name string
			args []any
			err  error
		)
		if cost := allocated(func() { name, args, err = parseCall(msg, escaped) }); cost > maxAllocated(len(msg)) {
			t.Fatalf("parsing %d bytes allocated %d", len(msg), cost)
		}
		if err != nil {
			return
		}
		if len(args) > maxArgs {
			t.Fatalf("%d arguments", len(args))
		}
		for _, arg := range args {
			if _, _, err := valueText(arg); err != nil {
				t.Fatalf("parsed %q into an argument the wire cannot carry: %v", msg, err)
			}
			if s, ok := arg.(string); ok && !utf8.ValidString(s) {
				t.Fatalf("parsed %q into a str that is not UTF-8", msg)
			}
		}
		if !escaped {
			return
		}
		again, err := encodeRequest(nil, name, args)
		if err != nil {
			t.Fatalf("cannot encode what was parsed from %q: %v", msg, err)
		}
		name2, args2, err := parseCall(again, true)
		if err != nil || name2 != name || !equalArgs(args, args2) {
			t.Fatalf("%q parsed to %q %v, encoded as %q, parsed again to %q %v, %v", msg, name, args, again, name2, args2, err)
		}
	})
}

// equalArgs compares two argument lists, value by value.
func equalArgs(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDecodeAnswer feeds the client's answer decoder arbitrary payloads. It
// must never panic, and a result or an error it accepts, written again as
// the server writes it, must decode to the same thing.
func FuzzDecodeAnswer(f *testing.F) {
	for _, seed := range []string{
		"data:1-3", "data:2-3.1", "data:3-Wed Jan 16 22:05:31 2019", "data:3-a%2Cb", "error:no%2C no",
		"data:3", "data:9-1", "error:%", "RPC Server Function Error", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		res, err := decodeAnswer(msg)
		var serverErr *ServerError
		var callErr error
		switch {
		case errors.As(err, &serverErr):
			callErr = errors.New(serverErr.Message)
		case err != nil:
			return
		}
		if err != nil && res != nil {
			t.Fatalf("both a result %v and an error %v", res, err)
		}
		if s, ok := res.(string); (ok && !utf8.ValidString(s)) || (serverErr != nil && !utf8.ValidString(serverErr.Message)) {
			t.Fatalf("%q decoded to text that is not UTF-8: %q, %v", msg, res, err)
		}
		again := (&framedForm{}).appendAnswer(nil, res, callErr)
		payload, readErr := newFrameReader(bytes.NewReader(again), len(again)).next()
		if readErr != nil {
			t.Fatalf("the answer %q does not frame: %v", again, readErr)
		}
		res2, err2 := decodeAnswer(payload)
		if res2 != res || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("%q decoded to %v, %v; written again as %q, it decodes to %v, %v", msg, res, err, again, res2, err2)
		}
	})
}

// FuzzHandle feeds the demo server's request handling arbitrary requests,
// in both forms: parsing, looking up the function, checking the arguments,
// calling. Nothing may panic; handling and answering may allocate no more
// than maxAllocated; and every request gets an answer that is data or an
// error, never both, that is text (UTF-8) and that the client can read.
func FuzzHandle(f *testing.F) {
	for _, seed := range []string{
		"func:sum@params:1-1,1-2", "func:sum@params:2-1e308,2-1e308", "func:add@params:1-9223372036854775807,1-1",
		"func:get_time", "func:echo@params:3-x", "func:echo@params:1-1", "func:nosuch", "func:sum@params:3-a,3-b",
		"func:echo@params:3-%FF", "func:%FF", "func:echo@params:3-\xff", "func:sum@params:1-1000,1-1000,1-1000",
	} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	srv := NewDemoServer()
	// What is set up once, on first use, is not the cost of a request:
	// get_time loads the local time zone the first time it runs, and a
	// fuzz worker is a fresh process.
	_, _ = srv.handle(&legacyForm{}, []byte("func:get_time"))
	f.Fuzz(func(t *testing.T, msg []byte, framed bool) {
		var fm form = &legacyForm{}
		if framed {
			fm = &framedForm{}
		}
		var (
			res    any
			err    error
			answer []byte
		)
		cost := allocated(func() {
			res, err = srv.handle(fm, msg)
			answer = fm.appendAnswer(nil, res, err)
		})
		if cost > maxAllocated(len(msg)) {
			t.Fatalf("handling %d bytes allocated %d", len(msg), cost)
		}
		if err != nil && res != nil {
			t.Fatalf("both a result %v and an error %v", res, err)
		}
		if !utf8.Valid(answer) {
			t.Fatalf("the answer %q is not text", answer)
		}
		if !framed {
			if !bytes.HasPrefix(answer, []byte("data:")) && !bytes.HasPrefix(answer, []byte("error:")) {
				t.Fatalf("answer %q", answer)
			}
			return
		}
		payload, readErr := newFrameReader(bufio.NewReader(bytes.NewReader(answer)), DefaultMaxMessageBytes).next()
		if readErr != nil {
			t.Fatalf("the answer %q does not frame: %v", answer, readErr)
		}
		if _, err := decodeAnswer(payload); err != nil && !errors.As(err, new(*ServerError)) {
			t.Fatalf("the client cannot read the answer %q: %v", payload, err)
		}
	})
}
