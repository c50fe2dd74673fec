package atmostonce

import (
	"bytes"
	"encoding/gob"
	"io"
	"net"
	"net/rpc"
	"runtime"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
)

// The benchmarks share their names with every stage's, so that benchstat can
// set one stage against another. Run them with `make bench`. Each of the
// four runs twice, as the sub-benchmarks rpc=ours and rpc=net-rpc: against
// our server, and against the standard library's net/rpc with its default
// codec, gob, in the same process and run, so that `benchstat -col /rpc`
// compares the two: the same calls, the same checks on the answers, and in
// the parallel ones the same sharing on both sides, one client for all the
// callers. BenchmarkAddFloor is the floor under BenchmarkAdd: the same
// bytes, sent and answered with no decoding at all, in the same run.

func benchClient(b *testing.B) *Client {
	return dial(b, serve(b, NewDemoServer(Service{}), rpctest.Listen(b)))
}

// BenchmarkAdd makes one call at a time on one connection.
func BenchmarkAdd(b *testing.B) {
	b.Run("rpc=ours", func(b *testing.B) {
		c := DemoClient{benchClient(b)}
		for i := 0; b.Loop(); i++ {
			if sum, err := c.Add(b.Context(), i, 1); err != nil || sum != i+1 {
				b.Fatalf("add(%d, 1) = %d, %v", i, sum, err)
			}
		}
	})
	b.Run("rpc=net-rpc", func(b *testing.B) {
		c := netrpcClient(b)
		for i := 0; b.Loop(); i++ {
			var sum int
			if err := c.Call("Arith.Add", AddArgs{i, 1}, &sum); err != nil || sum != i+1 {
				b.Fatalf("Arith.Add(%d, 1) = %d, %v", i, sum, err)
			}
		}
	})
}

// parallelCallers is how many goroutines the parallel benchmarks run:
// RunParallel starts parallelism × GOMAXPROCS of them.
const parallelCallers = 64

// BenchmarkAddParallel makes calls from about 64 goroutines at once, all
// sharing ONE Client, and so one connection: their calls are in flight
// side by side, and their requests and answers share writes. net/rpc's
// client, too, has many calls in flight on one connection.
func BenchmarkAddParallel(b *testing.B) {
	b.Run("rpc=ours", func(b *testing.B) {
		c := DemoClient{benchClient(b)}
		b.SetParallelism(max(1, parallelCallers/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if sum, err := c.Add(b.Context(), i, 1); err != nil || sum != i+1 {
					b.Errorf("add(%d, 1) = %d, %v", i, sum, err)
					return
				}
			}
		})
	})
	b.Run("rpc=net-rpc", func(b *testing.B) {
		c := netrpcClient(b)
		b.SetParallelism(max(1, parallelCallers/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			netrpcAdds(b, pb, c)
		})
	})
}

func benchEcho(b *testing.B, size int) {
	s := strings.Repeat("0123456789abcdef", size/16)
	b.Run("rpc=ours", func(b *testing.B) {
		c := DemoClient{benchClient(b)}
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			if got, err := c.Echo(b.Context(), s); err != nil || got != s {
				b.Fatalf("echo of %d bytes: %d bytes, %v", len(s), len(got), err)
			}
		}
	})
	b.Run("rpc=net-rpc", func(b *testing.B) {
		c := netrpcClient(b)
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			var got string
			if err := c.Call("Arith.Echo", s, &got); err != nil || got != s {
				b.Fatalf("Arith.Echo of %d bytes: %d bytes, %v", len(s), len(got), err)
			}
		}
	})
}

func BenchmarkEcho1K(b *testing.B)  { benchEcho(b, 1<<10) }
func BenchmarkEcho64K(b *testing.B) { benchEcho(b, 64<<10) }

