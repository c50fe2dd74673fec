package jsontcp

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file check the server's timeouts, its connection cap
// and its hang-up to the nanosecond. Each runs in a testing/synctest
// bubble, where time is fake: it stands still while any goroutine of the
// test can run, and jumps to the next timer once every one of them is
// blocked. The connections are net.Pipe pairs made inside the bubble (a TCP
// socket's waits are outside it), so a 60-second idle timeout passes at
// once, and time.Since(start) is exactly the timeout the server applied,
// on any machine, however loaded. A test that checked only "closed,
// eventually" could not tell 5 s from 25 s. Each wait has a bound, which
// costs nothing in fake time, so a server that never acts fails the test
// by name instead of hanging it.
//
// A net.Pipe has no buffer: a Write waits until the other end reads. That
// is what a client that stops reading looks like, which the WriteTimeout
// and Shutdown tests need; elsewhere the tests read every answer.

// pipeListener is a net.Listener for tests in a bubble: dial makes a
// net.Pipe and queues its server end for Accept. A test may also queue an
// error for Accept to return, and see when Accept was called.
type pipeListener struct {
	queue  chan acceptResult // the accept queue: what the next calls of Accept return, in order
	closed chan struct{}     // closed by Close
	once   sync.Once

	mu    sync.Mutex  // protects calls
	calls []time.Time // when Accept was called, each time
}

type acceptResult struct {
	conn net.Conn
	err  error
}

func newPipeListener() *pipeListener {
	return &pipeListener{queue: make(chan acceptResult, 16), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	l.mu.Unlock()
	select {
	case r := <-l.queue:
		return r.conn, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// acceptCalls returns when Accept was called, each time.
func (l *pipeListener) acceptCalls() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.calls...)
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// newPipe returns the two ends of a net.Pipe; the client's is closed when
// the test ends. A read or write on the client's end that nothing will
// ever answer fails at its deadline, an hour of fake time away, instead of
// deadlocking the bubble: synctest would then panic, and the package's
// later tests would not run.
func newPipe(t *testing.T) (client, server net.Conn) {
	t.Helper()
	client, server = net.Pipe()
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.SetDeadline(time.Now().Add(time.Hour)))
	return client, server
}

// dial returns the client's end of a new connection, closed when the test
// ends, and a channel that is closed when the server closes its end.
func (l *pipeListener) dial(t *testing.T) (net.Conn, <-chan struct{}) {
	t.Helper()
	client, server := newPipe(t)
	watched := &closeWatchConn{Conn: server, closed: make(chan struct{})}
	select {
	case l.queue <- acceptResult{conn: watched}:
	default:
		t.Fatal("the pipe listener's accept queue is full")
	}
	return client, watched.closed
}

// closeWatchConn closes closed when it is first closed.
type closeWatchConn struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *closeWatchConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// pipeClient returns a client, with the demo's typed stubs, over a new
// connection of l; it is closed when the test ends.
func pipeClient(t *testing.T, l *pipeListener) DemoClient {
	t.Helper()
	conn, _ := l.dial(t)
	c := NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return DemoClient{c}
}

// pipeHoldingServer is holdingServer over a pipeListener: a demo server
// whose calls wait inside until the test ends, and a channel that receives
// once for each call that has reached the server.
func pipeHoldingServer(t *testing.T) (*pipeListener, chan struct{}) {
	t.Helper()
	srv := NewDemoServer()
	entered, release := holdCalls(srv)
	l := newPipeListener()
	serve(t, srv, l)
	t.Cleanup(release) // runs before the server's shutdown, which waits for held calls
	return l, entered
}

// halfCloseConn is a pipe end that records CloseWrite: the call by which a
// server makes a TCP connection send its FIN before it hangs up. (A pipe
// cannot half-close; this only records the call.)
type halfCloseConn struct {
	*closeWatchConn
	wroteClosed chan struct{} // closed by the first CloseWrite
	once        sync.Once
}

func (c *halfCloseConn) CloseWrite() error {
	c.once.Do(func() { close(c.wroteClosed) })
	return nil
}

// dialHalfClose is dial for the tests of the polite hang-up: the server's
// end records CloseWrite, and is returned to watch.
func (l *pipeListener) dialHalfClose(t *testing.T) (net.Conn, *halfCloseConn) {
	t.Helper()
	client, server := newPipe(t)
	watched := &halfCloseConn{
		closeWatchConn: &closeWatchConn{Conn: server, closed: make(chan struct{})},
		wroteClosed:    make(chan struct{}),
	}
	select {
	case l.queue <- acceptResult{conn: watched}:
	default:
		t.Fatal("the pipe listener's accept queue is full")
	}
	return client, watched
}

// assertHalfClosed checks that the server has closed its sending half of
// conn, and not yet the connection.
func assertHalfClosed(t *testing.T, conn *halfCloseConn) {
	t.Helper()
	select {
	case <-conn.wroteClosed:
	default:
		t.Error("the server did not close its sending half first")
	}
	select {
	case <-conn.closed:
		t.Error("the server closed the connection without lingering")
	default:
	}
}

// waitClosed waits for the server to close a connection and returns how
// long that took from start. It fails the test if that takes longer than
// limit: in fake time the wait costs nothing, and a server that never
// closes fails here, by name, instead of hanging.
func waitClosed(t *testing.T, closed <-chan struct{}, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	select {
	case <-closed:
		return time.Since(start)
	case <-time.After(limit):
		t.Fatalf("the server did not close the connection within %v", limit)
		return 0
	}
}

// trickle writes p to conn one byte every interval, in a goroutine, until
// it is all written or the server hangs up. The test waits for it to end.
func trickle(t *testing.T, conn net.Conn, p []byte, interval time.Duration) {
	done := make(chan struct{})
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	go func() {
		defer close(done)
		for i := range len(p) {
			if _, err := conn.Write(p[i : i+1]); err != nil {
				return
			}
			time.Sleep(interval)
		}
	}()
}

const addCall = `{"method_name": "add", "method_args": [1, 2, 3]}`

// TestFirstRequestTimeout opens two connections: one sends nothing, the
// other the start of a request, one byte a second. The server closes each
// at FirstRequestTimeout from its start: the deadline is for the whole
// first request, and a trickle does not move it.
func TestFirstRequestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		require.NotEqual(t, srv.FirstRequestTimeout, srv.IdleTimeout)
		l := newPipeListener()
		serve(t, srv, l)
		start := time.Now()
		_, silentClosed := l.dial(t)
		trickling, trickleClosed := l.dial(t)
		trickle(t, trickling, []byte(addCall), time.Second) // 49 s of bytes

		assert.Equal(t, srv.FirstRequestTimeout, waitClosed(t, silentClosed, start, 2*srv.FirstRequestTimeout), "a connection that sends nothing")
		assert.Equal(t, srv.FirstRequestTimeout, waitClosed(t, trickleClosed, start, 2*srv.FirstRequestTimeout), "a connection that trickles its first request")
	})
}

