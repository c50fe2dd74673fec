package wsgirouter

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file run the server in a synctest bubble, over
// connections made with net.Pipe inside it. Every deadline then runs on
// the bubble's fake clock, which moves only when every goroutine in the
// bubble is blocked: a test can say that a connection closed at 5 s, not
// at 4.999 s or 25 s, and it takes microseconds. What only the kernel
// does (resets, buffers, a FIN) is left to the tests over real TCP.

// pipeListener is a net.Listener of in-memory connections, made with
// net.Pipe. Its queue of connections not yet accepted plays the kernel's
// accept queue; a test may queue an error too, which one call of Accept
// returns.
type pipeListener struct {
	queue    chan acceptResult
	closed   chan struct{}
	once     sync.Once
	accepted atomic.Int64

	mu    sync.Mutex // protects calls
	calls []time.Time
}

// acceptResult is what one call of Accept returns.
type acceptResult struct {
	conn net.Conn
	err  error
}

// newPipeListener must be called inside the bubble, so that its channels,
// and the pipes it makes, are the bubble's.
func newPipeListener() *pipeListener {
	return &pipeListener{queue: make(chan acceptResult, 16), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	l.mu.Unlock()
	select {
	case r := <-l.queue:
		if r.err == nil {
			l.accepted.Add(1)
		}
		return r.conn, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// acceptCalls returns when each call of Accept began.
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

// dial queues a new connection to the listener and returns the client's
// end of it, with a reader.
func (l *pipeListener) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	server, client := net.Pipe()
	select {
	case l.queue <- acceptResult{conn: server}:
	default:
		t.Fatal("the accept queue is full")
	}
	t.Cleanup(func() { client.Close() })
	return client, bufio.NewReader(client)
}

// serveInBubble runs srv on a new pipeListener until the test's function
// returns, then shuts it down and checks that Serve returned
// ErrServerClosed.
func serveInBubble(t *testing.T, srv *Server) *pipeListener {
	t.Helper()
	l := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
	return l
}

// connsServed returns the connections the server serves now.
func connsServed(srv *Server) []*conn {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var cs []*conn
	for c := range srv.conns {
		cs = append(cs, c)
	}
	return cs
}

// writeAll writes s to conn: it returns once the server has read it all,
// since a pipe has no buffer.
func writeAll(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	_, err := io.WriteString(conn, s)
	require.NoError(t, err)
}

// readAnswer reads one answer and its body.
func readAnswer(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// waitForClose reads until the server closes the connection, and returns
// how long that took from start. Nothing may come before the close.
func waitForClose(t *testing.T, br *bufio.Reader, start time.Time) time.Duration {
	t.Helper()
	rest, err := io.ReadAll(br)
	require.NoError(t, err, "the server closes the connection (EOF)")
	assert.Empty(t, string(rest), "nothing before the close")
	return time.Since(start)
}

const addRequest = "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\n\r\n"

// keptAliveInBubble makes one request on a new connection and reads its
// answer, so that the connection is kept alive and waits for the next.
func keptAliveInBubble(t *testing.T, l *pipeListener) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, br := l.dial(t)
	writeAll(t, conn, addRequest)
	resp, body := readAnswer(t, br)
	require.Equal(t, `{"result": 3}`, body)
	require.False(t, resp.Close)
	return conn, br
}

// TestHeaderTimeoutExactly: HeaderTimeout (5 s) bounds the wait for a new
// connection's first byte, and a request's head from its first byte, on a
// new connection and on a kept-alive one alike; a head sent a byte at a
// time does not move it.
func TestHeaderTimeoutExactly(t *testing.T) {
	t.Run("silent new connection", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := serveInBubble(t, newDemoServer(t))
			start := time.Now()
			_, br := l.dial(t)
			assert.Equal(t, DefaultHeaderTimeout, waitForClose(t, br, start))
		})
	})
	t.Run("half a head on a new connection", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := serveInBubble(t, newDemoServer(t))
			conn, br := l.dial(t)
			time.Sleep(2 * time.Second)
			start := time.Now()
			writeAll(t, conn, "GET /time HTTP/1.1\r\nHost: te")
			assert.Equal(t, DefaultHeaderTimeout, waitForClose(t, br, start), "from the head's first byte")
		})
	})
	t.Run("a head a byte a second", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := serveInBubble(t, newDemoServer(t))
			conn, br := l.dial(t)
			start := time.Now()
			writeAll(t, conn, addRequest[:1])
			defer trickle(conn, []byte(addRequest[1:]), time.Second)()
			assert.Equal(t, DefaultHeaderTimeout, waitForClose(t, br, start))
		})
	})
	t.Run("half a head on a kept-alive connection", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := serveInBubble(t, newDemoServer(t))
			conn, br := keptAliveInBubble(t, l)
			// Well inside IdleTimeout (60 s), the next request begins, and
			// stops half-way: HeaderTimeout counts from its first byte.
			// Without it, the idle deadline would still stand, and the
			// head could trickle in for 30 s more.
			time.Sleep(30 * time.Second)
			start := time.Now()
			writeAll(t, conn, "GET /time HTTP/1.1\r\nHo")
			assert.Equal(t, DefaultHeaderTimeout, waitForClose(t, br, start))
		})
	})
}

