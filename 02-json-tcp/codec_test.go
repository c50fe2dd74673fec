package jsontcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAll returns every message in stream, and the error that ended it.
func readAll(r io.Reader, max int) ([]string, error) {
	f := newFrameReader(r, max)
	var msgs []string
	for {
		msg, err := f.next()
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, string(msg))
	}
}

func TestFrameReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []string
		err    error // what ends the stream
	}{
		{"one bare object, as the article sends", `{"a":1}`, []string{`{"a":1}`}, io.EOF},
		{"two in one read: sticky packets", `{"a":1}{"b":2}`, []string{`{"a":1}`, `{"b":2}`}, io.EOF},
		{"newlines and spaces between", "\n {\"a\":1}\n\n\t{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}, io.EOF},
		{"brackets inside strings", `{"s":"}{][","t":"\"}"}`, []string{`{"s":"}{][","t":"\"}"}`}, io.EOF},
		{"escaped backslash before a quote", `{"s":"\\"}{"t":1}`, []string{`{"s":"\\"}`, `{"t":1}`}, io.EOF},
		{"nested", `{"a":[{"b":[1,[2]]}]}`, []string{`{"a":[{"b":[1,[2]]}]}`}, io.EOF},
		{"unicode", `{"s":"测试项 ✓"}`, []string{`{"s":"测试项 ✓"}`}, io.EOF},
		{"empty stream", ``, nil, io.EOF},
		{"only white space", " \n ", nil, io.EOF},
		{"cut in the middle", `{"a":1}{"b":`, []string{`{"a":1}`}, io.ErrUnexpectedEOF},
		{"cut inside a string", `{"a":"xy`, nil, io.ErrUnexpectedEOF},
		{"not an object", `[1,2]`, nil, errMalformed},
		{"garbage", `hello`, nil, errMalformed},
		{"garbage after a good one", `{"a":1} oops`, []string{`{"a":1}`}, errMalformed},
		{"wrong closing bracket", `{"a":[1}`, nil, errMalformed},
		{"too deep", strings.Repeat(`{"a":`, maxDepth+1), nil, errMalformed},
		{"deep enough", strings.Repeat(`{"a":`, maxDepth-1) + "{}" + strings.Repeat(`}`, maxDepth-1), []string{strings.Repeat(`{"a":`, maxDepth-1) + "{}" + strings.Repeat(`}`, maxDepth-1)}, io.EOF},
		{"invalid JSON inside, brackets balanced", `{"a":tru}{"b":2}`, []string{`{"a":tru}`, `{"b":2}`}, io.EOF},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"one byte a read", iotest.OneByteReader},
			{"half a read", iotest.HalfReader},
		} {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				msgs, err := readAll(mode.wrap(strings.NewReader(tt.stream)), 1<<10)
				assert.Equal(t, tt.want, msgs)
				assert.ErrorIs(t, err, tt.err)
			})
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestFrameReaderLimit checks that a message over the limit is refused as
// soon as it passes the limit, without the rest being read.
func TestFrameReaderLimit(t *testing.T) {
	const max = 1000
	big := `{"s":"` + strings.Repeat("x", 10*max) + `"}`

	stream := &countingReader{r: strings.NewReader(big)}
	_, err := newFrameReader(stream, max).next()
	assert.ErrorIs(t, err, errTooLarge)
	assert.Less(t, stream.n, 5*max, "read %d bytes of a message it had to refuse", stream.n)

	exact := `{"s":"` + strings.Repeat("x", max-8) + `"}`
	require.Len(t, exact, max)
	msg, err := newFrameReader(strings.NewReader(exact+exact), max).next()
	assert.NoError(t, err, "a message of exactly the limit is allowed")
	assert.Equal(t, exact, string(msg))

	_, err = newFrameReader(strings.NewReader(exact[:max-1]+"x"+`"}`), max).next()
	assert.ErrorIs(t, err, errTooLarge, "one byte over")
}

// TestFrameReaderLarge reads a 200 KB message, far larger than the
// article's 1024-byte read, one byte at a time and in odd pieces.
func TestFrameReaderLarge(t *testing.T) {
	big := `{"s":"` + strings.Repeat(`ab\"c{`, 200<<10/6) + `"}`
	for _, r := range []io.Reader{strings.NewReader(big + big), iotest.OneByteReader(strings.NewReader(big + big))} {
		msgs, err := readAll(r, 1<<20)
		assert.ErrorIs(t, err, io.EOF)
		assert.Equal(t, []string{big, big}, msgs)
	}
}

