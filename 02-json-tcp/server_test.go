package jsontcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// rawConn dials addr and returns the connection and a reader of answers.
func rawConn(t *testing.T, addr string) (net.Conn, *frameReader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	return conn, newFrameReader(conn, DefaultMaxMessageBytes)
}

func write(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	_, err := io.WriteString(conn, s)
	require.NoError(t, err)
}

// assertClosed checks that a read failed because the server closed the
// connection. A server that closes with bytes unread sends a reset, and
// the reader may see that instead of the end of the stream.
func assertClosed(t *testing.T, err error) {
	t.Helper()
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "want the connection closed, got %v", err)
}

func nextAnswer(t *testing.T, answers *frameReader) string {
	t.Helper()
	msg, err := answers.next()
	require.NoError(t, err)
	return string(msg)
}

// TestServerAnswersEachCallInOrder sends requests the ways TCP may deliver
// them: several in one write, one over many writes, one byte per write.
// The article's server reads once with recv(1024) and would fail each.
func TestServerAnswersEachCallInOrder(t *testing.T) {
	conn, answers := rawConn(t, serve(t, NewDemoServer(), rpctest.Listen(t)))

	// Three calls in one write.
	write(t, conn, `{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}`+
		`{"method_name": "add", "method_args": [1, 2], "method_kwargs": {}}`+"\n"+
		`{"method_name": "echo", "method_args": ["x"], "method_kwargs": {}}`)
	assert.Equal(t, `{"res":6}`, nextAnswer(t, answers))
	assert.Equal(t, `{"res":13}`, nextAnswer(t, answers))
	assert.Equal(t, `{"res":"x"}`, nextAnswer(t, answers))

	// One call, a byte per write.
	for _, b := range []byte(`{"method_name": "add", "method_args": [40, 2, 0]}`) {
		write(t, conn, string(b))
	}
	assert.Equal(t, `{"res":42}`, nextAnswer(t, answers))
}

// TestServerLargeRequest echoes 200 KB, two hundred times the article's
// 1024-byte read. That is over the default limit, so both sides raise it.
func TestServerLargeRequest(t *testing.T) {
	const limit = 1 << 20
	srv := NewDemoServer()
	srv.MaxRequestBytes = limit
	c := dial(t, serve(t, srv, rpctest.Listen(t)), WithMaxAnswerBytes(limit))
	big := strings.Repeat("0123456789{}[]\"\\,:", 200<<10/18)
	got, err := c.Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)
}

// TestServerRequestTooLarge sends more than the limit: the server answers
// with an error, closes that connection without reading the rest, and goes
// on serving everyone else.
func TestServerRequestTooLarge(t *testing.T) {
	srv := NewDemoServer()
	srv.MaxRequestBytes = 1000
	addr := serve(t, srv, rpctest.Listen(t))
	conn, answers := rawConn(t, addr)

	write(t, conn, `{"method_name": "echo", "method_args": ["`+strings.Repeat("x", 5000))
	assert.Equal(t, `{"res":null,"error":"message too large: more than 1000 bytes; closing the connection"}`, nextAnswer(t, answers))
	_, err := answers.next()
	assertClosed(t, err)

	other := dial(t, addr)
	sum, err := other.Add(t.Context(), 1, 2, 3)
	require.NoError(t, err)
	assert.Equal(t, 6, sum)
}

// TestServerMalformed checks both kinds of bad JSON: one whose brackets
// still balance gets an error and the connection goes on; one that leaves
// no way to find the next message gets an error and the connection closes.
func TestServerMalformed(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))

	conn, answers := rawConn(t, addr)
	write(t, conn, `{"method_name": "add", "method_args": [1, 2], tru}`)
	assert.Equal(t, `{"res":null,"error":"request is not a call: invalid character 't' looking for beginning of object key string"}`, nextAnswer(t, answers))
	write(t, conn, `{"method_name": "add", "method_args": [1, 2]}`)
	assert.Equal(t, `{"res":13}`, nextAnswer(t, answers), "the connection goes on")

	conn, answers = rawConn(t, addr)
	write(t, conn, "GET / HTTP/1.1\r\n\r\n")
	assert.Equal(t, `{"res":null,"error":"malformed message: a message is a JSON object and starts with '{', not 'G'; closing the connection"}`, nextAnswer(t, answers))
	_, err := answers.next()
	assertClosed(t, err)

	conn, answers = rawConn(t, addr)
	write(t, conn, `{"method_args": [1, 2]]`)
	assert.Equal(t, `{"res":null,"error":"malformed message: ']' where '}' was due; closing the connection"}`, nextAnswer(t, answers))
	_, err = answers.next()
	assertClosed(t, err)
}

