package jsontcp

import (
	"runtime"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
)

// The benchmarks share their names with every stage's, so that benchstat can
// set one stage against another. Run them with `make bench`. The peers,
// net/rpc/jsonrpc among them, are in bench/ at the root of the repository.

func benchClient(b *testing.B) DemoClient {
	return dial(b, serve(b, NewDemoServer(), rpctest.Listen(b)))
}

// BenchmarkAdd makes one call at a time on one connection.
func BenchmarkAdd(b *testing.B) {
	c := benchClient(b)
	for i := 0; b.Loop(); i++ {
		if sum, err := c.Add(b.Context(), i, 1, 0); err != nil || sum != i+1 {
			b.Fatalf("add(%d, 1, 0) = %d, %v", i, sum, err)
		}
	}
}

// BenchmarkAddParallel makes calls from GOMAXPROCS goroutines at once, each
// with a connection of its own: a Client makes one call at a time. The
// connections are dialled before the timer starts.
func BenchmarkAddParallel(b *testing.B) {
	addr := serve(b, NewDemoServer(), rpctest.Listen(b))
	clients := make(chan DemoClient, runtime.GOMAXPROCS(0))
	for range cap(clients) {
		clients <- dial(b, addr)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := <-clients // RunParallel starts GOMAXPROCS goroutines
		for i := 0; pb.Next(); i++ {
			if sum, err := c.Add(b.Context(), i, 1, 0); err != nil || sum != i+1 {
				b.Errorf("add(%d, 1, 0) = %d, %v", i, sum, err)
				return
			}
		}
	})
}

// The Echo benchmarks call the demo's echo, which takes its argument as
// json.RawMessage and sends those bytes back: the server neither decodes
// nor encodes the string. The EchoString benchmarks call a func(s string)
// string, which decodes the string and encodes it again, as the peers in
// bench/ do: they are the like-for-like comparison. The client decodes the
// answer into a string in both.

func benchEcho(b *testing.B, method string, size int) {
	srv := NewDemoServer()
	if err := srv.Register("echo_string", func(s string) string { return s }, "s"); err != nil {
		b.Fatal(err)
	}
	c := dial(b, serve(b, srv, rpctest.Listen(b)))
	s := strings.Repeat("0123456789abcdef", size/16)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		var got string
		if err := c.callInto(b.Context(), &got, method, s); err != nil || got != s {
			b.Fatalf("%s of %d bytes: %d bytes, %v", method, len(s), len(got), err)
		}
	}
}

func BenchmarkEcho1K(b *testing.B)        { benchEcho(b, "echo", 1<<10) }
func BenchmarkEcho64K(b *testing.B)       { benchEcho(b, "echo", 64<<10) }
func BenchmarkEchoString1K(b *testing.B)  { benchEcho(b, "echo_string", 1<<10) }
func BenchmarkEchoString64K(b *testing.B) { benchEcho(b, "echo_string", 64<<10) }
