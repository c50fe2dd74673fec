package gobrpc

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The first two calls a Client sends on a connection, written out by hand,
// byte by byte. Our encoder must write exactly these bytes (TestEncoder),
// and they are stable: gob's numbers for our types are fixed when the
// package starts (see init in codec.go), and no value holds a map, whose
// order would change from run to run.
//
// A gob message is its length, a type id, and the type's fields, each
// field as the step from the field before it and then its value. An id
// below zero says the message defines that type. Integers take one byte
// below 128; above, a byte holds minus the count of bytes that follow.
var (
	// sumFirstFrame is sum(1, 2), the first frame of a connection: gob
	// defines each type before the first value that uses it.
	sumFirstFrame = unhex(`
		00 00 00 94                          // the frame: 148 bytes follow
		29 7f                                // a message of 41 bytes, defining type 64:
		03 01 01 07 52 65 71 75 65 73 74     //   a struct named "Request"
		01 ff 80 00                          //   with id 64
		01 02                                //   and 2 fields:
		01 04 46 75 6e 63 01 0c 00           //     "Func", of type 6 (string)
		01 06 50 61 72 61 6d 73 01 ff 84 00  //     "Params", of type 66
		00 00
		1d ff 83                             // a message of 29 bytes, defining type 66:
		02 01 01 0e 5b 5d 67 6f 62 72 70 63  //   a slice named "[]gobrpc.Value"
		2e 56 61 6c 75 65 01 ff 84 00        //   with id 66
		01 ff 82 00 00                       //   of type 65
		36 ff 81                             // a message of 54 bytes, defining type 65:
		03 01 01 05 56 61 6c 75 65           //   a struct named "Value"
		01 ff 82 00                          //   with id 65
		01 04                                //   and 4 fields:
		01 04 54 79 70 65 01 06 00           //     "Type", of type 3 (uint)
		01 03 49 6e 74 01 04 00              //     "Int", of type 2 (int)
		01 05 46 6c 6f 61 74 01 08 00        //     "Float", of type 4 (float)
		01 03 53 74 72 01 0c 00              //     "Str", of type 6 (string)
		00 00
	` + sumValue)

	// sumLaterFrame is sum(1, 2) again: the types are known, the value
	// comes alone.
	sumLaterFrame = unhex(`
		00 00 00 15                          // the frame: 21 bytes follow
	` + sumValue)
)

// sumValue is the message that carries the Request for sum(1, 2).
const sumValue = `
		14 ff 80                             // a message of 20 bytes: a value of type 64, a Request
		01 03 73 75 6d                       //   field 1, Func: 3 bytes, "sum"
		01 02                                //   field 2, Params: 2 Values
		01 01 01 02 00                       //     Type 1, Int 1 (written 2: the sign is the low bit), end
		01 01 01 04 00                       //     Type 1, Int 2, end
		00                                   //   end of the Request
`

// unhex reads bytes written out in hex, ignoring spaces and what follows
// "//" on each line.
func unhex(s string) []byte {
	var digits strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "//")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		panic(err)
	}
	return b
}

