package customproto

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

// rawConn dials addr and returns the connection and a reader of framed
// answers.
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

// legacyCall writes a call in the article's form and reads its answer.
// Nothing marks where that answer ends, so it reads as many bytes as the
// answer the test expects: a longer answer shows up in the next call, and a
// shorter one as a mismatch.
func legacyCall(t *testing.T, conn net.Conn, call, want string) {
	t.Helper()
	write(t, conn, call)
	got := make([]byte, 0, len(want))
	for len(got) < len(want) && strings.HasPrefix(want, string(got)) { // stop at the first wrong byte
		n, err := conn.Read(got[len(got):cap(got)])
		require.NoError(t, err, "answer to %q, so far %q", call, got)
		got = got[:len(got)+n]
	}
	assert.Equal(t, want, string(got), "answer to %q", call)
}

// TestServerArticleForm makes the article's calls, in the article's form,
// one after another on one connection, and checks the exact answers: the
// bytes the article's server sends.
func TestServerArticleForm(t *testing.T) {
	conn, _ := rawConn(t, serve(t, newStoppedClockServer(t), rpctest.Listen(t)))
	legacyCall(t, conn, "func:sum@params:1-1,1-2", "data:3")
	legacyCall(t, conn, "func:sum@params:2-1.1,1-2", "data:3.1")
	legacyCall(t, conn, "func:get_time", "data:Wed Jan 16 22:05:31 2019")
	legacyCall(t, conn, "func:sum@params:2-1.5,2-1.5", "data:3.0") // Python's str(3.0), not Go's 3
	legacyCall(t, conn, "func:echo@params:3-a:b-c@d", "data:a:b-c@d")
	legacyCall(t, conn, "func:add@params:1-40,1-2", "data:42")
}

// TestServerFramedForm sends framed calls the ways TCP may deliver them:
// several in one write, one over two writes, one byte per write.
func TestServerFramedForm(t *testing.T) {
	conn, answers := rawConn(t, serve(t, newStoppedClockServer(t), rpctest.Listen(t)))

	write(t, conn, "23 func:sum@params:1-1,1-2\n25 func:sum@params:2-1.1,1-2\n13 func:get_time\n")
	assert.Equal(t, "data:1-3", nextAnswer(t, answers))
	assert.Equal(t, "data:2-3.1", nextAnswer(t, answers))
	assert.Equal(t, "data:3-Wed Jan 16 22:05:31 2019", nextAnswer(t, answers))

	write(t, conn, "45 func:echo@params:3-a%2Cb-c:d")
	write(t, conn, "@e%25f%0Ag 中文\n")
	assert.Equal(t, "data:3-a%2Cb-c:d%40e%25f%0Ag 中文", nextAnswer(t, answers), "a raw \"@\" in a value is understood, and escaped in the answer")

	for _, b := range []byte("24 func:add@params:1-40,1-2\n") {
		write(t, conn, string(b))
	}
	assert.Equal(t, "data:1-42", nextAnswer(t, answers))
}

// TestServerErrorsAreNotData sends bad calls in both forms. Each gets an
// answer that starts with "error:", which no result can, and the same
// connection then serves a good call.
func TestServerErrorsAreNotData(t *testing.T) {
	srv := NewDemoServer()
	addr := serve(t, srv, rpctest.Listen(t))
	tests := []struct {
		name, call, answer string
	}{
		{"unknown function", "func:sub@params:1-3,1-1", `no function "sub"; there are: ` + functionList(t, srv)},
		{"unknown type code", "func:sum@params:9-1,1-2", `argument 1: unknown type code "9": 1 is int, 2 float, 3 str`},
		{"a value that does not parse", "func:sum@params:1-x,1-2", `argument 1: "x" is not an int`},
		{"too few arguments", "func:sum@params:1-1", "sum: takes 2 arguments, got 1"},
		{"too many arguments", "func:get_time@params:1-1", "get_time: takes 0 arguments, got 1"},
		{"the wrong type", "func:echo@params:1-42", "echo: argument 1: want str, got int 42"},
		{"not numbers", "func:sum@params:3-a,1-1", `sum: sum adds numbers, not str "a" and int 1`},
		{"overflow", "func:add@params:1-9223372036854775807,1-1", "add: 9223372036854775807 + 1 does not fit in an int (64 bits)"},
		{"not a call", "hello", `a call starts with "func:", not "hello"`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/article's form", func(t *testing.T) {
			conn, _ := rawConn(t, addr)
			legacyCall(t, conn, tt.call, "error:"+tt.answer)
			legacyCall(t, conn, "func:sum@params:1-1,1-2", "data:3")
		})
		t.Run(tt.name+"/framed", func(t *testing.T) {
			conn, answers := rawConn(t, addr)
			write(t, conn, string(appendFrame(nil, []byte(tt.call))))
			answer, err := decodeAnswer([]byte(nextAnswer(t, answers)))
			var serverErr *ServerError
			require.ErrorAs(t, err, &serverErr)
			assert.Equal(t, tt.answer, serverErr.Message)
			assert.Nil(t, answer)
			write(t, conn, "23 func:sum@params:1-1,1-2\n")
			assert.Equal(t, "data:1-3", nextAnswer(t, answers))
		})
	}
}

