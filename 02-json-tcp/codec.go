package jsontcp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// The wire, as a person reading the traffic sees it. A call is one JSON
// object, with the names the article uses:
//
//	{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}
//
// and its answer is another:
//
//	{"res":6}                                         the call worked
//	{"res":null,"error":"add: argument 'b': ..."}     it did not
//
// Nothing else marks where a message ends: a message is one JSON object,
// and it ends where its closing brace balances its opening one. White space
// between messages is skipped, so the article's client, which sends a bare
// object, and ours, which ends each one with a newline, are both understood.

// request is a call as it travels.
type request struct {
	MethodName   string                     `json:"method_name"`
	MethodArgs   []json.RawMessage          `json:"method_args"`
	MethodKwargs map[string]json.RawMessage `json:"method_kwargs"`
}

// response is an answer as it travels. Error is absent when the call
// worked; when it failed, Res is null and Error says why.
type response struct {
	Res   json.RawMessage `json:"res"`
	Error *string         `json:"error,omitempty"`
}

// DefaultMaxMessageBytes is the largest message either side reads unless
// told otherwise: a request, on the server; an answer, on the client.
const DefaultMaxMessageBytes = 1 << 20

// maxDepth bounds how deeply a message's arrays and objects may nest.
const maxDepth = 64

// errTooLarge and errMalformed end a connection: after them the reader
// cannot tell where the next message starts.
var (
	errTooLarge  = errors.New("message too large")
	errMalformed = errors.New("malformed message")
)

// frameReader cuts a byte stream into messages, each one JSON object. It
// does not care how the bytes arrive: one message split over many reads,
// several messages in one read, or one byte at a time.
//
// It finds a message's end by counting brackets outside strings, so it can
// refuse a message that grows past max before reading the rest of it. It
// does not check the JSON between the brackets; json.Unmarshal does that,
// and a message it rejects can be answered with an error while the stream
// goes on.
type frameReader struct {
	r   *bufio.Reader
	max int    // the largest message, in bytes
	buf []byte // the message being read; reused from message to message
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReader(r), max: max}
}

// next returns the next message. The slice is valid until the next call.
// At the end of the stream between messages it returns io.EOF; in the
// middle of one, io.ErrUnexpectedEOF. Any error it returns is final.
func (f *frameReader) next() ([]byte, error) {
	f.buf = f.buf[:0]
	var s scanner
	for {
		window, err := f.r.Peek(max(f.r.Buffered(), 1))
		if len(window) == 0 {
			if err == io.EOF && s.started {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		end, err := s.scan(window)
		n := len(window)
		if end >= 0 {
			n = end
		}
		if len(f.buf)+n > f.max {
			return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, f.max)
		}
		if err != nil {
			return nil, err
		}
		f.buf = append(f.buf, window[:n]...)
		_, _ = f.r.Discard(n) // cannot fail: the bytes are buffered
		if end >= 0 {
			return bytes.TrimLeft(f.buf, " \t\r\n"), nil
		}
	}
}

// scanner follows a JSON object's brackets and strings, a window of bytes
// at a time.
type scanner struct {
	started  bool   // the opening brace has been seen
	closers  []byte // the bracket each open '{' or '[' awaits, innermost last
	inString bool
	escaped  bool // the byte before was a backslash inside a string
}

// scan reads p and returns the index just past the end of the message, or
// -1 if the message goes on past p.
func (s *scanner) scan(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		switch b := p[i]; {
		case s.escaped:
			s.escaped = false
		case s.inString:
			// Strings are where the bytes are: jump to the next quote or
			// backslash, with IndexByte, which is fast on long runs.
			rest := p[i:]
			quote := bytes.IndexByte(rest, '"')
			if quote < 0 {
				quote = len(rest)
			}
			if backslash := bytes.IndexByte(rest[:quote], '\\'); backslash >= 0 {
				i += backslash
				s.escaped = true
				continue
			}
			if quote == len(rest) {
				return -1, nil
			}
			i += quote
			s.inString = false
		case !s.started:
			switch b {
			case ' ', '\t', '\r', '\n':
			case '{':
				s.started = true
				s.closers = append(s.closers, '}')
			default:
				return -1, fmt.Errorf("%w: a message is a JSON object and starts with '{', not %s", errMalformed, strconv.QuoteRune(rune(b)))
			}
		case b == '"':
			s.inString = true
		case b == '{':
			s.closers = append(s.closers, '}')
		case b == '[':
			s.closers = append(s.closers, ']')
		case b == '}' || b == ']':
			if want := s.closers[len(s.closers)-1]; b != want {
				return -1, fmt.Errorf("%w: %q where %q was due", errMalformed, b, want)
			}
			s.closers = s.closers[:len(s.closers)-1]
			if len(s.closers) == 0 {
				return i + 1, nil
			}
		}
		if len(s.closers) > maxDepth {
			return -1, fmt.Errorf("%w: nested deeper than %d", errMalformed, maxDepth)
		}
	}
	return -1, nil
}

