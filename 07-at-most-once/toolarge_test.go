package atmostonce

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request over MaxRequestBytes that is not the stream's first: the
// server answers it by its ID, reads its bytes and drops them, and the
// connection goes on. The ID is in the frame's first bytes: a later frame
// carries a Request's value alone, and gob writes its first field, the ID,
// first.

// TestLaterRequestTooLargeIsSkipped sends a call, then an echo of 200 KiB,
// over the default limit of 128 KiB, then two more calls, on one
// connection. The large one is refused by its ID; the calls around it are
// answered, on the same connection. One caller's oversized argument costs
// that call, not the connection that every caller on it shares.
func TestLaterRequestTooLargeIsSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		serve(t, NewDemoServer(Service{}), l)
		conn := l.dial(t)
		frames := encodeFrames(t, withID(call(t, "sum", 1, 2), 1),
			withID(call(t, "echo", strings.Repeat("x", 200<<10)), 5),
			withID(call(t, "add", 2, 3), 6))
		go func() { _, _ = conn.Write(bytes.Join(frames, nil)) }()
		answers := newDecoder(conn, DefaultMaxMessageBytes)
		assert.Equal(t, map[uint64]Response{
			1: answerTo(1, intAnswer(3)),
			5: {ID: 5, Error: fmt.Sprintf("request of %d bytes is larger than MaxRequestBytes 131072", len(frames[1])-frameHeaderBytes), Code: ResourceExhausted},
			6: answerTo(6, intAnswer(5)),
		}, nextAnswers(t, answers, 3))

		later := encodeFrames(t, withID(call(t, "sum", 1, 2), 1), withID(call(t, "add", 40, 2), 7))[1]
		go func() { _, _ = conn.Write(later) }()
		assert.Equal(t, answerTo(7, intAnswer(42)), nextAnswer(t, answers), "the connection goes on")
	})
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestDecoderSkipsLargeFrames feeds a decoder that skips large frames the
// streams where it may and may not skip one. A frame it skips is read
// through the bufio.Reader's own buffer: skipping 256 MiB allocates
// nothing of that size. A frame it may not skip is refused, and the
// stream with it: the first, which defines the types the others use; and a
// later one whose first bytes are not a Request's value with its ID.
func TestDecoderSkipsLargeFrames(t *testing.T) {
	const size, max = 256 << 20, 1 << 10
	requestValue := []byte{0xff, 0x80} // gob's type id 64, Request, as a value's
	msgLength := appendGobUint(nil, size-5)
	tests := []struct {
		name    string
		before  []byte // the frames before the large one
		start   []byte // the large frame's payload, up to the zeros that end it
		skipped bool
		id      uint64 // the ID the refusal carries
	}{
		{"a later call", sumFirstFrame, join(msgLength, requestValue, []byte{1, 9}), true, 9},
		{"a later call with an ID of 8 bytes", sumFirstFrame, join(msgLength, requestValue, []byte{1}, appendGobUint(nil, 1<<60)), true, 1 << 60},
		{"the first frame", nil, firstDefs, false, 0},
		{"a later frame that defines a type", sumFirstFrame, firstDefs, false, 0},
		{"a later call without an ID", sumFirstFrame, join(msgLength, requestValue, []byte{2, 3}), false, 0},
		{"a later value of another type", sumFirstFrame, join(msgLength, []byte{0xff, 0x82, 1, 9}), false, 0},
		{"a later frame of text", sumFirstFrame, []byte("hello, world"), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := join(tt.before, binary.BigEndian.AppendUint32(nil, size), tt.start)
			stream := &countingReader{r: io.MultiReader(bytes.NewReader(first),
				io.LimitReader(zeros{}, int64(size-len(tt.start))), bytes.NewReader(sumLaterFrame))}
			d := newDecoder(stream, max)
			d.skipLarge = true
			if tt.before != nil {
				var req Request
				require.NoError(t, d.decode(&req))
				require.Equal(t, sumRequest, req)
			}
			var req Request
			var err error
			cost := allocated(func() { err = d.decode(&req) })
			var large *frameTooLarge
			require.ErrorAs(t, err, &large)
			assert.Equal(t, tt.skipped, large.skipped, "skipped")
			assert.Equal(t, tt.id, req.ID, "the ID the refusal carries")
			if !tt.skipped {
				assert.LessOrEqual(t, stream.n, len(first)+readBufferBytes, "bytes read of a frame that was not skipped")
				return
			}
			assert.Less(t, cost, uint64(64<<10), "bytes allocated to skip %d MiB", size>>20)
			req = Request{}
			require.NoError(t, d.decode(&req), "the frame after the one skipped")
			assert.Equal(t, *withID(sumRequest, 2), req)
		})
	}
}

// TestDecoderSkipsUnderThePeersNumbers skips a later call that is too
// large from a peer whose process numbered our Request 68, not 64 (see
// TestDecoderAcceptsOtherNumbers): the frame's value is a Request when it
// carries the id the peer gave Request, whatever id this process gave it.
// A value of type 64 is then not a Request, and its frame is not skipped.
func TestDecoderSkipsUnderThePeersNumbers(t *testing.T) {
	const size, max = 64 << 10, 1 << 10
	sumValue := frame(sumFirstFrame[len(sumFirstFrame)-sumValueBytes:]) // call 1, as a later frame
	first := frame(join(numbered(68, 69, 70), withTypeID(sumValue, 68)[frameHeaderBytes:]))
	for _, tt := range []struct {
		name    string
		typeID  int64
		skipped bool
	}{
		{"a Request, numbered 68 by the peer", 68, true},
		{"a value of type 64, which the peer gave no type", 64, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := join(appendGobUint(nil, size-5), appendGobInt(nil, tt.typeID), []byte{1, 9})
			stream := join(first, binary.BigEndian.AppendUint32(nil, size), start, make([]byte, size-len(start)), withTypeID(sumLaterFrame, 68))
			d := newDecoder(bytes.NewReader(stream), max)
			d.skipLarge = true
			var req Request
			require.NoError(t, d.decode(&req))
			require.Equal(t, sumRequest, req)
			req = Request{}
			err := d.decode(&req)
			var large *frameTooLarge
			require.ErrorAs(t, err, &large)
			assert.Equal(t, tt.skipped, large.skipped, "skipped")
			if !tt.skipped {
				assert.Zero(t, req.ID, "the ID the refusal carries")
				return
			}
			assert.Equal(t, uint64(9), req.ID, "the ID the refusal carries")
			req = Request{}
			require.NoError(t, d.decode(&req), "the frame after the one skipped")
			assert.Equal(t, *withID(sumRequest, 2), req)
		})
	}
}

// TestDecoderSkipsOnlyWhenTold checks that a decoder not told to skip,
// the client's, refuses a later frame over its limit from its length
// alone, as before.
func TestDecoderSkipsOnlyWhenTold(t *testing.T) {
	stream := &countingReader{r: bytes.NewReader(join(sumFirstFrame, []byte{0, 0x10, 0, 0, 0x7f, 0xff, 0x80, 1, 9}, make([]byte, 8<<10)))}
	d := newDecoder(stream, 1<<10)
	require.NoError(t, d.decode(&Request{}))
	read := stream.n
	err := d.decode(&Request{})
	var large *frameTooLarge
	require.ErrorAs(t, err, &large)
	assert.False(t, large.skipped)
	assert.LessOrEqual(t, stream.n, read+readBufferBytes, "read past the length of a frame it refused")
}
