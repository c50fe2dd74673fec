package jsontcp

import (
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
	"runtime"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
)

// The benchmarks share their names with every stage's, so that benchstat can
// set one stage against another. Run them with `make bench`. The same four
// run against the standard library's net/rpc/jsonrpc, in the same process
// and run, so that one benchstat table compares the two.

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
// string, which decodes the string and encodes it again, as net/rpc's
// Arith.Echo below does: they are the like-for-like comparison with
// jsonrpc. The client decodes the answer into a string in both.

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

// Arith is the same service for net/rpc: its methods follow net/rpc's
// rules, one argument and a reply pointer.
type Arith struct{}

// AddArgs are add's arguments for net/rpc.
type AddArgs struct{ A, B, C int }

// Add answers add(a, b, c), with the same overflow check as ours.
func (Arith) Add(args AddArgs, sum *int) error {
	var err error
	*sum, err = add(args.A, args.B, args.C)
	return err
}

// Echo answers echo(s).
func (Arith) Echo(s string, out *string) error {
	*out = s
	return nil
}

// jsonrpcClient starts a net/rpc server speaking JSON-RPC 1.0 on a free
// port and returns a client of it.
func jsonrpcClient(b *testing.B) *rpc.Client {
	srv := rpc.NewServer()
	if err := srv.Register(Arith{}); err != nil {
		b.Fatal(err)
	}
	addr := rpctest.ServeConns(b, func(conn net.Conn) {
		srv.ServeCodec(jsonrpc.NewServerCodec(conn))
	})
	c, err := jsonrpc.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func BenchmarkJSONRPCAdd(b *testing.B) {
	c := jsonrpcClient(b)
	for i := 0; b.Loop(); i++ {
		var sum int
		if err := c.Call("Arith.Add", AddArgs{i, 1, 0}, &sum); err != nil || sum != i+1 {
			b.Fatalf("Arith.Add(%d, 1, 0) = %d, %v", i, sum, err)
		}
	}
}

// BenchmarkJSONRPCAddParallel shares one client among the goroutines:
// net/rpc's client has many calls in flight on one connection.
func BenchmarkJSONRPCAddParallel(b *testing.B) {
	c := jsonrpcClient(b)
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			var sum int
			if err := c.Call("Arith.Add", AddArgs{i, 1, 0}, &sum); err != nil || sum != i+1 {
				b.Errorf("Arith.Add(%d, 1, 0) = %d, %v", i, sum, err)
				return
			}
		}
	})
}

func benchJSONRPCEcho(b *testing.B, size int) {
	c := jsonrpcClient(b)
	s := strings.Repeat("0123456789abcdef", size/16)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		var got string
		if err := c.Call("Arith.Echo", s, &got); err != nil || got != s {
			b.Fatalf("Arith.Echo of %d bytes: %d bytes, %v", len(s), len(got), err)
		}
	}
}

func BenchmarkJSONRPCEcho1K(b *testing.B)  { benchJSONRPCEcho(b, 1<<10) }
func BenchmarkJSONRPCEcho64K(b *testing.B) { benchJSONRPCEcho(b, 64<<10) }