// encodeRequest writes the message for a call, ended by a newline. Nil
// args and kwargs are sent as [] and {}, which the article's server needs.
func encodeRequest(buf *bytes.Buffer, method string, args []any, kwargs map[string]any) error {
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false) // keep < > & as they are: this is not going into HTML
	return enc.Encode(struct {
		MethodName   string         `json:"method_name"`
		MethodArgs   []any          `json:"method_args"`
		MethodKwargs map[string]any `json:"method_kwargs"`
	}{method, args, kwargs})
}

// decodeRequest parses one message as a call. Its errors are answered to
// the caller; the stream goes on.
func decodeRequest(msg []byte) (*request, error) {
	var req request
	err := json.Unmarshal(msg, &req)
	if err == nil {
		err = checkFields(msg, "method_name", "method_args", "method_kwargs")
	}
	if err != nil {
		return nil, fmt.Errorf("request is not a call: %v", err)
	}
	if req.MethodName == "" {
		return nil, errors.New(`request is not a call: no "method_name"`)
	}
	return &req, nil
}

// checkFields checks that the keys of the JSON object msg are among known,
// each at most once. encoding/json would drop a key the struct lacks (a
// misspelt "method_kwarg"), and keep only the last of two alike; either
// way something the caller sent would be lost in silence.
//
// msg must be valid JSON, as json.Unmarshal has checked, so the walk only
// has to tell the object's keys from its values and skip over strings.
func checkFields(msg []byte, known ...string) error {
	seen := make(map[string]bool, len(known))
	depth, wantKey := 0, false
	for i := 0; i < len(msg); i++ {
		switch msg[i] {
		case '"':
			end := stringEnd(msg, i)
			if depth == 1 && wantKey {
				var key string
				_ = json.Unmarshal(msg[i:end+1], &key) // a valid JSON string
				switch {
				case !slices.Contains(known, key):
					return fmt.Errorf("unknown field %s", quoteShort(key))
				case seen[key]:
					return fmt.Errorf("field %s given twice", quoteShort(key))
				}
				seen[key] = true
				wantKey = false
			}
			i = end
		case '{', '[':
			depth++
			wantKey = depth == 1
		case '}', ']':
			depth--
		case ',':
			wantKey = depth == 1
		}
	}
	return nil
}

// stringEnd returns the index of the quote that ends the JSON string that
// starts at msg[start].
func stringEnd(msg []byte, start int) int {
	i := start + 1
	for {
		i += bytes.IndexByte(msg[i:], '"')
		backslashes := 0
		for msg[i-1-backslashes] == '\\' {
			backslashes++
		}
		if backslashes%2 == 0 {
			return i
		}
		i++ // an escaped quote: look further
	}
}

// unmarshalStrict is json.Unmarshal that refuses an object field the Go
// struct does not have: a misspelt "method_kwarg" must not be dropped in
// silence.
func unmarshalStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// writeResponse writes the answer to a call, followed by a newline.
func writeResponse(buf *bytes.Buffer, res any, callErr error) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false) // keep < > & as they are: this is not going into HTML
	start := buf.Len()
	if callErr == nil {
		buf.WriteString(`{"res":`)
		if err := enc.Encode(res); err != nil {
			buf.Truncate(start)
			callErr = fmt.Errorf("the result cannot be sent as JSON: %v", err)
		}
	}
	if callErr != nil {
		buf.WriteString(`{"res":null,"error":`)
		_ = enc.Encode(callErr.Error()) // a string always encodes
	}
	buf.Truncate(buf.Len() - 1) // the newline Encode wrote after the value
	buf.WriteString("}\n")
}

// decodeResponse parses an answer into the result's JSON, or an error.
func decodeResponse(msg []byte) (json.RawMessage, error) {
	var resp response
	if err := json.Unmarshal(msg, &resp); err != nil {
		return nil, fmt.Errorf("answer is not JSON we understand: %v", err)
	}
	if resp.Error != nil {
		return nil, &ServerError{Message: *resp.Error}
	}
	if resp.Res == nil {
		return nil, fmt.Errorf(`answer has no "res": %s`, quoteShort(string(msg)))
	}
	return resp.Res, nil
}

// ServerError is a failure the server reported: the call reached the
// server, and the server answered that it could not do it.
type ServerError struct {
	Message string // the server's "error" text
}

func (e *ServerError) Error() string {
	return "server answered: " + e.Message
}

// quoteShort quotes s for an error message, cut to a readable length: an
// error must name the bad value, not echo a megabyte of it back.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
