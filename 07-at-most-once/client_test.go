package atmostonce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// TestClientCall makes the article's calls through Call, on one
// connection, and echoes every awkward string.
func TestClientCall(t *testing.T) {
	l := rpctest.Listen(t)
	c := dial(t, serve(t, newStoppedClockServer(t), l))

	for _, tt := range []struct {
		name string
		args []any
		want any
	}{
		{"sum", []any{1, 2}, 3},
		{"sum", []any{1.1, 2}, 3.1},
		{"sum", []any{1.5, 1.5}, 3.0},
		{"sum", []any{-5, 2}, -3},
		{"get_time", nil, "Wed Jan 16 22:05:31 2019"},
		{"add", []any{40, 2}, 42},
	} {
		res, err := c.Call(t.Context(), tt.name, tt.args...)
		require.NoError(t, err)
		assert.Equal(t, tt.want, res, "%s%v", tt.name, tt.args)
	}
	for _, s := range []string{"a,b", "100%", "line\nbreak\r\n", "tab\tand\x00nul\x7f", "中文, ✓", "", "\x00\x00\x00\x04"} {
		got, err := DemoClient{c}.Echo(t.Context(), s)
		require.NoError(t, err)
		assert.Equal(t, s, got)
	}
	assert.Equal(t, 1, l.Accepted(), "every call shared one connection")
}

// TestClientServerErrorKeepsConnection checks that a call refused, or
// failed, is an *Error naming the problem, with the Code and the Outcome
// the server gave, and that the next call goes through on the same
// connection.
func TestClientServerErrorKeepsConnection(t *testing.T) {
	l := rpctest.Listen(t)
	c := dial(t, serve(t, NewDemoServer(Service{}), l))

	for _, tt := range []struct {
		name    string
		args    []any
		code    Code
		outcome Outcome
		want    string
	}{
		{"sub", []any{3, 1}, Unimplemented, NotRun, `no function "sub"; there are: add, echo, get, get_time, incr, ran_twice, slow, sum`},
		{"add", []any{1, "two"}, InvalidArgument, NotRun, `add: argument 2: want int, got str "two"`},
		{"add", []any{1}, InvalidArgument, NotRun, "add: takes 2 arguments, got 1"},
		{"add", []any{1, 2, 3}, InvalidArgument, NotRun, "add: takes 2 arguments, got 3"},
		{"add", []any{9223372036854775807, 1}, Unknown, Ran, "add: 9223372036854775807 + 1 does not fit in an int (64 bits)"},
		{"sum", []any{1e308, 1e308}, Unknown, Ran, "sum: 1e+308 + 1e+308 does not fit in a float (64 bits)"},
		{"echo", []any{"\xff"}, InvalidArgument, NotRun, `argument 1: "\xff" is not valid UTF-8`},
	} {
		_, err := c.Call(t.Context(), tt.name, tt.args...)
		serverErr, ok := errors.AsType[*Error](err)
		require.True(t, ok, "%s%v: %v", tt.name, tt.args, err)
		assert.Equal(t, tt.want, serverErr.Message, "%s%v", tt.name, tt.args)
		assert.Equal(t, tt.code, serverErr.Code, "%s%v", tt.name, tt.args)
		assert.Equal(t, tt.outcome, serverErr.Outcome, "%s%v", tt.name, tt.args)
		assert.Nil(t, serverErr.Cause, "an answer has no cause")

		sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
		require.NoError(t, err)
		assert.Equal(t, 3, sum)
	}
	assert.Equal(t, 1, l.Accepted(), "every call shared one connection")
}

// TestClientRefusesToSend checks that arguments the wire cannot carry fail
// before anything is sent, and leave the client usable.
func TestClientRefusesToSend(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	_, err := c.Call(t.Context(), "echo", []byte("x"))
	assert.EqualError(t, err, "echo: invalid argument (did not run): argument 1: a []uint8 cannot be sent: the wire carries int, float64 and string")
	_, err = c.Call(t.Context(), "sum", math.Inf(1), 1)
	assert.EqualError(t, err, "sum: invalid argument (did not run): argument 1: +Inf cannot be sent: the wire carries finite floats only")

	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
}

// TestClientConcurrentUse shares one Client among many goroutines: calls
// take turns on the connection, and every caller gets its own answer.
func TestClientConcurrentUse(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	var g errgroup.Group
	for i := range 16 {
		g.Go(func() error {
			for j := range 50 {
				sum, err := DemoClient{c}.Add(t.Context(), i, j)
				if err != nil {
					return err
				}
				if sum != i+j {
					return fmt.Errorf("add(%d, %d) = %d", i, j, sum)
				}
			}
			return nil
		})
	}
	assert.NoError(t, g.Wait())
}

