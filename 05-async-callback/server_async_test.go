package asyncrpc

import (
	"bytes"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The server's side of stage 05: calls side by side, backpressure, and
// what the timeouts and Shutdown do while calls are in flight.

// TestPeerThatNeverReadsIsBounded attacks one connection with calls whose
// answers are 64 KiB each, and never reads an answer. The server's write
// blocks; then its answer queue fills; then MaxInFlight calls wait to queue
// their answers, and the reader waits for one of them to end before it
// reads another request. That is backpressure: 256 calls sent, and the
// server holds a bounded number of them, in goroutines, answers and bytes,
// while it goes on serving everyone else.
//
// It runs in a synctest bubble (see pipe_test.go): synctest.Wait returns
// once the server has done all it can, so the test sees the state the
// server is stuck in, exactly, with no clock and no guess. The connection
// is a net.Pipe, which has no kernel buffer: the server's first write of
// an answer blocks.
func TestPeerThatNeverReadsIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxInFlight, size, sent = 4, 64 << 10, 256
		srv := NewDemoServer(Service{})
		srv.MaxInFlight = maxInFlight
		var entered, written atomic.Int64
		srv.beforeAnswer = func(*Request) { entered.Add(1) }
		srv.answerWritten = func(uint64) { written.Add(1) }
		l := newPipeListener()
		serve(t, srv, l)

		requests := make([]any, sent)
		for i := range requests {
			requests[i] = &Request{ID: uint64(i + 1), Func: "echo", Params: []Value{{Type: typeStr, Str: strings.Repeat("x", size)}}}
		}
		stream := bytes.Join(encodeFrames(t, requests...), nil)
		requests = nil
		// Warm up: gob's engines and the pools.
		c := NewClient(l.dial(t))
		_, err := c.Call(t.Context(), "echo", strings.Repeat("x", size))
		require.NoError(t, err)
		synctest.Wait()
		entered.Store(0)
		written.Store(0)
		goroutinesBefore := runtime.NumGoroutine()
		heapBefore := heapInUse()

		peer := l.dial(t)
		sending := make(chan error, 1)
		go func() {
			_, err := peer.Write(stream) // blocks: the server stops reading
			sending <- err
		}()
		synctest.Wait() // the server is stuck, as backpressure says it should be
		goroutines := runtime.NumGoroutine() - goroutinesBefore
		heap := int64(heapInUse()) - int64(heapBefore)
		t.Logf("%d calls sent: %d entered, %d answers written; %d goroutines more; heap %d KiB more",
			sent, entered.Load(), written.Load(), goroutines, heap>>10)

		assert.Empty(t, sending, "the server read every call of a peer that reads no answer")
		// One answer in the writer's write, which blocks; MaxInFlight in
		// its queue; MaxInFlight calls waiting to queue theirs. The
		// reader holds the next request, and waits for a call to end.
		assert.Equal(t, int64(2*maxInFlight+1), entered.Load(), "calls run")
		assert.Zero(t, written.Load(), "answers written")
		// The connection's reader and writer, its calls, and the test's
		// writing goroutine.
		assert.Equal(t, 2+maxInFlight+1, goroutines, "goroutines more")
		// Each call run holds its request's string, which is its answer
		// too; the writer, one answer encoded; the reader, one request:
		// 11 messages, and 256 KiB for the rest (11.3 messages measured).
		// Had the server read every call, it would hold 256 × 64 KiB.
		bound := int64(2*maxInFlight+1+2)*size + 256<<10
		assert.Less(t, heap, bound, "bytes of heap more")

		sum, err := c.Call(t.Context(), "add", 1, 2)
		require.NoError(t, err, "another connection is served meanwhile")
		assert.Equal(t, 3, sum)

		peer.Close()
		assert.Error(t, <-sending, "the peer's writes fail once it has closed")
	})
}

// watchedListener hands the test each connection it accepts, wrapped so
// that the test sees the server's reads and its close.
type watchedListener struct {
	net.Listener
	conns chan *watchedConn
}

func watch(l net.Listener) *watchedListener {
	return &watchedListener{Listener: l, conns: make(chan *watchedConn, 16)}
}

func (l *watchedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &watchedConn{Conn: conn, timeouts: make(chan readTimeout, 64), closed: make(chan struct{}), hungUp: make(chan struct{})}
	l.conns <- w
	return w, nil
}

// watchedConn is the server's side of a connection, as the test sees it.
type watchedConn struct {
	net.Conn
	reads     atomic.Int64 // Read calls made
	bytesRead atomic.Int64
	timeouts  chan readTimeout // a read that hit its deadline
	closeOnce sync.Once
	closed    chan struct{} // closed when the server closes the connection
	// hungUp is closed when the server closes its writing side, to hang
	// up politely; readsBeforeHangUp is Read calls made by then.
	hangUpOnce        sync.Once
	hungUp            chan struct{}
	readsBeforeHangUp atomic.Int64
}

// readTimeout is a read that hit its deadline: the how-manieth read it
// was, and the bytes read before it.
type readTimeout struct{ read, bytesRead int64 }

