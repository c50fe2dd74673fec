package atmostonce

import (
	"bytes"
	"context"
	"encoding"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"

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
	// sumFirstFrame is sum(1, 2), call 1, the first frame of a
	// connection: gob defines each type before the first value that uses
	// it.
	sumFirstFrame = unhex(`
		00 00 00 e1                          // the frame: 225 bytes follow
		70 7f                                // a message of 112 bytes, defining type 64:
		03 01 01 07 52 65 71 75 65 73 74     //   a struct named "Request"
		01 ff 80 00                          //   with id 64
		01 09                                //   and 9 fields:
		01 02 49 44 01 06 00                 //     "ID", of type 3 (uint)
		01 04 46 75 6e 63 01 0c 00           //     "Func", of type 6 (string)
		01 06 50 61 72 61 6d 73 01 ff 84 00  //     "Params", of type 66
		01 06 43 6c 69 65 6e 74 01 06 00     //     "Client", of type 3 (uint)
		01 07 41 74 74 65 6d 70 74 01 06 00  //     "Attempt", of type 3 (uint)
		01 03 41 63 6b 01 06 00              //     "Ack", of type 3 (uint)
		01 05 45 70 6f 63 68 01 06 00        //     "Epoch", of type 3 (uint)
		01 07 54 69 6d 65 6f 75 74 01 04 00  //     "Timeout", of type 2 (int)
		01 06 43 61 6e 63 65 6c 01 02 00     //     "Cancel", of type 1 (bool)
		00 00
		21 ff 83                             // a message of 33 bytes, defining type 66:
		02 01 01 12 5b 5d 61 74 6d 6f 73 74  //   a slice named "[]atmostonce.Value"
		6f 6e 63 65 2e 56 61 6c 75 65        //
		01 ff 84 00                          //   with id 66
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
		16 ff 80                             // a message of 22 bytes: a value of type 64, a Request
		01 01                                //   field 1, ID: 1
	` + sumFields)

	// sumLaterFrame is sum(1, 2) again, call 2: the types are known, the
	// value comes alone.
	sumLaterFrame = unhex(`
		00 00 00 17                          // the frame: 23 bytes follow
		16 ff 80                             // a message of 22 bytes: a value of type 64, a Request
		01 02                                //   field 1, ID: 2
	` + sumFields)

	// sumAttemptFrame is sum(1, 2), call 3, as a Client sends it a second
	// time, with 1.5 s left: the fields this stage adds follow the call's.
	// A field left at zero is not written: the next one's step skips it.
	sumAttemptFrame = unhex(`
		00 00 00 2b                          // the frame: 43 bytes follow
		2a ff 80                             // a message of 42 bytes: a value of type 64, a Request
		01 03                                //   field 1, ID: 3
		01 03 73 75 6d                       //   field 2, Func: 3 bytes, "sum"
		01 02                                //   field 3, Params: 2 Values
		01 01 01 02 00                       //     Type 1, Int 1, end
		01 01 01 04 00                       //     Type 1, Int 2, end
		01 f8 01 23 45 67 89 ab cd ef        //   field 4, Client: 8 bytes, 0x0123456789abcdef
		01 02                                //   field 5, Attempt: 2
		01 01                                //   field 6, Ack: 1
		02 fc b2 d0 5e 00                    //   field 8, Timeout: 4 bytes, 3,000,000,000, which is 1,500,000,000 ns (no Epoch: field 7 is 0)
		00                                   //   end of the Request (no Cancel)
	`)
)

// sumAttempt is the Request that sumAttemptFrame carries.
var sumAttempt = Request{ID: 3, Func: "sum", Params: sumRequest.Params, Client: 0x0123456789abcdef, Attempt: 2, Ack: 1, Timeout: int64(1500 * time.Millisecond)}

// sumFields are the fields of the Request for sum(1, 2) after its ID, to
// the end of its message.
const sumFields = `
		01 03 73 75 6d                       //   field 2, Func: 3 bytes, "sum"
		01 02                                //   field 3, Params: 2 Values
		01 01 01 02 00                       //     Type 1, Int 1 (written 2: the sign is the low bit), end
		01 01 01 04 00                       //     Type 1, Int 2, end
		00                                   //   end of the Request
`

// The sizes of the messages that define our Request's types, as they
// start sumFirstFrame's payload, and of sum(1, 2)'s value message.
const (
	requestDefBytes = 113
	sliceDefBytes   = 34
	valueDefBytes   = 55
	sumValueBytes   = 23
)

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
// send them, each in a write of its own, and returns a copy of each frame.
func encodeFrames(t testing.TB, values ...any) [][]byte {
	t.Helper()
	e := newEncoder()
	var frames [][]byte
	for _, v := range values {
		f, err := e.encode(v)
		require.NoError(t, err)
		frames = append(frames, bytes.Clone(f))
		e.release() // as a writer does once the frame is sent
	}
	return frames
}

// sumRequest is the Request for sum(1, 2), the first call of a
// connection.
var sumRequest = Request{ID: 1, Func: "sum", Params: []Value{{Type: typeInt, Int: 1}, {Type: typeInt, Int: 2}}}

// withID returns req with its ID set to id.
func withID(req Request, id uint64) *Request {
	req.ID = id
	return &req
}

// TestEncoder checks the frames our encoder writes against the bytes
// written out by hand: the first frame on a connection defines the types,
// later ones do not.
func TestEncoder(t *testing.T) {
	frames := encodeFrames(t, &sumRequest, withID(sumRequest, 2), &sumAttempt)
	assert.Equal(t, hex.Dump(sumFirstFrame), hex.Dump(frames[0]))
	assert.Equal(t, hex.Dump(sumLaterFrame), hex.Dump(frames[1]))
	assert.Equal(t, hex.Dump(sumAttemptFrame), hex.Dump(frames[2]))
	assert.Len(t, sumFirstFrame, 4+225)
	assert.Len(t, sumLaterFrame, 4+23)
	assert.Len(t, sumAttemptFrame, 4+43)
	assert.Len(t, sumFirstFrame, 4+requestDefBytes+sliceDefBytes+valueDefBytes+sumValueBytes)

	d := newDecoder(bytes.NewReader(join(sumFirstFrame, sumLaterFrame, sumAttemptFrame)), 1000)
	for _, want := range []Request{sumRequest, *withID(sumRequest, 2), sumAttempt} {
		var req Request
		require.NoError(t, d.decode(&req))
		assert.Equal(t, want, req)
	}
}