// frame returns payload as a frame: its length, 4 bytes big-endian, and
// the payload.
func frame(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// encodeFrames encodes values with one encoder, as one connection would
// send them, and returns a copy of each frame.
func encodeFrames(t testing.TB, values ...any) [][]byte {
	t.Helper()
	e := newEncoder()
	var frames [][]byte
	for _, v := range values {
		f, err := e.encode(v)
		require.NoError(t, err)
		frames = append(frames, bytes.Clone(f))
	}
	return frames
}

// sumRequest is the Request for sum(1, 2).
var sumRequest = Request{Func: "sum", Params: []Value{{Type: typeInt, Int: 1}, {Type: typeInt, Int: 2}}}

// TestEncoder checks the frames our encoder writes against the bytes
// written out by hand: the first frame on a connection defines the types,
// later ones do not.
func TestEncoder(t *testing.T) {
	frames := encodeFrames(t, &sumRequest, &sumRequest)
	assert.Equal(t, hex.Dump(sumFirstFrame), hex.Dump(frames[0]))
	assert.Equal(t, hex.Dump(sumLaterFrame), hex.Dump(frames[1]))
	assert.Len(t, sumFirstFrame, 4+148)
	assert.Len(t, sumLaterFrame, 4+21)

	d := newDecoder(bytes.NewReader(append(sumFirstFrame, sumLaterFrame...)), 1000)
	for range 2 {
		var req Request
		require.NoError(t, d.decode(&req))
		assert.Equal(t, sumRequest, req)
	}
}

// readAll returns every payload in stream, and the error that ended it.
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
		stream []byte
		want   []string
		err    error // what ends the stream
	}{
		{"one frame", frame([]byte("abc")), []string{"abc"}, io.EOF},
		{"two in one read: sticky packets", append(frame([]byte("ab")), frame([]byte("cde"))...), []string{"ab", "cde"}, io.EOF},
		{"any bytes at all in the payload", frame([]byte("\x00\n\xff\x00\x00\x00\x01")), []string{"\x00\n\xff\x00\x00\x00\x01"}, io.EOF},
		{"empty stream", nil, nil, io.EOF},
		{"cut in the length", []byte{0, 0}, nil, io.ErrUnexpectedEOF},
		{"cut in the payload", frame([]byte("abc"))[:5], nil, io.ErrUnexpectedEOF},
		{"cut in the next length", append(frame([]byte("ab")), 0), []string{"ab"}, io.ErrUnexpectedEOF},
		{"a zero length", []byte{0, 0, 0, 0}, nil, errMalformed},
		{"over the limit", []byte{0, 0, 4, 1, 'x'}, nil, errTooLarge},
		{"a 4 GiB length", []byte{0xff, 0xff, 0xff, 0xff, 'x'}, nil, errTooLarge},
		{"stage 03's text, read as a length", []byte("23 func:sum@params:1-1,1-2\n"), nil, errTooLarge},
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
				msgs, err := readAll(mode.wrap(bytes.NewReader(tt.stream)), 1<<10)
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

// allocated returns how many bytes of memory f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestFrameReaderLimit checks that a frame over the limit is refused from
// its length alone: nothing of the payload is read, and nothing allocated
// for it, even when the length says 4 GiB.
func TestFrameReaderLimit(t *testing.T) {
	const max = 1000
	for _, header := range [][]byte{{0, 0, 0x03, 0xe9}, {0xff, 0xff, 0xff, 0xff}} {
		stream := &countingReader{r: iotest.OneByteReader(bytes.NewReader(append(header, strings.Repeat("x", 2000)...)))}
		f := newFrameReader(stream, max)
		var err error
		cost := allocated(func() { _, err = f.next() })
		assert.ErrorContains(t, err, "message too large: a frame of ")
		assert.Equal(t, 4, stream.n, "read %d bytes: it should stop after the length", stream.n)
		assert.Zero(t, cap(f.buf), "allocated room for a frame it refused")
		assert.Less(t, cost, uint64(64<<10), "allocated %d bytes to refuse a frame", cost)
	}

	exact := strings.Repeat("x", max)
	msgs, err := readAll(bytes.NewReader(frame([]byte(exact))), max)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, []string{exact}, msgs, "a frame of exactly the limit is allowed")
}