// TestIdleTimeout makes one call, and then sends the start of the next one
// byte every ten seconds. The server closes the connection at IdleTimeout
// after the answer, not at FirstRequestTimeout, and not later for the
// bytes that trickle in.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		l := newPipeListener()
		serve(t, srv, l)
		conn, closed := l.dial(t)
		_, err := io.WriteString(conn, addCall)
		require.NoError(t, err)
		assert.Equal(t, `{"res":6}`, nextAnswer(t, newFrameReader(conn, DefaultMaxMessageBytes)))

		answered := time.Now()
		trickle(t, conn, []byte(addCall), 10*time.Second)
		assert.Equal(t, srv.IdleTimeout, waitClosed(t, closed, answered, 2*srv.IdleTimeout))
	})
}

// TestWriteTimeout makes a call and never reads the answer. The server
// gives up on the answer at WriteTimeout and closes the connection: a
// client that stops reading does not hold the server's goroutine.
func TestWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		l := newPipeListener()
		serve(t, srv, l)
		conn, closed := l.dial(t)
		start := time.Now()
		_, err := io.WriteString(conn, addCall)
		require.NoError(t, err)

		assert.Equal(t, srv.WriteTimeout, waitClosed(t, closed, start, 2*srv.WriteTimeout))
		_, err = conn.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "no byte of the answer was delivered")
	})
}