// TestEncoderAppends checks that frames encoded before a write are all
// sent in it: encode returns every frame waiting, and release empties
// them. That is how a writer puts many answers in one write.
func TestEncoderAppends(t *testing.T) {
	e := newEncoder()
	_, err := e.encode(&sumRequest)
	require.NoError(t, err)
	waiting, err := e.encode(withID(sumRequest, 2))
	require.NoError(t, err)
	assert.Equal(t, hex.Dump(join(sumFirstFrame, sumLaterFrame)), hex.Dump(waiting), "both frames, in one write")
	_, err = e.encode(&Response{})
	assert.ErrorContains(t, err, "a *atmostonce.Response on a stream of *atmostonce.Request")
	e.release()
	waiting, err = e.encode(withID(sumRequest, 2))
	require.NoError(t, err)
	assert.Equal(t, hex.Dump(sumLaterFrame), hex.Dump(waiting), "after release, only the new frame")
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

// roomReader hands out its data as fast as it is asked for, and notes how
// much room each read offered, and where in the data it was.
type roomReader struct {
	data  []byte
	off   int
	reads [][2]int // offset, room
}

func (r *roomReader) Read(p []byte) (int, error) {
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	r.reads = append(r.reads, [2]int{r.off, len(p)})
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

// TestFrameReaderGrowsWithWhatArrives reads a small frame, then a frame of
// 3 MB, through a reader that notes the room each read offers: once past
// its first 4 KiB, a frame is never offered more room than it has already
// sent, so its buffer is never more than twice that, whatever size the
// buffer the small frame left. A buffer past 64 KiB is rounded up to a
// power of two only within the same bound. (A frame that finds a large
// buffer in largeBuffers reads into all of it: no other test leaves one
// of 4 MiB there.)
func TestFrameReaderGrowsWithWhatArrives(t *testing.T) {
	const small, large = 5000, 3_000_000
	r := &roomReader{data: join(frame(make([]byte, small)), frame(make([]byte, large)))}
	f := newFrameReader(r, 4<<20)
	for _, size := range []int{small, large} {
		got, err := f.next()
		require.NoError(t, err)
		require.Len(t, got, size)
		if size == small {
			assert.Equal(t, small, cap(got), "the buffer is never made past the frame while small")
		}
	}
	start := frameHeaderBytes + small + frameHeaderBytes // where the large frame's payload starts
	for _, read := range r.reads {
		if arrived := read[0] - start; arrived > 0 {
			assert.LessOrEqual(t, read[1], max(arrived, readBufferBytes), "room offered with %d bytes of the frame arrived", arrived)
		}
	}
}

// TestFrameReaderKeepsWithinTheLimit reads a frame just under a limit
// that is not a power of two: the buffer is rounded up only as far as the
// limit, never past it.
func TestFrameReaderKeepsWithinTheLimit(t *testing.T) {
	const limit, size = 100_000, 99_000
	f := newFrameReader(bytes.NewReader(frame(make([]byte, size))), limit)
	got, err := f.next()
	require.NoError(t, err)
	require.Len(t, got, size)
	assert.Equal(t, limit, cap(got), "the buffer of a frame of %d bytes, with a limit of %d", size, limit)
}

// TestLargeBuffersFitTheirClass checks what lets a large buffer serve the
// next large frame, whatever its exact size: the frame reader and the
// frame writer make large buffers a power of two (within twice what has
// arrived), and largeBuffers hands out of each pool only buffers that
// hold any size the pool is for. Before, buffers were made to the exact
// size of their frame, a request's a few bytes short of its answer's, and
// one lookup in ten for a 64 KiB echo found a buffer too small and grew a
// new one. The sizes here, past a MiB, are of pools no other test uses.
func TestLargeBuffersFitTheirClass(t *testing.T) {
	const size = 1<<20 + 100
	payload := bytes.Repeat([]byte{'x'}, size)
	f := newFrameReader(bytes.NewReader(frame(payload)), 2<<20)
	got, err := f.next()
	require.NoError(t, err)
	require.Len(t, got, size)
	assert.Equal(t, 2<<20, cap(got), "the reader's buffer for a frame of %d bytes", size)
	f.release()

	e := newEncoder()
	out, err := e.encode(&Response{Data: Value{Type: typeStr, Str: strings.Repeat("x", size)}})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, cap(out), largeSize(len(out)), "the writer's buffer for a frame of %d bytes", len(out))
	e.release()

	// Buffers of 3 KiB, a size no frame has, go to the pool of 2 KiB:
	// asked for more than 2 KiB, the pools hand out none of them.
	for range 8 {
		putLarge(make([]byte, 0, 3<<10))
	}
	for _, n := range []int{3 << 10, 4 << 10, 2<<10 + 1} {
		for range 8 {
			if b := getLarge(n); b != nil {
				assert.GreaterOrEqual(t, cap(b), n, "a buffer for %d bytes", n)
			}
		}
	}
	var found int
	for range 8 {
		if b := getLarge(2 << 10); b != nil {
			assert.GreaterOrEqual(t, cap(b), 2<<10)
			found++
		}
	}
	assert.NotZero(t, found, "the buffers of 3 KiB, asked for 2 KiB")
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
	frames := encodeFrames(t, &sumRequest, withID(sumRequest, 2))
	answers := encodeFrames(t, &Response{ID: 1, Data: Value{Type: typeInt, Int: 3}})
	requests, responses := wireStreams[reflect.TypeFor[*Request]()], wireStreams[reflect.TypeFor[*Response]()]
	valueOnly := []byte{3, 0xff, 0x80, 0}                 // a Request with no fields set
	valueDef := firstDefs[requestDefBytes+sliceDefBytes:] // the definition of Value
	tests := []struct {
		name    string
		before  []byte // the payload of a frame the stream carried first, if any
		payload []byte
		stream  *wireStream
		wantErr string
	}{
		{"our first call", nil, frames[0][4:], requests, ""},
		{"our next call", frames[0][4:], frames[1][4:], requests, ""},
		{"our first answer", nil, answers[0][4:], responses, ""},
		{"a definition of ours, then a value", nil, join(valueDef, valueOnly), requests, ""},
		{"only definitions", nil, valueDef, requests, "a frame that defines types and carries no value"},
		{"two values", nil, join(valueOnly, valueOnly), requests, "more after the value that ends a frame"},
		{"a definition after the value", nil, join(valueOnly, valueDef), requests, "more after the value that ends a frame"},
		{"a message longer than the frame", nil, []byte{9, 0x02}, requests, "a gob message whose length does not fit in its frame"},
		{"a message of 0 bytes", nil, []byte{0}, requests, "a gob message whose length does not fit in its frame"},
		{"a length that is not a number", nil, []byte{0xf7, 0x02}, requests, "a gob message whose length does not fit in its frame"},
		{"no type id", nil, []byte{1, 0xff}, requests, "a gob message with no type id"},
		{"cut in the last message", nil, frames[0][4 : len(frames[0])-1], requests, "a gob message whose length does not fit in its frame"},
		{"a definition that is not ours", nil, []byte{2, 0x01, 0}, requests, "a type definition that is not one of ours"},
		{"our answer's definitions, to the server", nil, answers[0][4:], requests,
			"a type definition that is not one of ours: struct Response {ID uint; Data Value; Error string; Code uint; Ran bool; Epoch uint}"},
		{"a value of another type", frames[0][4:], []byte{3, 0xff, 0x82, 0}, requests, "a value of type 65 (Value), where Request was wanted"},
		{"65 arguments", nil, encodeFrames(t, &Request{ID: 1, Func: "f", Params: make([]Value, maxArgs+1)})[0][4:], requests, "more than 64 arguments"},
	}
	for _, tt := range tests {
		var peer peerTypes
		if tt.before != nil {
			_, err := scanMessages(tt.before, tt.stream, &peer)
			require.NoError(t, err, tt.name)
		}
		_, err := scanMessages(tt.payload, tt.stream, &peer)
		if tt.wantErr != "" {
			assert.ErrorIs(t, err, errMalformed, tt.name)
			assert.ErrorContains(t, err, tt.wantErr, tt.name)
			continue
		}
		assert.NoError(t, err, tt.name)
	}
}

// firstDefs is the start of our client's first frame's payload: the
// definitions of Request, []Value and Value, without the value.
var firstDefs = sumFirstFrame[frameHeaderBytes : len(sumFirstFrame)-sumValueBytes]

// TestDecoderRefuses feeds the server's decoder frames that it must refuse.
// Each error is final: the server answers it and closes the connection.
func TestDecoderRefuses(t *testing.T) {
	answer := encodeFrames(t, &Response{Data: Value{Type: typeInt, Int: 3}})[0]
	tests := []struct {
		name    string
		stream  []byte
		wantErr string
		wantID  uint64 // what the refusal can say of the call: its ID, or 0
	}{
		{"garbage in a well-sized frame", frame([]byte("hello, world")),
			"malformed message: a gob message whose length does not fit in its frame", 0},
		{"garbage inside a gob message, after an ID", frame(append(bytes.Clone(firstDefs), 6, 0xff, 0x80, 0x01, 0x07, 0x01, 0x7f)),
			"malformed message: gob: ", 7},
		{"garbage inside a gob message, before an ID", frame(append(bytes.Clone(firstDefs), 4, 0xff, 0x80, 0x02, 0x7f)),
			"malformed message: gob: ", 0},
		{"a value before its type is defined", sumLaterFrame,
			"malformed message: gob: ", 2},
		{"an answer where a call should be", answer,
			"malformed message: a type definition that is not one of ours", 0},
		{"types defined twice: a fresh encoder for every frame", join(sumFirstFrame, encodeFrames(t, withID(sumRequest, 2))[0]),
			"malformed message: gob: duplicate type received", 2},
		{"a type of no use to us before ours", frame(manyTypes(t, 1)),
			"malformed message: a type definition that is not one of ours", 0},
		{"a type nested 20 deep", nested(t, 20),
			"malformed message: a type definition that is not one of ours", 0},
		{"65 arguments", encodeFrames(t, &Request{ID: 9, Func: "sum", Params: make([]Value, maxArgs+1)})[0],
			"malformed message: more than 64 arguments", 9},
		{"two values in one frame", frame(join(sumFirstFrame[frameHeaderBytes:], sumLaterFrame[frameHeaderBytes:])),
			"malformed message: more after the value that ends a frame", 1},
	}
	for _, tt := range tests {
		d := newDecoder(bytes.NewReader(tt.stream), 1<<20)
		var err error
		var req Request
		for err == nil {
			req = Request{}
			err = d.decode(&req)
		}
		assert.ErrorContains(t, err, tt.wantErr, tt.name)
		assert.ErrorIs(t, err, errMalformed, tt.name)
		assert.Equal(t, tt.wantID, req.ID, "%s: the ID the refusal carries", tt.name)
	}
}

// TestDecoderAcceptsOurDefinitions sends our own definitions in ways our
// client does not, and they are served: in another order, or with 64
// arguments. The decoder accepts the definitions it knows as a set, not
// as a sequence.
func TestDecoderAcceptsOurDefinitions(t *testing.T) {
	requestDef := firstDefs[:requestDefBytes]
	sliceDef, valueDef := firstDefs[requestDefBytes:requestDefBytes+sliceDefBytes], firstDefs[requestDefBytes+sliceDefBytes:]
	sum := sumLaterFrame[frameHeaderBytes:]
	many := &Request{ID: 1, Func: "f", Params: make([]Value, maxArgs)}
	for _, tt := range []struct {
		name   string
		stream []byte
		want   []Request
	}{
		{"in the order gob writes them", frame(join(firstDefs, sum)), []Request{*withID(sumRequest, 2)}},
		{"Value first, Request last", frame(join(valueDef, sliceDef, requestDef, sum)), []Request{*withID(sumRequest, 2)}},
		{"64 arguments", encodeFrames(t, many)[0], []Request{*many}},
	} {
		d := newDecoder(bytes.NewReader(tt.stream), 1<<20)
		var got []Request
		for range tt.want {
			var req Request
			require.NoError(t, d.decode(&req), tt.name)
			got = append(got, req)
		}
		assert.Equal(t, tt.want, got, tt.name)
	}
}

// TestDefinitionBuilders checks the helpers the tests below build
// definitions with against the bytes our own encoder writes.
func TestDefinitionBuilders(t *testing.T) {
	assert.Equal(t, hex.Dump(firstDefs), hex.Dump(numbered(64, 65, 66)))
	assert.Equal(t, hex.Dump(sumLaterFrame), hex.Dump(withTypeID(sumLaterFrame, 64)))
}

// TestDecoderAcceptsOtherNumbers serves our client's calls as processes
// that numbered our types otherwise write them. gob numbers types in the
// order a process first meets them, so the ids depend on what else the
// process links: a program that links a package whose init defines gob
// types before ours gives Request 68, not 64. The definitions say the same
// thing under other ids, and the decoder accepts them, then values of the
// id the peer gave Request, large ones too: after a large value it hands
// gob the zero value under the peer's id.
func TestDecoderAcceptsOtherNumbers(t *testing.T) {
	large := encodeFrames(t, &sumRequest, &Request{ID: 3, Func: "echo", Params: []Value{{Type: typeStr, Str: strings.Repeat("x", 100<<10)}}})[1]
	for _, tt := range []struct {
		name                  string
		request, value, slice int64
	}{
		{"as our own process numbers them", 64, 65, 66},
		{"after four types of another package's", 68, 69, 70},
		{"met in another order", 65, 66, 64},
		{"with ids of 3, 4 and 5 bytes", 300, 70_000, math.MaxInt32},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sum := withTypeID(sumLaterFrame, tt.request)
			stream := join(frame(join(numbered(tt.request, tt.value, tt.slice), sum[frameHeaderBytes:])), sum, withTypeID(large, tt.request), sum)
			d := newDecoder(bytes.NewReader(stream), 1<<20)
			for i := range 4 {
				var req Request
				require.NoError(t, d.decode(&req), "frame %d", i)
				if i == 2 {
					assert.Equal(t, uint64(3), req.ID)
					assert.Equal(t, "echo", req.Func)
					assert.Len(t, req.Params[0].Str, 100<<10)
					continue
				}
				assert.Equal(t, *withID(sumRequest, 2), req, "frame %d", i)
			}
			assert.Equal(t, []peerType{{name: "Request", id: tt.request}, {name: "[]atmostonce.Value", id: tt.slice}, {name: "Value", id: tt.value}}, d.peer.types)
		})
	}
}

