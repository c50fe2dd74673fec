package atmostonce

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

// rawConn dials addr and returns the connection and a reader of its
// answers.
func rawConn(t *testing.T, addr string) (net.Conn, *decoder) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	return conn, newDecoder(conn, DefaultMaxMessageBytes)
}

func write(t *testing.T, conn net.Conn, p []byte) {
	t.Helper()
	_, err := conn.Write(p)
	require.NoError(t, err)
}

// assertClosed checks that a read failed because the server closed the
// connection. A server that closes with bytes unread sends a reset, and
// the reader may see that instead of the end of the stream.
func assertClosed(t *testing.T, err error) {
	t.Helper()
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "want the connection closed, got %v", err)
}

func nextAnswer(t *testing.T, answers *decoder) Response {
	t.Helper()
	var resp Response
	require.NoError(t, answers.decode(&resp))
	return resp
}

// nextAnswers reads n answers, which come in the order their calls
// finish, and returns them by ID. Two answers with one ID fail the test.
func nextAnswers(t *testing.T, answers *decoder, n int) map[uint64]Response {
	t.Helper()
	byID := map[uint64]Response{}
	for range n {
		resp := nextAnswer(t, answers)
		require.NotContains(t, byID, resp.ID, "two answers to call %d", resp.ID)
		byID[resp.ID] = resp
	}
	return byID
}

// intAnswer and strAnswer are the Responses that carry an int or a str,
// from a function that ran; answerTo gives one the ID of the call it
// answers.
func intAnswer(n int) Response    { return Response{Data: Value{Type: typeInt, Int: n}, Ran: true} }
func strAnswer(s string) Response { return Response{Data: Value{Type: typeStr, Str: s}, Ran: true} }

func answerTo(id uint64, resp Response) Response {
	resp.ID = id
	return resp
}

// calls returns the frames that one connection's encoder writes for
// requests, joined, as a client would send them. A request without an ID
// gets its place among them, from 1, as a client numbers its calls.
func calls(t *testing.T, requests ...Request) []byte {
	t.Helper()
	for i := range requests {
		if requests[i].ID == 0 {
			requests[i].ID = uint64(i + 1)
		}
	}
	var stream []byte
	for _, f := range encodeFrames(t, anys(requests)...) {
		stream = append(stream, f...)
	}
	return stream
}

// anys returns pointers to requests, as the encoder takes them.
func anys(requests []Request) []any {
	var out []any
	for i := range requests {
		out = append(out, &requests[i])
	}
	return out
}

// call returns the Request for name(args...), with no ID yet: calls
// numbers it, or withID gives it one.
func call(t *testing.T, name string, args ...any) Request {
	t.Helper()
	req, err := newRequest(name, args)
	require.NoError(t, err)
	return req
}

// TestServerCalls sends the article's calls the ways TCP may deliver them:
// several in one write, one over two writes, one byte per write. Every
// answer is compared decoded, with the ID of its call; their bytes are in
// testdata/wire.golden. Calls in one write run side by side, so their
// answers may come in any order.
func TestServerCalls(t *testing.T) {
	conn, answers := rawConn(t, serve(t, newStoppedClockServer(t), rpctest.Listen(t)))

	write(t, conn, calls(t, call(t, "sum", 1, 2), call(t, "sum", 1.1, 2), call(t, "get_time")))
	assert.Equal(t, map[uint64]Response{
		1: answerTo(1, intAnswer(3)),
		2: {ID: 2, Data: Value{Type: typeFloat, Float: 3.1}, Ran: true},
		3: answerTo(3, strAnswer("Wed Jan 16 22:05:31 2019")),
	}, nextAnswers(t, answers, 3))

	conn, answers = rawConn(t, conn.RemoteAddr().String())
	frames := encodeFrames(t, withID(call(t, "echo", "a,b-c:d@e%f\n\x00中文"), 7), withID(call(t, "add", 40, 2), 1<<40))
	write(t, conn, frames[0][:2])
	write(t, conn, frames[0][2:])
	assert.Equal(t, answerTo(7, strAnswer("a,b-c:d@e%f\n\x00中文")), nextAnswer(t, answers))
	for _, b := range frames[1] {
		write(t, conn, []byte{b})
	}
	assert.Equal(t, answerTo(1<<40, intAnswer(42)), nextAnswer(t, answers), "an ID of 6 bytes comes back whole")
}

