package httpadd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file check the server's timeouts, its connection cap
// and Shutdown to the nanosecond, and the client's answer cap. Each runs
// in a testing/synctest bubble, where time is fake: it stands still while
// any goroutine of the test can run, and jumps to the next timer once
// every one of them is blocked. The connections are net.Pipe pairs made
// inside the bubble (a TCP socket's waits are outside it), so a 60-second
// idle timeout passes at once, and time.Since(start) is exactly the timeout
// the server applied, on any machine, however loaded. A test that checked
// only "closed, eventually" could not tell 5 s from 25 s. Each wait has a
// bound, which costs nothing in fake time, so a server that never acts
// fails the test by name instead of hanging it.
//
// A net.Pipe has no buffer: a Write waits until the other end reads. That
// is what a client that stops reading looks like, which the WriteTimeout
// tests need; elsewhere the tests read every answer.

// pipeListener is a net.Listener for tests in a bubble: dial makes a
// net.Pipe and queues its server end for Accept.
type pipeListener struct {
	queue  chan net.Conn // the accept queue: a dialled connection waits here until accepted
	closed chan struct{} // closed by Close
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{queue: make(chan net.Conn, 16), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case conn := <-l.queue:
		return conn, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
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
	case l.queue <- watched:
	default:
		t.Fatal("the pipe listener's accept queue is full")
	}
	return client, watched.closed
}

// dialContext is dial for an http.Transport.
func (l *pipeListener) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.queue <- server:
		return client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
	case l.queue <- watched:
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

// writeString writes s to a pipe. The write returns once the server has read
// it all.
func writeString(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	_, err := io.WriteString(conn, s)
	require.NoError(t, err)
}

const addRequest = "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\n\r\n"

// TestHeaderTimeout sends the start of a request, one byte a second, and
// never ends its headers. At HeaderTimeout from the connection's start, not
// from its last byte, the server answers 400 and hangs up: a trickle cannot
// hold it.
func TestHeaderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		l := newPipeListener()
		serve(t, srv, l)
		conn, closed := l.dial(t)
		start := time.Now()
		trickle(t, conn, []byte("GET /add?a=1&b=2 HTTP/1.1\r\n"), time.Second) // 27 s of bytes

		require.NoError(t, conn.SetReadDeadline(start.Add(2*srv.HeaderTimeout)))
		answer, err := io.ReadAll(conn)
		require.NoError(t, err, "the server did not hang up within twice its header timeout")
		assert.Equal(t, srv.HeaderTimeout, time.Since(start), "the answer and the close came at the header timeout")
		assert.True(t, strings.HasPrefix(string(answer), "HTTP/1.1 400 Bad Request\r\n"), "got %q", answer)
		assert.Equal(t, srv.HeaderTimeout, waitClosed(t, closed, start, 2*srv.HeaderTimeout))
	})
}

// TestRequestBodyTimeout sends a request that announces a body and never
// sends it. Before it answers, net/http reads what is left of a body, so
// that the next request can be found; that read is bounded by the whole
// request's deadline, HeaderTimeout (net/http's ReadTimeout), from the
// request's start. Then the server answers, and hangs up because the body
// was never read.
func TestRequestBodyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		l := newPipeListener()
		serve(t, srv, l)
		conn, closed := l.dial(t)
		start := time.Now()
		writeString(t, conn, "POST /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n")

		require.NoError(t, conn.SetReadDeadline(start.Add(2*srv.HeaderTimeout)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err, "no answer within twice the header timeout")
		resp.Body.Close()
		assert.Equal(t, srv.HeaderTimeout, time.Since(start), "the answer came when the body's wait ended")
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		assert.True(t, resp.Close, "the connection is closed after this answer")
		assert.Equal(t, srv.HeaderTimeout, waitClosed(t, closed, start, 2*srv.HeaderTimeout))
	})
}

// TestIdleTimeout makes one call and then sends nothing. The server closes
// the connection at IdleTimeout after the answer; without its own
// IdleTimeout, net/http would wait the ReadTimeout (HeaderTimeout here)
// instead.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		require.NotEqual(t, srv.HeaderTimeout, srv.IdleTimeout)
		l := newPipeListener()
		serve(t, srv, l)
		conn, closed := l.dial(t)
		writeString(t, conn, addRequest)
		assert.Equal(t, `{"result": 3}`, readBody(t, bufio.NewReader(conn)))

		answered := time.Now()
		assert.Equal(t, srv.IdleTimeout, waitClosed(t, closed, answered, 2*srv.IdleTimeout))
	})
}