// TestMaxConnsSlotIsReleased fills MaxConns with one connection that has
// sent half a request, queues a second, and closes the first: the second
// is served at once, because the first gave its slot back when it closed.
func TestMaxConnsSlotIsReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxConns = 1
		l := newPipeListener()
		serve(t, srv, l)
		first, _ := l.dial(t)
		_, err := first.Write([]byte(addCall[:20]))
		require.NoError(t, err)
		// The pipe's Write returns once the server has read the bytes, a
		// moment before the server marks the connection busy: until then it
		// is idle, and the second connection would evict it, as it may.
		synctest.Wait()

		second, _ := l.dial(t)
		sent := make(chan error, 1)
		go func() {
			_, err := second.Write([]byte(addCall))
			sent <- err
		}()
		synctest.Wait()
		select {
		case err := <-sent:
			t.Fatalf("the second connection was read (%v) while the first held the only slot", err)
		default:
		}

		require.NoError(t, first.Close())
		// Nothing in the server waits on a timer that ends before
		// FirstRequestTimeout: in fake time, a second connection that is
		// not served fails at this deadline.
		require.NoError(t, second.SetReadDeadline(time.Now().Add(time.Second)))
		require.NoError(t, <-sent)
		assert.Equal(t, `{"res":6}`, nextAnswer(t, newFrameReader(second, DefaultMaxMessageBytes)), "the second connection, once the first has closed")
	})
}

// TestShutdownClosesIdleConnections leaves a connection idle after a call,
// with 60 s of IdleTimeout ahead of it, and shuts the server down. The
// connection gets closeLinger for a request that was already on its way,
// not its IdleTimeout: it is closed, and Shutdown returns, at closeLinger.
func TestShutdownClosesIdleConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn, closed := l.dial(t)
		_, err := io.WriteString(conn, addCall)
		require.NoError(t, err)
		assert.Equal(t, `{"res":6}`, nextAnswer(t, newFrameReader(conn, DefaultMaxMessageBytes)))

		start := time.Now()
		shutdown := make(chan error, 1)
		go func() { shutdown <- srv.Shutdown(context.Background()) }()
		assert.Equal(t, closeLinger, waitClosed(t, closed, start, 2*closeLinger))
		assert.NoError(t, <-shutdown)
		assert.Equal(t, closeLinger, time.Since(start), "Shutdown returned once the connection was closed")
		<-served
	})
}

// TestShutdownDeadlineWithNoCallRunning shuts the server down with a
// deadline shorter than closeLinger while a client keeps a connection
// that waits for a request. At the deadline Shutdown closes it and returns
// nil: no call was cut off. (cmd/server's exit status rests on this: 1
// only when a call was cut off.)
func TestShutdownDeadlineWithNoCallRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		_, closed := l.dial(t)
		synctest.Wait() // the connection waits for its first request

		const grace = 100 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		start := time.Now()
		assert.NoError(t, srv.Shutdown(ctx), "no call was running at the deadline")
		assert.Equal(t, grace, time.Since(start), "Shutdown returned at its deadline")
		assert.Equal(t, grace, waitClosed(t, closed, start, 2*grace))
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
}

// TestShutdownCutsBlockedWrites makes a call and never reads the answer,
// so the server's write waits, with WriteTimeout (10 s) to go, and then
// shuts the server down. The write gets closeLinger from Shutdown's start:
// a client that stops reading cannot hold Shutdown.
func TestShutdownCutsBlockedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn, closed := l.dial(t)
		_, err := io.WriteString(conn, addCall)
		require.NoError(t, err)
		synctest.Wait() // the server waits to write the answer

		start := time.Now()
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.Equal(t, closeLinger, time.Since(start), "Shutdown returned at closeLinger")
		assert.Equal(t, closeLinger, waitClosed(t, closed, start, 2*srv.WriteTimeout))
		<-served
	})
}

// TestShutdownGivesAnswersCloseLinger holds a call until Shutdown has
// begun, and never reads its answer. An answer written once Shutdown has
// begun gets closeLinger to be written, not WriteTimeout.
func TestShutdownGivesAnswersCloseLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		entered, release := holdCalls(srv)
		defer release() // so that a test that fails early still ends its bubble
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn, closed := l.dial(t)
		_, err := io.WriteString(conn, addCall)
		require.NoError(t, err)
		<-entered

		shutdown := make(chan error, 1)
		go func() { shutdown <- srv.Shutdown(context.Background()) }()
		<-served // Shutdown has begun
		time.Sleep(time.Second)
		start := time.Now()
		release() // the answer is written now, and nobody reads it
		assert.Equal(t, closeLinger, waitClosed(t, closed, start, 2*srv.WriteTimeout))
		assert.NoError(t, <-shutdown)
	})
}