func TestGobUint(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		u    uint64
		size int
	}{
		{[]byte{0x00}, 0, 1},
		{[]byte{0x7f, 0xaa}, 127, 1},
		{[]byte{0xff, 0x80}, 128, 2},
		{[]byte{0xfe, 0x01, 0x00}, 256, 3}, // the example in gob's documentation
		{[]byte{0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, math.MaxUint64, 9},
		{nil, 0, 0},
		{[]byte{0xff}, 0, 0}, // a byte announced, none there
		{[]byte{0xf7, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 0, 0}, // 9 bytes: more than a uint64
		{[]byte{0x80, 1}, 0, 0},                         // minus 128 bytes
	} {
		u, size := gobUint(tt.in)
		assert.Equal(t, tt.u, u, "% x", tt.in)
		assert.Equal(t, tt.size, size, "% x", tt.in)
	}
}

func TestScanMessages(t *testing.T) {
	frames := encodeFrames(t, &sumRequest, &sumRequest)
	answers := encodeFrames(t, &Response{Data: Value{Type: typeInt, Int: 3}})
	tests := []struct {
		name     string
		payload  []byte
		typeDefs int
		wantErr  string
	}{
		{"our first call", frames[0][4:], 3, ""},
		{"our next call", frames[1][4:], 0, ""},
		{"our first answer", answers[0][4:], 2, ""},
		{"a definition, then a value", []byte{2, 0x01, 0, 2, 0x02, 0}, 1, ""},
		{"only definitions", []byte{2, 0x01, 0}, 0, "a frame that defines types and carries no value"},
		{"two values", []byte{1, 0x02, 1, 0x02}, 0, "more after the value that ends a frame"},
		{"a definition after the value", []byte{1, 0x02, 1, 0x01}, 0, "more after the value that ends a frame"},
		{"a message longer than the frame", []byte{9, 0x02}, 0, "a gob message whose length does not fit in its frame"},
		{"a message of 0 bytes", []byte{0}, 0, "a gob message whose length does not fit in its frame"},
		{"a length that is not a number", []byte{0xf7, 0x02}, 0, "a gob message whose length does not fit in its frame"},
		{"no type id", []byte{1, 0xff}, 0, "a gob message with no type id"},
		{"cut in the last message", frames[0][4 : len(frames[0])-1], 0, "a gob message whose length does not fit in its frame"},
	}
	for _, tt := range tests {
		defs, err := scanMessages(tt.payload)
		if tt.wantErr != "" {
			assert.ErrorIs(t, err, errMalformed, tt.name)
			assert.ErrorContains(t, err, tt.wantErr, tt.name)
			continue
		}
		assert.NoError(t, err, tt.name)
		assert.Equal(t, tt.typeDefs, defs, tt.name)
	}
}

// firstDefs is the start of our client's first frame's payload: the
// definitions of Request, []Value and Value, without the value.
var firstDefs = sumFirstFrame[frameHeaderBytes : len(sumFirstFrame)-21]

// TestDecoderRefuses feeds the server's decoder frames that it must refuse.
// Each error is final: the server answers it and closes the connection.
func TestDecoderRefuses(t *testing.T) {
	answer := encodeFrames(t, &Response{Data: Value{Type: typeInt, Int: 3}})[0]
	tests := []struct {
		name    string
		stream  []byte
		wantErr string
	}{
		{"garbage in a well-sized frame", frame([]byte("hello, world")),
			"malformed message: a gob message whose length does not fit in its frame"},
		{"garbage inside a gob message", frame(append(bytes.Clone(firstDefs), 4, 0xff, 0x80, 0x01, 0x7f)),
			"malformed message: gob: "},
		{"a value before its type is defined", sumLaterFrame,
			"malformed message: gob: "},
		{"an answer where a call should be", answer,
			"malformed message: gob: type mismatch: no fields matched compiling decoder for Request"},
		{"types defined twice: a fresh encoder for every frame", append(bytes.Clone(sumFirstFrame), sumFirstFrame...),
			"malformed message: gob: duplicate type received"},
		{"too many types", frame(manyTypes(t, maxTypeDefs-2)),
			"malformed message: more than 16 type definitions on one connection"},
		{"a type nested 20 deep", nested(t, 20),
			"malformed message: more than 16 type definitions on one connection"},
	}
	for _, tt := range tests {
		d := newDecoder(bytes.NewReader(tt.stream), 1<<20)
		var err error
		for err == nil {
			var req Request
			err = d.decode(&req)
		}
		assert.ErrorContains(t, err, tt.wantErr, tt.name)
		assert.ErrorIs(t, err, errMalformed, tt.name)
	}

	var req Request
	err := newDecoder(bytes.NewReader(frame(manyTypes(t, maxTypeDefs-3))), 1<<20).decode(&req)
	require.NoError(t, err, "16 type definitions are allowed")
	assert.Equal(t, sumRequest, req)
}

// manyTypes returns the payload of a frame that defines n types of no use
// to anyone, [1]int, [2]int, ..., and then carries sum(1, 2) as our
// client's first frame does, with 3 definitions of its own.
func manyTypes(t testing.TB, n int) []byte {
	t.Helper()
	var payload []byte
	for i := range n {
		array := reflect.New(reflect.ArrayOf(i+1, reflect.TypeFor[int]()))
		msgs := encodeFrames(t, array.Interface())[0][frameHeaderBytes:]
		size, sizeBytes := gobUint(msgs) // the first message defines the type
		payload = append(payload, msgs[:sizeBytes+int(size)]...)
	}
	return append(payload, sumFirstFrame[frameHeaderBytes:]...)
}

// nested returns the frame of a value whose type is a slice of slices,
// depth levels deep: gob defines each level as a type of its own.
func nested(t testing.TB, depth int) []byte {
	typ := reflect.TypeFor[int]()
	for range depth {
		typ = reflect.SliceOf(typ)
	}
	v := reflect.MakeSlice(typ, 1, 1)
	return encodeFrames(t, v.Interface())[0]
}

// TestDecodeIntoZeroValue shows why decode wants a zero value: gob does not
// send a field whose value is zero, and leaves such a field as it finds it.
// Decoded into the Request of an earlier call, get_time() would keep that
// call's arguments.
func TestDecodeIntoZeroValue(t *testing.T) {
	frames := encodeFrames(t, &sumRequest, &Request{Func: "get_time"})
	d := newDecoder(bytes.NewReader(append(frames[0], frames[1]...)), 1000)
	var req Request
	require.NoError(t, d.decode(&req))
	require.NoError(t, d.decode(&req))
	assert.Equal(t, Request{Func: "get_time", Params: sumRequest.Params}, req, "the Params of sum(1, 2) are still there")
}

// TestSliceClaim sends a call whose Params claim a hundred million Values
// in a message of a few bytes. gob believes a claimed length up to 10 MiB
// of memory before it has seen the elements: the frame's limit cannot stop
// that, only bound what follows it. This is the cost the lesson quotes.
func TestSliceClaim(t *testing.T) {
	value := []byte{0, 0xff, 0x80, 0x01, 0x03, 's', 'u', 'm', 0x01, 0xfc, 0x05, 0xf5, 0xe1, 0x00} // Params: 100,000,000
	value[0] = byte(len(value) - 1)
	d := newDecoder(bytes.NewReader(frame(append(bytes.Clone(firstDefs), value...))), 1000)
	var err error
	cost := allocated(func() {
		var req Request
		err = d.decode(&req)
	})
	assert.ErrorIs(t, err, errMalformed)
	t.Logf("a frame of %d bytes cost %d bytes of memory: %v", len(firstDefs)+len(value), cost, err)
	assert.Greater(t, cost, uint64(9<<20), "gob now believes less of a claimed length: update the lesson")
	assert.Less(t, cost, uint64(11<<20))
}

// TestWireTypesRunNoCode checks that the types gob fills in for us, and
// every type inside them, have no decoding code of their own for gob to
// call, and no field of an interface type, where the bytes would name the
// type to fill. Decoding them runs gob's code and nothing else.
func TestWireTypesRunNoCode(t *testing.T) {
	hooks := []reflect.Type{
		reflect.TypeFor[gob.GobDecoder](),
		reflect.TypeFor[encoding.BinaryUnmarshaler](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		assert.NotEqual(t, reflect.Interface, typ.Kind(), "%s: the bytes would choose the type", typ)
		for _, hook := range hooks {
			assert.False(t, reflect.PointerTo(typ).Implements(hook), "%s is a %s", typ, hook)
		}
		switch typ.Kind() {
		case reflect.Struct:
			for field := range typ.Fields() {
				walk(field.Type)
			}
		case reflect.Slice, reflect.Array, reflect.Pointer, reflect.Map:
			walk(typ.Elem())
		}
	}
	walk(reflect.TypeFor[Request]())
	walk(reflect.TypeFor[Response]())
	assert.Len(t, seen, 8, "Request, []Value, Value, uint8, int, float64, string, Response")
}

func TestValues(t *testing.T) {
	for _, tt := range []struct {
		v    any
		wire Value
	}{
		{3, Value{Type: typeInt, Int: 3}},
		{-5, Value{Type: typeInt, Int: -5}},
		{0, Value{Type: typeInt}},
		{math.MaxInt, Value{Type: typeInt, Int: math.MaxInt}},
		{3.1, Value{Type: typeFloat, Float: 3.1}},
		{0.0, Value{Type: typeFloat}},
		{"a,b-c:d@e%f\n中文", Value{Type: typeStr, Str: "a,b-c:d@e%f\n中文"}},
		{"", Value{Type: typeStr}},
	} {
		wire, err := toValue(tt.v)
		require.NoError(t, err)
		assert.Equal(t, tt.wire, wire)
		back, err := fromValue(wire)
		require.NoError(t, err)
		assert.Equal(t, tt.v, back)
	}
	for _, tt := range []struct {
		v       any
		wantErr string
	}{
		{uint(7), "a uint cannot be sent: the wire carries int, float64 and string"},
		{math.Inf(-1), "-Inf cannot be sent: the wire carries finite floats only"},
		{[]byte("x"), "a []uint8 cannot be sent: the wire carries int, float64 and string"},
		{nil, "a <nil> cannot be sent: the wire carries int, float64 and string"},
		{float32(1.5), "a float32 cannot be sent: the wire carries int, float64 and string"},
		{int64(8), "a int64 cannot be sent: the wire carries int, float64 and string"},
	} {
		_, err := toValue(tt.v)
		assert.EqualError(t, err, tt.wantErr)
	}
	for _, tt := range []struct {
		wire    Value
		wantErr string
	}{
		{Value{}, "unknown type code 0: 1 is int, 2 float, 3 str"},
		{Value{Type: 9, Int: 1}, "unknown type code 9: 1 is int, 2 float, 3 str"},
		{Value{Type: typeInt, Int: 1, Str: "1"}, "type code 1, with the field of another type set too"},
		{Value{Type: typeFloat, Float: 1, Int: 1}, "type code 2, with the field of another type set too"},
		{Value{Type: typeStr, Str: "x", Float: 1}, "type code 3, with the field of another type set too"},
		{Value{Type: typeInt, Float: math.NaN()}, "type code 1, with the field of another type set too"},
		{Value{Type: typeFloat, Float: math.NaN()}, "float NaN: the wire carries finite floats only"},
		{Value{Type: typeStr, Str: "\xff"}, `"\xff" is not valid UTF-8`},
	} {
		v, err := fromValue(tt.wire)
		assert.EqualError(t, err, tt.wantErr, "%+v", tt.wire)
		assert.Nil(t, v)
	}
}

func TestParseCall(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		want    []any // the name, then the arguments
		wantErr string
	}{
		{"the article's sum", sumRequest, []any{"sum", 1, 2}, ""},
		{"the article's get_time", Request{Func: "get_time"}, []any{"get_time"}, ""},
		{"every type", Request{Func: "f", Params: []Value{{Type: typeStr, Str: "x"}, {Type: typeFloat, Float: -1e-05}}}, []any{"f", "x", -1e-05}, ""},
		{"a name in bytes that are not UTF-8", Request{Func: "s\xffm"}, nil, `function name "s\xffm" is not valid UTF-8`},
		{"an unknown type code", Request{Func: "sum", Params: []Value{{Type: typeInt}, {Type: 9}}}, nil, "argument 2: unknown type code 9: 1 is int, 2 float, 3 str"},
		{"too many arguments", Request{Func: "sum", Params: make([]Value, maxArgs+1)}, nil, "more than 64 arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, args, err := parseCall(&tt.req)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, append([]any{name}, args...))
		})
	}
}