// holdingServer starts a demo server whose calls wait inside until the
// test ends. It returns the server's address and a channel that receives
// once for each call that has reached the server.
func holdingServer(t *testing.T) (addr string, entered chan struct{}) {
	srv := NewDemoServer(Service{})
	entered, release := holdCalls(srv)
	addr = serve(t, srv, rpctest.Listen(t))
	t.Cleanup(release) // runs before the server's shutdown, which waits for held calls
	return addr, entered
}

// TestClientCancel cancels a call while the server holds it. The call
// returns context.Canceled at once, and the connection stays usable: the
// next call goes through while the first is still held, and the first's
// answer, when it comes, is counted and dropped.
func TestClientCancel(t *testing.T) {
	addr, clock := slowServer(t)
	late := make(chan uint64, 1)
	c := dial(t, addr, WithLateAnswers(func(id uint64) { late <- id }))

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		clock.waitAsleep(t, 1)
		cancel()
	}()
	_, err := DemoClient{c}.Slow(ctx, 500)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, pendingCalls(c), "a call given up is no longer pending")

	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)

	clock.wake(500)
	assert.Equal(t, uint64(1), rpctest.Receive(t, late, "late answer"), "the late answer is the cancelled call's")
	assert.Equal(t, int64(1), c.LateAnswers())
}

// TestClientDeadline gives a call a deadline that passes while the server
// holds it: the call returns context.DeadlineExceeded, and the next call
// goes through on the same connection.
func TestClientDeadline(t *testing.T) {
	addr, _ := slowServer(t)
	c := dial(t, addr)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // the call is held past it
	defer cancel()
	_, err := DemoClient{c}.Slow(ctx, 500)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
	assert.Zero(t, pendingCalls(c), "a call given up is no longer pending")
}

// TestClientCancelledBeforeSending checks that a call whose context has
// already ended is not sent, and does not break the client.
func TestClientCancelledBeforeSending(t *testing.T) {
	l := rpctest.Listen(t)
	c := dial(t, serve(t, NewDemoServer(Service{}), l))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := DemoClient{c}.Add(ctx, 1, 2)
	assert.ErrorIs(t, err, context.Canceled)

	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
}

// oneShotServer answers the first request on each connection with answer
// and closes the connection.
func oneShotServer(t *testing.T, answer []byte) string {
	return rpctest.ServeConns(t, func(conn net.Conn) {
		_, _ = newFrameReader(conn, DefaultMaxMessageBytes).next()
		_, _ = conn.Write(answer)
	})
}

// knownEpoch makes c act as if its hello had been answered with
// fakeEpoch: it sends no hello, for a fake server that reads one request
// and writes the bytes a test gave it, as the first frames of its stream.
func knownEpoch(c *Client) *Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch = fakeEpoch
	return c
}

// answerFrame returns resp as the first frame of a server's answers, the
// answer to a client's first call, whose id is 1, unless resp has an id.
func answerFrame(t *testing.T, resp Response) []byte {
	if resp.ID == 0 {
		resp.ID = 1
	}
	return encodeFrames(t, &resp)[0]
}

// refusalFrame returns the frame of a refusal: an answer with id 0, which
// answers no call.
func refusalFrame(t *testing.T, reason string) []byte {
	resp := Response{Error: reason}
	return encodeFrames(t, &resp)[0]
}

// TestClientServerHangsUp talks to a server that answers one call and
// closes the connection. On a client that may neither dial again nor send
// again (noRetries), the second call must fail with a clear error,
// Unavailable, that wraps the cause, not hang, and so must the calls
// after it. Whether the second was sent before the client saw the end of
// the stream is a race: if it was, its outcome is unknown.
func TestClientServerHangsUp(t *testing.T) {
	c := knownEpoch(oneConnClient(t, oneShotServer(t, answerFrame(t, intAnswer(3)))))
	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)

	_, err = DemoClient{c}.Add(t.Context(), 1, 2)
	require.Error(t, err)
	assert.True(t, errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset"), "got %v", err)
	assert.ErrorIs(t, err, Unavailable)
	assert.ErrorContains(t, err, "add: ")

	_, err = DemoClient{c}.Add(t.Context(), 1, 2)
	assertFailure(t, err, Unavailable, NotRun)
}

// noRetries makes a Client on one connection (onlyConn) fail as stage
// 05's did once that connection breaks: a call in flight ends at once,
// Unavailable and its outcome unknown, instead of waiting to be sent
// again, and a call made after ends at once, Unavailable and NotRun,
// instead of waiting for a connection that will not come.
func noRetries() []Option {
	return []Option{WithRetryPolicy(RetryPolicy{MaxAttempts: 1}), WithFailFast()}
}

