package gobrpc

import (
	"net"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdleConnectionsHoldLittle makes one large echo on each of many
// connections and leaves them open and idle. A connection keeps no buffer
// that grew for a large message, so what they hold together is small.
func TestIdleConnectionsHoldLittle(t *testing.T) {
	const conns, size = 100, 100 << 10
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	big := strings.Repeat("x", size)
	before := heapInUse()
	for range conns {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		// The client is dropped after its call, and its buffers with it;
		// the server's side of the connection stays open and idle.
		got, err := DemoClient{NewClient(conn)}.Echo(t.Context(), big)
		require.NoError(t, err)
		require.Len(t, got, size)
	}
	grew := int64(heapInUse()) - int64(before)
	t.Logf("%d idle connections after a %d KiB echo each: heap grew %d KiB", conns, size>>10, grew>>10)
	// A connection may keep a few KiB; keeping the buffers that a large
	// message needed would take 2 × 100 KiB each.
	assert.Less(t, grew, int64(conns*32<<10))
}

// TestZeroServer serves with a Server that was never set up: the zero value
// takes the default limits, and Register works on it.
func TestZeroServer(t *testing.T) {
	var srv Server
	_, err := srv.Register(Service{})
	require.NoError(t, err)
	sum, err := dial(t, serve(t, &srv, rpctest.Listen(t))).Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
	var zero Server
	require.NoError(t, zero.Shutdown(t.Context()), "Shutdown before Serve")
}

// TestLargeMessagesShareBuffers makes many large echoes on one connection
// and measures what each allocates, server and client together. A buffer
// that grew past maxKeptBuffer goes to largeBuffers after its message, and
// a gob encoder to its wireStream, so the next large message, on any
// connection, finds them. What a call still allocates is gob's: each side
// reads the message into a buffer of its own and makes a string of it,
// four copies in all. Growing every buffer again for every message, as
// when they were dropped, costs about eleven.
func TestLargeMessagesShareBuffers(t *testing.T) {
	const calls, size = 50, 100 << 10
	c := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	big := strings.Repeat("x", size)
	echo := func() {
		got, err := c.Echo(t.Context(), big)
		require.NoError(t, err)
		require.Len(t, got, size)
	}
	echo() // the types, and a buffer of each kind in the pools
	perCall := allocated(func() {
		for range calls {
			echo()
		}
	}) / calls
	t.Logf("an echo of %d KiB: %d KiB allocated, %.1f times the message", size>>10, perCall>>10, float64(perCall)/size)
	bound := 6 * size // 4.6 measured
	if rpctest.RaceEnabled {
		bound = 9 * size // 6.8 measured; 12.8 with every buffer grown again
	}
	assert.Less(t, perCall, uint64(bound), "allocated per call")
}

// TestEncoderSharesBuffers encodes many large answers on one stream, each
// sent and released as the server does, and measures what each costs. The
// frame comes from largeBuffers and the gob encoder from its wireStream,
// both left there by the answer before, so an answer allocates close to
// nothing. Grown again each time, the frame, or gob's buffer, costs about
// the message again.
func TestEncoderSharesBuffers(t *testing.T) {
	const answers, size = 200, 100 << 10
	resp := &Response{Data: Value{Type: typeStr, Str: strings.Repeat("x", size)}}
	e := newEncoder()
	encode := func() {
		frame, err := e.encode(resp)
		require.NoError(t, err)
		require.Greater(t, len(frame), size)
		e.release()
	}
	encode() // the types, and the buffers in the pools
	perAnswer := allocated(func() {
		for range answers {
			encode()
		}
	}) / answers
	t.Logf("an answer of %d KiB: %d bytes allocated", size>>10, perAnswer)
	bound := size / 2 // 88 bytes measured; 106 KiB with every buffer grown again
	if rpctest.RaceEnabled {
		// A quarter of the frames and encoders put back are dropped: 55
		// KiB measured, and 128 KiB with every buffer grown again.
		bound = size
	}
	assert.Less(t, perAnswer, uint64(bound), "allocated per answer")
}