func TestNewRequest(t *testing.T) {
	req, err := newRequest("sum", []any{1, 2})
	require.NoError(t, err)
	assert.Equal(t, sumRequest, req)

	req, err = newRequest("sum", []any{1.1, "x"})
	require.NoError(t, err)
	name, args, err := parseCall(&req)
	require.NoError(t, err, "what we send, we read back")
	assert.Equal(t, "sum", name)
	assert.Equal(t, []any{1.1, "x"}, args)

	_, err = newRequest("f", []any{1, uint(2)})
	assert.EqualError(t, err, "argument 2: a uint cannot be sent: the wire carries int, float64 and string")
	_, err = newRequest("f", []any{math.NaN()})
	assert.EqualError(t, err, "argument 1: NaN cannot be sent: the wire carries finite floats only")
}

// TestFormatFloat checks floats against what Python 3's str() prints.
func TestFormatFloat(t *testing.T) {
	for f, python := range map[float64]string{
		3:                           "3.0",
		3.1:                         "3.1",
		0.30000000000000004:         "0.30000000000000004", // 0.1 + 0.2
		-0.5:                        "-0.5",
		math.Copysign(0, -1):        "-0.0",
		1e6:                         "1000000.0",
		1e15:                        "1000000000000000.0",
		1e16:                        "1e+16",
		1.5e16:                      "1.5e+16",
		123456789012345678:          "1.2345678901234568e+17",
		0.0001:                      "0.0001",
		0.00001:                     "1e-05",
		1.5e-7:                      "1.5e-07",
		1e100:                       "1e+100",
		math.MaxFloat64:             "1.7976931348623157e+308",
		math.SmallestNonzeroFloat64: "5e-324",
	} {
		assert.Equal(t, python, formatFloat(f))
	}
}

