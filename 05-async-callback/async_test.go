package asyncrpc

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

// TestManyCallsOneConnection makes 10,000 calls from 256 goroutines over
// one connection, and checks every answer: no answer goes to the wrong call.
func TestManyCallsOneConnection(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	const callers, each = 256, 10_000 / 256
	var g errgroup.Group
	for i := range callers {
		g.Go(func() error {
			for j := range each {
				sum, err := c.Add(t.Context(), i, j*1000)
				if err != nil {
					return err
				}
				if sum != i+j*1000 {
					return fmt.Errorf("add(%d, %d) = %d", i, j*1000, sum)
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	assert.Zero(t, c.LateAnswers())
}

// TestAnswersCross holds the first call on the server until the caller
// has the second call's answer: the answers come back in the order the
// calls finish, and the second is delivered while the first is still in
// flight. (Reading both Done channels in one select would not show the
// order: once both are ready, select picks either.)
func TestAnswersCross(t *testing.T) {
	srv := NewDemoServer(Service{})
	release := make(chan struct{})
	srv.beforeAnswer = func(req *Request) {
		if req.Func == "echo" && req.Params[0].Str == "first" {
			<-release
		}
	}
	c := dial(t, serve(t, srv, rpctest.Listen(t)))
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // runs before the server's Shutdown, if the test stops early
	ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop)
	defer cancel()
	first := c.Go(ctx, "echo", "first")
	second := c.Go(ctx, "echo", "second")

	call := <-second.Done
	require.NoError(t, call.Error)
	assert.Equal(t, "second", call.Result)
	select {
	case call := <-first.Done:
		t.Fatalf("the first call ended before the server answered it: %v, %v", call.Result, call.Error)
	default:
	}

	free()
	call = <-first.Done
	require.NoError(t, call.Error)
	assert.Equal(t, "first", call.Result)
}

// TestGo makes calls with Go: Done delivers the call itself, once, however
// it ends.
func TestGo(t *testing.T) {
	addr, clock := slowServer(t)
	c := dial(t, addr)

	call := c.Go(t.Context(), "add", 40, 2)
	assert.Same(t, call, <-call.Done)
	assert.Equal(t, 42, call.Result)
	assert.NoError(t, call.Error)
	assert.Equal(t, uint64(1), call.ID)

	call = c.Go(t.Context(), "add", 1, "two")
	<-call.Done
	var serverErr *ServerError
	assert.ErrorAs(t, call.Error, &serverErr)
	assert.Nil(t, call.Result)

	ctx, cancel := context.WithCancel(t.Context())
	call = c.Go(ctx, "slow", 500)
	clock.waitAsleep(t, 1)
	cancel()
	within(t, call.Done, "the cancelled call's end")
	assert.ErrorIs(t, call.Error, context.Canceled)

	call = c.Go(t.Context(), "echo", []byte("x"))
	select {
	case <-call.Done:
		assert.ErrorContains(t, call.Error, "cannot be sent")
		assert.Zero(t, call.ID, "a call that cannot be sent gets no id")
	default:
		t.Fatal("a call that cannot be sent had not ended when Go returned")
	}

	assert.Empty(t, call.Done, "Done receives once")
}

// TestOutOfOrderCompletion starts slow(300), slow(100) and slow(200) on one
// connection and ends them in the order of their durations, as a real clock
// would: each answer reaches its call while the calls started before it
// are still running.
func TestOutOfOrderCompletion(t *testing.T) {
	addr, clock := slowServer(t)
	c := dial(t, addr)
	calls := map[int]*Call{}
	for _, ms := range []int{300, 100, 200} {
		calls[ms] = c.Go(t.Context(), "slow", ms)
	}
	clock.waitAsleep(t, 3)
	for _, ms := range []int{100, 200, 300} {
		clock.wake(ms)
		call := <-calls[ms].Done
		require.NoError(t, call.Error)
		assert.Equal(t, ms, call.Result)
	}
	assert.Equal(t, []uint64{1, 2, 3}, []uint64{calls[300].ID, calls[100].ID, calls[200].ID}, "ids in the order the calls were made")
}

// fakeServer serves each connection with handle, which reads requests and
// writes answers the way a test wants. It returns the address to dial.
func fakeServer(t *testing.T, handle func(requests *decoder, answers *answerWriter)) string {
	return rpctest.ServeConns(t, func(conn net.Conn) {
		handle(newDecoder(conn, DefaultMaxMessageBytes), &answerWriter{conn: conn, answers: newEncoder()})
	})
}

// answerWriter writes a fake server's answers: one gob stream for the
// connection, one frame for each answer.
type answerWriter struct {
	conn    net.Conn
	answers *encoder
}

func (w *answerWriter) write(resp Response) error {
	frames, err := w.answers.encode(&resp)
	if err == nil {
		_, err = w.conn.Write(frames)
	}
	w.answers.release()
	return err
}

// TestPeerDiesMidCall talks to a server that reads three calls and closes
// the connection without answering: the three fail at once, with an error
// that wraps ErrBroken and the cause.
func TestPeerDiesMidCall(t *testing.T) {
	c := dial(t, fakeServer(t, func(requests *decoder, _ *answerWriter) {
		for range 3 {
			var req Request
			if !assert.NoError(t, requests.decode(&req)) {
				return
			}
		}
	}))
	var calls []*Call
	for i := range 3 {
		calls = append(calls, c.Go(context.Background(), "add", i, 1)) // no deadline: only the failure can end them
	}
	for _, call := range calls {
		select {
		case <-call.Done:
		case <-time.After(rpctest.Backstop):
			t.Fatal("a call in flight did not fail with its connection")
		}
		assert.ErrorIs(t, call.Error, ErrBroken)
		assert.ErrorIs(t, call.Error, io.EOF)
		assert.ErrorContains(t, call.Error, "the server closed the connection")
	}
	_, err := c.Add(t.Context(), 1, 2)
	assert.ErrorIs(t, err, ErrBroken, "later calls fail too")
	assert.ErrorIs(t, err, io.EOF)
}

// TestAnswerToNoCallBreaksClient talks to a server that answers the first
// of two calls with an id the client never issued. The client cannot know
// which call that answer was meant for, so it trusts the connection no more:
// both calls fail with the reason.
func TestAnswerToNoCallBreaksClient(t *testing.T) {
	c := dial(t, fakeServer(t, func(requests *decoder, answers *answerWriter) {
		var req Request
		for range 2 {
			if !assert.NoError(t, requests.decode(&req)) {
				return
			}
		}
		assert.NoError(t, answers.write(Response{ID: 9, Data: Value{Type: typeInt, Int: 3}}))
		var rest [1]byte
		_, _ = answers.conn.Read(rest[:]) // until the client hangs up
	}))
	first, second := c.Go(t.Context(), "add", 1, 2), c.Go(t.Context(), "add", 3, 4)
	for _, call := range []*Call{first, second} {
		within(t, call.Done, "the call's end")
		assert.ErrorIs(t, call.Error, ErrBroken)
		assert.ErrorContains(t, call.Error, "an answer to call 9, which was never made")
	}
}

// TestRefusalIsTheCause talks to a server that refuses the connection as
// the server does, with an answer whose id is 0, and hangs up: the call
// fails with the server's reason as the cause, not with the end of the
// stream that followed it.
func TestRefusalIsTheCause(t *testing.T) {
	c := dial(t, fakeServer(t, func(requests *decoder, answers *answerWriter) {
		var req Request
		if assert.NoError(t, requests.decode(&req)) {
			assert.NoError(t, answers.write(Response{Error: "too many connections"}))
		}
	}))
	_, err := c.Add(t.Context(), 1, 2)
	assert.ErrorIs(t, err, ErrBroken)
	var serverErr *ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.Equal(t, "too many connections", serverErr.Message)
	assert.NotErrorIs(t, err, io.EOF)
}

// TestWritesCoalesced holds the client's first write while 63 more calls
// are made from as many goroutines: they all wait for the writer, and go
// out together in the next write, not one write each.
func TestWritesCoalesced(t *testing.T) {
	conn := holdWrites(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	c := NewClient(conn)
	t.Cleanup(func() { c.Close() })
	calls := []*Call{c.Go(t.Context(), "add", 0, 1)}
	<-conn.writing

	var mu sync.Mutex
	var g errgroup.Group
	for i := range 63 {
		g.Go(func() error {
			call := c.Go(t.Context(), "add", i+1, 1) // queued when Go returns
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, call)
			return nil
		})
	}
	require.NoError(t, g.Wait())
	conn.release()
	for _, call := range calls {
		<-call.Done
		require.NoError(t, call.Error)
		assert.Equal(t, call.Args[0].(int)+1, call.Result)
	}
	assert.Equal(t, int64(2), conn.writes.Load(), "64 calls: the first alone, then the 63 that waited in one write")
}

// TestCloseLeavesNoGoroutine closes a client with calls and callbacks in
// flight: one callback running, held until Close has begun, and sixteen
// calls held by the server. Close returns once every callback has, and no
// goroutine of the client outlives it.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	clock := &testClock{asleep: make(chan time.Duration, 1024), alarms: map[time.Duration]chan struct{}{}}
	srv := NewDemoServer(Service{Sleep: clock.Sleep})
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c, err := Dial(t.Context(), l.Addr().String())
	require.NoError(t, err)

	var started, returned atomic.Int64
	running := make(chan struct{})
	c.GoFunc(t.Context(), func(call *Call) {
		started.Add(1)
		defer returned.Add(1)
		close(running)
		<-c.broken // until Close has begun
	}, "add", 1, 2)
	<-running
	var calls []*Call
	for range 8 {
		c.GoFunc(t.Context(), func(call *Call) {
			started.Add(1)
			defer returned.Add(1)
			assert.ErrorIs(t, call.Error, ErrBroken)
		}, "slow", 100)
		calls = append(calls, c.Go(t.Context(), "slow", 100))
	}
	clock.waitAsleep(t, 16)

	require.NoError(t, c.Close())
	assert.Equal(t, int64(9), started.Load(), "every callback ran")
	assert.Equal(t, int64(9), returned.Load(), "Close returned before a callback did")
	for _, call := range calls {
		select {
		case <-call.Done:
			assert.ErrorIs(t, call.Error, ErrBroken)
		default:
			t.Error("Close returned with a call not ended")
		}
	}

	clock.wakeAll()
	require.NoError(t, srv.Shutdown(t.Context()))
	require.ErrorIs(t, <-served, ErrServerClosed)
	goleak.VerifyNone(t, ignore)
}