// TestDecoderRefusesOtherDefinitions sends definitions that differ from
// ours in what they say, not only in their ids, and definitions that do
// not number our types consistently: each is refused, before gob reads it.
// Only gob's own answer to an id defined twice is left to gob.
func TestDecoderRefusesOtherDefinitions(t *testing.T) {
	const request, value, slice = 68, 69, 70 // as a process that met 4 other types first numbers ours
	requestDef := func(fields ...field) []byte { return defineStruct(request, "Request", fields...) }
	valueDef := func(fields ...field) []byte { return defineStruct(value, "Value", fields...) }
	ourRequest := requestDef(requestFields(slice)...)
	ourSlice := defineSlice(slice, "[]atmostonce.Value", value)
	ourValue := valueDef(field{"Type", idUint}, field{"Int", idInt}, field{"Float", idFloat}, field{"Str", idString})
	sum := withTypeID(sumLaterFrame, request)[frameHeaderBytes:]
	firstFrame := func(defs ...[]byte) []byte { return frame(join(join(defs...), sum)) }
	selfless := bytes.Clone(ourRequest) // defines id 71, with a CommonType that says 68
	copy(selfless[1:], appendGobInt(nil, -71))
	_, size := gobUint(ourRequest)
	cut := lengthFirst(ourRequest[size : len(ourRequest)-1]) // without the 0 that ends its wireType
	const notOurs = "malformed message: a type definition that is not one of ours"
	for _, tt := range []struct {
		name    string
		stream  []byte
		wantErr string
	}{
		{"a field of another name", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Funk", idString}, field{"Params", slice})...), ourSlice, ourValue),
			notOurs + ": struct Request {ID uint; Funk string; Params []atmostonce.Value" + atmostonceFields + "}"},
		{"a field of another type", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Func", idInt}, field{"Params", slice})...), ourSlice, ourValue),
			notOurs + ": struct Request {ID uint; Func int; Params []atmostonce.Value" + atmostonceFields + "}"},
		{"an ID that may be negative", firstFrame(requestDef(callFields(slice, field{"ID", idInt}, field{"Func", idString}, field{"Params", slice})...), ourSlice, ourValue),
			notOurs + ": struct Request {ID int; Func string; Params []atmostonce.Value" + atmostonceFields + "}"},
		{"a field of another of our types", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Func", idString}, field{"Params", value})...), ourSlice, ourValue),
			notOurs + ": struct Request {ID uint; Func string; Params Value" + atmostonceFields + "}"},
		{"a field more", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Func", idString}, field{"Params", slice}, field{"X", idInt})...), ourSlice, ourValue),
			notOurs + ": struct Request {ID uint; Func string; Params []atmostonce.Value; X int" + atmostonceFields + "}"},
		{"a field fewer", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Func", idString})...), ourSlice, ourValue),
			notOurs + ": struct Request {ID uint; Func string" + atmostonceFields + "}"},
		// Stage 04's client sends this: its calls carry no ID to answer by.
		{"stage 04's Request, without the ID", firstFrame(requestDef(callFields(slice, field{"Func", idString}, field{"Params", slice})...), ourSlice, ourValue),
			notOurs + ": struct Request {Func string; Params []atmostonce.Value" + atmostonceFields + "}"},
		{"the fields in another order", firstFrame(requestDef(callFields(slice, field{"Func", idString}, field{"ID", idUint}, field{"Params", slice})...), ourSlice, ourValue),
			notOurs + ": struct Request {Func string; ID uint; Params []atmostonce.Value" + atmostonceFields + "}"},
		{"a type of another name", firstFrame(defineStruct(request, "Reqvest", requestFields(slice)...), ourSlice, ourValue),
			notOurs + ": struct Reqvest {ID uint; Func string; Params []atmostonce.Value" + atmostonceFields + "}"},
		{"Value's Int a uint", firstFrame(ourRequest, ourSlice, valueDef(field{"Type", idUint}, field{"Int", idUint}, field{"Float", idFloat}, field{"Str", idString})),
			notOurs + ": struct Value {Type uint; Int uint; Float float; Str string}"},
		{"a Value that holds a Value", firstFrame(ourRequest, ourSlice, valueDef(field{"Type", idUint}, field{"Int", idInt}, field{"Float", idFloat}, field{"Str", value})),
			notOurs + ": struct Value {Type uint; Int int; Float float; Str Value}"},
		{"a slice of Requests", firstFrame(ourRequest, defineSlice(slice, "[]atmostonce.Value", request), ourValue),
			notOurs + ": slice []atmostonce.Value of Request"},
		{"stage 04's slice of Values", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Func", idString}, field{"Params", slice})...), defineSlice(slice, "[]gobrpc.Value", value), ourValue),
			notOurs + ": struct Request {ID uint; Func string; Params []gobrpc.Value" + atmostonceFields + "}"},
		{"a field of a type the stream never defines", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Func", idString}, field{"Params", 99})...), ourSlice, ourValue),
			notOurs + ": struct Request {ID uint; Func string; Params type 99" + atmostonceFields + "}"},
		{"a name that is not a name", firstFrame(defineStruct(request, "Request {ID uint}", field{"X", idInt}), ourSlice, ourValue),
			notOurs},
		// One field, named "Func string; Params": described without the
		// rule on names, it would read as our two.
		{"a field name that reads as two fields", firstFrame(requestDef(callFields(slice, field{"ID", idUint}, field{"Func string; Params", slice})...), ourSlice, ourValue),
			notOurs},
		{"a definition longer than any of ours", firstFrame(requestDef(field{"ID", idUint}, field{"Func", idString}, field{"Params", slice}, field{strings.Repeat("X", 250), idInt}), ourSlice, ourValue),
			notOurs},
		{"an id among gob's own", firstFrame(numbered(63, value, slice)), notOurs},
		{"an id past gob's", firstFrame(numbered(math.MaxInt32+1, value, slice)), notOurs},
		{"a definition of an id that says it is another", firstFrame(selfless, ourSlice, ourValue), notOurs},
		// gob would read it: a struct may end where its message does.
		{"a definition cut short of its last byte", firstFrame(cut, ourSlice, ourValue), notOurs},
		{"Request defined twice, under two ids", firstFrame(ourRequest, ourSlice, ourValue, defineStruct(80, "Request", requestFields(slice)...)),
			"malformed message: two definitions of Request"},
		{"Request defined again in a later frame", join(firstFrame(ourRequest, ourSlice, ourValue), frame(join(defineStruct(80, "Request", requestFields(slice)...), withTypeID(sumLaterFrame, 80)[frameHeaderBytes:]))),
			"malformed message: two definitions of Request"},
		{"a value of Value, where a Request is wanted", join(firstFrame(ourRequest, ourSlice, ourValue), withTypeID(sumLaterFrame, value)),
			"malformed message: a value of type 69 (Value), where Request was wanted"},
		{"an id defined twice: gob's to refuse", firstFrame(ourRequest, ourSlice, ourValue, ourValue),
			"malformed message: gob: duplicate type received"},
	} {
		d := newDecoder(bytes.NewReader(tt.stream), 1<<20)
		var err error
		for err == nil {
			var req Request
			err = d.decode(&req)
		}
		assert.ErrorContains(t, err, tt.wantErr, tt.name)
		assert.ErrorIs(t, err, errMalformed, tt.name)
	}
}

