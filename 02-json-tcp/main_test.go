package jsontcp

import (
	"context"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

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

// methodList is what srv says, after "there are: ", to a call that names
// no method of it: the names in its registry, sorted and joined by ", ".
// Tests build the list from the registry's map rather than write it out, so
// a method added to the demo server (lesson 02's exercise 1) keeps them
// true; a demo server must still offer the demo's three.
func methodList(t testing.TB, srv *Server) string {
	t.Helper()
	srv.funcs.mu.RLock()
	names := slices.Sorted(maps.Keys(srv.funcs.funcs))
	srv.funcs.mu.RUnlock()
	require.Subset(t, names, []string{"add", "echo", "test"})
	return strings.Join(names, ", ")
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
