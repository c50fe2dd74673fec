package httpadd

import (
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
)

// The benchmarks share their names with every stage's, so that benchstat can
// set one stage against another. Run them with `make bench`.

// benchClient starts a server and returns a stub for it.
func benchClient(b *testing.B) *Client {
	c := NewClient(serve(b, NewServer(), rpctest.Listen(b)))
	b.Cleanup(func() { c.Close() })
	return c
}

// checkAdd calls add(i, 1) and reports a wrong answer. It uses b.Error, not
// b.Fatal, because RunParallel calls it from goroutines of its own.
func checkAdd(b *testing.B, c *Client, i int) bool {
	sum, err := c.Add(b.Context(), i, 1)
	if err != nil || sum != i+1 {
		b.Errorf("add(%d, 1) = %d, %v", i, sum, err)
		return false
	}
	return true
}

// BenchmarkAdd makes one call at a time over a kept-alive connection.
func BenchmarkAdd(b *testing.B) {
	c := benchClient(b)
	for i := 0; b.Loop(); i++ {
		if !checkAdd(b, c, i) {
			return
		}
	}
}

// BenchmarkAddNewConn makes one call at a time, each on a new connection,
// as the article's requests.get does.
func BenchmarkAddNewConn(b *testing.B) {
	c := benchClient(b)
	c.http.Transport.(*http.Transport).DisableKeepAlives = true
	for i := 0; b.Loop(); i++ {
		if !checkAdd(b, c, i) {
			return
		}
	}
}

// BenchmarkAddParallel makes calls from GOMAXPROCS goroutines at once,
// sharing one Client. As many calls at once before the timer starts open
// the connections, so that dialing is not timed.
func BenchmarkAddParallel(b *testing.B) {
	c := benchClient(b)
	var warm sync.WaitGroup
	for i := range runtime.GOMAXPROCS(0) {
		warm.Go(func() { checkAdd(b, c, i) })
	}
	warm.Wait()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if !checkAdd(b, c, i) {
				return
			}
		}
	})
}
