package jsontcp

import (
	"runtime"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heapInUse returns the bytes of heap in use after two collections: the
// first moves what largeBuffers holds aside, and the second frees it, as
// it would be on a server where no connection asks for it again.
func heapInUse() uint64 {
	runtime.GC()
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

// TestLargeMessagesShareBuffers makes many 100 KiB echoes on one
// connection. Past maxKeptBuffer, the frame readers on both sides, the
// server's answer and the client's request all need large buffers; they
// come from largeBuffers, not from the allocator, on every call after the
// first.
func TestLargeMessagesShareBuffers(t *testing.T) {
	const calls, size = 50, 100 << 10
	c := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	s := strings.Repeat("x", size)
	echo := func() {
		var got string
		require.NoError(t, c.callInto(t.Context(), &got, "echo", s))
		require.Len(t, got, size)
	}
	echo() // the first call grows what the next ones reuse
	perCall := allocated(func() {
		for range calls {
			echo()
		}
	}) / calls
	t.Logf("a %d KiB echo allocated %d KiB a call", size>>10, perCall>>10)
	// What a call cannot avoid is about 3 × size: the server copies the
	// argument out of the message, and the client copies the result out of
	// the answer and decodes it into a string. Growing each of the four
	// buffers again on every call would add about 7 × size. Under the race
	// detector a sync.Pool drops one buffer in four, on purpose.
	bound := uint64(6 * size)
	if rpctest.RaceEnabled {
		bound = 9 * size
	}
	assert.Less(t, perCall, bound)
}
