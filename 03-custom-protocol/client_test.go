package customproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
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
	for _, s := range awkward {
		got, err := c.Echo(t.Context(), s)
		require.NoError(t, err)
		assert.Equal(t, s, got)
	}
	assert.Equal(t, 1, l.Accepted(), "every call shared one connection")
}

// TestClientServerErrorKeepsConnection checks that a refused call is a
// *ServerError naming the problem, and that the next call goes through on
// the same connection.
func TestClientServerErrorKeepsConnection(t *testing.T) {
	l := rpctest.Listen(t)
	srv := NewDemoServer()
	c := dial(t, serve(t, srv, l))

	for _, tt := range []struct {
		name string
		args []any
		want string
	}{
		{"sub", []any{3, 1}, `no function "sub"; there are: ` + functionList(t, srv)},
		{"add", []any{1, "two"}, `add: argument 2: want int, got str "two"`},
		{"add", []any{1}, "add: takes 2 arguments, got 1"},
		{"add", []any{1, 2, 3}, "add: takes 2 arguments, got 3"},
		{"add", []any{9223372036854775807, 1}, "add: 9223372036854775807 + 1 does not fit in an int (64 bits)"},
		{"sum", []any{1e308, 1e308}, "sum: 1e+308 + 1e+308 does not fit in a float (64 bits)"},
		{"echo", []any{"\xff"}, `argument 1: "\xff" is not valid UTF-8`},
	} {
		_, err := c.Call(t.Context(), tt.name, tt.args...)
		var serverErr *ServerError
		require.ErrorAs(t, err, &serverErr)
		assert.Equal(t, tt.want, serverErr.Message)

		sum, err := c.Add(t.Context(), 1, 2)
		require.NoError(t, err)
		assert.Equal(t, 3, sum)
	}
	assert.Equal(t, 1, l.Accepted(), "every call shared one connection")
}

// TestClientRefusesToSend checks that arguments the wire cannot carry fail
// before anything is sent, and leave the client usable.
func TestClientRefusesToSend(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	_, err := c.Call(t.Context(), "echo", []byte("x"))
	assert.EqualError(t, err, "echo: argument 1: a []uint8 cannot be sent: the wire carries int, float64 and string")
	_, err = c.Call(t.Context(), "sum", math.Inf(1), 1)
	assert.EqualError(t, err, "sum: argument 1: +Inf cannot be sent: the wire carries finite floats only")

	sum, err := c.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
}

// TestClientConcurrentUse shares one Client among many goroutines: calls
// take turns on the connection, and every caller gets its own answer.
func TestClientConcurrentUse(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	var g errgroup.Group
	for i := range 16 {
		g.Go(func() error {
			for j := range 50 {
				sum, err := c.Add(t.Context(), i, j)
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
	srv := NewDemoServer()
	entered, release := holdCalls(srv)
	addr = serve(t, srv, rpctest.Listen(t))
	t.Cleanup(release) // runs before the server's shutdown, which waits for held calls
	return addr, entered
}

// TestClientCancel cancels a call while the server holds it. The call
// returns context.Canceled at once; since its answer may still come, the
// connection cannot be trusted, and later calls fail with ErrBroken. It
// runs in fake time (see faketime_test.go), so "at once" is exact, and a
// call that went on waiting for its answer fails the bounded wait.
func TestClientCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, entered := pipeHoldingServer(t)
		c := pipeClient(t, l)
		ctx, cancel := context.WithCancel(t.Context())
		failed := make(chan error, 1)
		go func() {
			_, err := c.Add(ctx, 1, 2)
			failed <- err
		}()
		<-entered
		cancelled := time.Now()
		cancel()
		select {
		case err := <-failed:
			assert.ErrorIs(t, err, context.Canceled)
			assert.Zero(t, time.Since(cancelled), "the call returned at once")
		case <-time.After(time.Second):
			t.Fatal("a cancelled call went on waiting for its answer")
		}

		_, err := c.Add(t.Context(), 1, 2)
		assert.ErrorIs(t, err, ErrBroken)
		assert.ErrorContains(t, err, "context canceled")
	})
}

// deadlineGate is a connection whose SetDeadline, when given a time rather
// than none, waits until open is closed: it holds a cancelled call's
// context.AfterFunc at the moment it would cut the connection's deadline
// short.
type deadlineGate struct {
	net.Conn
	open chan struct{}
}

func (c *deadlineGate) SetDeadline(t time.Time) error {
	if !t.IsZero() {
		<-c.open
	}
	return c.Conn.SetDeadline(t)
}

// TestClientCancelDoesNotCutNextCall cancels a call just as its answer
// arrives: the AfterFunc that cuts the connection's deadline short has
// started, and the answer is read before it acts. The call must wait for
// the AfterFunc to finish before it gives up the turn; otherwise the
// AfterFunc's deadline lands on the next call, which then fails for no
// fault of its own and breaks the client.
func TestClientCancelDoesNotCutNextCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		answer := make(chan struct{}) // each send lets one call be answered
		srv.beforeAnswer = func() { <-answer }
		l := newPipeListener()
		serve(t, srv, l)
		conn, _ := l.dial(t)
		gate := &deadlineGate{Conn: conn, open: make(chan struct{})}
		c := DemoClient{NewClient(gate)}
		defer c.Close()

		ctx, cancel := context.WithCancel(t.Context())
		first := make(chan error, 1)
		go func() {
			_, err := c.Add(ctx, 1, 2)
			first <- err
		}()
		synctest.Wait() // the first call is in the server
		cancel()
		synctest.Wait() // its AfterFunc waits at the gate
		answer <- struct{}{}
		synctest.Wait() // its answer is read

		second := make(chan error, 1)
		go func() {
			sum, err := c.Add(t.Context(), 1, 2)
			if err == nil && sum != 3 {
				err = fmt.Errorf("sum %d", sum)
			}
			second <- err
		}()
		synctest.Wait()
		close(gate.open) // the AfterFunc cuts the deadline short now
		synctest.Wait()
		answer <- struct{}{}
		assert.NoError(t, <-second, "the second call was cut short by the first's cancel")
		<-first
	})
}