func (c *watchedConn) Read(p []byte) (int, error) {
	read := c.reads.Add(1)
	n, err := c.Conn.Read(p)
	total := c.bytesRead.Add(int64(n))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		select {
		case c.timeouts <- readTimeout{read, total}:
		default:
		}
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// CloseWrite keeps the polite close of the connection it wraps, and
// records it.
func (c *watchedConn) CloseWrite() error {
	c.hangUpOnce.Do(func() {
		c.readsBeforeHangUp.Store(c.reads.Load())
		close(c.hungUp)
	})
	return c.Conn.(*net.TCPConn).CloseWrite()
}

// ending returns once the server has begun to end the connection: hung
// up, or closed.
func ending(t *testing.T, c *watchedConn) {
	t.Helper()
	select {
	case <-c.hungUp:
	case <-c.closed:
	case <-time.After(rpctest.Backstop):
		t.Fatal("the server never ended the connection")
	}
}

// nextTimeout returns the next read of c that hit its deadline.
func nextTimeout(t *testing.T, c *watchedConn) readTimeout {
	t.Helper()
	select {
	case rt := <-c.timeouts:
		return rt
	case <-time.After(rpctest.Backstop):
		t.Fatal("the server's read never hit its deadline")
		return readTimeout{}
	}
}

// busyConn is a raw connection to a server whose IdleTimeout is 50 ms
// and whose calls are held inside the server until release is called; its
// first call, echo("held") with ID 1, is held there already. next is
// sum(1, 2) with ID 2, not sent.
type busyConn struct {
	conn    net.Conn
	answers *decoder
	server  *watchedConn // the server's side, whose reads and timeouts the test sees
	sent    int          // bytes sent so far: the held call's frame
	next    []byte
	entered chan struct{} // receives once for each call that reaches the server
	release func()
}

func newBusyConn(t *testing.T) busyConn {
	srv := NewDemoServer(Service{})
	srv.FirstRequestTimeout = time.Hour
	srv.IdleTimeout = 50 * time.Millisecond
	entered, release := holdCalls(srv)
	l := watch(rpctest.Listen(t))
	addr := serve(t, srv, l)
	t.Cleanup(release) // before the server's shutdown, which waits for the held call

	conn, answers := rawConn(t, addr)
	frames := encodeFrames(t, withID(call(t, "echo", "held"), 1), withID(call(t, "sum", 1, 2), 2))
	write(t, conn, frames[0])
	<-entered
	return busyConn{conn, answers, <-l.conns, len(frames[0]), frames[1], entered, release}
}

// TestIdleTimeoutSparesBusyConnections holds a call past IdleTimeout: the
// client is waiting for an answer, not idle, so when the server's read
// hits its deadline the server reads on, and serves another call. Once
// both are answered, the connection is idle, and it is closed.
func TestIdleTimeoutSparesBusyConnections(t *testing.T) {
	b := newBusyConn(t)
	nextTimeout(t, b.server) // IdleTimeout has passed, with the call held
	write(t, b.conn, b.next)
	rpctest.Receive(t, b.entered, "second call, on a connection past its IdleTimeout")
	b.release()
	assert.Equal(t, map[uint64]Response{1: answerTo(1, strAnswer("held")), 2: answerTo(2, intAnswer(3))},
		nextAnswers(t, b.answers, 2))
	assertClosed(t, b.answers.decode(&Response{})) // idle now: closed after IdleTimeout
}

// TestHalfFrameDuringCallTimesOut holds a call and sends half of the next
// request. A client that is waiting for an answer may be silent, but one
// that stops in the middle of a frame is not waiting: the read timeout
// still ends it. The server stops reading, answers the call in flight once
// it ends, and closes the connection.
func TestHalfFrameDuringCallTimesOut(t *testing.T) {
	b := newBusyConn(t)
	half := b.next[:len(b.next)/2]
	write(t, b.conn, half)
	sent := int64(b.sent + len(half))
	var timeout readTimeout
	for timeout.bytesRead < sent {
		timeout = nextTimeout(t, b.server) // timeouts before the half frame arrived do not count
	}
	b.release()
	assert.Equal(t, answerTo(1, strAnswer("held")), nextAnswer(t, b.answers), "the call in flight is answered")
	assertClosed(t, b.answers.decode(&Response{}))
	<-b.server.closed
	select {
	case <-b.server.hungUp: // it wrote an answer, so it hung up politely first
	default:
		t.Fatal("the server closed without hanging up, after writing an answer")
	}
	assert.Equal(t, timeout.read, b.server.readsBeforeHangUp.Load(), "the server read on after a frame stopped halfway")
}

// TestRefusalWhileCallInFlight holds a call and sends a request of 65
// arguments. The refusal carries that request's ID and comes first; the
// call in flight is still answered; then the connection is closed.
func TestRefusalWhileCallInFlight(t *testing.T) {
	srv := NewDemoServer(Service{})
	entered, release := holdCalls(srv)
	addr := serve(t, srv, rpctest.Listen(t))
	defer release()

	conn, answers := rawConn(t, addr)
	frames := encodeFrames(t, withID(call(t, "echo", "held"), 1), &Request{ID: 2, Func: "sum", Params: make([]Value, maxArgs+1)})
	write(t, conn, frames[0])
	<-entered
	write(t, conn, frames[1])
	refusal := nextAnswer(t, answers)
	assert.Equal(t, uint64(2), refusal.ID, "the refusal names the request it refuses")
	assert.Equal(t, "malformed message: more than 64 arguments; closing the connection", refusal.Error)
	release()
	assert.Equal(t, answerTo(1, strAnswer("held")), nextAnswer(t, answers), "the call in flight is answered")
	assertClosed(t, answers.decode(&Response{}))
}