// TestServerPanicIsAnAnswer registers a function that panics: the caller
// gets an error, and the server and the connection go on.
func TestServerPanicIsAnAnswer(t *testing.T) {
	srv := NewDemoServer()
	require.NoError(t, srv.Register("boom", func() int { panic("kaboom") }))
	c := dial(t, serve(t, srv, rpctest.Listen(t)))

	_, err := c.Call(t.Context(), "boom", nil, nil)
	var serverErr *ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.Equal(t, "boom: panicked: kaboom", serverErr.Message)

	sum, err := c.Add(t.Context(), 1, 2, 3)
	require.NoError(t, err)
	assert.Equal(t, 6, sum)
}

// TestSlowClientBlocksNobody opens a connection that sends half a request and
// then goes quiet. Other callers are answered long before the server would
// give up on the silent one: a server that served one connection at a time
// would make them miss their deadline.
func TestSlowClientBlocksNobody(t *testing.T) {
	srv := NewDemoServer()
	srv.FirstRequestTimeout = time.Hour
	srv.IdleTimeout = time.Hour
	addr := serve(t, srv, rpctest.Listen(t))

	silent, _ := rawConn(t, addr)
	write(t, silent, `{"method_name": "add", "meth`)

	ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop/3) // far less than an hour
	defer cancel()
	c := dial(t, addr)
	for i := range 5 {
		sum, err := c.Add(ctx, i, i, 0)
		require.NoError(t, err)
		assert.Equal(t, 2*i, sum)
	}
	silent.Close() // so that Shutdown need not wait for it
}

// TestServerClosesSilentConnections checks both read timeouts: a new
// connection has FirstRequestTimeout to send its first request, and
// IdleTimeout for each later one. Each server makes the other timeout an
// hour, so a server that mixed the two up would fail. This is the real-TCP
// check, bounded at 20 times the timeout; TestFirstRequestTimeout and
// TestIdleTimeout check the exact moments in fake time.
func TestServerClosesSilentConnections(t *testing.T) {
	server := func(first, idle time.Duration) string {
		srv := NewDemoServer()
		srv.FirstRequestTimeout, srv.IdleTimeout = first, idle
		return serve(t, srv, rpctest.Listen(t))
	}
	const timeout = 100 * time.Millisecond
	addr := server(timeout, time.Hour)

	never, answers := rawConn(t, addr)
	require.NoError(t, never.SetReadDeadline(time.Now().Add(20*timeout)))
	_, err := answers.next()
	assert.ErrorIs(t, err, io.EOF, "a connection that never sends is closed")
	never.Close()

	half, answers := rawConn(t, server(time.Hour, timeout))
	require.NoError(t, half.SetReadDeadline(time.Now().Add(20*timeout)))
	// One request and half of the next, in one write: nothing is sent
	// after the server may have closed, so it closes cleanly.
	write(t, half, `{"method_name": "add", "method_args": [1, 2]}`+`{"method_name": "add", "meth`)
	assert.Equal(t, `{"res":13}`, nextAnswer(t, answers))
	_, err = answers.next()
	assert.ErrorIs(t, err, io.EOF, "a connection that stops halfway through a request is closed")
}