// TestWriteTimeout makes a call and never reads the answer. The server
// gives up at WriteTimeout from the request, and closes the connection:
// a client that stops reading does not hold the server's goroutine.
func TestWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		l := newPipeListener()
		serve(t, srv, l)
		conn, closed := l.dial(t)
		start := time.Now()
		writeString(t, conn, addRequest)

		assert.Equal(t, srv.WriteTimeout, waitClosed(t, closed, start, 2*srv.WriteTimeout))
		_, err := conn.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "no byte of the answer was delivered")
	})
}

// TestShutdownDeadlineClosesConnections holds a call inside the server and
// shuts the server down with a deadline: at the deadline, Shutdown closes
// the call's connection, so its caller learns at once, and returns the
// deadline's error, because a call was still running.
func TestShutdownDeadlineClosesConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		entered, release := make(chan struct{}), make(chan struct{})
		srv.beforeAnswer = func() {
			close(entered)
			<-release
		}
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() { <-served }()
		defer close(release)
		conn, closed := l.dial(t)
		writeString(t, conn, addRequest)
		<-entered

		const grace = 2 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		start := time.Now()
		err := srv.Shutdown(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, grace, time.Since(start), "Shutdown returned at its deadline")
		assert.Equal(t, grace, waitClosed(t, closed, start, 2*grace), "the connection was closed at Shutdown's deadline")
		_, err = conn.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "the caller sees the connection closed")
	})
}

// TestShutdownDeadlineClosesSlowReaders has a client that makes a call and
// never reads the answer, and shuts the server down with a deadline shorter
// than WriteTimeout. At the deadline Shutdown closes the connection, and
// returns nil: the call itself had finished, and only an answer nobody read
// was lost. Without that close the connection would last until WriteTimeout.
func TestShutdownDeadlineClosesSlowReaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn, closed := l.dial(t)
		writeString(t, conn, addRequest)
		synctest.Wait() // the server is blocked writing the answer

		const grace = 2 * time.Second
		require.Less(t, grace, srv.WriteTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		start := time.Now()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.Equal(t, grace, time.Since(start), "Shutdown returned at its deadline")
		assert.Equal(t, grace, waitClosed(t, closed, start, 2*srv.WriteTimeout), "the connection was closed at Shutdown's deadline")
		<-served
	})
}

// TestMaxConnsSlotIsReleased fills MaxConns with one connection, busy
// reading half a request, queues a second, and closes the first: the
// second is served at once, because the first gave its slot back when it
// closed.
func TestMaxConnsSlotIsReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.MaxConns = 1
		l := newPipeListener()
		serve(t, srv, l)

		first, _ := l.dial(t)
		writeString(t, first, addRequest[:10])
		synctest.Wait() // the server has taken in what it read: first is busy

		second, _ := l.dial(t)
		sent := make(chan error, 1)
		go func() {
			_, err := io.WriteString(second, "GET /add?a=2&b=2 HTTP/1.1\r\nHost: test\r\n\r\n")
			sent <- err
		}()
		synctest.Wait()
		select {
		case err := <-sent:
			t.Fatalf("the second connection was read (%v) while the first held the only slot", err)
		default:
		}

		require.NoError(t, first.Close())
		// Nothing in the server waits on a timer now: in fake time, a
		// second connection that is not served fails at this deadline.
		require.NoError(t, second.SetReadDeadline(time.Now().Add(time.Second)))
		require.NoError(t, <-sent)
		assert.Equal(t, `{"result": 4}`, readBody(t, bufio.NewReader(second)), "the second connection, once the first has closed")
	})
}

// tempError is an Accept error that may go away by itself, as running
// out of file descriptors does: net/http waits a little and accepts again.
type tempError struct{}

func (tempError) Error() string   { return "accept: too many open files (a test's)" }
func (tempError) Timeout() bool   { return false }
func (tempError) Temporary() bool { return true }

// failOnce is a pipeListener whose first Accept fails with a tempError.
type failOnce struct {
	*pipeListener
	failed bool // only Serve's goroutine calls Accept
}

func (l *failOnce) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, tempError{}
	}
	return l.pipeListener.Accept()
}

// TestAcceptErrorFreesSlot has the listener fail an Accept, with MaxConns
// 1: the failed Accept gives back the slot it took, so the next connection
// is served. A server that kept the slot would accept nothing more.
func TestAcceptErrorFreesSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.MaxConns = 1
		l := newPipeListener()
		serve(t, srv, &failOnce{pipeListener: l})
		conn, _ := l.dial(t)
		// net/http waits 5 ms after a failed Accept; nothing else in the
		// server waits on a timer, so in fake time a connection that is
		// never served fails at this deadline.
		require.NoError(t, conn.SetDeadline(time.Now().Add(time.Second)))
		writeString(t, conn, addRequest)
		assert.Equal(t, `{"result": 3}`, readBody(t, bufio.NewReader(conn)))
	})
}

