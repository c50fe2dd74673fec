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
		got, err := NewClient(conn).Echo(t.Context(), big)
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