// TestReadTimeoutExactly: ReadTimeout (10 s) bounds a request from its
// first byte to the end of its body.
func TestReadTimeoutExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := serveInBubble(t, NewServer(bodyEchoApp))
		conn, br := l.dial(t)
		start := time.Now()
		writeAll(t, conn, "POST /echo HTTP/1.1\r\n")
		time.Sleep(4 * time.Second) // the head ends within HeaderTimeout
		writeAll(t, conn, "Host: test\r\nContent-Length: 10\r\n\r\n01234")
		assert.Equal(t, DefaultReadTimeout, waitForClose(t, br, start), "from the request's first byte")
	})
}

// TestIdleTimeoutExactly: a kept-alive connection that sends nothing
// after its answer is closed IdleTimeout (60 s) after it.
func TestIdleTimeoutExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := serveInBubble(t, newDemoServer(t))
		_, br := keptAliveInBubble(t, l)
		assert.Equal(t, DefaultIdleTimeout, waitForClose(t, br, time.Now()))
	})
}

// TestWriteTimeoutExactly: a client that does not read its answer holds
// the server's write for WriteTimeout (10 s), and then the server closes
// the connection.
func TestWriteTimeoutExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDemoServer(t)
		l := serveInBubble(t, srv)
		conn, _ := l.dial(t)
		start := time.Now()
		writeAll(t, conn, addRequest) // and never read
		time.Sleep(DefaultWriteTimeout - time.Nanosecond)
		synctest.Wait()
		assert.Len(t, connsServed(srv), 1, "closed before WriteTimeout")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Empty(t, connsServed(srv), "still served after WriteTimeout")
		assert.Equal(t, DefaultWriteTimeout, time.Since(start))
	})
}

// trickle writes one byte of p on conn every interval, from now on,
// until a write fails, p is all written, or the test's function returns:
// a client that keeps sending, too slowly to be noticed by a timer that
// each byte renews. Time in a bubble stops when the test's function
// returns, so the writer must end before that: the function trickle
// returns, stop, ends it: defer it.
func trickle(conn net.Conn, p []byte, interval time.Duration) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		for _, b := range p {
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}

// TestHangUpHasOneDeadline: after a connection's last answer, hangUp
// reads and drops what the client still sends for closeLinger (500 ms)
// in all. A byte every 300 ms does not renew it: the connection closes at
// 500 ms, whether its last answer said Connection: close, refused a
// request, or was cut short by Shutdown.
func TestHangUpHasOneDeadline(t *testing.T) {
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"Connection: close", "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", 200},
		{"refused", "GET /add HTTP/1.1\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := serveInBubble(t, newDemoServer(t))
				conn, br := l.dial(t)
				writeAll(t, conn, tc.request)
				resp, _ := readAnswer(t, br)
				require.Equal(t, tc.status, resp.StatusCode)
				require.True(t, resp.Close)
				start := time.Now()
				defer trickle(conn, make([]byte, 200), 300*time.Millisecond)() // for a minute
				assert.Equal(t, closeLinger, waitForClose(t, br, start))
			})
		})
	}
	t.Run("Shutdown", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := newDemoServer(t)
			l := serveInBubble(t, srv)
			conn, br := keptAliveInBubble(t, l)
			start := time.Now()
			shutdown := make(chan time.Duration)
			go func() {
				assert.NoError(t, srv.Shutdown(context.Background()))
				shutdown <- time.Since(start)
			}()
			// Shutdown ends the kept-alive connection, whose last answer
			// may still be on its way: it is hung up politely, and what
			// the client sends meanwhile is read and dropped.
			defer trickle(conn, make([]byte, 200), 300*time.Millisecond)()
			assert.Equal(t, closeLinger, waitForClose(t, br, start))
			assert.Equal(t, closeLinger, <-shutdown, "Shutdown waits for the connection, and no longer")
		})
	})
	t.Run("Shutdown while hanging up", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := newDemoServer(t)
			l := serveInBubble(t, srv)
			conn, br := l.dial(t)
			writeAll(t, conn, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
			_, body := readAnswer(t, br)
			require.Equal(t, `{"result": 3}`, body)
			start := time.Now()
			defer trickle(conn, make([]byte, 200), 300*time.Millisecond)()
			time.Sleep(400 * time.Millisecond)
			shutdown := make(chan time.Duration)
			go func() {
				assert.NoError(t, srv.Shutdown(context.Background()))
				shutdown <- time.Since(start)
			}()
			// Shutdown does not give the hang-up a deadline of its own.
			assert.Equal(t, closeLinger, waitForClose(t, br, start))
			assert.Equal(t, closeLinger, <-shutdown)
		})
	})
}