func TestClientDeadline(t *testing.T) {
	addr, _ := holdingServer(t)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // the call is held past it
	defer cancel()
	_, err := c.Add(ctx, 1, 2)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestClientCancelledBeforeSending checks that a call whose context has
// already ended is not sent, and does not break the client. Call's wait
// for its turn sees the ended context and the free turn at once, and
// takes either, at even odds; after the turn, roundTrip's check is what
// keeps the call off the wire. Twenty calls reach that check in all but
// one run in a million.
func TestClientCancelledBeforeSending(t *testing.T) {
	srv := NewDemoServer()
	var ran atomic.Int64
	srv.beforeAnswer = func() { ran.Add(1) }
	c := dial(t, serve(t, srv, rpctest.Listen(t)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 20 {
		_, err := c.Add(ctx, 1, 2)
		require.ErrorIs(t, err, context.Canceled)
	}

	sum, err := c.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)
	assert.Equal(t, int64(1), ran.Load(), "calls the server ran")
}

// oneShotServer answers the first request on each connection with answer
// and closes the connection.
func oneShotServer(t *testing.T, answer string) string {
	return rpctest.ServeConns(t, func(conn net.Conn) {
		_, _ = newFrameReader(conn, DefaultMaxMessageBytes).next()
		_, _ = io.WriteString(conn, answer)
	})
}

// TestClientServerHangsUp talks to a server that answers one call and
// closes the connection. The second call must fail with a clear error, not
// hang, and the client must then say it is broken.
func TestClientServerHangsUp(t *testing.T) {
	c := dial(t, oneShotServer(t, "8 data:1-3\n"))
	sum, err := c.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)

	_, err = c.Add(t.Context(), 1, 2)
	require.Error(t, err)
	assert.True(t, errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset"), "got %v", err)
	assert.ErrorContains(t, err, "add: ")

	_, err = c.Add(t.Context(), 1, 2)
	assert.ErrorIs(t, err, ErrBroken)
}

// TestClientOddAnswers points the client at servers that answer in ways it
// must not take for a result.
func TestClientOddAnswers(t *testing.T) {
	for _, tt := range []struct {
		answer, wantErr string
	}{
		{"10 data:3-3.0\n", `add: result is str "3.0", want int`},
		{"10 data:2-3.0\n", "add: result is float 3.0, want int"},
		{"6 data:3\n", `add: answer: "3" has no type code`},
		{"14 error:no%2C no\n", "add: server answered: no, no"},
		{"data:3", "add: malformed message: a frame starts with its length in digits and a space, not \"d\""},
		{"RPC Server Function Error", "add: malformed message: a frame starts with its length in digits and a space, not \"R\""},
		{"25 RPC Server Function Error\n", `add: answer "RPC Server Function Error" starts with neither "data:" nor "error:"`},
		{"9 data:1-3", "add: the server closed the connection before answering: unexpected EOF"},
	} {
		c := dial(t, oneShotServer(t, tt.answer))
		sum, err := c.Add(t.Context(), 1, 2)
		assert.ErrorContains(t, err, tt.wantErr, tt.answer)
		assert.Zero(t, sum)
	}
}

func TestClientAnswerTooLarge(t *testing.T) {
	c := dial(t, oneShotServer(t, fmt.Sprintf("%d data:3-", DefaultMaxMessageBytes+1)))
	_, err := c.Echo(t.Context(), "x")
	assert.ErrorIs(t, err, errTooLarge)
	assert.ErrorContains(t, err, "this client refused the answer", "the error says which side refused")
}

// TestClientMaxAnswerBytes raises a server's limit above the default: the
// client must be told to read answers as large, or a large echo breaks it.
func TestClientMaxAnswerBytes(t *testing.T) {
	const limit = 4 * DefaultMaxMessageBytes
	srv := NewDemoServer()
	srv.MaxRequestBytes = limit
	addr := serve(t, srv, rpctest.Listen(t))
	big := strings.Repeat("x", 2*DefaultMaxMessageBytes)

	_, err := dial(t, addr).Echo(t.Context(), big)
	assert.ErrorContains(t, err, "WithMaxAnswerBytes")

	got, err := dial(t, addr, WithMaxAnswerBytes(limit)).Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)
}

// TestClientWaitingCallHonoursContext holds one call inside the server; a
// second call on the same client, waiting for its turn, must give up at
// its own deadline, exactly, rather than wait for the first. It runs in
// fake time (see faketime_test.go).
func TestClientWaitingCallHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, entered := pipeHoldingServer(t)
		c := pipeClient(t, l)
		go func() { _, _ = c.Add(context.Background(), 1, 2) }() // held until the test ends
		<-entered

		const timeout = 50 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		start := time.Now()
		failed := make(chan error, 1)
		go func() {
			_, err := c.Add(ctx, 4, 5)
			failed <- err
		}()
		select {
		case err := <-failed:
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.ErrorContains(t, err, "waiting for the connection")
			assert.Equal(t, timeout, time.Since(start))
		case <-time.After(2 * timeout):
			t.Fatal("a call waiting for its turn ignored its deadline")
		}
	})
}