// TestLongDefinitionIsNotRead sends a definition longer than any of ours
// could be, 100 KiB of field name: it is refused from its length, before
// it is read or described.
func TestLongDefinitionIsNotRead(t *testing.T) {
	long := defineStruct(68, "Request", field{strings.Repeat("X", 100<<10), idString})
	payload := join(long, withTypeID(sumLaterFrame, 68)[frameHeaderBytes:])
	var err error
	cost := allocated(func() { _, err = scanMessages(payload, wireStreams[reflect.TypeFor[*Request]()], new(peerTypes)) })
	assert.ErrorContains(t, err, "a type definition that is not one of ours")
	// Read, it would cost the 100 KiB of its description at least; the
	// bound leaves room for what other goroutines allocate meanwhile.
	assert.Less(t, cost, uint64(32<<10), "allocated to refuse it")
}

// TestManyDefinitionsAreNotRead sends a frame of 5,000 definitions of
// types of no use to us, each a name of its own: the decoder stops
// reading them after the most types a stream of ours may define, and
// refuses the frame, having kept none.
func TestManyDefinitionsAreNotRead(t *testing.T) {
	var payload []byte
	for i := range 5000 {
		payload = append(payload, defineStruct(int64(100+i), "T"+strconv.Itoa(i), field{"X", idInt})...)
	}
	payload = append(payload, withTypeID(sumLaterFrame, 100)[frameHeaderBytes:]...)
	var err error
	cost := allocated(func() { _, err = scanMessages(payload, wireStreams[reflect.TypeFor[*Request]()], new(peerTypes)) })
	assert.ErrorContains(t, err, "a type definition that is not one of ours")
	// Read, the 5,000 would cost some 400 KB; the bound leaves room for
	// what other goroutines allocate meanwhile.
	assert.Less(t, cost, uint64(32<<10), "allocated to refuse it")
}

