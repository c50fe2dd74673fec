package asyncrpc

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
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
				sum, err := DemoClient{c}.Add(t.Context(), i, j*1000)
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
	rpctest.Receive(t, call.Done, "end of the cancelled call")
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
	_, err := DemoClient{c}.Add(t.Context(), 1, 2)
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
		rpctest.Receive(t, call.Done, "end of the call")
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
	_, err := DemoClient{c}.Add(t.Context(), 1, 2)
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

// TestCloseDoesNotWaitForCallbacks closes a client while a callback
// blocks: Close returns all the same.
func TestCloseDoesNotWaitForCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := pipeClient(t, answerAdds)
		release, blocked := make(chan struct{}), make(chan struct{})
		c.GoFunc(t.Context(), "add", func(*Call) {
			close(blocked)
			<-release
		}, 1, 2)
		<-blocked
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		synctest.Wait()
		select {
		case err := <-closed:
			assert.NoError(t, err)
		default:
			t.Error("Close waits for a callback that blocks")
		}
		close(release)
	})
}

// TestCallbackMayClose closes a client from a callback, which a Close
// that waited for callbacks would make wait for itself.
func TestCallbackMayClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := pipeClient(t, answerAdds)
		closed := make(chan error, 1)
		c.GoFunc(t.Context(), "add", func(*Call) { closed <- c.Close() }, 1, 2)
		assert.NoError(t, <-closed, "Close, from a callback")
		_, err := DemoClient{c}.Add(t.Context(), 1, 2)
		assert.ErrorIs(t, err, ErrClientClosed)
	})
}

// TestCloseLeavesNoGoroutine closes a client with calls and callbacks in
// flight: one callback running, which blocks until the test lets it go,
// and sixteen calls held by the server. Close returns while that callback
// still blocks, with every call ended, and once the callbacks have
// returned, no goroutine of the client is left.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	clock := &testClock{asleep: make(chan time.Duration, 1024), alarms: map[time.Duration]chan struct{}{}}
	srv := NewDemoServer(Service{Sleep: clock.Sleep})
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c, err := Dial(t.Context(), l.Addr().String())
	require.NoError(t, err)

	var callbacks sync.WaitGroup // the callbacks of the calls Close fails
	running, release, released := make(chan struct{}), make(chan struct{}), make(chan struct{})
	c.GoFunc(t.Context(), "add", func(call *Call) {
		defer close(released)
		close(running)
		<-release
	}, 1, 2)
	<-running
	var calls []*Call
	for range 8 {
		callbacks.Add(1)
		c.GoFunc(t.Context(), "slow", func(call *Call) {
			defer callbacks.Done()
			assert.ErrorIs(t, call.Error, ErrClientClosed)
		}, 100)
		calls = append(calls, c.Go(t.Context(), "slow", 100))
	}
	clock.waitAsleep(t, 16)

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(rpctest.Backstop):
		close(release)
		t.Fatal("Close waits for a callback that blocks") // and TestCloseDoesNotWaitForCallbacks, at once
	}
	for _, call := range calls {
		select {
		case <-call.Done:
			assert.ErrorIs(t, call.Error, ErrBroken)
		default:
			t.Error("Close returned with a call not ended")
		}
	}
	close(release)
	<-released
	callbacks.Wait()

	clock.wakeAll()
	require.NoError(t, srv.Shutdown(t.Context()))
	require.ErrorIs(t, <-served, ErrServerClosed)
	goleak.VerifyNone(t, ignore)
}

// TestGoFuncNilCallback checks that GoFunc refuses a nil callback at the
// call, with a message that says so, and registers nothing: a call whose
// end could go nowhere would block the goroutine that ends it.
func TestGoFuncNilCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := pipeClient(t, answerAdds)
		assert.PanicsWithValue(t, "asyncrpc: GoFunc with a nil callback: the call's end would go nowhere", func() {
			c.GoFunc(t.Context(), "add", nil, 1, 2)
		})
		assert.Zero(t, pendingCalls(c), "nothing registered")
		sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
		require.NoError(t, err, "the client goes on")
		assert.Equal(t, 3, sum)
	})
}

// TestGoFuncCallbackNotOnCaller makes a GoFunc call that ends in each way,
// while its caller holds a lock the callback takes, and lets go of it only
// once GoFunc has returned. A callback run on the caller's goroutine, as
// one for a call that failed before it was sent used to be, would wait for
// the lock for ever, and synctest would report the deadlock at once. The
// lock is a channel with room for one, since synctest sees a goroutine
// that waits on a channel, not on a sync.Mutex. Each callback runs once,
// counted after Close.
func TestGoFuncCallbackNotOnCaller(t *testing.T) {
	for _, tt := range []struct {
		name    string
		start   func(t *testing.T, c *Client) context.Context // brings the ending about, and gives the call's context
		fn      string
		args    []any
		wantErr error  // if not nil, the call fails with it
		wantMsg string // if not empty, the call fails with an error that says it
	}{
		{name: "answered", fn: "add", args: []any{1, 2}},
		{name: "arguments that cannot be sent", fn: "echo", args: []any{[]byte("x")}, wantMsg: "cannot be sent"},
		{name: "too large to send", fn: "echo", args: []any{strings.Repeat("x", 1000)}, wantErr: errTooLarge},
		{
			name: "its context ended already", fn: "add", args: []any{1, 2}, wantErr: context.Canceled,
			start: func(t *testing.T, _ *Client) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			},
		},
		{
			name: "the client closed", fn: "add", args: []any{1, 2}, wantErr: ErrClientClosed,
			start: func(t *testing.T, c *Client) context.Context {
				require.NoError(t, c.Close())
				return t.Context()
			},
		},
		{
			name: "the client broken", fn: "add", args: []any{1, 2}, wantErr: ErrBroken,
			start: func(t *testing.T, c *Client) context.Context {
				_, err := DemoClient{c}.Add(t.Context(), 1, 2) // the server refuses the stream
				require.ErrorIs(t, err, ErrBroken)
				return t.Context()
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				serve := answerAdds
				if tt.name == "the client broken" {
					serve = func(requests *decoder, answers *answerWriter) {
						var req Request
						if requests.decode(&req) == nil {
							_ = answers.write(Response{Error: "refused"})
						}
					}
				}
				c := pipeClient(t, serve, WithMaxRequestBytes(1000))
				ctx := t.Context()
				if tt.start != nil {
					ctx = tt.start(t, c)
				}
				lock := make(chan struct{}, 1)
				ended := make(chan *Call, 2)
				lock <- struct{}{} // the caller takes the lock
				c.GoFunc(ctx, tt.fn, func(call *Call) {
					lock <- struct{}{} // the callback takes it
					<-lock
					ended <- call
				}, tt.args...)
				<-lock // and lets it go once GoFunc has returned
				call := <-ended
				switch {
				case tt.wantErr != nil:
					assert.ErrorIs(t, call.Error, tt.wantErr)
				case tt.wantMsg != "":
					assert.ErrorContains(t, call.Error, tt.wantMsg)
				default:
					require.NoError(t, call.Error)
					assert.Equal(t, 3, call.Result)
				}
				c.Close()
				synctest.Wait() // any callback Close started has run
				assert.Empty(t, ended, "a callback ran twice")
			})
		})
	}
}