// TestFrameReaderSpaceBetweenMessages checks that the newline ending one
// message does not count against the next one's limit: a call of exactly
// the limit goes through every time, not only the first.
func TestFrameReaderSpaceBetweenMessages(t *testing.T) {
	const max = 200
	exact := `{"s":"` + strings.Repeat("x", max-8) + `"}`
	require.Len(t, exact, max)
	msgs, err := readAll(strings.NewReader(exact+"\n"+exact+"\r\n \t"+exact+"\n"), max)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, []string{exact, exact, exact}, msgs)
}

// TestFrameReaderCountsValues checks how the frame reader counts a
// message's values against maxValues: each element of an array and each
// member of an object, at any depth, and nothing inside strings.
func TestFrameReaderCountsValues(t *testing.T) {
	list := func(elem string, n int) string {
		return strings.TrimSuffix(strings.Repeat(elem+",", n), ",")
	}
	tests := []struct {
		name  string
		msg   string
		fails bool
	}{
		{"a call of the article", `{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}`, false},
		{"empty containers count only as elements", `{"a":[` + list("[]", maxValues-1) + `]}`, false},
		{"exactly the cap, flat", `{"a":[` + list("1", maxValues-1) + `]}`, false},
		{"one over, flat", `{"a":[` + list("1", maxValues) + `]}`, true},
		{"one over, spread over nested arrays", `{"a":[[` + list("1", maxValues/2) + `],[` + list("1", maxValues/2-1) + `]]}`, true},
		{"one over, as object members", `{` + list(`"k":{}`, maxValues+1) + `}`, true},
		{"commas and brackets in strings do not count", `{"s":"` + strings.Repeat(`,[{`, 4*maxValues) + `"}`, false},
		{"space after an opening bracket", `{ "a" : [ ` + list(" 1 ", maxValues-1) + ` ] }`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := readAll(iotest.HalfReader(strings.NewReader(tt.msg)), 1<<20)
			if tt.fails {
				assert.ErrorIs(t, err, errTooLarge)
				assert.ErrorContains(t, err, "more than 256 values")
				assert.Empty(t, msgs)
				return
			}
			assert.ErrorIs(t, err, io.EOF)
			assert.Equal(t, []string{tt.msg}, msgs)
		})
	}
}

// allocated returns how many bytes fn allocated, garbage included.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestFrameReaderRefusesAmplification sends requests of 1 MiB (a server
// may be configured for that) whose arguments are small on the wire and
// large in memory. They used to be framed, decoded and called: 349,000 {}
// arguments allocated 145 MiB and 520,000 ints 194 MiB and half a second of
// CPU. Now the frame reader refuses each when its 257th value arrives,
// before encoding/json builds anything.
func TestFrameReaderRefusesAmplification(t *testing.T) {
	const size = 1 << 20
	call := func(args string) string {
		return `{"method_name": "test", "method_args": [` + args + `]}`
	}
	fill := func(elem string) string {
		n := (size - len(call(""))) / (len(elem) + 1)
		return strings.TrimSuffix(strings.Repeat(elem+",", n), ",")
	}
	tests := []struct {
		name string
		msg  string
	}{
		{"empty objects", call(fill("{}"))},
		{"empty arrays", call(fill("[]"))},
		{"positional ints", call(fill("1"))},
		{"one argument of nested arrays", call("[" + fill("[]") + "]")[:size-10] + "]]}"},
		{"keyword arguments", `{"method_name": "test", "method_kwargs": {` + fill(`"k":{}`)[:size-60] + `"x":1}}`},
	}
	srv := NewDemoServer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.LessOrEqual(t, len(tt.msg), size)
			var err error
			bytes := allocated(func() {
				var msg []byte
				msg, err = newFrameReader(strings.NewReader(tt.msg), size).next()
				if err == nil {
					_, _ = srv.handle(msg) // what the server would do next
				}
			})
			assert.ErrorIs(t, err, errTooLarge)
			assert.Less(t, bytes, uint64(64<<10), "refusing a %d-byte message allocated %d bytes", len(tt.msg), bytes)
		})
	}
}

