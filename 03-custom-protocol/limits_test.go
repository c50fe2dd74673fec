package customproto

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

// TestLargeEchoesReuseBuffers makes many 100 KiB echoes on one connection.
// Each side's buffers for a message past maxKeptBuffer come from
// largeBuffers and go back to it, so a call allocates about what it must:
// the string the server reads, the one the client reads, and the small
// rooms a frame reader grows through before it borrows a large one. Were
// every large buffer made afresh, as when they were dropped, a call would
// allocate about 10 times the echo's size.
func TestLargeEchoesReuseBuffers(t *testing.T) {
	const calls, size = 200, 100 << 10
	c := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	big := strings.Repeat("x", size)
	echo := func() {
		got, err := c.Echo(t.Context(), big)
		require.NoError(t, err)
		require.Len(t, got, size)
	}
	echo() // fill the pool
	perCall := allocated(func() {
		for range calls {
			echo()
		}
	}) / calls
	t.Logf("a %d KiB echo allocates %d KiB a call (%.1f times its size)", size>>10, perCall>>10, float64(perCall)/size)
	// A call needs about 4 × 100 KiB. Made afresh, the four frames and the
	// two payload buffers past maxKeptBuffer add 6 × 100 KiB more. Under
	// the race detector, which makes sync.Pool drop one buffer put in four
	// at random, about 1.5 of the six are made afresh in each call.
	bound := 6 * size
	if rpctest.RaceEnabled {
		bound = 8 * size
	}
	assert.Less(t, perCall, uint64(bound))
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