// oneConnClient returns a Client of the server at addr, on one TCP
// connection, with noRetries, closed when the test ends.
func oneConnClient(t *testing.T, addr string, opts ...Option) *Client {
	t.Helper()
	c := NewClient(onlyConn(dialConn(t, addr)), append(noRetries(), opts...)...)
	t.Cleanup(func() { c.Close() })
	return c
}

// assertFailure checks that err is an *Error with code and outcome.
func assertFailure(t *testing.T, err error, code Code, outcome Outcome, msgAndArgs ...any) bool {
	t.Helper()
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return assert.Fail(t, fmt.Sprintf("want an *Error (%v, %v), got %v", code, outcome, err), msgAndArgs...)
	}
	return assert.Equal(t, code.String()+", "+outcome.String(), e.Code.String()+", "+e.Outcome.String(), msgAndArgs...)
}

// serverCause returns the *Error that the client's own *Error wraps, if
// there is one: the server's refusal of the stream, that broke the
// connection.
func serverCause(err error) (*Error, bool) {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return nil, false
	}
	return errors.AsType[*Error](e.Cause)
}

// TestClientOddAnswers points the client at servers that answer in ways it
// must not take for a result. An answer that names the call fails that call
// only; one that cannot be read, or names no call made, breaks the client.
func TestClientOddAnswers(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answer  []byte
		wantErr string
	}{
		{"a str for an int", answerFrame(t, strAnswer("3")), `add: result is str "3", want int`},
		{"a float for an int", answerFrame(t, Response{Data: Value{Type: typeFloat, Float: 3}}), "add: result is float 3.0, want int"},
		{"no type code", answerFrame(t, Response{Data: Value{Int: 3}}), "add: internal (outcome unknown): answer: unknown type code 0"},
		{"a result and an error", answerFrame(t, Response{Data: Value{Type: typeInt, Int: 3}, Error: "no"}), `add: internal (outcome unknown): answer has both a result and an error, "no"`},
		{"an error with no code", answerFrame(t, Response{Error: "no, no"}), "add: unknown (outcome unknown): no, no"},
		{"an error that did not run", answerFrame(t, Response{Error: "no, no", Code: Unavailable}), "add: unavailable (did not run): no, no"},
		{"an error that ran", answerFrame(t, Response{Error: "no, no", Code: Unknown, Ran: true}), "add: unknown (ran): no, no"},
		{"the article's error, as a str", answerFrame(t, strAnswer("RPC Server Function Error")), `add: result is str "RPC Server Function Error", want int`},
		{"a call for an answer", calls(t, call(t, "sum", 1, 2)), "add: unavailable (outcome unknown): the connection broke before the answer came: malformed message: a type definition that is not one of ours"},
		{"stage 03's answer", []byte("8 data:1-3\n"), "add: unavailable (outcome unknown): the connection broke before the answer came: this client refused an answer: message too large: a frame of 941646945 bytes"},
		{"a frame cut short", answerFrame(t, intAnswer(3))[:50], "add: unavailable (outcome unknown): the connection broke before the answer came: the server closed the connection: unexpected EOF"},
		{"an answer to a call never made", answerFrame(t, Response{ID: 2, Data: Value{Type: typeInt, Int: 3}}), "add: unavailable (outcome unknown): the connection broke before the answer came: an answer to call 2, which was never made"},
		{"a refusal, id 0", refusalFrame(t, "too many connections"), "add: unavailable (outcome unknown): the connection broke before the answer came: unknown (outcome unknown): too many connections"},
	} {
		c := knownEpoch(oneConnClient(t, oneShotServer(t, tt.answer)))
		sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
		assert.ErrorContains(t, err, tt.wantErr, tt.name)
		assert.Zero(t, sum)
	}
}

func TestClientAnswerTooLarge(t *testing.T) {
	c := knownEpoch(oneConnClient(t, oneShotServer(t, binary.BigEndian.AppendUint32(nil, DefaultMaxMessageBytes+1))))
	_, err := DemoClient{c}.Echo(t.Context(), "x")
	assert.ErrorIs(t, err, errTooLarge)
	assertFailure(t, err, Unavailable, OutcomeUnknown, "the connection broke after the call went out")
	assert.ErrorContains(t, err, "this client refused an answer", "the error says which side refused")
}

// TestClientMaxAnswerBytes raises a server's limit above the default: the
// client must be told to send requests as large, and to read answers as
// large, or a large echo breaks it.
func TestClientMaxAnswerBytes(t *testing.T) {
	const limit = 4 * DefaultMaxMessageBytes
	srv := NewDemoServer(Service{})
	srv.MaxRequestBytes = limit
	addr := serve(t, srv, rpctest.Listen(t))
	big := strings.Repeat("x", 2*DefaultMaxMessageBytes)

	_, err := DemoClient{dial(t, addr, WithMaxRequestBytes(limit))}.Echo(t.Context(), big)
	assert.ErrorContains(t, err, "WithMaxAnswerBytes")

	got, err := DemoClient{dial(t, addr, WithMaxRequestBytes(limit), WithMaxAnswerBytes(limit))}.Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)
}