// TestValuesCost measures what decoding, binding and calling a message of
// maxValues values costs, for the kinds of value that cost the most, and
// checks it against 1 KiB a value: the figure the lesson gives. Run with
// -v to see the figures.
func TestValuesCost(t *testing.T) {
	// Every member of the request counts too: method_name and the list.
	const n = maxValues - 2
	list := func(elem func(i int) string) string {
		elems := make([]string, n)
		for i := range elems {
			elems[i] = elem(i)
		}
		return strings.Join(elems, ",")
	}
	tests := []struct {
		name string
		msg  string
	}{
		{"positional {}", `{"method_name": "test", "method_args": [` + list(func(int) string { return "{}" }) + `]}`},
		{"positional []", `{"method_name": "test", "method_args": [` + list(func(int) string { return "[]" }) + `]}`},
		{"positional ints", `{"method_name": "test", "method_args": [` + list(func(int) string { return "1" }) + `]}`},
		{"keyword {}", `{"method_name": "test", "method_kwargs": {` + list(func(i int) string { return fmt.Sprintf(`"k%d":{}`, i) }) + `}}`},
		{"one argument of {}", `{"method_name": "test", "method_args": [[` + list(func(int) string { return "{}" })[len("{},"):] + `]]}`},
	}
	srv := NewDemoServer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var callErr error
			spent := allocated(func() {
				msg, err := newFrameReader(strings.NewReader(tt.msg), DefaultMaxMessageBytes).next()
				require.NoError(t, err)
				_, callErr = srv.handle(msg)
			})
			require.NoError(t, callErr)
			t.Logf("%d values in %d bytes: %d bytes allocated, %d a value", n, len(tt.msg), spent, spent/n)
			assert.Less(t, spent, uint64(n<<10), "more than 1 KiB a value")
		})
	}
}

// TestFrameReaderBufferIsBounded checks what many readers hold. Each is
// fed a message that stops short of its end, as a peer that sends a large
// request and goes quiet does, and holds at most the limit: the buffer
// grows as bytes arrive, never past the limit. Then each is fed the end of
// that message and waits for the next: it must let go of its large
// buffer.
func TestFrameReaderBufferIsBounded(t *testing.T) {
	const readers, max = 64, 256 << 10
	big := `{"s":"` + strings.Repeat("x", max-8) + `"}`
	heap := func() int64 { return int64(heapInUse()) }
	before := heap()

	type peer struct {
		w    *io.PipeWriter
		read chan error // what each next returned
	}
	peers := make([]peer, readers)
	for i := range peers {
		r, w := io.Pipe()
		p := peer{w, make(chan error, 2)}
		peers[i] = p
		frames := newFrameReader(r, max)
		go func() {
			for {
				msg, err := frames.next()
				if err == nil && string(msg) != big {
					err = errors.New("not the message sent")
				}
				p.read <- err
				if err != nil {
					return
				}
			}
		}()
	}
	for _, p := range peers {
		_, err := io.WriteString(p.w, big[:max-1]) // returns once the reader has it all
		require.NoError(t, err)
	}
	halfSent := heap() - before

	for _, p := range peers {
		_, err := io.WriteString(p.w, big[max-1:])
		require.NoError(t, err)
		require.NoError(t, <-p.read)
	}
	// Each reader goes on to its next call to next. A write returns once
	// the reader has read it, so after this one it is past the point
	// where it lets go of the last message.
	for _, p := range peers {
		_, err := io.WriteString(p.w, " ")
		require.NoError(t, err)
	}
	idle := heap() - before

	for _, p := range peers {
		p.w.Close()
		assert.ErrorIs(t, <-p.read, io.EOF)
	}
	// Besides its message, a reader holds the bufio.Reader's 4 KiB, and
	// the pipe and goroutine a little more. A buffer that append rounded
	// up held 283 KiB for a limit of 256 KiB; one never dropped, 256 KiB.
	const fixed = 12 << 10
	assert.Less(t, halfSent, int64(readers*(max+fixed)), "%d readers of half-sent messages held %d bytes", readers, halfSent)
	assert.Less(t, idle, int64(readers*fixed), "%d idle readers held %d bytes after a %d-byte message", readers, idle, max)
	t.Logf("%d readers: %d KiB each with a message of %d KiB half-sent, %d KiB each between messages", readers, halfSent/readers>>10, max>>10, idle/readers>>10)
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		msg     string
		want    *request
		wantErr string
	}{
		{`{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}`,
			&request{"add", []json.RawMessage{json.RawMessage("1"), json.RawMessage("2")}, map[string]json.RawMessage{"c": json.RawMessage("3")}}, ""},
		{`{"method_name": "f"}`, &request{MethodName: "f"}, ""},
		{`{"method_args": []}`, nil, `request is not a call: no "method_name"`},
		{`{"method_name": "f", "method_kwarg": {}}`, nil, `request is not a call: unknown field "method_kwarg"`},
		{`{"METHOD_NAME": "f"}`, nil, `request is not a call: unknown field "METHOD_NAME"`},
		{`{"method_name": "f", "method_name": "g"}`, nil, `request is not a call: field "method_name" given twice`},
		{`{"method_name": "f", "method_args": [{"x": "\"", "y": {"z": 1}}, "a,\"b"], "method_kwargs": {"k": [1, {"m": 2}]}}`,
			&request{"f", []json.RawMessage{json.RawMessage(`{"x": "\"", "y": {"z": 1}}`), json.RawMessage(`"a,\"b"`)}, map[string]json.RawMessage{"k": json.RawMessage(`[1, {"m": 2}]`)}}, ""},
		{`{"method\u005fname": "f"}`, &request{MethodName: "f"}, ""},
		{`{"method_name": 7}`, nil, "request is not a call: json: cannot unmarshal number into Go struct field request.method_name of type string"},
		{`{"method_name": "f", "method_args": {"a": 1}}`, nil, "request is not a call: json: cannot unmarshal object into Go struct field request.method_args of type []json.RawMessage"},
		{`{"a":tru}`, nil, "request is not a call: invalid character '}' in literal true (expecting 'e')"},
		{"{\"method_name\": \"echo\", \"method_args\": [\"\xff\"]}", nil, "request is not a call: it is not valid UTF-8"},
		{"{\"method_name\": \"ad\xc3d\"}", nil, "request is not a call: it is not valid UTF-8"},
		{`{"method_name": "add\ud800"}`, nil, `request is not a call: \ud800 is half of a UTF-16 surrogate pair, not a character`},
		{`{"method_name": "echo", "method_args": ["\udc00\ud800"]}`, nil, `request is not a call: \udc00 is half of a UTF-16 surrogate pair, not a character`},
		{`{"method_name": "echo", "method_args": ["\ud83d"]}`, nil, `request is not a call: \ud83d is half of a UTF-16 surrogate pair, not a character`},
		{`{"method_name": "echo", "method_args": ["\ud83d\ude00 \\ud800 \u00e9"]}`,
			&request{"echo", []json.RawMessage{json.RawMessage(`"\ud83d\ude00 \\ud800 \u00e9"`)}, nil}, ""},
	}
	for _, tt := range tests {
		got, err := decodeRequest([]byte(tt.msg))
		if tt.wantErr != "" {
			assert.EqualError(t, err, tt.wantErr, tt.msg)
			continue
		}
		require.NoError(t, err, tt.msg)
		assert.Equal(t, tt.want, got, tt.msg)
	}
}