// field is a field of a struct type, as a definition names it: its name
// and the id of its type.
type field struct {
	name string
	id   int64
}

// defineStruct returns the message that defines a struct type, length
// first, as gob writes it: the id it defines, then its wireType, whose
// StructT holds the CommonType (the name and the id again) and the fields.
func defineStruct(id int64, name string, fields ...field) []byte {
	msg := appendGobInt(nil, -id)
	msg = append(msg, 0x03, 0x01, 0x01)                          // StructT; CommonType; Name
	msg = append(appendGobUint(msg, uint64(len(name))), name...) //   the name
	msg = appendGobInt(append(msg, 0x01), id)                    //   Id
	msg = appendGobUint(append(msg, 0x00, 0x01), uint64(len(fields)))
	for _, f := range fields {
		msg = append(appendGobUint(append(msg, 0x01), uint64(len(f.name))), f.name...)
		msg = append(appendGobInt(append(msg, 0x01), f.id), 0x00)
	}
	return lengthFirst(append(msg, 0x00, 0x00)) // end of StructT, of wireType
}

// defineSlice returns the message that defines a slice type, length
// first: the id it defines, then its wireType, whose SliceT holds the
// CommonType and the id of the elements.
func defineSlice(id int64, name string, elem int64) []byte {
	msg := appendGobInt(nil, -id)
	msg = append(msg, 0x02, 0x01, 0x01) // SliceT; CommonType; Name
	msg = append(appendGobUint(msg, uint64(len(name))), name...)
	msg = appendGobInt(append(msg, 0x01), id)
	msg = appendGobInt(append(msg, 0x00, 0x01), elem) // Elem
	return lengthFirst(append(msg, 0x00, 0x00))
}

// lengthFirst returns msg with its length in front, as gob writes a
// message.
func lengthFirst(msg []byte) []byte {
	return append(appendGobUint(nil, uint64(len(msg))), msg...)
}

// The ids gob gives its own types that ours use, in every process.
const (
	idBool   = 1
	idInt    = 2
	idUint   = 3
	idFloat  = 4
	idString = 6
)

// requestFields are the fields of our Request, the type of its Params
// being slice: the call's three, then the six this stage adds.
func requestFields(slice int64) []field {
	return []field{{"ID", idUint}, {"Func", idString}, {"Params", slice},
		{"Client", idUint}, {"Attempt", idUint}, {"Ack", idUint}, {"Epoch", idUint}, {"Timeout", idInt}, {"Cancel", idBool}}
}

// atmostonceFields describes, as the decoder does, the fields of our
// Request after the call's three: the six this stage adds.
const atmostonceFields = "; Client uint; Attempt uint; Ack uint; Epoch uint; Timeout int; Cancel bool"

// callFields returns the fields of our Request, the type of its Params
// being slice, with the call's three (ID, Func, Params) replaced by
// first: the six this stage adds follow them.
func callFields(slice int64, first ...field) []field {
	return append(first, requestFields(slice)[3:]...)
}

// numbered returns the definitions our client's first frame starts with,
// in gob's order, as a process that gave Request, Value and []Value these
// ids writes them.
func numbered(request, value, slice int64) []byte {
	return join(
		defineStruct(request, "Request", requestFields(slice)...),
		defineSlice(slice, "[]atmostonce.Value", value),
		defineStruct(value, "Value", field{"Type", idUint}, field{"Int", idInt}, field{"Float", idFloat}, field{"Str", idString}),
	)
}

// withTypeID returns a later frame of ours, which carries a value alone,
// with the id of the value's type changed to id, as a process that
// numbered the type id writes it. (withID, above, sets a Request's ID.)
func withTypeID(later []byte, id int64) []byte {
	msg := later[frameHeaderBytes:]
	n, size := gobUint(msg)
	_, idSize := gobUint(msg[size:])
	return frame(lengthFirst(join(appendGobInt(nil, id), msg[size+idSize:size+int(n)])))
}

