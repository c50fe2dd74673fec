package httpadd

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bound is how long a test waits for what should happen at once: far less
// than the backstop, so that a broken server fails the test by name.
const bound = 10 * time.Second

// TestServeTwice serves two listeners at once, with MaxConns 1 for both
// together: a call running on one keeps the other's connection waiting.
// Shutdown
// ends both Serve calls with ErrServerClosed, and Serve called after
// Shutdown returns it at once and closes its listener.
func TestServeTwice(t *testing.T) {
	srv := NewServer()
	srv.MaxConns = 1
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var held atomic.Bool
	srv.beforeAnswer = func() {
		if held.CompareAndSwap(false, true) {
			entered <- struct{}{}
			<-release
		}
	}
	first, second := rpctest.Listen(t), rpctest.Listen(t)
	served := make(chan error, 2)
	go func() { served <- srv.Serve(first) }()
	go func() { served <- srv.Serve(second) }()

	open, openAnswers := dialRaw(t, first.Addr().String())
	_, err := io.WriteString(open, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	<-entered

	other, r := dialRaw(t, second.Addr().String())
	_, err = io.WriteString(other, "GET /add?a=2&b=2 HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	// A cap of one per listener would answer in well under a millisecond;
	// this wait is the check that ours does not, not a synchronisation.
	require.NoError(t, other.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err = r.Peek(1)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the second listener served a connection past MaxConns 1")
	close(release)
	require.Equal(t, `{"result": 3}`, readBody(t, openAnswers))
	require.NoError(t, open.Close())
	require.NoError(t, other.SetReadDeadline(time.Now().Add(bound)))
	assert.Equal(t, `{"result": 4}`, readBody(t, r), "once the slot is free")
	require.NoError(t, other.Close())

	require.NoError(t, srv.Shutdown(rpctest.BackstopContext(t)))
	for range 2 {
		select {
		case err := <-served:
			assert.ErrorIs(t, err, ErrServerClosed)
		case <-time.After(bound):
			t.Fatalf("a Serve call did not return within %v of Shutdown", bound)
		}
	}
	for _, l := range []net.Listener{first, second} {
		_, err := net.Dial("tcp", l.Addr().String())
		assert.Error(t, err, "Shutdown closes every listener")
	}

	late := rpctest.Listen(t)
	assert.ErrorIs(t, srv.Serve(late), ErrServerClosed)
	_, err = net.Dial("tcp", late.Addr().String())
	assert.Error(t, err, "Serve after Shutdown closes its listener")
}

// TestListenersShareSlots gives two limitListeners one slot between them.
// One waits for a connection that does not come; the other must still
// accept one, and the first must not take the slot until it has a
// connection of its own.
func TestListenersShareSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conns := newConnTable(1, closeLinger)
		quiet, busy := newChanListener(), newChanListener()
		waiting, serving := newLimitListener(quiet, conns), newLimitListener(busy, conns)
		defer waiting.Close()
		defer serving.Close()
		go func() {
			if conn, err := waiting.Accept(); err == nil {
				conn.Close()
			}
		}()
		synctest.Wait() // waiting waits in Accept

		client, server := net.Pipe()
		defer client.Close()
		busy.conns <- server
		accepted := make(chan net.Conn, 1)
		go func() {
			conn, err := serving.Accept()
			if err == nil {
				accepted <- conn
			}
			close(accepted)
		}()
		synctest.Wait()
		select {
		case conn := <-accepted:
			require.NotNil(t, conn)
			conn.Close()
		default:
			t.Fatal("a listener waiting for a connection holds the only slot")
		}
	})
}

// chanListener is a listener whose connections come from a channel.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case conn := <-l.conns:
		return conn, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.UnixAddr{Name: "chan", Net: "chan"} }
