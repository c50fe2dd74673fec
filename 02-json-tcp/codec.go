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
	"sync"
	"unicode/utf16"
	"unicode/utf8"
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
const DefaultMaxMessageBytes = 1 << 17

// maxKeptBuffer is the largest buffer a connection keeps between messages:
// one that grew past it for a large message goes to largeBuffers after the
// message, so an idle connection holds only small buffers.
const maxKeptBuffer = 64 << 10

// largeBuffers holds buffers that grew past maxKeptBuffer, between the
// messages that need them. It is safe for concurrent use: the connections
// that are busy with large messages share them, and an idle connection
// holds none. The garbage collector empties a sync.Pool within two cycles,
// so a buffer nobody asks for again is not held for long. It holds
// pointers, so that putting a slice in does not copy its header to the heap.
var largeBuffers sync.Pool // of *[]byte, each with a capacity over maxKeptBuffer

// getLarge returns an empty buffer from largeBuffers with room for n bytes,
// or nil if there is none that large. It never allocates n bytes: a buffer
// grows as bytes arrive, not as a peer announces them.
func getLarge(n int) []byte {
	p, _ := largeBuffers.Get().(*[]byte)
	if p == nil {
		return nil
	}
	if cap(*p) < n {
		largeBuffers.Put(p) // for a smaller message
		return nil
	}
	return (*p)[:0]
}

// putLarge gives b to largeBuffers if it grew past maxKeptBuffer, and
// reports whether it did. The caller must not use b after that.
func putLarge(b []byte) bool {
	if cap(b) <= maxKeptBuffer {
		return false
	}
	b = b[:0]
	largeBuffers.Put(&b)
	return true
}

// pooledWriter is a bytes.Buffer as an io.Writer that takes its room from
// largeBuffers when a write must grow it past maxKeptBuffer. encoding/json
// writes a value in one piece, so the size is known when it arrives.
type pooledWriter struct{ buf *bytes.Buffer }

func (w pooledWriter) Write(p []byte) (int, error) {
	need := w.buf.Len() + len(p)
	if need > w.buf.Cap() && need > maxKeptBuffer {
		if large := getLarge(need); large != nil {
			old := w.buf.Bytes()
			*w.buf = *bytes.NewBuffer(append(large, old...))
			putLarge(old) // a large buffer outgrown: someone else's turn
		}
	}
	return w.buf.Write(p)
}

// maxDepth bounds how deeply a message's arrays and objects may nest.
const maxDepth = 64

// maxValues bounds how many values one message may hold: every element of
// an array and every member of an object counts one, at any depth. The
// frame reader refuses a message that passes it while the message is still
// arriving, before encoding/json builds anything, and the connection is
// closed. A value is cheap to send and dear to decode: an empty {} is two
// bytes on the wire and a map in memory, and a 1 MiB message of them once
// cost the server 145 MiB. Decoding and binding a value costs the server
// less than 1 KiB (TestValuesCost), so this cap holds a message's decoding
// to under 256 KiB, whatever its size. The lesson's functions take at most three
// arguments, and stage 03 allows 64.
const maxValues = 256

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
	r     *bufio.Reader
	max   int    // the largest message, in bytes
	buf   []byte // the message being read; reused from message to message
	large bool   // the last message was larger than maxKeptBuffer
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReader(r), max: max}
}

// next returns the next message. The slice is valid until the next call.
// At the end of the stream between messages it returns io.EOF; in the
// middle of one, io.ErrUnexpectedEOF. Any error it returns is final.
//
// The message buffer grows as bytes arrive, never past max, and a buffer
// that grew past maxKeptBuffer goes back to largeBuffers once its message
// is done with: a reader between messages holds only the bufio.Reader's
// 4 KiB and a small buffer, whatever it read before.
func (f *frameReader) next() ([]byte, error) {
	f.large = len(f.buf) > maxKeptBuffer
	if putLarge(f.buf) {
		f.buf = nil
	}
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
		if !s.started {
			// White space between messages belongs to neither: the newline
			// that ended the last one must not count against this one's
			// limit.
			space := len(window) - len(bytes.TrimLeft(window, " \t\r\n"))
			_, _ = f.r.Discard(space) // cannot fail: the bytes are buffered
			if window = window[space:]; len(window) == 0 {
				continue
			}
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
		f.grow(n)
		f.buf = append(f.buf, window[:n]...)
		_, _ = f.r.Discard(n) // cannot fail: the bytes are buffered
		if end >= 0 {
			return f.buf, nil
		}
	}
}

// grow makes room in f.buf for n more bytes. It takes a buffer from
// largeBuffers if the message needs more than maxKeptBuffer, or if the last
// one did (a peer that sent one large message tends to send another).
// Failing that, it doubles, as append does, but never past f.max, so a
// message of max bytes costs max bytes, not whatever append would round up
// to.
func (f *frameReader) grow(n int) {
	need := len(f.buf) + n
	if need <= cap(f.buf) {
		return
	}
	var grown []byte
	if need > maxKeptBuffer || f.large {
		grown = getLarge(need)
	}
	if grown == nil {
		grown = make([]byte, 0, min(max(need, 2*cap(f.buf), 512), f.max))
	}
	old := f.buf
	f.buf = append(grown, old...)
	putLarge(old) // a large buffer outgrown: someone else's turn
}