// TestClientWaitingCallHonoursContext fills the queue of calls waiting
// for the writer, whose write the connection holds: one more call, waiting
// for room in the queue, must give up when its context ends rather than
// wait for the writer, and the connection must stay usable.
func TestClientWaitingCallHonoursContext(t *testing.T) {
	conn := holdWrites(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	c := NewClient(onlyConn(conn))
	t.Cleanup(func() { c.Close() })
	calls := []*Call{c.Go(t.Context(), "add", 0, 1)}
	<-conn.writing // the writer is stuck in its first write
	for i := range writeQueue {
		calls = append(calls, c.Go(t.Context(), "add", i+1, 1))
	}

	ctx, cancel := context.WithCancel(t.Context())
	waiting := &doneAsked{Context: ctx, asked: make(chan struct{})}
	failed := make(chan error, 1)
	go func() {
		_, err := DemoClient{c}.Add(waiting, 4, 5)
		failed <- err
	}()
	<-waiting.asked // the call waits for room in the queue, and for ctx
	cancel()
	select {
	case err := <-failed:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(rpctest.Backstop):
		t.Fatal("a call waiting for the writer ignored its context")
	}
	assert.Equal(t, len(calls), pendingCalls(c), "the call given up is no longer pending")

	conn.release()
	for i, call := range calls {
		rpctest.Receive(t, call.Done, "answer")
		require.NoError(t, call.Error)
		assert.Equal(t, i+1, call.Result)
	}
	sum, err := DemoClient{c}.Add(t.Context(), 4, 5)
	require.NoError(t, err)
	assert.Equal(t, 9, sum)
}

// doneAsked is a context that tells when its Done method is first called:
// a call that waits for room in the writer's queue asks for it then.
type doneAsked struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (c *doneAsked) Done() <-chan struct{} {
	c.once.Do(func() { close(c.asked) })
	return c.Context.Done()
}

// TestClientCloseFailsCallInFlight closes a client while its call is held
// inside the server: the call fails at once, Canceled with ErrClientClosed
// as its cause and its outcome unknown, and Close does not wait for it.
func TestClientCloseFailsCallInFlight(t *testing.T) {
	addr, entered := holdingServer(t)
	c := dial(t, addr)
	failed := make(chan error, 1)
	go func() {
		_, err := DemoClient{c}.Add(context.Background(), 1, 2)
		failed <- err
	}()
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-failed:
		assertFailure(t, err, Canceled, OutcomeUnknown)
		assert.ErrorIs(t, err, ErrClientClosed)
	case <-time.After(rpctest.Backstop):
		t.Fatal("Close did not fail the call in flight")
	}
	assert.NoError(t, <-closed)
}

// TestClientClose closes a client twice, as net/rpc's Client may be: the
// first Close closes the connection and returns nil, every later one
// returns ErrClientClosed, and a call made after Close fails, Canceled and
// not run, with ErrClientClosed as its cause.
func TestClientClose(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	require.NoError(t, c.Close())
	_, err := DemoClient{c}.Add(t.Context(), 1, 2)
	assertFailure(t, err, Canceled, NotRun)
	assert.ErrorIs(t, err, ErrClientClosed)
	assert.ErrorIs(t, c.Close(), ErrClientClosed, "Close, called again")
	assert.ErrorIs(t, c.Close(), ErrClientClosed, "and again")
}

// TestClientCloseAfterFailure closes a client whose server hung up: the
// connection was closed by the failure, and the first Close returns nil,
// not an error about a connection closed twice. A call made after Close
// says the client was closed, whatever broke it first.
func TestClientCloseAfterFailure(t *testing.T) {
	c := knownEpoch(oneConnClient(t, oneShotServer(t, answerFrame(t, intAnswer(3)))))
	_, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	_, err = DemoClient{c}.Add(t.Context(), 1, 2)
	require.ErrorIs(t, err, Unavailable, "the server hung up")
	require.NotErrorIs(t, err, ErrClientClosed)

	require.NoError(t, c.Close())
	_, err = DemoClient{c}.Add(t.Context(), 1, 2)
	assertFailure(t, err, Canceled, NotRun)
	assert.ErrorIs(t, err, ErrClientClosed)
	assert.ErrorIs(t, c.Close(), ErrClientClosed)
}

// slowToWake is a connection whose Read, once it fails, returns only when
// wake is closed: a reader goroutine that takes its time to notice that
// the connection was closed.
type slowToWake struct {
	net.Conn
	wake chan struct{}
}