// manyTypes returns the payload of a frame that defines n types of no use
// to anyone, [1]int, [2]int, ..., and then carries sum(1, 2) as our
// client's first frame does, with 3 definitions of its own.
func manyTypes(t testing.TB, n int) []byte {
	t.Helper()
	var payload []byte
	for i := range n {
		array := reflect.New(reflect.ArrayOf(i+1, reflect.TypeFor[int]()))
		msgs := foreignFrames(t, array.Interface())[frameHeaderBytes:]
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
	return foreignFrames(t, v.Interface())
}

// TestDecodeIntoZeroValue shows why decode wants a zero value: gob does not
// send a field whose value is zero, and leaves such a field as it finds it.
// Decoded into the Request of an earlier call, get_time() would keep that
// call's arguments.
func TestDecodeIntoZeroValue(t *testing.T) {
	frames := encodeFrames(t, &sumRequest, &Request{ID: 2, Func: "get_time"})
	d := newDecoder(bytes.NewReader(append(frames[0], frames[1]...)), 1000)
	var req Request
	require.NoError(t, d.decode(&req))
	require.NoError(t, d.decode(&req))
	assert.Equal(t, Request{ID: 2, Func: "get_time", Params: sumRequest.Params}, req, "the Params of sum(1, 2) are still there")
}

// TestSliceClaim sends a call whose Params claim a hundred million Values
// in a message of a few bytes. gob would believe the claim up to 10 MiB of
// memory before it saw an element; the decoder reads the count first and
// refuses it, and gob allocates nothing for it.
func TestSliceClaim(t *testing.T) {
	value := []byte{0, 0xff, 0x80, 0x01, 0x01, 0x01, 0x03, 's', 'u', 'm', 0x01, 0xfc, 0x05, 0xf5, 0xe1, 0x00} // Params: 100,000,000
	value[0] = byte(len(value) - 1)
	d := newDecoder(bytes.NewReader(frame(append(bytes.Clone(firstDefs), value...))), 1000)
	var err error
	cost := allocated(func() {
		var req Request
		err = d.decode(&req)
	})
	assert.ErrorIs(t, err, errMalformed)
	assert.ErrorContains(t, err, "more than 64 arguments")
	t.Logf("a frame of %d bytes cost %d bytes of memory: %v", len(firstDefs)+len(value), cost, err)
	assert.Less(t, cost, uint64(64<<10))
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
	assert.Len(t, seen, 13, "Request, uint64, []Value, Value, uint8, int, float64, string, uint32, int64, bool, Response, Code")
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
	assert.Equal(t, *withID(sumRequest, 0), req, "the client gives the ID")

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
		{3, nil, Response{Data: Value{Type: typeInt, Int: 3}, Ran: true}},
		{3.1, nil, Response{Data: Value{Type: typeFloat, Float: 3.1}, Ran: true}},
		{"Wed Jan 16 22:05:31 2019", nil, Response{Data: Value{Type: typeStr, Str: "Wed Jan 16 22:05:31 2019"}, Ran: true}},
		{"", nil, Response{Data: Value{Type: typeStr}, Ran: true}},
		// A function's own error: it ran, and failed (gRPC's Unknown).
		{nil, errNo, Response{Error: "no, b: c", Code: Unknown, Ran: true}},
		{nil, errors.New(""), Response{Code: Unknown, Ran: true}},
		// A result the wire cannot carry: the function ran all the same.
		{uint(7), nil, Response{Error: "a uint cannot be sent: the wire carries int, float64 and string", Code: Unknown, Ran: true}},
		{math.Inf(1), nil, Response{Error: "+Inf cannot be sent: the wire carries finite floats only", Code: Unknown, Ran: true}},
		// A refusal: its Code and Outcome go as they are.
		{nil, failure(InvalidArgument, NotRun, "add: takes 2 arguments, got 1"), Response{Error: "add: takes 2 arguments, got 1", Code: InvalidArgument}},
		{nil, failure(Aborted, OutcomeUnknown, "forgotten"), Response{Error: "forgotten", Code: Aborted}},
	}
	var stream []byte
	e := newEncoder()
	for _, tt := range tests {
		resp := newResponse(tt.res, tt.callErr)
		assert.Equal(t, tt.want, resp)
		f, err := e.encode(&resp)
		require.NoError(t, err)
		stream = append(stream, f...)
		e.release()
	}
	d := newDecoder(bytes.NewReader(stream), 1000)
	for _, tt := range tests {
		var resp Response
		require.NoError(t, d.decode(&resp))
		res, err := decodeAnswer(&resp)
		if serverErr, ok := errors.AsType[*Error](err); ok {
			assert.Equal(t, tt.want.Error, serverErr.Message)
			assert.Equal(t, tt.want.Code, serverErr.Code)
			assert.Equal(t, tt.want.Ran, serverErr.Outcome == Ran)
			assert.Nil(t, res)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.res, res)
	}
}

// TestDecodeAnswer checks that nothing but a well-typed Data is taken for a
// result. An answer that cannot be read says nothing of whether its call
// ran.
func TestDecodeAnswer(t *testing.T) {
	for _, tt := range []struct {
		resp    Response
		wantErr string
	}{
		{Response{Data: Value{Type: typeInt, Int: 3}, Error: "no"}, `internal (outcome unknown): answer has both a result and an error, "no"`},
		{Response{Data: Value{Type: 9, Int: 3}}, "internal (outcome unknown): answer: unknown type code 9: 1 is int, 2 float, 3 str"},
		{Response{Data: Value{Int: 3}}, "internal (outcome unknown): answer: unknown type code 0: 1 is int, 2 float, 3 str"},
		{Response{Data: Value{Type: typeInt, Int: 3, Str: "3"}}, "internal (outcome unknown): answer: type code 1, with the field of another type set too"},
		{Response{Data: Value{Type: typeStr, Str: "\xff"}}, `internal (outcome unknown): answer: "\xff" is not valid UTF-8`},
		{Response{Data: Value{Type: typeInt, Int: 3}, Code: Unknown}, `internal (outcome unknown): answer has both a result and an error, ""`},
		// An error with no code, as a peer that sets none sends it: it
		// says nothing of whether the call ran.
		{Response{Error: "RPC Server Function Error"}, "unknown (outcome unknown): RPC Server Function Error"},
		{Response{}, "unknown (outcome unknown)"},
		{Response{Error: "no function", Code: Unimplemented}, "unimplemented (did not run): no function"},
		{Response{Error: "no", Code: Unknown, Ran: true}, "unknown (ran): no"},
		{Response{Error: "forgotten", Code: Aborted}, "aborted (outcome unknown): forgotten"},
		// Stopped at its deadline, or cancelled: the context's error is
		// the cause, and is not written twice.
		{Response{Error: "slow: context deadline exceeded", Code: DeadlineExceeded, Ran: true}, "deadline exceeded (ran): slow: context deadline exceeded"},
		{Response{Error: "slow: no time left", Code: DeadlineExceeded}, "deadline exceeded (did not run): slow: no time left: context deadline exceeded"},
		{Response{Error: "slow: context canceled", Code: Canceled, Ran: true}, "canceled (ran): slow: context canceled"},
	} {
		res, err := decodeAnswer(&tt.resp)
		assert.EqualError(t, err, tt.wantErr, "%+v", tt.resp)
		assert.Nil(t, res)
		switch tt.resp.Code {
		case DeadlineExceeded:
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		case Canceled:
			assert.ErrorIs(t, err, context.Canceled)
		}
	}
}

