package wsgirouter

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
)

// Each benchmark runs twice in the same process and run: against our
// Server, and against net/http's server running the same application
// through Handler. The client is the same on both sides (ours, with
// keep-alive), and so are the requests and the checks on the answers, so
// that `benchstat -col /server` sets one server against the other:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./06-wsgi-router/ | tee bench-06.txt
//	go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -col /server bench-06.txt
//
// BenchmarkAdd and BenchmarkAddParallel share their names with every
// stage's, so that benchstat can set this stage against the others.

// forEachServer runs bench against each server, with a client of it.
func forEachServer(b *testing.B, bench func(b *testing.B, c *Client)) {
	app, err := NewApp(Service{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("server=ours", func(b *testing.B) {
		bench(b, client(b, serve(b, NewServer(app), rpctest.Listen(b))))
	})
	b.Run("server=net-http", func(b *testing.B) {
		bench(b, client(b, serveNetHTTP(b, app, rpctest.Listen(b))))
	})
}

// wantServer is the answer to GET /api/v1.0/servers/alpha.
var wantServer = []byte(`{"infos": [{"name": "alpha", "host": "10.0.0.1", "port": 8080, "status": "up"}]}`)

// BenchmarkGet asks for one server of the REST API, one request at a time
// on one kept-alive connection.
func BenchmarkGet(b *testing.B) {
	forEachServer(b, func(b *testing.B, c *Client) {
		for b.Loop() {
			resp, err := c.Get(b.Context(), "/api/v1.0/servers/alpha")
			if err != nil || resp.Status != 200 || !bytes.Equal(resp.Body, wantServer) {
				b.Fatalf("GET: %v, %v", resp, err)
			}
		}
	})
}

// parallelCallers is how many goroutines the parallel benchmarks run:
// RunParallel starts parallelism × GOMAXPROCS of them.
const parallelCallers = 64

// BenchmarkGetParallel is BenchmarkGet from about 64 goroutines at once,
// sharing one Client: each request takes a kept-alive connection of its
// own from the client's pool, so about 64 connections are busy at once.
func BenchmarkGetParallel(b *testing.B) {
	forEachServer(b, func(b *testing.B, c *Client) {
		b.SetParallelism(max(1, parallelCallers/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(b.Context(), "/api/v1.0/servers/alpha")
				if err != nil || resp.Status != 200 || !bytes.Equal(resp.Body, wantServer) {
					b.Errorf("GET: %v, %v", resp, err)
					return
				}
			}
		})
	})
}

// BenchmarkAdd calls add(i, 1) through GET /add, one call at a time.
func BenchmarkAdd(b *testing.B) {
	forEachServer(b, func(b *testing.B, c *Client) {
		for i := 0; b.Loop(); i++ {
			if sum, err := c.Add(b.Context(), i, 1); err != nil || sum != i+1 {
				b.Fatalf("add(%d, 1) = %d, %v", i, sum, err)
			}
		}
	})
}

// BenchmarkAddParallel is BenchmarkAdd from about 64 goroutines at once,
// sharing one Client, as BenchmarkGetParallel does.
func BenchmarkAddParallel(b *testing.B) {
	forEachServer(b, func(b *testing.B, c *Client) {
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
}
