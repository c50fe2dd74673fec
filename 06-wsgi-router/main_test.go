package wsgirouter

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
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

// serveNetHTTP runs app behind net/http's server, through Handler, until
// the test ends. It returns the address to dial.
func serveNetHTTP(t testing.TB, app Application, l net.Listener) string {
	t.Helper()
	hs := &http.Server{Handler: Handler(app, DefaultMaxBodyBytes), ReadHeaderTimeout: DefaultHeaderTimeout}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		assert.NoError(t, hs.Shutdown(ctx))
		assert.True(t, errors.Is(<-served, http.ErrServerClosed))
	})
	return l.Addr().String()
}

// demoApp returns the demo application with a stopped clock.
func demoApp(t testing.TB) *Router {
	t.Helper()
	return NewApp(Service{Now: func() time.Time { return articleTime }})
}

// articleTime is a fixed moment for /time and Date: when the article's
// REST example ran, by its own log.
var articleTime = time.Date(2019, time.January, 17, 17, 24, 2, 0, time.UTC)

// newDemoServer returns our server of the demo application, on a stopped
// clock, so Date is always the same.
func newDemoServer(t testing.TB) *Server {
	t.Helper()
	srv := NewServer(demoApp(t))
	srv.now = func() time.Time { return articleTime }
	return srv
}

// client returns a client of addr, closed when the test ends.
func client(t testing.TB, addr string, opts ...Option) *Client {
	t.Helper()
	c := NewClient(addr, opts...)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn dials addr and returns the connection and a reader of it, both
// closed when the test ends. Tests write hand-made bytes with it.
func rawConn(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	return conn, bufio.NewReader(conn)
}