// TestClientCloseFailsCallInFlight closes a client while its call is held
// inside the server: the call fails at once with ErrBroken and
// ErrClientClosed, and Close does not wait for it. It runs in fake time
// (see faketime_test.go), so "at once" is exact.
func TestClientCloseFailsCallInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, entered := pipeHoldingServer(t)
		c := pipeClient(t, l)
		failed := make(chan error, 1)
		go func() {
			_, err := c.Add(context.Background(), 1, 2)
			failed <- err
		}()
		<-entered

		start := time.Now()
		assert.NoError(t, c.Close(), "Close returned without waiting for the call")
		select {
		case err := <-failed:
			assert.ErrorIs(t, err, ErrBroken)
			assert.ErrorIs(t, err, ErrClientClosed)
			assert.Zero(t, time.Since(start), "the call failed at once")
		case <-time.After(time.Second):
			t.Fatal("Close did not fail the call in flight")
		}
	})
}

// TestClientClose closes a client from many goroutines at once: one Close
// closes the connection and returns nil, every other returns
// ErrClientClosed, as net/rpc's returns ErrShutdown. A call made after
// Close fails with an error that is both ErrBroken and ErrClientClosed.
func TestClientClose(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() { errs <- c.Close() }()
	}
	var closedIt int
	for range cap(errs) {
		if err := <-errs; err == nil {
			closedIt++
		} else {
			assert.ErrorIs(t, err, ErrClientClosed)
		}
	}
	assert.Equal(t, 1, closedIt, "Close calls that returned nil")

	_, err := c.Add(t.Context(), 1, 2)
	assert.ErrorIs(t, err, ErrBroken)
	assert.ErrorIs(t, err, ErrClientClosed)
	assert.ErrorIs(t, c.Close(), ErrClientClosed)
}

// TestClientCloseBroken closes a client whose connection a failed call has
// closed already: the first Close has nothing left to close and returns
// nil, and from then on the client says it was closed.
func TestClientCloseBroken(t *testing.T) {
	c := dial(t, oneShotServer(t, "8 data:1-3\n"))
	_, err := c.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	_, err = c.Add(t.Context(), 1, 2)
	require.Error(t, err, "the server hung up")
	_, err = c.Add(t.Context(), 1, 2)
	require.ErrorIs(t, err, ErrBroken)
	require.NotErrorIs(t, err, ErrClientClosed, "broken, but not closed")

	assert.NoError(t, c.Close())
	_, err = c.Add(t.Context(), 1, 2)
	assert.ErrorIs(t, err, ErrBroken)
	assert.ErrorIs(t, err, ErrClientClosed)
	assert.ErrorIs(t, c.Close(), ErrClientClosed)
}

// closeFails is a connection whose Close fails.
type closeFails struct{ net.Conn }

var errCloseFails = errors.New("close failed")

func (c closeFails) Close() error {
	c.Conn.Close()
	return errCloseFails
}

// TestClientCloseError checks that the first Close returns the error that
// closing the connection gave.
func TestClientCloseError(t *testing.T) {
	conn, other := net.Pipe()
	defer other.Close()
	c := NewClient(closeFails{conn})
	assert.ErrorIs(t, c.Close(), errCloseFails)
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