// TestServerErrorsAreNotData sends calls that decode well and must be
// refused, or that fail. Each gets an answer with an Error and no Data,
// with its Code and whether it ran, and the same connection then serves a
// good call.
func TestServerErrorsAreNotData(t *testing.T) {
	addr := serve(t, NewDemoServer(Service{}), rpctest.Listen(t))
	const functions = "add, echo, get, get_time, incr, ran_twice, slow, sum"
	tests := []struct {
		name   string
		req    Request
		answer string
		code   Code
		ran    bool
	}{
		{"unknown function", call(t, "sub", 3, 1), `no function "sub"; there are: ` + functions, Unimplemented, false},
		{"a Go name", call(t, "Sum", 1, 2), `no function "Sum"; there are: ` + functions, Unimplemented, false},
		{"a Python attribute", call(t, "__class__"), `no function "__class__"; there are: ` + functions, Unimplemented, false},
		{"unknown type code", Request{ID: 1, Func: "sum", Params: []Value{{Type: 9, Int: 1}, {Type: typeInt, Int: 2}}}, "argument 1: unknown type code 9: 1 is int, 2 float, 3 str", InvalidArgument, false},
		{"two fields set", Request{ID: 1, Func: "echo", Params: []Value{{Type: typeStr, Str: "x", Int: 1}}}, "argument 1: type code 3, with the field of another type set too", InvalidArgument, false},
		{"too few arguments", call(t, "sum", 1), "sum: takes 2 arguments, got 1", InvalidArgument, false},
		{"too many arguments", call(t, "get_time", 1), "get_time: takes 0 arguments, got 1", InvalidArgument, false},
		{"the wrong type", call(t, "echo", 42), "echo: argument 1: want str, got int 42", InvalidArgument, false},
		// The function's own errors: it ran.
		{"not numbers", call(t, "sum", "a", 1), `sum: sum adds numbers, not str "a" and int 1`, Unknown, true},
		{"overflow", call(t, "add", 9223372036854775807, 1), "add: 9223372036854775807 + 1 does not fit in an int (64 bits)", Unknown, true},
		{"not UTF-8", call(t, "echo", "\xff"), `argument 1: "\xff" is not valid UTF-8`, InvalidArgument, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, answers := rawConn(t, addr)
			write(t, conn, calls(t, tt.req, call(t, "sum", 1, 2)))
			assert.Equal(t, map[uint64]Response{
				1: {ID: 1, Error: tt.answer, Code: tt.code, Ran: tt.ran},
				2: answerTo(2, intAnswer(3)),
			}, nextAnswers(t, answers, 2))
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
		serverErr, ok := errors.AsType[*Error](err)
		require.True(t, ok, "%s: %v", tt.name, err)
		assert.Equal(t, tt.want, serverErr.Message)
		assert.Equal(t, Unknown, serverErr.Code, "%s: the function ran, and its answer failed", tt.name)
		assert.Equal(t, Ran, serverErr.Outcome, tt.name)
	}
	got, err := c.Call(t.Context(), "huge", 2.0, 3.0)
	require.NoError(t, err)
	assert.Equal(t, 6.0, got)
}

// TestServerLargeRequest echoes 200 KB, a hundred times the article's
// 2048-byte read. That is over the default limit, so both sides raise it.
func TestServerLargeRequest(t *testing.T) {
	const limit = 1 << 20
	srv := NewDemoServer(Service{})
	srv.MaxRequestBytes = limit
	c := dial(t, serve(t, srv, rpctest.Listen(t)), WithMaxRequestBytes(limit), WithMaxAnswerBytes(limit))
	big := strings.Repeat("a,b-c:d@e%f\n中文\x00", 200<<10/21)
	got, err := DemoClient{c}.Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)
}

