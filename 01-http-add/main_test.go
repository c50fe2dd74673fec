package httpadd

import (
	"context"
	"net"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
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
