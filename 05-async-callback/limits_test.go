package asyncrpc

import (
	"strings"
	"testing"
	"testing/synctest"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdleConnectionsHoldLittle makes one small and then one large echo on
// each of many connections and leaves them open and idle. A connection
// keeps no buffer that grew for a large message, nor the last answer its
// writer wrote, so the large echoes add almost nothing to what the
// connections hold between calls: a server reader's buffer, a queue of
// MaxInFlight answers, the client's buffers, and their goroutines' state.
func TestIdleConnectionsHoldLittle(t *testing.T) {
	const conns, size = 100, 100 << 10
	addr := serve(t, NewDemoServer(Service{}), rpctest.Listen(t))
	big := strings.Repeat("x", size)
	before := heapInUse()
	clients := make([]*Client, conns)
	for i := range clients {
		clients[i] = dial(t, addr)
		got, err := DemoClient{clients[i]}.Echo(t.Context(), "x")
		require.NoError(t, err)
		require.Equal(t, "x", got)
	}
	small := heapInUse()
	for _, c := range clients {
		got, err := DemoClient{c}.Echo(t.Context(), big)
		require.NoError(t, err)
		require.Len(t, got, size)
	}
	large := heapInUse()
	each := (int64(small) - int64(before)) / conns
	grew := (int64(large) - int64(small)) / conns
	t.Logf("%d idle connections, server and client: %d KiB each; after a %d KiB echo each, %d bytes more each", conns, each>>10, size>>10, grew)
	// Keeping the buffers that a large message needed, or its answer,
	// would take 100 KiB to 200 KiB more each.
	assert.Less(t, grew, int64(size/8), "bytes a connection keeps after a large echo")
	assert.Less(t, each, int64(64<<10), "bytes of heap an idle connection holds, both sides")
}

// TestIdleConnectionKeepsAtMost makes one echo of 63 KiB on each of many
// connections, the largest message whose buffers a connection keeps for
// the next, and leaves them idle. What the server's side of each holds,
// heap and stacks, is at most the figure the Server's doc gives: three
// buffers of about 64 KiB (the frame read, gob's copy of it, the answers'
// frame), the read-ahead buffer, and the reader's and the writer's
// goroutines. It runs in fake time (see pipe_test.go), over net.Pipes,
// so that only the server's side is counted.
func TestIdleConnectionKeepsAtMost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const conns, size = 200, 63 << 10
		l := newPipeListener()
		serve(t, NewDemoServer(Service{}), l)
		stream := echoStream(t, 1, strings.Repeat("x", size))
		before := memInUse()
		for range conns {
			peer := l.dial(t)
			go func() {
				if _, err := peer.Write(stream); err == nil {
					_ = newDecoder(peer, DefaultMaxMessageBytes).decode(&Response{})
				}
			}()
		}
		synctest.Wait()
		each := (memInUse() - before) / conns
		t.Logf("%d idle connections after an echo of %d KiB: %d KiB each, heap and stacks", conns, size>>10, each>>10)
		// 232 KiB measured, 242 KiB with the race detector.
		assert.LessOrEqual(t, each, int64(256<<10), "what an idle connection keeps")
	})
}

// TestZeroServer serves with a Server that was never set up: the zero value
// takes the default limits, and Register works on it.
func TestZeroServer(t *testing.T) {
	var srv Server
	_, err := srv.Register(Service{})
	require.NoError(t, err)
	sum, err := DemoClient{dial(t, serve(t, &srv, rpctest.Listen(t)))}.Add(t.Context(), 1, 2)
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
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	big := strings.Repeat("x", size)
	echo := func() {
		got, err := DemoClient{c}.Echo(t.Context(), big)
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