// TestServerRequestTooLarge announces frames over the limit: the server
// refuses each from its length, closes that connection without reading
// the rest, and goes on serving everyone else. The refusal's ID is 0: the
// server read no call's ID.
func TestServerRequestTooLarge(t *testing.T) {
	srv := NewDemoServer(Service{})
	srv.MaxRequestBytes = 1000
	addr := serve(t, srv, rpctest.Listen(t))

	for header, want := range map[string]string{
		"\x00\x00\x13\x88": "message too large: a frame of 5000 bytes, more than 1000; closing the connection",
		"\xff\xff\xff\xff": "message too large: a frame of 4294967295 bytes, more than 1000; closing the connection",
	} {
		conn, answers := rawConn(t, addr)
		write(t, conn, []byte(header+"xxxxxxxx"))
		assert.Equal(t, Response{Error: want, Code: Internal}, nextAnswer(t, answers), "a stream that breaks the rules: Internal")
		err := answers.decode(&Response{})
		assertClosed(t, err)
	}

	sum, err := DemoClient{dial(t, addr)}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
}

// TestServerMalformed sends frames the server cannot read. Each time it
// says why and closes the connection: the good call that follows in the
// same write is never answered, because after a frame it could not read,
// the server cannot trust the gob stream. The refusal carries the ID of
// the call whose frame it refused when the server could read that far,
// and 0 when it could not.
func TestServerMalformed(t *testing.T) {
	addr := serve(t, NewDemoServer(Service{}), rpctest.Listen(t))
	good := calls(t, call(t, "sum", 1, 2))
	for _, tt := range []struct {
		name   string
		stream []byte
		want   string
		id     uint64 // of the refused call, or 0
	}{
		{"a zero length", []byte{0, 0, 0, 0}, "malformed message: a frame of 0 bytes; a frame holds at least one gob message", 0},
		{"garbage in a well-sized frame", frame([]byte("hello, world")), "malformed message: a gob message whose length does not fit in its frame", 0},
		{"garbage inside a gob message, after its ID", frame(append(bytes.Clone(firstDefs), 6, 0xff, 0x80, 0x01, 0x07, 0x01, 0x7f)), "malformed message: gob: ", 7},
		{"a value before its type", sumLaterFrame, "malformed message: gob: ", 2},
		{"two values in one frame", frame(append(bytes.Clone(sumFirstFrame[4:]), sumLaterFrame[4:]...)), "malformed message: more after the value that ends a frame", 1},
		{"an answer for a call", encodeFrames(t, &Response{ID: 5, Error: "x"})[0], "malformed message: a type definition that is not one of ours", 0},
		{"a type that is not one of ours", frame(manyTypes(t, 1)), "malformed message: a type definition that is not one of ours", 0},
		{"more than 64 arguments", encodeFrames(t, &Request{ID: 9, Func: "sum", Params: make([]Value, maxArgs+1)})[0], "malformed message: more than 64 arguments", 9},
		{"a call with ID 0, which answers that refuse the stream carry", encodeFrames(t, &Request{Func: "sum", Params: sumRequest.Params})[0], "malformed message: a request with ID 0; a call's ID is never 0", 0},
		{"our types defined twice", frame(join(firstDefs, firstDefs, sumLaterFrame[frameHeaderBytes:])), "malformed message: gob: duplicate type received", 2},
		{"stage 03's text", []byte("23 func:sum@params:1-1,1-2\n"), fmt.Sprintf("message too large: a frame of 842211430 bytes, more than %d", DefaultMaxMessageBytes), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, answers := rawConn(t, addr)
			write(t, conn, append(bytes.Clone(tt.stream), good...))
			resp := nextAnswer(t, answers)
			assert.Zero(t, resp.Data)
			assert.Equal(t, tt.id, resp.ID, "the refused call's ID")
			assert.Contains(t, resp.Error, tt.want)
			assert.True(t, strings.HasSuffix(resp.Error, "; closing the connection"), resp.Error)
			assert.Equal(t, Internal, resp.Code, "a stream that breaks the rules")
			assert.False(t, resp.Ran)
			assertClosed(t, answers.decode(&Response{}))
		})
	}
}