func (c *slowToWake) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		<-c.wake
	}
	return n, err
}

// TestClientCloseWaitsForReader checks that Close returns only once the
// client's reader goroutine has: after Close, nothing of the Client runs
// (a tap's output, a WithLateAnswers function) and goes on reading.
func TestClientCloseWaitsForReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		near, far := net.Pipe()
		conn := &slowToWake{Conn: near, wake: make(chan struct{})}
		c := NewClient(onlyConn(conn))
		synctest.Wait() // the reader reads
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		synctest.Wait() // the reader's Read has failed, and waits to return
		assert.Empty(t, closed, "Close returned before the reader did")
		close(conn.wake)
		assert.NoError(t, <-closed)
		far.Close()
	})
}

// TestCloseBeforeFirstDial closes a client while its keeper goroutine
// dials, with a dial that succeeds all the same, as a connect that
// completes as its context is cancelled may. Close must return: the
// connection, dialled too late, must be closed, not served.
func TestCloseBeforeFirstDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		near, far := net.Pipe()
		defer far.Close()
		dialling, connected := make(chan struct{}), make(chan struct{})
		c := NewClient(func(context.Context) (net.Conn, error) {
			close(dialling)
			<-connected
			return near, nil
		})
		<-dialling
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		synctest.Wait() // Close has begun, and waits for the keeper
		close(connected)
		synctest.Wait()
		select {
		case err := <-closed:
			assert.NoError(t, err)
		default:
			t.Error("Close waits for ever for a connection dialled as it closed")
			far.Close() // the client's reader fails, and Close returns
			<-closed
		}
	})
}

// closeFails is a connection whose Close reports an error, as closing a
// connection may (a TLS connection whose close alert cannot be written).
type closeFails struct {
	net.Conn
	closed atomic.Int64
}

var errCloseFails = errors.New("the close alert could not be written")

func (c *closeFails) Close() error {
	c.closed.Add(1)
	c.Conn.Close()
	return errCloseFails
}

// TestClientCloseIgnoresConnError checks that the first Close closes the
// connection, and returns nil though closing it failed, and a later one
// ErrClientClosed. Stage 05's Close returned the connection's error: its
// Client had one connection for life. A Client of this stage has had many,
// and the one up when it closes is no more its own than those before it.
func TestClientCloseIgnoresConnError(t *testing.T) {
	conn := &closeFails{Conn: dialConn(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))}
	c := NewClient(onlyConn(conn))
	_, err := DemoClient{c}.Add(t.Context(), 1, 2) // the connection is up
	require.NoError(t, err)
	assert.NoError(t, c.Close())
	assert.Equal(t, int64(1), conn.closed.Load(), "Close closed the connection, once")
	assert.ErrorIs(t, c.Close(), ErrClientClosed)
}

func TestDialRefused(t *testing.T) {
	l := rpctest.Listen(t)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	_, err := Dial(t.Context(), addr)
	var opErr *net.OpError
	assert.ErrorAs(t, err, &opErr)
}

// pipeClient returns a Client whose connection is one end of a net.Pipe,
// for a test inside a synctest bubble: the pipe's deadlines then run on
// the bubble's clock, and a goroutine that waits on the pipe is one that
// synctest.Wait can see. serve, unless nil, plays the server on the other
// end, in a goroutine of its own; with none, nothing reads what the client
// writes, and a write waits until its deadline. When serve returns, it
// hangs up. The Client and the far end are closed when the test ends. The
// Client has its connection when pipeClient returns.
func pipeClient(t *testing.T, serve func(requests *decoder, answers *answerWriter), opts ...Option) *Client {
	t.Helper()
	near, far := net.Pipe()
	c := NewClient(onlyConn(near), opts...)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if serve != nil {
			requests, answers := newDecoder(far, DefaultMaxMessageBytes), &answerWriter{conn: far, answers: newEncoder()}
			if greet(t, requests, answers) {
				serve(requests, answers)
			}
			far.Close() // a server that returns hangs up
		}
	}()
	t.Cleanup(func() {
		c.Close()
		far.Close()
		<-served
	})
	synctest.Wait() // the Client's keeper has its connection: see TestCloseBeforeFirstDial
	return c
}

// answerAdds is a server for pipeClient: it answers each add(a, b) with its
// sum and refuses any other call, until the stream ends or cannot be read.
func answerAdds(requests *decoder, answers *answerWriter) {
	for {
		var req Request
		if requests.decode(&req) != nil {
			return
		}
		resp := Response{ID: req.ID, Error: "this server has add only"}
		if req.Func == "add" && len(req.Params) == 2 {
			resp = Response{ID: req.ID, Data: Value{Type: typeInt, Int: req.Params[0].Int + req.Params[1].Int}}
		}
		if answers.write(resp) != nil {
			return
		}
	}
}

