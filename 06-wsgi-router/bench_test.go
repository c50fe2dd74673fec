package wsgirouter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each benchmark runs three times in the same process and run: against our
// Server; against net/http's server with handlers written for it (native,
// nativeHandler); and against net/http's server running our application
// through Handler (the adapter). The client is the same on every side
// (ours, with keep-alive), and so are the requests and the checks on the
// answers, so that `benchstat -col /server` sets one server against the
// other:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./06-wsgi-router/ | tee bench-06.txt
//	go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -col /server bench-06.txt
//
// The native row is what net/http's server costs; the adapter row less
// the native row is what Handler costs (an Environ, the fields copied and
// sorted, the body read whole); our row less the native row is what our
// server saves. The client's share is the same in all three.
//
// BenchmarkAdd and BenchmarkAddParallel share their names with every
// stage's, so that benchstat can set this stage against the others.

// forEachServer runs bench against each server, with a client of it.
func forEachServer(b *testing.B, bench func(b *testing.B, c *Client)) {
	app := NewApp(Service{})
	b.Run("server=ours", func(b *testing.B) {
		bench(b, client(b, serve(b, NewServer(app), rpctest.Listen(b))))
	})
	b.Run("server=net-http-native", func(b *testing.B) {
		bench(b, client(b, serveHandler(b, nativeHandler(b), rpctest.Listen(b))))
	})
	b.Run("server=net-http-adapter", func(b *testing.B) {
		bench(b, client(b, serveNetHTTP(b, app, rpctest.Listen(b))))
	})
}

// nativeHandler is what the benchmarks ask of the demo application,
// written for net/http directly, with no Application and no adapter
// between: GET /api/v1.0/servers/{name} and GET /add, answering the same
// bytes as NewApp's pages, with the same procedures (encodeServer,
// parseOperands, add). TestNativeHandlerAnswersAsTheApp checks that.
func nativeHandler(tb testing.TB) http.Handler {
	byName := map[string][]byte{}
	for _, s := range DemoServers {
		one := encodeServer(s)
		byName[s.Name] = fmt.Appendf(nil, `{"infos": [%s]}`, one)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1.0/servers/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		answer, ok := byName[r.PathValue("name")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			answer = apiNotFound
		}
		_, _ = w.Write(answer)
	})
	mux.HandleFunc("GET /add", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		x, y, err := parseOperands(r.URL.RawQuery)
		var sum int
		if err == nil {
			sum, err = add(x, y)
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error": %q}`, err.Error())
			return
		}
		_, _ = fmt.Fprintf(w, `{"result": %d}`, sum)
	})
	return mux
}

// serveHandler runs h behind net/http's server until the test ends. It
// returns the address to dial.
func serveHandler(tb testing.TB, h http.Handler, l net.Listener) string {
	tb.Helper()
	hs := &http.Server{Handler: h, ReadHeaderTimeout: DefaultHeaderTimeout}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		assert.NoError(tb, hs.Shutdown(ctx))
		assert.True(tb, errors.Is(<-served, http.ErrServerClosed))
	})
	return l.Addr().String()
}

// TestNativeHandlerAnswersAsTheApp: the native row measures the same
// answers as the other two, body and Content-Type, or it measures less.
func TestNativeHandlerAnswersAsTheApp(t *testing.T) {
	app := demoApp(t)
	native := client(t, serveHandler(t, nativeHandler(t), rpctest.Listen(t)))
	ours := client(t, serve(t, NewServer(app), rpctest.Listen(t)))
	for _, target := range []string{"/api/v1.0/servers/alpha", "/api/v1.0/servers/nobody", "/add?a=1&b=2", "/add?a=-7&b=2"} {
		want, err := ours.Get(t.Context(), target)
		require.NoError(t, err)
		got, err := native.Get(t.Context(), target)
		require.NoError(t, err)
		assert.Equal(t, want.Status, got.Status, target)
		assert.Equal(t, string(want.Body), string(got.Body), target)
		assert.Equal(t, want.Header.Get("Content-Type"), got.Header.Get("Content-Type"), target)
	}
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