// TestServerCutShort sends the start of a frame and hangs up: the server
// has nothing to answer, and closes the connection.
func TestServerCutShort(t *testing.T) {
	addr := serve(t, NewDemoServer(Service{}), rpctest.Listen(t))
	for _, cut := range []int{2, 4, 60, len(sumFirstFrame) - 1} {
		conn, answers := rawConn(t, addr)
		write(t, conn, sumFirstFrame[:cut])
		require.NoError(t, conn.(*net.TCPConn).CloseWrite())
		assertClosed(t, answers.decode(&Response{}))
	}
}

// TestSlowClientBlocksNobody opens a connection that sends half a request and
// then goes quiet. Other callers are answered long before the server would
// give up on the silent one: a server that served one connection at a time
// would make them miss their deadline.
func TestSlowClientBlocksNobody(t *testing.T) {
	srv := NewDemoServer(Service{})
	srv.FirstRequestTimeout = time.Hour
	srv.IdleTimeout = time.Hour
	addr := serve(t, srv, rpctest.Listen(t))

	silent, _ := rawConn(t, addr)
	write(t, silent, sumFirstFrame[:60])

	ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop/3) // far less than an hour
	defer cancel()
	c := dial(t, addr)
	for i := range 5 {
		sum, err := DemoClient{c}.Add(ctx, i, i)
		require.NoError(t, err)
		assert.Equal(t, 2*i, sum)
	}
	silent.Close() // so that Shutdown need not wait for it
}

// TestServerClosesSilentConnections checks both read timeouts: a new
// connection has FirstRequestTimeout to send its first request, and
// IdleTimeout for each later one. Each server makes the other timeout an
// hour, so a server that mixed the two up would fail.
func TestServerClosesSilentConnections(t *testing.T) {
	server := func(first, idle time.Duration) string {
		srv := NewDemoServer(Service{})
		srv.FirstRequestTimeout, srv.IdleTimeout = first, idle
		return serve(t, srv, rpctest.Listen(t))
	}
	addr := server(100*time.Millisecond, time.Hour)

	never, answers := rawConn(t, addr)
	err := answers.decode(&Response{})
	assert.ErrorIs(t, err, io.EOF, "a connection that never sends is closed")
	never.Close()

	half, answers := rawConn(t, server(time.Hour, 100*time.Millisecond))
	frames := encodeFrames(t, withID(call(t, "sum", 1, 2), 1), withID(call(t, "sum", 1, 2), 2))
	// One request and half of the next, in one write: nothing is sent
	// after the server may have closed, so it closes cleanly.
	write(t, half, append(frames[0], frames[1][:len(frames[1])/2]...))
	assert.Equal(t, answerTo(1, intAnswer(3)), nextAnswer(t, answers))
	err = answers.decode(&Response{})
	assert.ErrorIs(t, err, io.EOF, "a connection that stops halfway through a request is closed")
}

// TestMaxConns fills the server's connections with two that have each sent
// half a request, so that neither is idle, and checks that one more is
// accepted but not read until a served one closes. It runs in fake time (see pipe_test.go), so
// "not read" means that the server did all it could and did not read.
// (An idle connection would make room: see flood_test.go.)
func TestMaxConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 2
		l := newPipeListener()
		serve(t, srv, l)
		request := calls(t, call(t, "add", 2, 4))
		// answered sends the request on conn, and delivers the answer, or
		// why there is none, once it comes.
		answered := func(conn net.Conn) <-chan any {
			ch := make(chan any, 1)
			go func() {
				var resp Response
				_, err := conn.Write(request) // returns once the server has read it all
				if err == nil {
					err = newDecoder(conn, DefaultMaxMessageBytes).decode(&resp)
				}
				ch <- cmp.Or[any](err, resp)
			}()
			return ch
		}
		first, second := l.dial(t), l.dial(t)
		write(t, first, request[:len(request)/2])
		write(t, second, request[:len(request)/2])
		synctest.Wait() // both are busy, reading a request

		third := answered(l.dial(t))
		synctest.Wait()
		assert.Empty(t, third, "a third connection was served past MaxConns = 2")
		assert.Equal(t, int64(3), l.accepted.Load(), "accepted: two served, and one waiting")
		first.Close()
		assert.Equal(t, answerTo(1, intAnswer(6)), <-third, "served once a slot is free")
		write(t, second, request[len(request)/2:])
		assert.Equal(t, answerTo(1, intAnswer(6)), nextAnswer(t, newDecoder(second, DefaultMaxMessageBytes)), "the half request is read on")
	})
}

