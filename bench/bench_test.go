package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// callers is how many goroutines call at once in AddParallel.
const callers = 64

// text returns n bytes of ASCII text, the same for every system.
func text(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz012345"
	return strings.Repeat(alphabet, n/len(alphabet)+1)[:n]
}

// start starts sys's server on a free loopback port and stops it when the
// test or benchmark ends.
func start(tb testing.TB, sys System) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	stop := sys.Serve(l)
	tb.Cleanup(func() { assert.NoError(tb, stop(), "stop %s's server", sys.Name) })
	return l.Addr().String()
}

// dial makes a client of sys, closed when the test or benchmark ends
// (before its server stops: cleanups run last first).
func dial(tb testing.TB, sys System, addr string) Client {
	tb.Helper()
	c, err := sys.Dial(context.Background(), addr)
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	return c
}

// TestSystems checks that every system answers both procedures right,
// from one client and from many at once, so a benchmark never times a
// system that fails or answers wrong.
func TestSystems(t *testing.T) {
	for _, sys := range Systems() {
		t.Run(sys.Name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			addr := start(t, sys)
			c := dial(t, sys, addr)
			for _, tc := range []struct{ a, b, sum int }{{1, 2, 3}, {-5, 7, 2}, {1 << 40, 1 << 40, 1 << 41}} {
				sum, err := c.Add(ctx, tc.a, tc.b)
				require.NoError(t, err)
				assert.Equal(t, tc.sum, sum, "add(%d, %d)", tc.a, tc.b)
			}
			if !sys.NoEcho {
				for _, s := range []string{"", "héllo, wörld ✓", text(1 << 10), text(64 << 10)} {
					got, err := c.Echo(ctx, s)
					require.NoError(t, err)
					assert.True(t, got == s, "echo of %d bytes came back as %d bytes", len(s), len(got))
				}
			}
			var wg sync.WaitGroup
			for i := range 16 {
				cl := c
				if sys.Shared == "" {
					cl = dial(t, sys, addr)
				}
				wg.Go(func() {
					sum, err := cl.Add(ctx, i, 1000)
					assert.NoError(t, err)
					assert.Equal(t, i+1000, sum)
				})
			}
			wg.Wait()
		})
	}
}

// TestSystemNames checks the names the page orders its rows by.
func TestSystemNames(t *testing.T) {
	var names []string
	for _, sys := range Systems() {
		names = append(names, sys.Name)
	}
	assert.Equal(t, []string{"floor", "01-http-add", "02-json-tcp", "03-custom-protocol", "04-gob-binary",
		"05-async-callback", "06-wsgi-router", "07-at-most-once", "net-rpc", "jsonrpc", "net-http", "grpc"}, names)
}

// The benchmarks. Client and server run in one process, so B/op and
// allocs/op count both sides of each call. Each system takes the same
// context, the benchmark's own, where it takes one (the floor and net/rpc
// take none). One call is made before the timer starts, so dialling is not
// timed.

func BenchmarkAdd(b *testing.B) {
	for _, sys := range Systems() {
		b.Run("sys="+sys.Name, func(b *testing.B) {
			c := dial(b, sys, start(b, sys))
			ctx := b.Context()
			callAdd(b, ctx, c, 1, 2)
			b.ReportAllocs()
			for b.Loop() {
				callAdd(b, ctx, c, 1, 2)
			}
		})
	}
}

func BenchmarkEcho1K(b *testing.B)  { benchmarkEcho(b, text(1<<10)) }
func BenchmarkEcho64K(b *testing.B) { benchmarkEcho(b, text(64<<10)) }

func benchmarkEcho(b *testing.B, s string) {
	for _, sys := range Systems() {
		if sys.NoEcho {
			continue
		}
		b.Run("sys="+sys.Name, func(b *testing.B) {
			c := dial(b, sys, start(b, sys))
			ctx := b.Context()
			callEcho(b, ctx, c, s)
			b.ReportAllocs()
			for b.Loop() {
				callEcho(b, ctx, c, s)
			}
		})
	}
}