// TestWireStreamsAreFixed checks that the first frame of a stream defines
// the same types whatever the first value is: gob defines a struct's field
// types whatever their values hold. So the definitions a decoder accepts,
// taken from the zero value at init, are every definition our encoder
// ever writes. It checks too what they say, as the decoder compares them.
func TestWireStreamsAreFixed(t *testing.T) {
	requests, responses := wireStreams[reflect.TypeFor[*Request]()], wireStreams[reflect.TypeFor[*Response]()]
	for _, tt := range []struct {
		first  any
		stream *wireStream
	}{
		{&Request{ID: 1, Func: "get_time"}, requests},
		{&sumRequest, requests},
		{&Request{ID: 1 << 40, Func: "echo", Params: []Value{{Type: typeStr, Str: "x"}}}, requests},
		{&Request{ID: 3, Func: "sum", Params: []Value{{Type: typeFloat, Float: 1.5}, {Type: typeInt, Int: -1}}}, requests},
		{&Request{Func: "f", Params: make([]Value, maxArgs)}, requests},
		{&Response{ID: 1, Data: Value{Type: typeInt, Int: 3}}, responses},
		{&Response{Data: Value{Type: typeStr, Str: "Wed Jan 16 22:05:31 2019"}}, responses},
		{&Response{Error: "no"}, responses},
		{&Response{}, responses},
		{&sumAttempt, requests},
		{&Request{ID: 2, Client: 1, Cancel: true}, requests},
		{&Response{ID: 1, Data: Value{Type: typeInt, Int: 3}, Ran: true, Epoch: 1 << 62}, responses},
		{&Response{ID: 1, Error: "no", Code: Unimplemented}, responses},
	} {
		payload := encodeFrames(t, tt.first)[0][frameHeaderBytes:]
		var types peerTypes
		for len(payload) > 0 {
			n, size := gobUint(payload)
			msg := payload[size : size+int(n)]
			if id, _ := gobUint(msg); id&1 == 1 {
				require.NoError(t, types.add(msg))
			}
			payload = payload[size+int(n):]
		}
		said := map[string]bool{}
		for _, typ := range types.types {
			said[string(types.describe(nil, typ))] = true
		}
		assert.Equal(t, tt.stream.defs, said, "%+v", tt.first)
	}
	assert.Equal(t, map[string]bool{
		"struct Request {ID uint; Func string; Params []atmostonce.Value" + atmostonceFields + "}": true,
		"slice []atmostonce.Value of Value":                          true,
		"struct Value {Type uint; Int int; Float float; Str string}": true,
	}, requests.defs)
	assert.Equal(t, map[string]bool{
		"struct Response {ID uint; Data Value; Error string; Code uint; Ran bool; Epoch uint}": true,
		"struct Value {Type uint; Int int; Float float; Str string}":                           true,
	}, responses.defs)
	assert.Equal(t, "Request", requests.name)
	assert.Equal(t, "Response", responses.name)
}

// The types a foreign gob client declares to attack the server: each is
// our Request with one more field, which gob decodes only to skip it,
// since our Request has no such field.
type (
	// requestWithAny has a field of an interface type: a value of it
	// names its concrete type and may define it, inside the value.
	requestWithAny struct {
		ID     uint64
		Func   string
		Params []Value
		X      any
	}
	// requestWithNodes has a field of slices of slices, as deep as the
	// sender likes, 3 bytes a level.
	requestWithNodes struct {
		ID     uint64
		Func   string
		Params []Value
		X      []node
	}
	node struct{ C []node }
)

// foreignFrames encodes values with one gob encoder of their own, in our
// frames, as a foreign client on one connection would.
func foreignFrames(t testing.TB, values ...any) []byte {
	t.Helper()
	var stream, msg bytes.Buffer
	enc := gob.NewEncoder(&msg)
	for _, v := range values {
		msg.Reset()
		require.NoError(t, enc.Encode(v))
		stream.Write(frame(msg.Bytes()))
	}
	return stream.Bytes()
}

// anyTypesStream returns calls of a requestWithAny, as a hostile client
// writes them by hand: each call's X holds perCall definitions of types
// the stream has not seen, inside the value, where gob's path for
// skipping an interface value reads them, and keeps them for as long as
// the connection lasts. (gob's own encoder sends such a definition in a
// message of its own, which a count of definitions in the frame would
// see.) The first frame is what a gob encoder writes for a call with X
// unset: the definitions of requestWithAny, []Value and Value.
func anyTypesStream(t testing.TB, calls, perCall int) []byte {
	stream := foreignFrames(t, &requestWithAny{ID: 1, Func: "sum", Params: sumRequest.Params})
	valueID := firstValueID(stream)                                       // requestWithAny's id
	sumFields := sumLaterFrame[frameHeaderBytes+3 : len(sumLaterFrame)-1] // ID, Func and Params of sum(1, 2)
	id := int64(1000)
	for range calls {
		msg := join(valueID, sumFields, []byte{0x01, 0x01, 'x'}) // X: the concrete type's name, "x"
		for range perCall {
			msg = appendGobInt(msg, -id)                                // the definition of type id:
			msg = append(msg, 0x01, 0x01, 0x02)                         //   an array type, its CommonType, the Id
			msg = appendGobInt(msg, id)                                 //   id
			msg = append(msg, 0x00, 0x01, 0x04, 0x01, 0x02, 0x00, 0x00) // end; Elem: int; Len: 1; end, end
			msg = append(msg, 0x00)                                     // a count, which gob skips
			id++
		}
		msg = appendGobInt(msg, id-1)       // the value's type,
		msg = append(msg, 0x01, 0x00, 0x00) // and its 1 byte, which gob tosses; end of the Request
		stream = append(stream, frame(join(appendGobUint(nil, uint64(len(msg))), msg))...)
	}
	return stream
}

// firstValueID returns the type id of the value in a stream's first
// frame, as gob writes it: the id that starts the frame's last message.
func firstValueID(stream []byte) []byte {
	var id []byte
	for payload := stream[frameHeaderBytes:]; len(payload) > 0; {
		n, size := gobUint(payload)
		_, idSize := gobUint(payload[size:])
		id = payload[size : size+idSize]
		payload = payload[size+int(n):]
	}
	return id
}

// nodesStream returns a call of a requestWithNodes with X unset, which
// defines the types, and then one whose X is depth levels deep, written by
// hand: 01 01 for each level (field C, a slice of 1), then a 00 to end
// each node.
func nodesStream(t testing.TB, depth int) []byte {
	stream := foreignFrames(t, &requestWithNodes{ID: 1, Func: "sum", Params: sumRequest.Params})
	valueID := firstValueID(stream)                                       // requestWithNodes's id
	sumFields := sumLaterFrame[frameHeaderBytes+3 : len(sumLaterFrame)-1] // ID, Func and Params of sum(1, 2)
	msg := join(valueID, sumFields, bytes.Repeat([]byte{0x01, 0x01}, depth), bytes.Repeat([]byte{0x00}, depth+1))
	return append(stream, frame(join(appendGobUint(nil, uint64(len(msg))), msg))...)
}

// wideStream returns one call of a Request declared with extra int
// fields, F0 to F(extra-1): gob compiles a decoder for all of them, to
// skip them, and keeps it for as long as the connection lasts.
func wideStream(t testing.TB, extra int) []byte {
	fields := []reflect.StructField{
		{Name: "ID", Type: reflect.TypeFor[uint64]()},
		{Name: "Func", Type: reflect.TypeFor[string]()},
		{Name: "Params", Type: reflect.TypeFor[[]Value]()},
	}
	for i := range extra {
		fields = append(fields, reflect.StructField{Name: "F" + strconv.Itoa(i), Type: reflect.TypeFor[int]()})
	}
	req := reflect.New(reflect.StructOf(fields))
	req.Elem().Field(0).SetUint(1)
	req.Elem().Field(1).SetString("sum")
	req.Elem().Field(2).Set(reflect.ValueOf(sumRequest.Params))
	return foreignFrames(t, req.Interface())
}

// emptyValuesStream returns our client's first frame for a call whose
// Params are n empty Values, a byte each on the wire and 40 bytes each
// once decoded.
func emptyValuesStream(n int) []byte {
	msg := join([]byte{0xff, 0x80, 0x01, 0x01, 0x01, 0x03, 's', 'u', 'm', 0x01}, appendGobUint(nil, uint64(n)), make([]byte, n+1))
	return frame(join(firstDefs, appendGobUint(nil, uint64(len(msg))), msg))
}