// TestRefusalIsReadable has the server refuse a stream while an answer it
// wrote before waits in its kernel, unsent, since the client has read none
// of it; and the client goes on sending. A server that closed with those
// bytes unread would make its kernel send a reset and drop what is unsent:
// the client would read a few KiB of the answer and then "connection reset
// by peer", and never the refusal. The server hangs up politely instead:
// it closes its writing side, reads and drops what comes, and only then
// closes. The client reads the answer, the refusal, and the end of the
// stream, every time: the reset, when there is one, comes after the
// answer's write has returned.
func TestRefusalIsReadable(t *testing.T) {
	srv := NewDemoServer(Service{})
	srv.MaxRequestBytes = maxBigEcho
	srv.linger = rpctest.Backstop // the client ends the hang-up, by closing its side
	answered := make(chan uint64, 1)
	srv.answerWritten = func(id uint64) { answered <- id }
	conn, answers := slowReader(t, serve(t, srv, bigSendBuffers{rpctest.Listen(t)}))
	big := strings.Repeat("x", bigEcho)
	write(t, conn, encodeFrames(t, withID(call(t, "echo", big), 1))[0])
	require.Equal(t, uint64(1), rpctest.Receive(t, answered, "write of the answer"))

	// A frame too large that starts with no call: it is refused, and the
	// stream with it. Far more follows than the server reads ahead.
	sent := make(chan error, 1)
	go func() {
		_, err := conn.Write(append([]byte("\x00\x10\x00\x00"), bytes.Repeat([]byte("x"), 1<<20)...))
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	assert.Equal(t, answerTo(1, strAnswer(big)), nextAnswer(t, answers), "the answer written before the refusal")
	assert.Equal(t, Response{Error: "message too large: a frame of 1048576 bytes, more than 524288; closing the connection", Code: Internal},
		nextAnswer(t, answers))
	assert.ErrorIs(t, answers.decode(&Response{}), io.EOF, "then the end of the stream, not a reset")
	assert.NoError(t, <-sent, "the server read all the client sent")
}

// TestShutdownFinishesCallsInFlight holds calls inside the server, one or
// three on one connection, beside an idle connection, and shuts the server
// down. The idle connection and the listener are closed at once; the calls
// are answered, their answers are written before Shutdown returns, and
// then their connection is closed too.
func TestShutdownFinishesCallsInFlight(t *testing.T) {
	for _, tt := range []struct {
		name  string
		calls int
	}{
		{"one call", 1},
		{"three calls", 3},
	} {
		t.Run(tt.name, func(t *testing.T) { testShutdownFinishes(t, tt.calls) })
	}
}

func testShutdownFinishes(t *testing.T, n int) {
	srv := NewDemoServer(Service{})
	entered, release := holdCalls(srv)
	var written atomic.Int64
	srv.answerWritten = func(id uint64) {
		if id != 0 { // 0 is the hello's answer, which answers no call
			written.Add(1)
		}
	}
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	_, idle := rawConn(t, l.Addr().String())
	c := dial(t, l.Addr().String(), noRetries()...)
	var calls []*Call
	for i := range n {
		calls = append(calls, c.Go(t.Context(), "add", 40, i))
		<-entered
	}
	type shutdownResult struct {
		err     error
		written int64 // answers written when Shutdown returned
	}
	shutdown := make(chan shutdownResult, 1)
	go func() {
		err := srv.Shutdown(context.Background())
		shutdown <- shutdownResult{err, written.Load()}
	}()
	assert.ErrorIs(t, idle.decode(&Response{}), io.EOF, "an idle connection is closed")
	require.ErrorIs(t, <-served, ErrServerClosed, "Serve returns once the listener is closed")
	release()
	res := <-shutdown
	assert.NoError(t, res.err)
	assert.Equal(t, int64(n), res.written, "answers written when Shutdown returned")
	for i, call := range calls {
		call = rpctest.Receive(t, call.Done, "answer")
		require.NoError(t, call.Error)
		assert.Equal(t, 40+i, call.Result)
	}
	_, err := DemoClient{c}.Add(t.Context(), 1, 2)
	assert.ErrorIs(t, err, Unavailable, "the connection is closed after its answers, and no other can be made")
	_, err = net.Dial("tcp", l.Addr().String())
	assert.Error(t, err, "a server that has shut down accepts no connection")
}

// waiter has one method, wait, which stays inside the server until the
// test closes held.
type waiter struct{ entered, held chan struct{} }

func (w waiter) Wait() int {
	close(w.entered)
	<-w.held
	return 1
}

// TestShutdownAnswersRequestsOnTheirWay sends requests on an idle
// connection after Shutdown has begun. The server does not drop them: it
// answers each, with its ID, that the call did not run, so the caller
// knows. Calls run side by side, so the connection's reader goes on until
// Shutdown's deadline, answering each request that arrives the same way;
// here the client hangs up first.
func TestShutdownAnswersRequestsOnTheirWay(t *testing.T) {
	srv := NewDemoServer(Service{})
	srv.linger = rpctest.Backstop // so that a loaded machine cannot miss it
	entered, held := make(chan struct{}), make(chan struct{})
	_, err := srv.Register(waiter{entered, held})
	require.NoError(t, err)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	idle, answers := rawConn(t, l.Addr().String())
	frames := encodeFrames(t, withID(call(t, "echo", "served"), 1), withID(call(t, "echo", "late"), 2), withID(call(t, "echo", "later"), 3))
	write(t, idle, frames[0])
	assert.Equal(t, answerTo(1, strAnswer("served")), nextAnswer(t, answers))

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

	write(t, idle, frames[1])
	assert.Equal(t, Response{ID: 2, Error: "the server is shutting down", Code: Unavailable}, nextAnswer(t, answers), "Unavailable, and not run: safe to send again")
	write(t, idle, frames[2])
	assert.Equal(t, Response{ID: 3, Error: "the server is shutting down", Code: Unavailable}, nextAnswer(t, answers))
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
	srv := NewDemoServer(Service{})
	srv.WriteTimeout = time.Hour
	_, err := srv.Register(bigAnswer{})
	require.NoError(t, err)
	entered, release := holdCalls(srv)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	reader, _ := rawConn(t, l.Addr().String())
	write(t, reader, calls(t, call(t, "big")))
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	<-served
	release()
	assert.NoError(t, <-shutdown, "Shutdown waited for a client that does not read")
}

// deafCalls is a service whose hold(s) waits in its function, deaf to its
// context, until the test releases it, and returns s.
type deafCalls struct{ entered, held chan struct{} }

func (d deafCalls) Hold(s string) string {
	d.entered <- struct{}{}
	<-d.held
	return s
}

// TestShutdownDeadline holds calls past Shutdown's deadline, one whose
// deadline has passed before Shutdown is called and two whose deadline
// passes while it waits: Shutdown closes the connection and returns the
// context's error, while the calls are still stuck in their function. (They are held in
// a function deaf to its context: the server cancels the context of every
// call as Shutdown gives up, and a call that heeds it could end before
// Shutdown looks.)
func TestShutdownDeadline(t *testing.T) {
	for _, tt := range []struct {
		name  string
		calls int
		ctx   func() (context.Context, context.CancelFunc)
		want  error
	}{
		{"one call, the deadline passed already", 1, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"two calls, the deadline passes", 2, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			testShutdownDeadline(t, tt.calls, ctx, tt.want)
		})
	}
}

