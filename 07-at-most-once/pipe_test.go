package atmostonce

import (
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The server's timing, in fake time: each test here runs in a synctest
// bubble, where the clock moves only when every goroutine waits, and the
// server's connections are net.Pipes made in the bubble, whose deadlines
// run on that clock. A test can then say when, to the nanosecond, the
// server did a thing, and synctest.Wait tells it when the server has done
// all it can. A net.Pipe has no kernel buffer: a write waits until the
// other side has read it all, and there is no half-close.

// TestHangUpHasOneDeadline has the server refuse a stream, and then the
// client trickle a byte every 300 ms. The hang-up reads and drops what
// comes until one deadline, closeLinger after it began, that bytes
// arriving do not move: the server closes at 500 ms exactly, having
// dropped one byte. A deadline renewed by each read would keep the
// connection, and its slot, for as long as the client trickles.
func TestHangUpHasOneDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		serve(t, NewDemoServer(Service{}), l)
		conn := l.dial(t)
		answers := newDecoder(conn, DefaultMaxMessageBytes)
		write(t, conn, []byte{0, 0, 0, 0})
		refusal := nextAnswer(t, answers)
		start := time.Now()
		assert.Equal(t, "malformed message: a frame of 0 bytes; a frame holds at least one gob message; closing the connection", refusal.Error)
		assert.Equal(t, Internal, refusal.Code)

		trickled := make(chan int, 1)
		go func() {
			n := 0
			for ; n < 20; n++ {
				time.Sleep(300 * time.Millisecond)
				if _, err := conn.Write([]byte{0}); err != nil {
					break
				}
			}
			trickled <- n
		}()
		_, err := conn.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "the server closed")
		assert.Equal(t, closeLinger, time.Since(start), "the hang-up's length")
		assert.Equal(t, 1, <-trickled, "bytes the server took before it closed")
	})
}

// TestShutdownDoesNotLengthenAHangUp refuses a stream, and calls Shutdown
// 300 ms into the hang-up that follows. Shutdown gives every connection
// until closeLinger from its own start, later than the hang-up's deadline,
// which stands: the connection closes closeLinger after the hang-up began.
func TestShutdownDoesNotLengthenAHangUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn := l.dial(t)
		write(t, conn, []byte{0, 0, 0, 0})
		nextAnswer(t, newDecoder(conn, DefaultMaxMessageBytes))
		start := time.Now()
		closed := make(chan time.Duration, 1)
		go func() {
			_, _ = conn.Read(make([]byte, 1))
			closed <- time.Since(start)
		}()
		time.Sleep(300 * time.Millisecond)
		shutdown := make(chan error, 1)
		go func() { shutdown <- srv.Shutdown(context.Background()) }()
		assert.Equal(t, closeLinger, <-closed, "the hang-up's length")
		assert.NoError(t, <-shutdown)
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
}

// TestShutdownReachesAConnectionArmingItsDeadline stops a connection's
// reader after it has chosen the read deadline for its next request, an
// hour away, and before it has set it; and calls Shutdown then. Shutdown
// moves every connection's deadline to closeLinger from its start, under
// the connection's own lock, which the reader holds from choosing to
// setting: so Shutdown waits, and its deadline is set after the hour, and
// stands. Had the reader chosen and set in two steps, or Shutdown moved
// deadlines without the lock, the hour would be set last, and Shutdown
// would wait for it.
func TestShutdownReachesAConnectionArmingItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		arming, proceed := make(chan struct{}), make(chan struct{})
		arms := 0
		srv.armingRead = func() {
			if arms++; arms == 2 { // for the request after the first
				close(arming)
				<-proceed
			}
		}
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn := l.dial(t)
		answers := newDecoder(conn, DefaultMaxMessageBytes)
		write(t, conn, sumFirstFrame)
		<-arming

		start := time.Now()
		shutdown := make(chan error, 1)
		go func() { shutdown <- srv.Shutdown(context.Background()) }()
		assert.ErrorIs(t, <-served, ErrServerClosed)
		synctest.Wait() // Shutdown has gone as far as it can
		close(proceed)
		assert.Equal(t, answerTo(1, intAnswer(3)), nextAnswer(t, answers))
		require.NoError(t, <-shutdown)
		// closeLinger for a request on its way, then closeLinger to hang up.
		assert.Equal(t, 2*closeLinger, time.Since(start), "Shutdown's length")
	})
}

// TestServeManyListeners serves two listeners at once with MaxConns 1.
// The one slot is the server's, not each Serve's: while the first
// listener's connection is busy, reading half a request, a connection on
// the second listener waits; once it closes, the second is served.
// Shutdown ends both Serve calls, each with ErrServerClosed.
func TestServeManyListeners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 1
		a, b := newPipeListener(), newPipeListener()
		served := make(chan error, 2)
		go func() { served <- srv.Serve(a) }()
		go func() { served <- srv.Serve(b) }()

		first := a.dial(t)
		request := calls(t, call(t, "add", 1, 2))
		write(t, first, request[:len(request)/2])
		synctest.Wait() // it is busy, reading a request
		second := NewClient(onlyConn(b.dial(t)))
		defer second.Close()
		call := second.Go(t.Context(), "add", 2, 2)
		synctest.Wait()
		select {
		case <-call.Done:
			t.Fatalf("a second connection was served, on another listener, with MaxConns 1: %v", call.Error)
		default:
		}
		first.Close()
		<-call.Done
		require.NoError(t, call.Error, "served once the first connection closed")
		assert.Equal(t, 4, call.Result)

		require.NoError(t, srv.Shutdown(t.Context()))
		assert.ErrorIs(t, <-served, ErrServerClosed)
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
}

// TestServeAfterShutdown calls Serve on a server that has shut down: it
// returns ErrServerClosed at once, and closes the listener.
//
// In the bubble, a Serve that waited in Accept would leave every goroutine
// blocked: synctest then fails this test by name, where over TCP it hung
// until go test's timeout.
func TestServeAfterShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var srv Server
		require.NoError(t, srv.Shutdown(t.Context()))
		l := newPipeListener()
		assert.ErrorIs(t, srv.Serve(l), ErrServerClosed)
		_, err := l.Accept()
		assert.ErrorIs(t, err, net.ErrClosed, "the listener is closed")
	})
}

// TestShutdownDeadlineWithNoCallRunning shuts the server down with a
// deadline shorter than closeLinger while a client keeps a connection
// that waits for a request. At the deadline Shutdown closes it and returns
// nil: no call was cut off. (cmd/server's exit status rests on this: 1
// only when a call was cut off.)
func TestShutdownDeadlineWithNoCallRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		l.dial(t)
		synctest.Wait() // the connection waits for its first request

		const grace = 100 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), grace)
		defer cancel()
		start := time.Now()
		assert.NoError(t, srv.Shutdown(ctx), "no call was running at the deadline")
		assert.Equal(t, grace, time.Since(start), "Shutdown returned at its deadline")
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
}