// BenchmarkAddFloor is a raw TCP ping-pong of the bytes of one add call
// and its answer, as they travel once a connection's types are known: the
// client writes the request and reads the answer's bytes back, and the
// server reads the request's bytes and writes the answer, with nothing
// decoded, looked up or checked. What BenchmarkAdd takes beyond this is the
// cost of gob and the stubs.
func BenchmarkAddFloor(b *testing.B) {
	add, err := newRequest("add", []any{1000, 1})
	if err != nil {
		b.Fatal(err)
	}
	add.ID = 40_000 // an id of 3 bytes, as most of BenchmarkAdd's are
	request := encodeFrames(b, &add, &add)[1]
	sum := Response{ID: add.ID, Data: Value{Type: typeInt, Int: 1001}}
	answer := encodeFrames(b, &sum, &sum)[1]

	addr := rpctest.ServeConns(b, func(conn net.Conn) {
		buf := make([]byte, len(request))
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				return
			}
			if _, err := conn.Write(answer); err != nil {
				return
			}
		}
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })

	buf := make([]byte, len(answer))
	for b.Loop() {
		if _, err := conn.Write(request); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// Arith is the demo's add and echo for net/rpc: its methods follow
// net/rpc's rules, one argument and a pointer for the reply.
type Arith struct{}

// AddArgs are add's arguments for net/rpc.
type AddArgs struct{ A, B int }

// Add answers add(a, b), with the same overflow check as ours.
func (Arith) Add(args AddArgs, sum *int) error {
	var err error
	*sum, err = Service{}.Add(args.A, args.B)
	return err
}

// Echo answers echo(s).
func (Arith) Echo(s string, out *string) error {
	*out = s
	return nil
}

// netrpcServer starts a net/rpc server, with its default codec, gob, on a
// free port and returns its address.
func netrpcServer(b *testing.B) string {
	srv := rpc.NewServer()
	if err := srv.Register(Arith{}); err != nil {
		b.Fatal(err)
	}
	return rpctest.ServeConns(b, func(conn net.Conn) { srv.ServeConn(conn) })
}

// netrpcDial returns a client of the net/rpc server at addr.
func netrpcDial(b *testing.B, addr string) *rpc.Client {
	c, err := rpc.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func netrpcClient(b *testing.B) *rpc.Client {
	return netrpcDial(b, netrpcServer(b))
}

// netrpcAdds makes add calls on c for as long as pb says.
func netrpcAdds(b *testing.B, pb *testing.PB, c *rpc.Client) {
	for i := 0; pb.Next(); i++ {
		var sum int
		if err := c.Call("Arith.Add", AddArgs{i, 1}, &sum); err != nil || sum != i+1 {
			b.Errorf("Arith.Add(%d, 1) = %d, %v", i, sum, err)
			return
		}
	}
}

// BenchmarkGobStream and BenchmarkGobFreshEncoder encode the sum(1, 2)
// call and decode it again, in memory: once more on a long-lived gob
// stream, as each connection of ours has, and with a new encoder and
// decoder each time, which would make every frame stand alone. The bytes
// each writes are reported as B/msg.
func BenchmarkGobStream(b *testing.B) {
	var buf bytes.Buffer
	enc, dec := gob.NewEncoder(&buf), gob.NewDecoder(&buf)
	benchGob(b, &buf, func() (*gob.Encoder, *gob.Decoder) { return enc, dec })
}

func BenchmarkGobFreshEncoder(b *testing.B) {
	var buf bytes.Buffer
	benchGob(b, &buf, func() (*gob.Encoder, *gob.Decoder) { return gob.NewEncoder(&buf), gob.NewDecoder(&buf) })
}

func benchGob(b *testing.B, buf *bytes.Buffer, coders func() (*gob.Encoder, *gob.Decoder)) {
	var size int
	for b.Loop() {
		enc, dec := coders()
		if err := enc.Encode(&sumRequest); err != nil {
			b.Fatal(err)
		}
		size = buf.Len()
		var req Request
		if err := dec.Decode(&req); err != nil || req.Func != "sum" {
			b.Fatalf("decoded %+v, %v", req, err)
		}
	}
	b.ReportMetric(float64(size), "B/msg")
}