// TestRefusalIsReadable sends a request far over the server's limit. The
// server answers that it is too large and closes the connection, but
// politely: a server that closed with the rest of the request unread would
// send a reset, and the client would see "connection reset by peer"
// instead of the reason.
func TestRefusalIsReadable(t *testing.T) {
	srv := NewDemoServer()
	srv.FirstRequestTimeout = time.Minute // encoding 32 MiB under -race takes seconds
	// On a loaded machine the client can stall between writes for longer
	// than closeLinger: the server must go on draining until it has read
	// all the client sent, or the close resets the refusal away.
	srv.linger, srv.WriteTimeout = rpctest.Backstop, rpctest.Backstop
	c := dial(t, serve(t, srv, rpctest.Listen(t)))
	// Far more than the kernel buffers between the two sides hold, so that
	// most of it is still unread when the server refuses it.
	_, err := c.Echo(t.Context(), strings.Repeat("x", 32<<20))
	var serverErr *ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.ErrorContains(t, err, "too large")
	assert.ErrorContains(t, err, "closing the connection")
}

// TestShutdownFinishesCallsInFlight holds a call inside the server, asks the
// server to shut down, and checks that the call's answer was written before
// Shutdown returned, and that an idle connection is closed.
func TestShutdownFinishesCallsInFlight(t *testing.T) {
	srv := NewDemoServer()
	entered, release := holdCalls(srv)
	l := &answerCounter{Listener: rpctest.Listen(t)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	_, idle := rawConn(t, l.Addr().String())
	c := dial(t, l.Addr().String())
	type result struct {
		sum int
		err error
	}
	answered := make(chan result, 1)
	go func() {
		sum, err := c.Add(context.Background(), 40, 2, 0)
		answered <- result{sum, err}
	}()
	<-entered

	type shutdownResult struct {
		err     error
		written int64 // answers written when Shutdown returned
	}
	shutdown := make(chan shutdownResult, 1)
	go func() {
		err := srv.Shutdown(context.Background())
		shutdown <- shutdownResult{err, l.written.Load()}
	}()
	_, err := idle.next()
	assert.ErrorIs(t, err, io.EOF, "an idle connection is closed")
	assert.ErrorIs(t, <-served, ErrServerClosed, "Serve returns once the listener is closed")
	release()

	got := <-answered
	require.NoError(t, got.err)
	assert.Equal(t, 42, got.sum)
	res := <-shutdown
	assert.NoError(t, res.err)
	assert.Equal(t, int64(1), res.written, "Shutdown returned before the answer in flight was written")
	_, err = net.Dial("tcp", l.Addr().String())
	assert.Error(t, err, "a server that has shut down accepts no connection")
}

// answerCounter counts the writes that the server's connections have
// finished.
type answerCounter struct {
	net.Listener
	written atomic.Int64
}

func (l *answerCounter) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: conn, written: &l.written}, nil
}

type countedConn struct {
	net.Conn
	written *atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(1)
	return n, err
}

