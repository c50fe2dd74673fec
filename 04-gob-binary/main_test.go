package gobrpc

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// serve runs srv on l until the test ends, then shuts it down and checks that
// Serve returned ErrServerClosed. It returns the address to dial.
func serve(t testing.TB, srv *Server, l net.Listener) string {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
	return l.Addr().String()
}

// dial returns a client of the server at addr, with the demo's typed
// stubs, closed when the test ends.
func dial(t testing.TB, addr string, opts ...Option) DemoClient {
	t.Helper()
	c, err := Dial(context.Background(), addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return DemoClient{c}
}

// holdCalls makes every call to srv wait, once it has reached the server,
// until release is called. entered receives once for each call that waits.
func holdCalls(srv *Server) (entered chan struct{}, release func()) {
	entered, held := make(chan struct{}, 8), make(chan struct{})
	srv.beforeAnswer = func() {
		entered <- struct{}{}
		<-held
	}
	return entered, sync.OnceFunc(func() { close(held) })
}

// articleTime is the moment of the article's own output, which shows
// get_time returning part of "Wed Jan 16 22:05:31 2019".
var articleTime = time.Date(2019, time.January, 16, 22, 5, 31, 0, time.Local)

// newStoppedClockServer returns a server of the demo service whose clock
// always reads articleTime, so that get_time's answer can be checked.
func newStoppedClockServer(t testing.TB) *Server {
	t.Helper()
	srv := NewServer()
	skipped, err := srv.Register(Service{now: func() time.Time { return articleTime }})
	require.NoError(t, err)
	require.Empty(t, skipped)
	return srv
}
