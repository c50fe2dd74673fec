package jsontcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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