// TestShutdownGivesEachConnectionCloseLinger: once Shutdown has begun, a
// request on its way has closeLinger (500 ms) to arrive, and an answer
// closeLinger to be taken by its client; a client that does neither does
// not hold Shutdown for HeaderTimeout, ReadTimeout or WriteTimeout.
func TestShutdownGivesEachConnectionCloseLinger(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request string
		after   string // sent once Shutdown has begun
		read    bool   // the client reads what it is sent
	}{
		{"half a head", "GET /add?a=1&b=2 HTTP/1.1\r\nHo", "", true},
		{"half a body", "POST /add HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n01234", "", true},
		// The head ends after Shutdown began: the body's deadline, set
		// then, is closeLinger away too, not ReadTimeout.
		{"a head that ends after Shutdown, and half a body", "POST /add HTTP/1.1\r\nHo", "st: test\r\nContent-Length: 10\r\n\r\n01234", true},
		{"an answer nobody reads", addRequest, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newDemoServer(t)
				l := serveInBubble(t, srv)
				conn, br := l.dial(t)
				writeAll(t, conn, tc.request)
				time.Sleep(time.Second)
				start := time.Now()
				shutdown := make(chan time.Duration)
				go func() {
					assert.NoError(t, srv.Shutdown(context.Background()))
					shutdown <- time.Since(start)
				}()
				from, late := start, time.Duration(0)
				if tc.after != "" {
					synctest.Wait() // Shutdown has moved the deadlines
					late = 100 * time.Millisecond
					time.Sleep(late)
					writeAll(t, conn, tc.after)
					from = time.Now()
				}
				if tc.read {
					assert.Equal(t, closeLinger, waitForClose(t, br, from))
				}
				assert.Equal(t, late+closeLinger, <-shutdown)
			})
		})
	}
}

// TestShutdownWaitsForTheApplication: an application still running when
// Shutdown begins finishes, and its answer is written, with Connection:
// close; then Shutdown returns. Its client then has closeLinger to go.
// The answer gets closeLinger from when it is written, not WriteTimeout:
// a client that does not read it holds Shutdown no longer than one that
// does.
func TestShutdownWaitsForTheApplication(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads bool
	}{{"client reads", true}, {"client does not read", false}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				app := newHeldApp(t)
				srv := NewServer(app)
				l := serveInBubble(t, srv)
				conn, br := l.dial(t)
				writeAll(t, conn, "GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
				<-app.entered
				start := time.Now()
				shutdown := make(chan time.Duration)
				go func() {
					assert.NoError(t, srv.Shutdown(context.Background()))
					shutdown <- time.Since(start)
				}()
				time.Sleep(3 * time.Second) // longer than closeLinger
				close(app.release)
				if tc.reads {
					resp, body := readAnswer(t, br)
					assert.Equal(t, "done\n", body)
					assert.True(t, resp.Close)
					assert.Equal(t, 3*time.Second, time.Since(start), "the answer, as soon as the application returned")
				}
				assert.Equal(t, 3*time.Second+closeLinger, <-shutdown, "the client did not close: closeLinger more")
				if tc.reads {
					_, err := br.ReadByte()
					assert.ErrorIs(t, err, io.EOF)
				}
			})
		})
	}
}

