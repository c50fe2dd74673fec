//go:build exercises

package asyncrpc

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	go test -tags exercises -run Exercise ./05-async-callback/
//
// `make test` compiles them (go vet -tags exercises) but does not run them.

import (
	"math"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blob has a method that takes and returns bytes.
type blob struct{}

func (blob) Reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}

// Exercise 1: a fourth type code, 4 for bytes, which Python has and gob
// carries as they are. Value needs a field for it,
// toValue and fromValue a case each, and Register must take []byte
// parameters and results. A client built before the change must still be
// served: its first frame defines a Value with no such field, and the
// server accepts only the definitions it knows, so it must know that one
// too, as the definition of an older Value.
func TestExerciseBytes(t *testing.T) {
	srv := NewServer()
	skipped, err := srv.Register(blob{})
	require.NoError(t, err)
	require.Empty(t, skipped, "Register skipped methods")
	_, err = srv.Register(Service{})
	require.NoError(t, err)
	addr := serve(t, srv, rpctest.Listen(t))

	got, err := dial(t, addr).Call(t.Context(), "reverse", []byte{0, 1, 2, 0xff})
	require.NoError(t, err)
	assert.Equal(t, []byte{0xff, 2, 1, 0}, got)
	v, err := toValue([]byte("x"))
	require.NoError(t, err)
	assert.Equal(t, uint8(4), v.Type)

	conn, answers := rawConn(t, addr)
	write(t, conn, sumFirstFrame) // the bytes of today's client
	assert.Equal(t, intAnswer(3), nextAnswer(t, answers))
}

// Exercise 2: serve a client that starts a new gob stream in every frame,
// as a client with a new gob.Encoder for each call does. Today the server
// refuses its second frame, which defines the types again. One rule is
// enough: a frame that defines types starts a new stream. Every
// definition must still be one of ours.
func TestExerciseFreshEncoderClient(t *testing.T) {
	conn, answers := rawConn(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	for i := range 10 {
		write(t, conn, encodeFrames(t, new(call(t, "add", i, 1)))[0]) // a new encoder each time
		assert.Equal(t, intAnswer(i+1), nextAnswer(t, answers))
	}
	write(t, conn, frame(manyTypes(t, 1)))
	assert.Contains(t, nextAnswer(t, answers).Error, "a type definition that is not one of ours", "a new stream still defines our types only")
}

// Exercise 3: gob carries any float64, infinities and NaN too, as Python's
// float does. Lift stage 03's rule, "finite floats only", both ways, and
// keep sum's check for what it is for: two finite floats whose sum
// overflows are an error, but inf + 1 is inf.
func TestExerciseInfinity(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	got, err := c.Call(t.Context(), "sum", math.Inf(1), 1)
	require.NoError(t, err)
	assert.Equal(t, math.Inf(1), got)

	got, err = c.Call(t.Context(), "sum", math.NaN(), 1)
	require.NoError(t, err)
	require.IsType(t, 0.0, got)
	assert.True(t, math.IsNaN(got.(float64)), "got %v", got)

	_, err = c.Call(t.Context(), "sum", 1e308, 1e308)
	var serverErr *ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.Equal(t, "sum: 1e+308 + 1e+308 does not fit in a float (64 bits)", serverErr.Message)
}