// TestAnswers sends answers through the encoder and the client's decoder,
// as one connection carries them.
func TestAnswers(t *testing.T) {
	errNo := errors.New("no, b: c")
	tests := []struct {
		res     any
		callErr error
		want    Response
	}{
		{3, nil, Response{Data: Value{Type: typeInt, Int: 3}}},
		{3.1, nil, Response{Data: Value{Type: typeFloat, Float: 3.1}}},
		{"Wed Jan 16 22:05:31 2019", nil, Response{Data: Value{Type: typeStr, Str: "Wed Jan 16 22:05:31 2019"}}},
		{"", nil, Response{Data: Value{Type: typeStr}}},
		{nil, errNo, Response{Error: "no, b: c"}},
		{nil, errors.New(""), Response{}},
		{uint(7), nil, Response{Error: "a uint cannot be sent: the wire carries int, float64 and string"}},
		{math.Inf(1), nil, Response{Error: "+Inf cannot be sent: the wire carries finite floats only"}},
	}
	var stream []byte
	e := newEncoder()
	for _, tt := range tests {
		resp := newResponse(tt.res, tt.callErr)
		assert.Equal(t, tt.want, resp)
		f, err := e.encode(&resp)
		require.NoError(t, err)
		stream = append(stream, f...)
	}
	d := newDecoder(bytes.NewReader(stream), 1000)
	for _, tt := range tests {
		var resp Response
		require.NoError(t, d.decode(&resp))
		res, err := decodeAnswer(&resp)
		var serverErr *ServerError
		if errors.As(err, &serverErr) {
			assert.Equal(t, tt.want.Error, serverErr.Message)
			assert.Nil(t, res)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.res, res)
	}
}

// TestDecodeAnswer checks that nothing but a well-typed Data is taken for a
// result.
func TestDecodeAnswer(t *testing.T) {
	for _, tt := range []struct {
		resp    Response
		wantErr string
	}{
		{Response{Data: Value{Type: typeInt, Int: 3}, Error: "no"}, `answer has both a result and an error, "no"`},
		{Response{Data: Value{Type: 9, Int: 3}}, "answer: unknown type code 9: 1 is int, 2 float, 3 str"},
		{Response{Data: Value{Int: 3}}, "answer: unknown type code 0: 1 is int, 2 float, 3 str"},
		{Response{Data: Value{Type: typeInt, Int: 3, Str: "3"}}, "answer: type code 1, with the field of another type set too"},
		{Response{Data: Value{Type: typeStr, Str: "\xff"}}, `answer: "\xff" is not valid UTF-8`},
		{Response{Error: "RPC Server Function Error"}, "server answered: RPC Server Function Error"},
		{Response{}, "server answered: "},
	} {
		res, err := decodeAnswer(&tt.resp)
		assert.EqualError(t, err, tt.wantErr, "%+v", tt.resp)
		assert.Nil(t, res)
	}
}