// TestClientRequestTooLarge is the review's probe: 16 goroutines share a
// client while another sends an echo of 200 KiB, over the default limit.
// Sent, that frame made the server refuse the stream and hang up, and the
// 16 goroutines' calls failed from then on with the Client. The client
// refuses it itself now: that call alone fails, no byte of it is written,
// and every other call, during it and after, is answered.
func TestClientRequestTooLarge(t *testing.T) {
	conn := &countingConn{Conn: dialConn(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))}
	c := NewClient(onlyConn(conn))
	t.Cleanup(func() { c.Close() })

	var started sync.WaitGroup // each caller has made a call
	echoed := make(chan struct{})
	var g errgroup.Group
	for i := range 16 {
		started.Add(1)
		g.Go(func() error {
			for j := range 100 {
				switch j {
				case 1:
					started.Done()
				case 50:
					<-echoed // half the calls after the echo's end
				}
				sum, err := DemoClient{c}.Add(t.Context(), i, j)
				if err != nil {
					return err
				}
				if sum != i+j {
					return fmt.Errorf("add(%d, %d) = %d", i, j, sum)
				}
			}
			return nil
		})
	}
	started.Wait()
	big := strings.Repeat("x", 200<<10)
	echo := c.Go(t.Context(), "echo", big)
	<-echo.Done
	close(echoed)
	err := echo.Error
	assertFailure(t, err, ResourceExhausted, NotRun, "the client refused it, and never sent it")
	// Its Ack is the lowest ID in flight as it was encoded: between 1
	// and its own, a frame of a size between theirs.
	m := regexp.MustCompile(`^echo: resource exhausted \(did not run\): this client refused to send the request \(see WithMaxRequestBytes\): message too large: a frame of (\d+) bytes, more than (\d+)$`).FindStringSubmatch(err.Error())
	if assert.NotNil(t, m, "the error: %v", err) {
		assert.Equal(t, strconv.Itoa(DefaultMaxMessageBytes), m[2])
		size, _ := strconv.Atoi(m[1])
		req := nextRequest(c, echo.ID, 1, "echo", big)
		smallest := requestBytes(t, req)
		req.Ack = echo.ID
		assert.GreaterOrEqual(t, size, smallest)
		assert.LessOrEqual(t, size, requestBytes(t, req))
	}

	require.NoError(t, g.Wait(), "the calls that shared the connection")
	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err, "a call after")
	assert.Equal(t, 3, sum)
	assert.Less(t, conn.written.Load(), int64(len(big)), "bytes written: the echo's were not")
}

// countingConn counts the bytes written to a connection.
type countingConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// dialConn dials addr and closes the connection when the test ends.
func dialConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// nextRequest returns the first attempt of call id to name(s), with no
// deadline, as c sends it when the lowest ID in flight is ack.
func nextRequest(c *Client, id, ack uint64, name, s string) Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Request{ID: id, Func: name, Params: []Value{{Type: typeStr, Str: s}}, Client: c.id, Attempt: 1, Ack: ack, Epoch: c.epoch}
}

// requestBytes returns the size of the frame payload that carries req on
// a stream that has defined its types: what the server counts against
// MaxRequestBytes, and the client against WithMaxRequestBytes.
func requestBytes(t *testing.T, req Request) int {
	t.Helper()
	e := newEncoder()
	_, err := e.encode(&Request{ID: 1, Func: req.Func}) // the types
	require.NoError(t, err)
	e.release()
	frames, err := e.encode(&req)
	require.NoError(t, err)
	return len(frames) - frameHeaderBytes
}

// TestClientMaxRequestBytes sets the same limit on both sides: a request of
// exactly the limit is sent and answered, and one byte more is refused by
// the client alone, the connection going on.
func TestClientMaxRequestBytes(t *testing.T) {
	const limit = 1000
	srv := NewDemoServer(Service{})
	srv.MaxRequestBytes = limit
	c := dial(t, serve(t, srv, rpctest.Listen(t)), WithMaxRequestBytes(limit))
	_, err := DemoClient{c}.Add(t.Context(), 1, 2) // call 1: the types
	require.NoError(t, err)

	size := func(s string) int { return requestBytes(t, nextRequest(c, 2, 2, "echo", s)) } // call 2, alone in flight
	fits := strings.Repeat("x", 900)
	fits += strings.Repeat("x", limit-size(fits))
	require.Equal(t, limit, size(fits))
	got, err := DemoClient{c}.Echo(t.Context(), fits) // call 2
	require.NoError(t, err, "a request of exactly the limit")
	assert.Equal(t, fits, got)

	_, err = DemoClient{c}.Echo(t.Context(), fits+"x")
	assert.ErrorContains(t, err, fmt.Sprintf("this client refused to send the request (see WithMaxRequestBytes): message too large: a frame of %d bytes, more than %d", limit+1, limit))
	assert.ErrorIs(t, err, errTooLarge, "the cause")
	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err, "the connection goes on")
	assert.Equal(t, 3, sum)
}