func testShutdownDeadline(t *testing.T, n int, ctx context.Context, want error) {
	srv := NewServer()
	deaf := deafCalls{entered: make(chan struct{}, n), held: make(chan struct{})}
	_, err := srv.Register(deaf)
	require.NoError(t, err)
	entered, release := deaf.entered, sync.OnceFunc(func() { close(deaf.held) })
	t.Cleanup(release)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	c := dial(t, l.Addr().String(), noRetries()...) // a client that may retry waits for a server to come back
	var calls []*Call
	for i := range n {
		calls = append(calls, c.Go(t.Context(), "hold", fmt.Sprint(i)))
		<-entered
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	select {
	case err := <-shutdown:
		assert.ErrorIs(t, err, want, "Shutdown does not wait for calls that are stuck")
	case <-time.After(rpctest.Backstop):
		release()
		t.Fatal("Shutdown did not return at its deadline")
	}
	assert.ErrorIs(t, <-served, ErrServerClosed)
	for _, call := range calls {
		assertFailure(t, (<-call.Done).Error, Unavailable, OutcomeUnknown, "the call's connection was closed under it")
	}
	release()
	assert.NoError(t, srv.Shutdown(context.Background()), "a second Shutdown waits for the calls to end")
}

// TestClientVanishes has a client send one call, or three, and hang up
// while the server holds them. When the calls end, the server cannot
// deliver their answers: it closes the connection, every goroutine it
// started for it returns, and it goes on serving everyone else.
func TestClientVanishes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		calls []string
	}{
		{"one call", []string{"a"}},
		{"three calls", []string{"a", "b", "c"}},
	} {
		t.Run(tt.name, func(t *testing.T) { testClientVanishes(t, tt.calls) })
	}
}