// TestIdleConnectionKeepsSmallBuffers sends one large request for a
// large answer, and looks at what its connection keeps once it waits for
// the next: buffers of keepBufferBytes (4 KiB) at most.
func TestIdleConnectionKeepsSmallBuffers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// An answer of keepBufferBytes, which goes into the connection's
		// answer buffer with its head: past keepBufferBytes in all.
		var bodyLen atomic.Int64
		app := AppFunc(func(env *Environ, start StartResponse) []byte {
			bodyLen.Store(int64(len(env.Body)))
			_ = start(200, nil)
			return make([]byte, keepBufferBytes)
		})
		srv := NewServer(app)
		l := serveInBubble(t, srv)
		conn, br := l.dial(t)
		var fields strings.Builder
		for range 80 {
			fields.WriteString("X-Field: " + strings.Repeat("f", 100) + "\r\n")
		}
		body := strings.Repeat("b", 60<<10)
		writeAll(t, conn, "POST /big HTTP/1.1\r\nHost: test\r\n"+fields.String()+
			"Content-Length: 61440\r\n\r\n"+body)
		resp, answer := readAnswer(t, br)
		require.Equal(t, 200, resp.StatusCode)
		require.Len(t, answer, keepBufferBytes)
		require.Equal(t, int64(len(body)), bodyLen.Load(), "the application saw the whole body")
		synctest.Wait() // the connection waits for its next request
		cs := connsServed(srv)
		require.Len(t, cs, 1)
		c := cs[0]
		assert.Positive(t, c.idle.Load(), "the connection waits for a request")
		assert.LessOrEqual(t, cap(c.in.head), keepBufferBytes, "the head buffer, after a head of %d bytes", 80*111)
		assert.LessOrEqual(t, c.in.body.Cap(), keepBufferBytes, "the body buffer, after a body of 60 KiB")
		assert.LessOrEqual(t, cap(c.in.fields), 64, "the fields, after 81")
		assert.LessOrEqual(t, cap(c.out), keepBufferBytes, "the answer buffer, after an answer of more than 4 KiB")
	})
}

// TestServeTwoListeners serves two listeners at once. MaxConns (1)
// counts the connections of both: a connection kept alive on the first
// is evicted, and closed politely, when one comes on the second. Then,
// with both calls of Serve waiting in Accept, Shutdown ends both: it
// closes every listener, not one of them.
func TestServeTwoListeners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDemoServer(t)
		srv.MaxConns = 1
		first, second := newPipeListener(), newPipeListener()
		served := make(chan error, 2)
		go func() { served <- srv.Serve(first) }()
		go func() { served <- srv.Serve(second) }()
		_, firstBr := keptAliveInBubble(t, first)
		start := time.Now()
		secondConn, _ := keptAliveInBubble(t, second)
		assert.Equal(t, closeLinger, waitForClose(t, firstBr, start), "the first listener's connection made room")
		require.NoError(t, secondConn.Close())
		synctest.Wait() // the slot is free, and both calls of Serve wait in Accept
		assert.Empty(t, connsServed(srv))

		require.NoError(t, srv.Shutdown(context.Background()))
		for range 2 {
			assert.ErrorIs(t, <-served, ErrServerClosed)
		}
	})
}

// TestServeAfterShutdown: Serve returns ErrServerClosed at once when
// Shutdown was called before, and closes its listener.
func TestServeAfterShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDemoServer(t)
		require.NoError(t, srv.Shutdown(context.Background()))
		l := newPipeListener()
		assert.ErrorIs(t, srv.Serve(l), ErrServerClosed)
		_, err := l.Accept()
		assert.True(t, errors.Is(err, net.ErrClosed), "the listener is closed: %v", err)
	})
}

// TestServeAtMaxConnsReturnsOnShutdown: a Serve that waits for a slot,
// with every connection busy, not in Accept, also returns ErrServerClosed
// once Shutdown begins, and closes the connection that waited, unread.
func TestServeAtMaxConnsReturnsOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDemoServer(t)
		srv.MaxConns = 1
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		busy, _ := l.dial(t)
		writeAll(t, busy, addRequest[:10]) // half a request: not idle
		_, waitingBr := l.dial(t)
		synctest.Wait() // Serve waits for a slot
		start := time.Now()
		go func() { assert.NoError(t, srv.Shutdown(context.Background())) }()
		assert.ErrorIs(t, <-served, ErrServerClosed)
		assert.Zero(t, waitForClose(t, waitingBr, start), "the connection that waited is closed at once")
	})
}