// TestClientFirstRequestTooLarge makes a client's first call too large.
// The first frame of a stream also defines its types; that frame was
// refused, so the next one, the first sent, must define them instead, or
// the server could read none of the calls after.
func TestClientFirstRequestTooLarge(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)), WithMaxRequestBytes(1000))
	call := c.Go(t.Context(), "echo", strings.Repeat("x", 1000))
	rpctest.Receive(t, call.Done, "end of the call")
	assertFailure(t, call.Error, ResourceExhausted, NotRun)
	assert.ErrorContains(t, call.Error, "message too large")
	assert.Equal(t, uint64(1), call.ID, "registered, and never sent")

	sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
}

// TestClientTooLargeInABatch refuses the last call of a write that holds
// others: they are written, and answered, without it.
func TestClientTooLargeInABatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := pipeClient(t, answerAdds, WithMaxRequestBytes(1000))
		first := c.Go(t.Context(), "add", 1, 1)
		synctest.Wait() // the writer waits for the server to read call 1
		before := c.Go(t.Context(), "add", 2, 2)
		big := c.Go(t.Context(), "echo", strings.Repeat("x", 1000))
		for i, call := range []*Call{first, before} {
			<-call.Done
			require.NoError(t, call.Error)
			assert.Equal(t, 2*(i+1), call.Result)
		}
		<-big.Done
		assertFailure(t, big.Error, ResourceExhausted, NotRun)
		assert.ErrorContains(t, big.Error, "message too large")
	})
}

// TestClientGivenUpWhileQueuedIsNotSent gives a call up while it waits
// for the writer, which is busy with a write the server has not read: the
// call keeps its id, but the server never receives it.
func TestClientGivenUpWhileQueuedIsNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		near, far := net.Pipe()
		c := NewClient(onlyConn(near))
		t.Cleanup(func() { c.Close(); far.Close() })
		first := c.Go(t.Context(), "add", 1, 1)
		synctest.Wait() // the writer waits for the server to read call 1
		ctx, cancel := context.WithCancel(t.Context())
		given := c.Go(ctx, "add", 2, 2)
		cancel()
		<-given.Done
		assert.ErrorIs(t, given.Error, context.Canceled)
		assert.Equal(t, uint64(2), given.ID, "a call given up keeps its id")
		last := c.Go(t.Context(), "add", 3, 3)

		requests := newDecoder(far, DefaultMaxMessageBytes)
		require.True(t, greet(t, requests, &answerWriter{conn: far, answers: newEncoder()}))
		var got []uint64
		for range 2 {
			var req Request
			require.NoError(t, requests.decode(&req))
			got = append(got, req.ID)
		}
		assert.Equal(t, []uint64{first.ID, last.ID}, got, "the requests the server received")
	})
}

// afterFuncCounter is a context that counts the functions registered on it
// with context.AfterFunc, and those still registered: neither run nor
// stopped. context.AfterFunc hands them to a context's own AfterFunc
// method, when it has one and is not one of the context package's own.
type afterFuncCounter struct {
	context.Context // Background: no deadline, and no values
	inner           context.Context
	registered      atomic.Int64
	live            atomic.Int64
}

func newAfterFuncCounter(parent context.Context) *afterFuncCounter {
	return &afterFuncCounter{Context: context.Background(), inner: parent}
}

func (c *afterFuncCounter) Done() <-chan struct{} { return c.inner.Done() }
func (c *afterFuncCounter) Err() error            { return c.inner.Err() }

func (c *afterFuncCounter) AfterFunc(f func()) (stop func() bool) {
	c.registered.Add(1)
	c.live.Add(1)
	stopInner := context.AfterFunc(c.inner, func() {
		c.live.Add(-1)
		f()
	})
	return func() bool {
		stopped := stopInner()
		if stopped {
			c.live.Add(-1)
		}
		return stopped
	}
}