func testClientVanishes(t *testing.T, echoes []string) {
	ignore := goleak.IgnoreCurrent()
	srv := NewDemoServer(Service{})
	entered, release := holdCalls(srv)
	l := watch(rpctest.Listen(t))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	conn, _ := rawConn(t, l.Addr().String())
	var requests []Request
	for _, s := range echoes {
		requests = append(requests, call(t, "echo", s))
	}
	write(t, conn, calls(t, requests...))
	for range echoes {
		<-entered
	}
	require.NoError(t, conn.Close())
	release()
	rpctest.Receive(t, (<-l.conns).closed, "close of the server's side")

	c := dial(t, l.Addr().String())
	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err, "the server goes on serving")
	assert.Equal(t, 3, sum)
	c.Close() // its goroutines are not the server's
	require.NoError(t, srv.Shutdown(t.Context()))
	require.ErrorIs(t, <-served, ErrServerClosed)
	goleak.VerifyNone(t, ignore)
}

// TestManyConnections runs many connections at once, each making many
// calls of every kind, and checks every answer. Run under -race, it is
// also the server's check for data races.
func TestManyConnections(t *testing.T) {
	addr := serve(t, NewDemoServer(Service{}), rpctest.Listen(t))
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
				if err := checkCall(t.Context(), c, i, j); err != nil {
					return fmt.Errorf("conn %d call %d: %w", i, j, err)
				}
			}
			return nil
		})
	}
	assert.NoError(t, g.Wait())
}

// checkCall makes call j of connection i, an add, a sum of floats or an
// echo by turns, with arguments of its own, and checks the answer.
func checkCall(ctx context.Context, c *Client, i, j int) error {
	var got, want any
	var err error
	switch j % 3 {
	case 0:
		got, err = c.Call(ctx, "add", i, 1000*j)
		want = i + 1000*j
	case 1:
		got, err = c.Call(ctx, "sum", float64(i)+0.5, j)
		want = float64(i) + 0.5 + float64(j)
	default:
		s := fmt.Sprintf("conn %d, call %d: 中文", i, j)
		got, err = c.Call(ctx, "echo", s)
		want = s
	}
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("got %#v, want %#v", got, want)
	}
	return nil
}