// broken has methods that go wrong in the ways a server must survive.
type broken struct{}

func (broken) Boom() int                     { panic("kaboom") }
func (broken) Map() any                      { return map[string]int{"a": 1} }
func (broken) Huge(a, b float64) float64     { return a * b }
func (broken) Nothing(s string) (any, error) { return nil, nil }

// TestServerBadResults registers methods that panic or return what the
// wire cannot carry: each caller gets an error, and the server goes on.
func TestServerBadResults(t *testing.T) {
	srv := NewServer()
	_, err := srv.Register(broken{})
	require.NoError(t, err)
	c := dial(t, serve(t, srv, rpctest.Listen(t)))

	for _, tt := range []struct {
		name string
		args []any
		want string
	}{
		{"boom", nil, "boom: panicked: kaboom"},
		{"map", nil, "a map[string]int cannot be sent: the wire carries int, float64 and string"},
		{"huge", []any{1e300, 1e300}, "+Inf cannot be sent: the wire carries finite floats only"},
		{"nothing", []any{"x"}, "a <nil> cannot be sent: the wire carries int, float64 and string"},
	} {
		_, err := c.Call(t.Context(), tt.name, tt.args...)
		var serverErr *ServerError
		require.ErrorAs(t, err, &serverErr, tt.name)
		assert.Equal(t, tt.want, serverErr.Message)
	}
	got, err := c.Call(t.Context(), "huge", 2.0, 3.0)
	require.NoError(t, err)
	assert.Equal(t, 6.0, got)
}

// TestServerLargeRequest echoes 200 KB, a hundred times the article's
// 2048-byte read, with every kind of byte the framed form escapes. That is
// over the default limit, so both sides raise it.
func TestServerLargeRequest(t *testing.T) {
	const limit = 1 << 20
	srv := NewDemoServer()
	srv.MaxRequestBytes = limit
	c := dial(t, serve(t, srv, rpctest.Listen(t)), WithMaxAnswerBytes(limit))
	big := strings.Repeat("a,b-c:d@e%f\n中文", 200<<10/20)
	got, err := c.Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)
}

// TestServerRequestTooLarge announces a frame over the limit: the server
// refuses it from its length, closes that connection without reading the
// rest, and goes on serving everyone else. In the article's form, a read
// over the limit is refused the same way.
func TestServerRequestTooLarge(t *testing.T) {
	srv := NewDemoServer()
	srv.MaxRequestBytes = 1000
	addr := serve(t, srv, rpctest.Listen(t))

	conn, answers := rawConn(t, addr)
	write(t, conn, "5000 func:echo@params:3-xxxxxxxx")
	assert.Equal(t, "error:message too large: more than 1000 bytes; closing the connection", nextAnswer(t, answers))
	_, err := answers.next()
	assertClosed(t, err)

	conn, _ = rawConn(t, addr)
	write(t, conn, "func:echo@params:3-"+strings.Repeat("x", 2000))
	got, err := io.ReadAll(conn) // returns when the server closes
	if err != nil {
		assertClosed(t, err)
	}
	assert.Equal(t, "error:message too large: more than 1000 bytes; closing the connection", string(got))

	sum, err := dial(t, addr).Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
}