// panicky is a result whose MarshalJSON panics: the function's bug, which
// must not end the server.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("MarshalJSON of panicky") }

func TestResponses(t *testing.T) {
	tests := []struct {
		res     any
		callErr error
		wire    string
	}{
		{6, nil, `{"res":6}` + "\n"},
		{nil, nil, `{"res":null}` + "\n"},
		{"<&>", nil, `{"res":"<&>"}` + "\n"},
		{json.RawMessage(`{"a": [1, 2]}`), nil, `{"res":{"a":[1,2]}}` + "\n"},
		{nil, errors.New(`add: missing argument 'b'`), `{"res":null,"error":"add: missing argument 'b'"}` + "\n"},
		{func() {}, nil, `{"res":null,"error":"the result cannot be sent as JSON: json: unsupported type: func()"}` + "\n"},
		{panicky{}, nil, `{"res":null,"error":"the result cannot be sent as JSON: panicked: MarshalJSON of panicky"}` + "\n"},
		{json.RawMessage("\"\xff\""), nil, `{"res":null,"error":"the result cannot be sent as JSON: it is not valid UTF-8"}` + "\n"},
		{nil, errors.New("bad \xff byte"), `{"res":null,"error":"bad \ufffd byte"}` + "\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		writeResponse(&buf, tt.res, tt.callErr)
		assert.Equal(t, tt.wire, buf.String())
	}

	res, err := decodeResponse([]byte(`{"res":6}`))
	require.NoError(t, err)
	assert.Equal(t, "6", string(res))

	res, err = decodeResponse([]byte(`{"res":null}`))
	require.NoError(t, err, "null is a result (Python's None), not a missing one")
	assert.Equal(t, "null", string(res))

	_, err = decodeResponse([]byte(`{"res":null,"error":"no"}`))
	var serverErr *ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.Equal(t, "no", serverErr.Message)

	_, err = decodeResponse([]byte(`{"result":6}`))
	assert.EqualError(t, err, `answer has no "res": "{\"result\":6}"`)

	_, err = decodeResponse([]byte(`Please use the correct function`))
	assert.ErrorContains(t, err, "answer is not JSON we understand")
}