// tooLargeCall is a request over the limit of 1000 bytes that the hang-up
// tests give the server, and refusal the server's answer to it.
var (
	tooLargeCall = `{"method_name": "echo", "method_args": ["` + strings.Repeat("x", 5000)
	refusal      = `{"res":null,"error":"message too large: more than 1000 bytes; closing the connection"}`
)

// TestRefusalHangsUpPolitely sends a request far over the server's limit.
// The server answers that it is too large, and hangs up politely: it
// closes its sending half, reads and drops the rest of the request, which
// the client's write then delivers in full, and closes the connection
// after closeLinger of silence. (On TCP, closing with the request unread
// would send a reset, which can destroy the answer before it is read;
// TestRefusalIsReadable shows that over a real socket.)
func TestRefusalHangsUpPolitely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxRequestBytes = 1000
		l := newPipeListener()
		serve(t, srv, l)
		conn, server := l.dialHalfClose(t)
		sent := make(chan error, 1)
		go func() {
			_, err := io.WriteString(conn, tooLargeCall)
			sent <- err
		}()
		assert.Equal(t, refusal, nextAnswer(t, newFrameReader(conn, DefaultMaxMessageBytes)))
		require.NoError(t, <-sent, "the server read and dropped the rest of the request")

		silent := time.Now()
		assertHalfClosed(t, server)
		assert.Equal(t, closeLinger, waitClosed(t, server.closed, silent, 2*closeLinger))
	})
}

// TestHangUpGivesUp trickles bytes after a refusal, one every half
// closeLinger, for longer than WriteTimeout. Each byte keeps the hang-up
// reading, but only until WriteTimeout from its start: a client cannot
// keep a refused connection open.
func TestHangUpGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxRequestBytes = 1000
		l := newPipeListener()
		serve(t, srv, l)
		conn, server := l.dialHalfClose(t)
		sent := make(chan error, 1)
		go func() {
			_, err := io.WriteString(conn, tooLargeCall)
			sent <- err
		}()
		assert.Equal(t, refusal, nextAnswer(t, newFrameReader(conn, DefaultMaxMessageBytes)))
		<-sent

		refused := time.Now()
		trickle(t, conn, make([]byte, 4*srv.WriteTimeout/closeLinger), closeLinger/2) // twice WriteTimeout
		assert.Equal(t, srv.WriteTimeout, waitClosed(t, server.closed, refused, 2*srv.WriteTimeout))
	})
}

// TestShutdownRefusalHangsUpPolitely sends a request on a connection once
// Shutdown has begun: the server answers that the call did not run, and
// hangs up politely, within closeLinger, as it does after a refusal.
func TestShutdownRefusalHangsUpPolitely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		entered, release := holdCalls(srv)
		defer release() // so that a test that fails early still ends its bubble
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		busy, _ := l.dial(t) // its call keeps Shutdown waiting
		_, err := io.WriteString(busy, addCall)
		require.NoError(t, err)
		<-entered
		late, server := l.dialHalfClose(t)
		synctest.Wait() // the server waits for its first request

		shutdown := make(chan error, 1)
		go func() { shutdown <- srv.Shutdown(context.Background()) }()
		<-served // Shutdown has begun
		_, err = io.WriteString(late, addCall)
		require.NoError(t, err)
		assert.Equal(t, `{"res":null,"error":"the server is shutting down; the call did not run"}`, nextAnswer(t, newFrameReader(late, DefaultMaxMessageBytes)))
		answered := time.Now()
		_, err = io.WriteString(late, addCall)
		assert.NoError(t, err, "the server reads what comes after its answer")
		assertHalfClosed(t, server)
		assert.Equal(t, closeLinger, waitClosed(t, server.closed, answered, 2*closeLinger))

		release()
		assert.Equal(t, `{"res":6}`, nextAnswer(t, newFrameReader(busy, DefaultMaxMessageBytes)), "the call in flight is answered")
		assert.NoError(t, <-shutdown)
	})
}