// TestClientStopsWatchingContext makes calls with Go and GoFunc on one
// long-lived context, and lets them all be answered. Each call watched
// the context while it was in flight; once it has ended, none may still
// be registered on it, or a program making calls on one context for a
// long time would keep every call it ever made.
func TestClientStopsWatchingContext(t *testing.T) {
	addr, clock := slowServer(t)
	c := dial(t, addr)
	ctx := newAfterFuncCounter(t.Context())
	const n = 8
	var calls []*Call
	called := make(chan *Call, n)
	for range n / 2 {
		calls = append(calls, c.Go(ctx, "slow", 100))
		c.GoFunc(ctx, "slow", func(call *Call) { called <- call }, 100)
	}
	clock.waitAsleep(t, n) // every call is in flight, and Go and GoFunc have returned
	require.Equal(t, int64(n), ctx.registered.Load(), "calls watching the context")
	clock.wake(100)
	for _, call := range calls {
		<-call.Done
		require.NoError(t, call.Error)
	}
	for range n / 2 {
		require.NoError(t, rpctest.Receive(t, called, "callback").Error)
	}
	assert.Zero(t, ctx.live.Load(), "calls ended and still watching the context")
}

// TestClientWriteTimeout talks to a server that stops reading: a call with
// no deadline of its own fails when the write that carries it has not
// ended within the write timeout, exactly then, and breaks the client.
func TestClientWriteTimeout(t *testing.T) {
	for _, tt := range []struct {
		name  string
		opts  []Option
		after time.Duration
	}{
		{"the default", nil, DefaultClientWriteTimeout},
		{"WithWriteTimeout", []Option{WithWriteTimeout(5 * time.Second)}, 5 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := pipeClient(t, func(requests *decoder, answers *answerWriter) {
					var req Request // one call, answered; then it reads no more
					if requests.decode(&req) == nil {
						_ = answers.write(Response{ID: req.ID, Data: Value{Type: typeInt, Int: 3}})
					}
					<-t.Context().Done() // nor does it hang up, until the test ends
				}, append(noRetries(), append(tt.opts, WithSeed(1))...)...)
				sum, err := DemoClient{c}.Add(context.Background(), 1, 2)
				require.NoError(t, err)
				require.Equal(t, 3, sum)

				time.Sleep(time.Hour) // the connection, idle, is not timed out
				start := time.Now()
				_, err = DemoClient{c}.Add(context.Background(), 1, 2)
				assert.Equal(t, tt.after, time.Since(start))
				assertFailure(t, err, Unavailable, OutcomeUnknown, "its write began: the server may have read some of it")
				assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
				// One frame: a later add, 51 bytes. Stage 05's was 27; 07's
				// request adds its Client (a field delta, and 9 bytes for
				// the seeded id, above 2⁵⁶), its Attempt, 1, and its Ack, 2
				// (2 bytes each), and its Epoch (a field delta, and 9 bytes
				// for the fake server's 2⁶²): 24 more. No Timeout (no
				// deadline).
				assert.ErrorContains(t, err, fmt.Sprintf("the server did not take 51 bytes of requests within %v (see WithWriteTimeout)", tt.after))
			})
		})
	}
}

// TestClientMaxPending fills the pending table of a client whose server
// reads its calls and answers none until told: the next call waits for a
// place, is never registered nor sent, and gives up when its context
// ends; once an answer frees a place, the next call takes it.
func TestClientMaxPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		received := make(chan uint64, 8)
		answer := make(chan Response)
		c := pipeClient(t, func(requests *decoder, answers *answerWriter) {
			go func() {
				for resp := range answer {
					_ = answers.write(resp)
				}
			}()
			for {
				var req Request
				if requests.decode(&req) != nil {
					return
				}
				received <- req.ID
			}
		}, WithMaxPending(2))
		t.Cleanup(func() { close(answer) })
		first, second := c.Go(t.Context(), "add", 1, 1), c.Go(t.Context(), "add", 2, 2)

		ctx, cancel := context.WithCancel(t.Context())
		waiting := make(chan *Call, 1)
		go func() { waiting <- c.Go(ctx, "add", 3, 3) }()
		synctest.Wait()
		assert.Empty(t, waiting, "a call at the bound waits for a place")
		assert.Equal(t, 2, pendingCalls(c))
		cancel()
		call := <-waiting
		<-call.Done
		assert.ErrorIs(t, call.Error, context.Canceled)
		assert.Zero(t, call.ID, "never registered")

		answer <- Response{ID: first.ID, Data: Value{Type: typeInt, Int: 2}}
		<-first.Done
		require.NoError(t, first.Error)
		third := c.Go(t.Context(), "add", 4, 4) // the place first left
		synctest.Wait()
		assert.Equal(t, 2, pendingCalls(c))
		// Not closed: as the test ends, t.Context() ends, the calls still
		// pending are given up, and the server reads their cancel frames.
		got := []uint64{<-received, <-received, <-received}
		assert.Empty(t, received, "requests beyond those three")
		assert.Equal(t, []uint64{first.ID, second.ID, third.ID}, got, "the requests the server received")
		assert.Equal(t, uint64(3), third.ID)
	})
}