// TestShutdownWakesAcceptAtMaxConns fills MaxConns with a call in flight,
// so that Serve waits for a free slot, and shuts the server down: Serve
// returns as soon as Shutdown closes the listener, without waiting for the
// call, whose answer is still written.
func TestShutdownWakesAcceptAtMaxConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.MaxConns = 1
		entered, release := make(chan struct{}), make(chan struct{})
		srv.beforeAnswer = func() {
			close(entered)
			<-release
		}
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn, _ := l.dial(t)
		writeString(t, conn, addRequest)
		<-entered
		synctest.Wait() // Serve waits for a slot

		shutdown := make(chan error, 1)
		go func() { shutdown <- srv.Shutdown(context.Background()) }()
		select {
		case <-served:
		case <-time.After(time.Second):
			t.Error("Serve did not return when Shutdown closed the listener: it still waits for a slot")
		}
		close(release)
		assert.Equal(t, `{"result": 3}`, readBody(t, bufio.NewReader(conn)), "the call in flight is answered")
		assert.NoError(t, <-shutdown)
	})
}

// TestMaxConnsKeepsPoliteClose sends a request with a body far larger
// than net/http reads on a handler's behalf. The server answers, then
// hangs up with the rest of the body unread; on TCP that close would send
// a reset, which can destroy the answer before the client reads it, so
// net/http first closes its sending half. The connection the MaxConns
// listener wraps must pass that CloseWrite on.
func TestMaxConnsKeepsPoliteClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		require.Positive(t, srv.MaxConns)
		l := newPipeListener()
		serve(t, srv, l)
		client, conn := l.dialHalfClose(t)

		sent := make(chan struct{})
		go func() {
			defer close(sent)
			// The body's first 300 KiB of the 1 MiB announced; the
			// write fails once the server hangs up.
			_, _ = io.WriteString(client, "POST /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\nContent-Length: 1048576\r\n\r\n"+strings.Repeat("x", 300<<10))
		}()
		resp, err := http.ReadResponse(bufio.NewReader(client), nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		select {
		case <-conn.wroteClosed:
		case <-time.After(time.Second):
			t.Fatal("the server hung up without closing its sending half first")
		}
		assertHalfClosed(t, conn)
		<-sent
	})
}

// TestClientCloseClosesConnections makes a call, which leaves a connection
// open in the client's pool, and closes the client: the connection is
// closed at once, and the server sees it go, instead of holding it for its
// IdleTimeout.
func TestClientCloseClosesConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		serve(t, NewServer(), l)
		c := NewClient("pipe")
		dialed := make(chan (<-chan struct{}), 1)
		c.http.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, closed := l.dial(t)
			dialed <- closed
			return conn, nil
		}
		sum, err := c.Add(t.Context(), 1, 2)
		require.NoError(t, err)
		require.Equal(t, 3, sum)
		closed := <-dialed

		start := time.Now()
		require.NoError(t, c.Close())
		assert.Zero(t, waitClosed(t, closed, start, time.Second), "the server saw the connection close")
	})
}

// TestClientAnswerCap points the client at a server that writes 5,000
// bytes of answer, more than the client's cap of 4,096, and then stops
// without ending the answer. The client refuses the answer as soon as it
// has read past its cap; it does not wait for the rest, which would never
// come, until its context ends.
func TestClientAnswerCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		odd := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"result": 3, "pad": "%s`, strings.Repeat("x", 5000))
			w.(http.Flusher).Flush()
			<-release
		})}
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- odd.Serve(l) }()
		defer func() {
			close(release)
			assert.NoError(t, odd.Shutdown(context.Background()))
			assert.ErrorIs(t, <-served, http.ErrServerClosed)
		}()

		c := NewClient("pipe")
		defer c.Close()
		c.http.Transport.(*http.Transport).DialContext = l.dialContext
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		_, err := c.Add(ctx, 1, 2)
		assert.ErrorContains(t, err, "answer is longer than 4096 bytes")
		assert.False(t, errors.Is(err, context.DeadlineExceeded), "the client waited for its context: %v", err)
		assert.Zero(t, time.Since(start), "the client waited for the rest of the answer")
	})
}