// BenchmarkAddParallel has about 64 callers at once. conns=shared: they
// share one client, as a server that calls another service usually does.
// conns=per-caller: each has a client of its own, dialled before the
// timer. A system whose shared client lets calls overlap on the wire is
// measured shared only; one whose calls take turns (stages 02 to 04) both
// ways; one whose client must not be shared (the floor) per caller only.
func BenchmarkAddParallel(b *testing.B) {
	for _, sys := range Systems() {
		if sys.Shared != "" {
			b.Run("sys="+sys.Name+"/conns=shared", func(b *testing.B) {
				c := dial(b, sys, start(b, sys))
				benchmarkParallel(b, []Client{c})
			})
		}
		if sys.Shared != "shared" {
			b.Run("sys="+sys.Name+"/conns=per-caller", func(b *testing.B) {
				addr := start(b, sys)
				clients := make([]Client, goroutines())
				for i := range clients {
					clients[i] = dial(b, sys, addr)
				}
				benchmarkParallel(b, clients)
			})
		}
	}
}

// goroutines returns how many goroutines RunParallel starts with the
// parallelism benchmarkParallel sets: callers, rounded up to a multiple of
// GOMAXPROCS.
func goroutines() int {
	return parallelism() * runtime.GOMAXPROCS(0)
}

func parallelism() int {
	p := runtime.GOMAXPROCS(0)
	return (callers + p - 1) / p
}

// benchmarkParallel runs add from goroutines() callers. With one client
// they share it; otherwise caller i takes clients[i]. Before the timer,
// every caller makes one call at once, so that clients with a pool have
// dialled their connections.
func benchmarkParallel(b *testing.B, clients []Client) {
	ctx := b.Context()
	client := func(i int) Client { return clients[i%len(clients)] }
	var wg sync.WaitGroup
	for i := range goroutines() {
		wg.Go(func() {
			if err := checkAdd(ctx, client(i), i, 1); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	var next atomic.Int64
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := client(int(next.Add(1) - 1))
		for pb.Next() {
			if err := checkAdd(ctx, c, 1, 2); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				return
			}
		}
	})
}

// callAdd calls add(x, y) and stops the benchmark if the answer is wrong.
func callAdd(b testing.TB, ctx context.Context, c Client, x, y int) {
	if err := checkAdd(ctx, c, x, y); err != nil {
		b.Fatal(err)
	}
}

func checkAdd(ctx context.Context, c Client, x, y int) error {
	sum, err := c.Add(ctx, x, y)
	if err != nil {
		return fmt.Errorf("add(%d, %d): %w", x, y, err)
	}
	if sum != x+y {
		return fmt.Errorf("add(%d, %d) = %d", x, y, sum)
	}
	return nil
}

// callEcho calls echo(s) and stops the benchmark if the answer is wrong.
func callEcho(b testing.TB, ctx context.Context, c Client, s string) {
	got, err := c.Echo(ctx, s)
	if err != nil || got != s {
		b.Fatalf("echo of %d bytes: %d bytes back, %v", len(s), len(got), err)
	}
}

// TestFloorRefusesBadFrames sends the floor's server what it must not
// accept: a frame that claims more than floorMaxFrame, an unknown opcode,
// and an add of the wrong size. Each closes that connection, without
// reading the claimed bytes, and the server goes on serving others.
func TestFloorRefusesBadFrames(t *testing.T) {
	sys := Floor()
	addr := start(t, sys)
	for name, frame := range map[string][]byte{
		"too large":      {0x00, 0x20, 0x00, 0x00, floorEcho}, // claims 2 MiB, sends 1 byte
		"unknown opcode": {0, 0, 0, 1, 'z'},
		"short add":      {0, 0, 0, 3, floorAdd, 1, 2},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(backstop)))
			_, err = c.Write(frame)
			require.NoError(t, err)
			n, err := c.Read(make([]byte, 1))
			assert.Equal(t, 0, n)
			assert.ErrorIs(t, err, io.EOF, "the server closes the connection")

			other := dial(t, sys, addr)
			callAdd(t, t.Context(), other, 2, 3)
		})
	}
}

// backstop is a deadline that only a broken test reaches.
const backstop = 30 * time.Second