// scanner follows a JSON object's brackets and strings, a window of bytes
// at a time, and counts its values.
type scanner struct {
	started  bool   // the opening brace has been seen
	closers  []byte // the bracket each open '{' or '[' awaits, innermost last
	inString bool
	escaped  bool // the byte before was a backslash inside a string
	opened   bool // the last bracket opened a container, and nothing followed it yet
	values   int  // the elements of arrays and members of objects seen so far
}

// scan reads p and returns the index just past the end of the message, or
// -1 if the message goes on past p.
func (s *scanner) scan(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case s.escaped:
			s.escaped = false
			continue
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
			continue
		case !s.started:
			switch b {
			case ' ', '\t', '\r', '\n':
			case '{':
				s.started = true
				s.closers = append(s.closers, '}')
				s.opened = true
			default:
				return -1, fmt.Errorf("%w: a message is a JSON object and starts with '{', not %s", errMalformed, strconv.QuoteRune(rune(b)))
			}
			continue
		case b == ' ', b == '\t', b == '\r', b == '\n':
			continue
		}
		// A container's first element starts at the first byte after its
		// opening bracket that is not space and does not close it; each
		// further element starts after a comma.
		if s.opened && b != '}' && b != ']' || b == ',' {
			s.values++
			if s.values > maxValues {
				return -1, fmt.Errorf("%w: more than %d values", errTooLarge, maxValues)
			}
		}
		s.opened = false
		switch b {
		case '"':
			s.inString = true
		case '{':
			s.closers = append(s.closers, '}')
			s.opened = true
		case '[':
			s.closers = append(s.closers, ']')
			s.opened = true
		case '}', ']':
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
	enc := json.NewEncoder(pooledWriter{buf})
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
	if !utf8.Valid(msg) {
		// encoding/json would turn the bad bytes into U+FFFD in a string,
		// and pass them through in a json.RawMessage: echo's answer would
		// not be JSON at all.
		return nil, errors.New("request is not a call: it is not valid UTF-8")
	}
	var req request
	err := json.Unmarshal(msg, &req)
	if err == nil {
		err = checkFields(msg, "method_name", "method_args", "method_kwargs")
	}
	if err == nil {
		err = checkSurrogates(msg)
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

// checkSurrogates refuses a \u escape of half a UTF-16 surrogate pair
// ("\ud800" alone). Python writes one for a string it cannot encode;
// encoding/json turns it into U+FFFD, and the call would go ahead on text
// the caller did not send.
//
// msg must be valid JSON, so every backslash starts an escape, and the
// walk only has to step over each one.
func checkSurrogates(msg []byte) error {
	for i := 0; ; {
		j := bytes.IndexByte(msg[i:], '\\')
		if j < 0 {
			return nil
		}
		i += j
		if msg[i+1] != 'u' {
			i += 2 // \n, \", \\ and the like
			continue
		}
		r := hexRune(msg[i+2 : i+6])
		i += 6
		if !utf16.IsSurrogate(r) {
			continue
		}
		if r < 0xdc00 && i+6 <= len(msg) && msg[i] == '\\' && msg[i+1] == 'u' {
			if low := hexRune(msg[i+2 : i+6]); low >= 0xdc00 && low <= 0xdfff {
				i += 6 // a high and a low half: one character
				continue
			}
		}
		return fmt.Errorf("%s is half of a UTF-16 surrogate pair, not a character", msg[i-6:i])
	}
}

// hexRune decodes the four hex digits of a \u escape.
func hexRune(hex []byte) rune {
	n, _ := strconv.ParseUint(string(hex), 16, 16) // valid JSON: four hex digits
	return rune(n)
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

// writeResponse writes the answer to a call, followed by a newline. A
// result that cannot be sent (it does not encode, its MarshalJSON panics,
// or it is not valid UTF-8) is answered with an error instead.
func writeResponse(buf *bytes.Buffer, res any, callErr error) {
	start := buf.Len()
	if callErr == nil {
		buf.WriteString(`{"res":`)
		if err := encodeResult(buf, res); err != nil {
			buf.Truncate(start)
			callErr = fmt.Errorf("the result cannot be sent as JSON: %v", err)
		}
	}
	if callErr != nil {
		buf.WriteString(`{"res":null,"error":`)
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(callErr.Error()) // a string always encodes, as valid UTF-8
	}
	buf.Truncate(buf.Len() - 1) // the newline Encode wrote after the value
	buf.WriteString("}\n")
}

// encodeResult appends res as JSON and a newline. A panic in a MarshalJSON
// method is the function's fault, not the server's: it comes back as an
// error.
func encodeResult(buf *bytes.Buffer, res any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panicked: %v", p)
		}
	}()
	start := buf.Len()
	enc := json.NewEncoder(pooledWriter{buf})
	enc.SetEscapeHTML(false) // keep < > & as they are: this is not going into HTML
	if err := enc.Encode(res); err != nil {
		return err
	}
	// encoding/json passes the bytes of a json.RawMessage, or of what a
	// MarshalJSON method returns, through as they are.
	if !utf8.Valid(buf.Bytes()[start:]) {
		return errors.New("it is not valid UTF-8")
	}
	return nil
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

// quoteShort quotes s for an error message, cut to a readable length: an
// error must name the bad value, not echo a megabyte of it back.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
