package main

import (
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
	asyncrpc "github.com/rpc-from-scratch/course/05-async-callback"
	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFlood floods a server of 8 slots of stages 02, 05, 07 and 06 with 40
// silent connections, each dialled again when it is closed, and checks
// that every call the callers make is answered, and that the server closed
// silent connections to make room. The callers connect before the flood
// (-warm): at 8 slots, a new connection is evicted unless its first
// request comes before the next 8 or so silent ones, and here they come in
// microseconds.
func TestFlood(t *testing.T) {
	for _, stage := range []struct {
		name   string
		listen func(t *testing.T) string
	}{
		{"02", func(t *testing.T) string {
			srv := jsontcp.NewDemoServer()
			srv.MaxConns = 8
			srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour // only eviction makes room
			return serve(t, srv.Serve, srv.Shutdown, jsontcp.ErrServerClosed)
		}},
		{"05", func(t *testing.T) string {
			srv := asyncrpc.NewDemoServer(asyncrpc.Service{})
			srv.MaxConns = 8
			srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
			return serve(t, srv.Serve, srv.Shutdown, asyncrpc.ErrServerClosed)
		}},
		{"07", func(t *testing.T) string {
			srv := atmostonce.NewDemoServer(atmostonce.Service{})
			srv.MaxConns = 8
			srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
			return serve(t, srv.Serve, srv.Shutdown, atmostonce.ErrServerClosed)
		}},
		{"06", func(t *testing.T) string {
			srv := wsgirouter.NewServer(wsgirouter.NewApp(wsgirouter.Service{}))
			srv.MaxConns = 8
			srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
			return serve(t, srv.Serve, srv.Shutdown, wsgirouter.ErrServerClosed)
		}},
	} {
		t.Run(stage.name, func(t *testing.T) {
			addr := stage.listen(t)
			var out strings.Builder
			err := run(t.Context(), []string{"-stage", stage.name, "-addr", addr, "-idle", "40",
				"-callers", "2", "-calls", "200", "-for", "20s", "-timeout", "10s", "-warm"}, &out, io.Discard)
			require.NoError(t, err)
			t.Log(out.String())
			assert.Contains(t, out.String(), "calls: 200 ok, 0 failed")
			closed := regexp.MustCompile(`the server closed (\d+) silent connections`).FindStringSubmatch(out.String())
			require.Len(t, closed, 2, "no count of closed connections in:\n%s", out.String())
			assert.NotEqual(t, "0", closed[1], "the server made room without closing a silent connection")
		})
	}
}

// serve runs a stage's server on a new listener until the test ends, and
// returns its address.
func serve(t *testing.T, serve func(net.Listener) error, shutdown func(context.Context) error, closed error) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, shutdown(context.Background()))
		assert.ErrorIs(t, <-served, closed)
	})
	return l.Addr().String()
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-addr", "127.0.0.1:1", "-stage", "08"},
		{"-addr", "127.0.0.1:1", "-callers", "0"},
		{"-addr", "127.0.0.1:1", "-idle", "-1"},
	} {
		assert.Error(t, run(t.Context(), args, io.Discard, io.Discard), "%q", args)
	}
}