// TestServerMalformedFrame breaks the framing in ways that leave no way to
// find the next frame: the server says why and closes the connection.
func TestServerMalformedFrame(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	for stream, want := range map[string]string{
		"23 func:sum@params:1-1,1-2X":  `malformed message: the 23 bytes a frame announced are followed by "X", not a newline`,
		"22 func:sum@params:1-1,1-2\n": `malformed message: the 22 bytes a frame announced are followed by "2", not a newline`,
		"8 data:1-3\nfunc:get_time":    `malformed message: a frame starts with its length in digits and a space, not "f"`,
		"007 func:get_time\n":          `malformed message: a frame's length has no leading zeros`,
		"13\tfunc:get_time\n":          `malformed message: a frame starts with its length in digits and a space, not "\t"`,
	} {
		conn, answers := rawConn(t, addr)
		write(t, conn, stream)
		var last string
		for {
			msg, err := answers.next()
			if err != nil {
				assertClosed(t, err)
				break
			}
			last = string(msg)
		}
		assert.Equal(t, "error:"+string(appendEscaped(nil, want+"; closing the connection")), last, "%q", stream)
	}
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
	write(t, silent, "23 func:sum@par")

	ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop/3) // far less than an hour
	defer cancel()
	c := dial(t, addr)
	for i := range 5 {
		sum, err := c.Add(ctx, i, i)
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
	write(t, half, "23 func:sum@params:1-1,1-2\n"+"23 func:sum@par")
	assert.Equal(t, "data:1-3", nextAnswer(t, answers))
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
		sum, err := c.Add(context.Background(), 40, 2)
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

// waiter has one method, wait, which stays inside the server until the
// test closes held.
type waiter struct{ entered, held chan struct{} }

func (w waiter) Wait() int {
	close(w.entered)
	<-w.held
	return 1
}

// TestShutdownAnswersRequestsOnTheirWay sends a request on an idle
// connection after Shutdown has begun. The server does not drop it: it
// answers that the call did not run, so the caller knows, and then closes
// the connection.
func TestShutdownAnswersRequestsOnTheirWay(t *testing.T) {
	srv := NewDemoServer()
	srv.linger = rpctest.Backstop // so that a loaded machine cannot miss it
	entered, held := make(chan struct{}), make(chan struct{})
	_, err := srv.Register(waiter{entered, held})
	require.NoError(t, err)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	idle, answers := rawConn(t, l.Addr().String())
	write(t, idle, "25 func:echo@params:3-served\n")
	assert.Equal(t, "data:3-served", nextAnswer(t, answers))

	busy := dial(t, l.Addr().String()) // keeps Shutdown waiting
	waited := make(chan error, 1)
	go func() {
		_, err := busy.Call(context.Background(), "wait")
		waited <- err
	}()
	<-entered
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	require.ErrorIs(t, <-served, ErrServerClosed) // Shutdown has begun

	write(t, idle, "23 func:echo@params:3-late\n")
	assert.Equal(t, "error:"+string(appendEscaped(nil, "the server is shutting down; the call did not run")), nextAnswer(t, answers))
	idle.Close()
	close(held)
	assert.NoError(t, <-waited, "the call in flight is answered")
	busy.Close()
	assert.NoError(t, <-shutdown)
}

// bigAnswer has one method, big, whose answer is far more than the kernel
// buffers between a server and its client hold.
type bigAnswer struct{}

func (bigAnswer) Big() string { return strings.Repeat("x", 16<<20) }

// TestShutdownDoesNotWaitForSlowReaders has a client that asks for a large
// answer and never reads it. The server's write blocks, but Shutdown gives
// it only closeLinger, not WriteTimeout.
func TestShutdownDoesNotWaitForSlowReaders(t *testing.T) {
	srv := NewDemoServer()
	srv.WriteTimeout = time.Hour
	_, err := srv.Register(bigAnswer{})
	require.NoError(t, err)
	entered, release := holdCalls(srv)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	reader, _ := rawConn(t, l.Addr().String())
	write(t, reader, "8 func:big\n")
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
			_, err := DemoClient{c}.Add(context.Background(), 1, 2)
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
		_, err := c.Add(ctx, 1, 2)
		failed <- err
	}()
	// TestClientCancel checks that the call returns at once.
	require.ErrorIs(t, rpctest.Receive(t, failed, "return from the cancelled call"), context.Canceled)
	release()

	sum, err := dial(t, addr).Add(t.Context(), 1, 2)
	require.NoError(t, err, "the server goes on serving")
	assert.Equal(t, 3, sum)
}

// TestManyConnections runs many connections at once, some framed through
// the Client and some in the article's form, each making many calls, and
// checks every answer. Run under -race, it is also the server's check for
// data races.
func TestManyConnections(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	const conns, calls = 32, 100
	var g errgroup.Group
	for i := range conns {
		g.Go(func() error {
			if i%4 == 0 {
				return legacyCalls(addr, i, calls)
			}
			c, err := Dial(t.Context(), addr)
			if err != nil {
				return err
			}
			defer c.Close()
			for j := range calls {
				sum, err := DemoClient{c}.Add(t.Context(), i, 1000*j)
				if err != nil {
					return err
				}
				if want := i + 1000*j; sum != want {
					return fmt.Errorf("conn %d call %d: got %d, want %d", i, j, sum, want)
				}
			}
			return nil
		})
	}
	assert.NoError(t, g.Wait())
}

// legacyCalls makes calls sum(i, j) in the article's form, one at a time,
// on one connection, and checks each answer.
func legacyCalls(addr string, i, calls int) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(rpctest.Backstop)); err != nil {
		return err
	}
	for j := range calls {
		if _, err := fmt.Fprintf(conn, "func:sum@params:1-%d,1-%d", i, j); err != nil {
			return err
		}
		want := fmt.Sprintf("data:%d", i+j)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(conn, got); err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("conn %d call %d: got %q, want %q", i, j, got, want)
		}
	}
	return nil
}
