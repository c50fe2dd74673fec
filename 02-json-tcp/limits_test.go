package jsontcp

import (
	"runtime"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heapInUse returns the bytes of heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestIdleConnectionsHoldLittle makes one large echo on each of many
// connections and leaves them open and idle. A connection keeps no buffer
// that grew for a large message, so what they hold together is small.
func TestIdleConnectionsHoldLittle(t *testing.T) {
	const conns, size = 100, 100 << 10
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	call := `{"method_name": "echo", "method_args": ["` + strings.Repeat("x", size) + `"]}`
	before := heapInUse()
	for range conns {
		conn, answers := rawConn(t, addr)
		write(t, conn, call)
		require.Len(t, nextAnswer(t, answers), len(`{"res":""}`)+size)
	}
	// The test's own readers are garbage now; the server's connections
	// are open and idle.
	grew := int64(heapInUse()) - int64(before)
	t.Logf("%d idle connections after a %d KiB echo each: heap grew %d KiB", conns, size>>10, grew>>10)
	// A connection may keep a few KiB; keeping the buffers that a large
	// message needed would take 2 × 100 KiB each.
	assert.Less(t, grew, int64(conns*32<<10))
}
