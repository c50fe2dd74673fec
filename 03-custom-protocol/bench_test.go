package customproto

import (
	"runtime"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
)

// The benchmarks share their names with every stage's, so that benchstat can
// set one stage against another. Run them with `make bench`. The floor, a
// raw TCP ping-pong, and the peers are in bench/ at the root of the
// repository.

func benchClient(b *testing.B) DemoClient {
	return dial(b, serve(b, NewDemoServer(), rpctest.Listen(b)))
}

// BenchmarkAdd makes one call at a time on one connection.
func BenchmarkAdd(b *testing.B) {
	c := benchClient(b)
	for i := 0; b.Loop(); i++ {
		if sum, err := c.Add(b.Context(), i, 1); err != nil || sum != i+1 {
			b.Fatalf("add(%d, 1) = %d, %v", i, sum, err)
		}
	}
}

// BenchmarkAddParallel makes calls from GOMAXPROCS goroutines at once, each
// with a connection of its own: a Client makes one call at a time. The
// connections are made before the timer starts, so only calls are timed.
// Errors are reported with b.Error: b.Fatal and require may be called only
// from the benchmark's own goroutine.
func BenchmarkAddParallel(b *testing.B) {
	addr := serve(b, NewDemoServer(), rpctest.Listen(b))
	clients := make(chan DemoClient, runtime.GOMAXPROCS(0))
	for range cap(clients) {
		clients <- dial(b, addr)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := <-clients
		for i := 0; pb.Next(); i++ {
			if sum, err := c.Add(b.Context(), i, 1); err != nil || sum != i+1 {
				b.Errorf("add(%d, 1) = %d, %v", i, sum, err)
				return
			}
		}
	})
}

func benchEcho(b *testing.B, size int) {
	c := benchClient(b)
	s := strings.Repeat("0123456789abcdef", size/16)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if got, err := c.Echo(b.Context(), s); err != nil || got != s {
			b.Fatalf("echo of %d bytes: %d bytes, %v", len(s), len(got), err)
		}
	}
}

func BenchmarkEcho1K(b *testing.B)  { benchEcho(b, 1<<10) }
func BenchmarkEcho64K(b *testing.B) { benchEcho(b, 64<<10) }