// retained decodes requests from stream with a decoder of frames up to max
// bytes, until it fails, and returns what the decoding allocated, how much
// of it the decoder still holds after a collection, and the error.
func retained(t *testing.T, stream []byte, max int) (allocs, held uint64, err error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	inUse := heapInUse()
	d := newDecoder(bytes.NewReader(stream), max)
	for err == nil {
		var req Request
		err = d.decode(&req)
	}
	runtime.ReadMemStats(&after)
	now := heapInUse()
	held = now - min(inUse, now)
	runtime.KeepAlive(d)
	return after.TotalAlloc - before.TotalAlloc, held, err
}

// TestHostileTypes sends the server's decoder the streams of a foreign gob
// client that declares its own Request, and measures what each costs.
// Before the decoder accepted our definitions only, every one of them was
// answered normally, or refused only after gob had paid for it. Now each is
// refused at its first frame, before gob reads any of it.
func TestHostileTypes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds frames of a megabyte")
	}
	const max = 1 << 20 // a server started with -max-request 1048576
	tests := []struct {
		name    string
		stream  []byte
		wantErr string
	}{
		// 20,000 types defined inside values, in 200 calls that are
		// answered normally: gob keeps each type for as long as the
		// connection lasts.
		{"an any field carrying new types in every call", anyTypesStream(t, 200, 100),
			"malformed message: a type definition that is not one of ours"},
		// gob recurses once a level to skip X: 255 bytes of memory for
		// every byte of the frame, and a stack of 1 GB ends the process.
		{"a field of slices 300,000 deep", nodesStream(t, 300_000),
			"malformed message: a type definition that is not one of ours"},
		// 920 KB of definition; gob compiles and keeps 13 MB for it.
		{"a Request of 90,000 more fields", wideStream(t, 90_000),
			"malformed message: a type definition that is not one of ours"},
		// 40 bytes a Value once decoded, for 1 byte on the wire, before
		// the count of arguments was checked.
		{"a million empty Values", emptyValuesStream(1_000_000),
			"malformed message: more than 64 arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs, held, err := retained(t, tt.stream, max)
			t.Logf("%d bytes sent: %d allocated, %d held: %v", len(tt.stream), allocs, held, err)
			assert.ErrorContains(t, err, tt.wantErr)
			// The frame's buffer grows to its size, doubling as it goes; nothing
			// else may grow with the frame.
			assert.Less(t, allocs, 4*uint64(len(tt.stream))+256<<10, "allocated")
			assert.Less(t, held, uint64(256<<10), "held by the decoder")
		})
	}
}

// heapInUse returns the bytes of heap in use after two collections: a
// sync.Pool keeps what it holds through one.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestHalfSentHeaders connects many decoders, as a server's connections,
// and sends each a frame's length claiming the largest payload, then one
// byte of it, and nothing more. The payload's buffer grows as bytes
// arrive, so each connection costs its small fixed buffers, not the
// claim: before, 500 such connections held 64 MiB at 128 KiB a frame,
// and 500 MiB at the old limit of 1 MiB.
func TestHalfSentHeaders(t *testing.T) {
	const conns = 500
	header := binary.BigEndian.AppendUint32(nil, DefaultMaxMessageBytes)
	before := heapInUse()
	var wg sync.WaitGroup
	clients := make([]net.Conn, conns)
	for i := range clients {
		client, server := net.Pipe()
		clients[i] = client
		t.Cleanup(func() { client.Close() })
		wg.Go(func() {
			defer server.Close()
			var req Request
			assert.ErrorIs(t, newDecoder(server, DefaultMaxMessageBytes).decode(&req), io.ErrUnexpectedEOF)
		})
		require.NoError(t, client.SetDeadline(time.Now().Add(rpctest.Backstop)))
		_, err := client.Write(header)
		require.NoError(t, err)
		// A net.Pipe write returns once the reader has taken the bytes:
		// this one, once the decoder has made room for the payload and
		// is reading it.
		_, err = client.Write([]byte{0x29})
		require.NoError(t, err)
	}
	after := heapInUse()
	held := after - min(before, after)
	for _, c := range clients {
		c.Close()
	}
	wg.Wait()
	t.Logf("%d connections, each half-sent a frame of %d bytes: %d bytes of heap, %d each", conns, DefaultMaxMessageBytes, held, held/conns)
	assert.Less(t, held/conns, uint64(32<<10), "bytes of heap a connection holds")
}

// TestIdleAfterLargeMessages makes one large call on each of many
// connections, then holds them idle, and measures the heap that server and
// clients together keep. Every buffer that grew for the large frame, ours
// and gob's, both ways, is let go after it: before, each connection kept
// eight copies of its largest message.
func TestIdleAfterLargeMessages(t *testing.T) {
	const conns, size = 40, 100 << 10
	addr := serve(t, NewDemoServer(Service{}), rpctest.Listen(t))
	clients := make([]*Client, conns)
	for i := range clients {
		// echo skips the server's table, which keeps a call's answer
		// until its client's next call (see TestIdleConnectionsHoldLittle).
		clients[i] = dial(t, addr, WithIdempotent("echo"))
		_, err := DemoClient{clients[i]}.Echo(t.Context(), "warm up: the types and gob's engines")
		require.NoError(t, err)
	}
	before := heapInUse()
	s := strings.Repeat("x", size)
	for _, c := range clients {
		got, err := DemoClient{c}.Echo(t.Context(), s)
		require.NoError(t, err)
		require.Len(t, got, size)
	}
	after := heapInUse()
	held := after - min(before, after)
	t.Logf("%d idle connections after an echo of %d bytes: %d bytes more heap, %d each", conns, size, held, held/conns)
	assert.Less(t, held/conns, uint64(size/2), "bytes of heap an idle connection keeps after a large call")
}

// TestCostOfLargestCall measures what the server's side of the codec
// allocates for the largest call the default limit lets in, an echo of
// nearly 128 KiB: from the frame's first byte to the answer's frame. The
// lesson quotes the figure as what one connection can cost at its worst.
func TestCostOfLargestCall(t *testing.T) {
	srv := NewDemoServer(Service{})
	echo := &Request{ID: 2, Func: "echo", Params: []Value{{Type: typeStr, Str: strings.Repeat("x", DefaultMaxMessageBytes-200)}}}
	frames := encodeFrames(t, &Request{ID: 1, Func: "echo", Params: []Value{{Type: typeStr, Str: "types first"}}}, echo)
	requests := newDecoder(bytes.NewReader(join(frames...)), DefaultMaxMessageBytes)
	answers := newEncoder()
	serve := func() {
		var req Request
		require.NoError(t, requests.decode(&req))
		resp := answerOf(srv, &req)
		_, err := answers.encode(&resp)
		require.NoError(t, err)
		answers.release() // as the server does once it has written the frame
	}
	serve()
	cost := allocated(serve)
	t.Logf("a frame of %d bytes, decoded, called and answered: %d bytes allocated, %.1f times the limit",
		len(frames[1]), cost, float64(cost)/DefaultMaxMessageBytes)
	assert.Less(t, cost, uint64(8*DefaultMaxMessageBytes), "more than 8 times the limit (the race detector adds some)")
}