// CloseWrite keeps the polite close of the connection it wraps.
func (c *countedConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// TestShutdownAnswersRequestsOnTheirWay sends a request on an idle
// connection after Shutdown has begun. The server does not drop it: it
// answers that the call did not run, so the caller knows, and then closes
// the connection.
func TestShutdownAnswersRequestsOnTheirWay(t *testing.T) {
	srv := NewDemoServer()
	srv.linger = rpctest.Backstop // so that a loaded machine cannot miss it
	entered, held := make(chan struct{}), make(chan struct{})
	require.NoError(t, srv.Register("wait", func() int {
		close(entered)
		<-held
		return 1
	}))
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	idle, answers := rawConn(t, l.Addr().String())
	write(t, idle, `{"method_name": "echo", "method_args": ["served"]}`)
	assert.Equal(t, `{"res":"served"}`, nextAnswer(t, answers))

	busy := dial(t, l.Addr().String()) // keeps Shutdown waiting
	waited := make(chan error, 1)
	go func() {
		_, err := busy.Call(context.Background(), "wait", nil, nil)
		waited <- err
	}()
	<-entered
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	require.ErrorIs(t, <-served, ErrServerClosed) // Shutdown has begun

	write(t, idle, `{"method_name": "echo", "method_args": ["late"]}`)
	assert.Equal(t, `{"res":null,"error":"the server is shutting down; the call did not run"}`, nextAnswer(t, answers))
	idle.Close()
	close(held)
	assert.NoError(t, <-waited, "the call in flight is answered")
	busy.Close()
	assert.NoError(t, <-shutdown)
}

// TestShutdownDoesNotWaitForSlowReaders has a client that asks for a large
// answer and never reads it. The server's write blocks, but Shutdown gives
// it only closeLinger, not WriteTimeout.
func TestShutdownDoesNotWaitForSlowReaders(t *testing.T) {
	srv := NewDemoServer()
	srv.WriteTimeout = time.Hour
	require.NoError(t, srv.Register("big", func() string { return strings.Repeat("x", 16<<20) }))
	entered, release := holdCalls(srv)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	reader, _ := rawConn(t, l.Addr().String())
	write(t, reader, `{"method_name": "big"}`)
	<-entered

	ctx := rpctest.BackstopContext(t)
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	<-served
	release()
	assert.NoError(t, <-shutdown, "Shutdown waited for a client that does not read")
}

// TestShutdownDeadline holds a call past Shutdown's deadline: at the
// deadline, Shutdown closes the call's connection, so its caller learns at
// once, and returns the context's error, while the call is still stuck in
// its function. It runs in fake time over a net.Pipe (see faketime_test.go),
// so it checks the exact moment, and a Shutdown that leaves the connection
// open fails at the bounded wait, by name, instead of hanging.
func TestShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		entered, release := holdCalls(srv)
		defer release() // so that a test that fails early still ends its bubble
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()

		conn, _ := l.dial(t)
		c := NewClient(conn)
		defer c.Close()
		failed := make(chan error, 1)
		go func() {
			_, err := DemoClient{c}.Add(context.Background(), 1, 2, 3)
			failed <- err
		}()
		<-entered

		const grace = 2 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		start := time.Now()
		assert.ErrorIs(t, srv.Shutdown(ctx), context.DeadlineExceeded, "Shutdown does not wait for a call that is stuck")
		assert.Equal(t, grace, time.Since(start), "Shutdown returned at its deadline")
		select {
		case err := <-failed:
			assert.Error(t, err, "the call's connection was closed under it")
			assert.Equal(t, grace, time.Since(start), "the call failed at Shutdown's deadline")
		case <-time.After(2 * grace):
			t.Errorf("%v after Shutdown's deadline, the call's connection is still open", 2*grace)
		}
		assert.ErrorIs(t, <-served, ErrServerClosed)
		release()
		assert.NoError(t, srv.Shutdown(context.Background()), "a second Shutdown waits for the call to end")
	})
}

// TestClientVanishes has a client give up and hang up while its call is
// inside the server. The server cannot write that answer; it drops the
// connection and goes on serving everyone else.
func TestClientVanishes(t *testing.T) {
	srv := NewDemoServer()
	entered, release := holdCalls(srv)
	addr := serve(t, srv, rpctest.Listen(t))
	defer release() // before the server's shutdown, which waits for held calls

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-entered
		cancel() // the client closes its connection: it is broken now
	}()
	c := dial(t, addr)
	failed := make(chan error, 1)
	go func() {
		_, err := c.Add(ctx, 1, 2, 0)
		failed <- err
	}()
	// TestClientCancel checks that the call returns at once.
	require.ErrorIs(t, rpctest.Receive(t, failed, "return from the cancelled call"), context.Canceled)
	release()

	sum, err := dial(t, addr).Add(t.Context(), 1, 2, 0)
	require.NoError(t, err, "the server goes on serving")
	assert.Equal(t, 3, sum)
}

// TestManyConnections runs many connections, each making many calls at
// once, and checks every answer. Run under -race, it is also the server's
// check for data races.
func TestManyConnections(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	const conns, calls = 32, 100
	var g errgroup.Group
	for i := range conns {
		g.Go(func() error {
			c, err := Dial(t.Context(), addr)
			if err != nil {
				return err
			}
			defer c.Close()
			for j := range calls {
				sum, err := DemoClient{c}.Add(t.Context(), i, j, 1000*i)
				if err != nil {
					return err
				}
				if want := i + j + 1000*i; sum != want {
					return fmt.Errorf("conn %d call %d: got %d, want %d", i, j, sum, want)
				}
			}
			return nil
		})
	}
	assert.NoError(t, g.Wait())
}
