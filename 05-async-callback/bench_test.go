package asyncrpc

import (
	"bytes"
	"encoding/gob"
	"runtime"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
)

// The benchmarks share their names with every stage's, so that benchstat can
// set one stage against another. Run them with `make bench`. The peers,
// net/rpc among them, and the floor under every stage, raw TCP with
// nothing decoded, are measured in bench/, in one run with every stage
// (see docs/benchmarks.md).

func benchClient(b *testing.B) *Client {
	return dial(b, serve(b, NewDemoServer(Service{}), rpctest.Listen(b)))
}

// BenchmarkAdd makes one call at a time on one connection.
func BenchmarkAdd(b *testing.B) {
	c := DemoClient{benchClient(b)}
	for i := 0; b.Loop(); i++ {
		if sum, err := c.Add(b.Context(), i, 1); err != nil || sum != i+1 {
			b.Fatalf("add(%d, 1) = %d, %v", i, sum, err)
		}
	}
}

// parallelCallers is how many goroutines the parallel benchmarks run:
// RunParallel starts parallelism × GOMAXPROCS of them.
const parallelCallers = 64

// BenchmarkAddParallel makes calls from about 64 goroutines at once, all
// sharing ONE Client, and so one connection: their calls are in flight
// side by side, and their requests and answers share writes.
func BenchmarkAddParallel(b *testing.B) {
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
}

func benchEcho(b *testing.B, size int) {
	s := strings.Repeat("0123456789abcdef", size/16)
	c := DemoClient{benchClient(b)}
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if got, err := c.Echo(b.Context(), s); err != nil || got != s {
			b.Fatalf("echo of %d bytes: %d bytes, %v", len(s), len(got), err)
		}
	}
}

func BenchmarkEcho1K(b *testing.B)  { benchEcho(b, 1<<10) }
func BenchmarkEcho64K(b *testing.B) { benchEcho(b, 64<<10) }

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
