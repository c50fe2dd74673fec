package asyncrpc

// The article's client and server, and what each of their flaws would do
// to these tests: every flaw the lesson's part 6 names has its test here.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestArticleFlawRegisteredAfterSend talks to a server so quick that each
// answer is read and handled before the write that sent the call returns.
//
// The article sends the request first, and only then puts the call's Event
// in the table. An answer that comes in between finds no Event: the
// reader thread dies on a KeyError, the call waits out its timeout, and so
// does every later call on that client, since no one reads answers any
// more. Ours registers the call before it is queued for the writer: every
// call here gets its answer, and none is taken for a late one.
func TestArticleFlawRegisteredAfterSend(t *testing.T) {
	c := NewClient(newEagerConn(t))
	t.Cleanup(func() { c.Close() })
	for want := 1; want <= 3; want++ {
		ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop)
		res, err := c.Call(ctx, "add", 1, 2)
		cancel()
		require.NoError(t, err, "call %d", want)
		assert.Equal(t, want, res, "the eager server answers each call with its id")
	}
	assert.Zero(t, c.LateAnswers())
}

// eagerConn is a client's connection to a server that answers each call
// as it is written: Write returns only once the client's reader has read
// the answer and come back for more, so the answer has been handled before
// the caller could do anything after its write. The answer to the call
// with id n is the int n.
type eagerConn struct {
	net.Conn          // the client's end of a pipe: the answers come out of it
	server   net.Conn // the other end
	answers  *encoder
	unread   []byte // bytes written that are not yet a whole frame
	id       uint64 // frames written: the id of the last call

	mu      sync.Mutex // protects read, handled, sent, stopped
	changed *sync.Cond // signalled when handled or stopped changes
	read    int        // bytes of answers the client has read
	handled int        // bytes read before the client's last Read began: it has handled them
	sent    int        // bytes of answers written
	stopped error      // why Write should wait no more: closed, or the backstop
}

func newEagerConn(t *testing.T) *eagerConn {
	client, server := net.Pipe()
	c := &eagerConn{Conn: client, server: server, answers: newEncoder()}
	c.changed = sync.NewCond(&c.mu)
	t.Cleanup(func() { c.Close() })
	return c
}

func (c *eagerConn) Write(p []byte) (int, error) {
	c.unread = append(c.unread, p...)
	for len(c.unread) >= 4 {
		n := 4 + int(binary.BigEndian.Uint32(c.unread))
		if len(c.unread) < n {
			break
		}
		c.unread = c.unread[n:]
		c.id++
		if err := c.answer(Response{ID: c.id, Data: Value{Type: typeInt, Int: int(c.id)}}); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// answer writes resp to the client and waits until the client's reader has
// handled it: it has read all of it, and started to read again.
func (c *eagerConn) answer(resp Response) error {
	frames, err := c.answers.encode(&resp)
	if err != nil {
		return err
	}
	defer c.answers.release()
	if _, err := c.server.Write(frames); err != nil { // a pipe: returns once the client has read it
		return err
	}
	backstop := time.AfterFunc(rpctest.Backstop, func() {
		c.stop(errors.New("the client's reader did not come back for the next answer"))
	})
	defer backstop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent += len(frames)
	for c.handled < c.sent && c.stopped == nil {
		c.changed.Wait()
	}
	return c.stopped
}

// Read reads answers. The client's reader reads again only once it has
// handled all it has read: the bytes read so far are handled.
func (c *eagerConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.handled = c.read
	c.changed.Broadcast()
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read += n
	c.mu.Unlock()
	return n, err
}

// stop makes Write wait no more, and fail with err.
func (c *eagerConn) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped == nil {
		c.stopped = err
	}
	c.changed.Broadcast()
}

func (c *eagerConn) Close() error {
	c.stop(net.ErrClosed)
	c.server.Close()
	return c.Conn.Close()
}

// TestArticleFlawStaleAnswer gives up a call, then makes another, and
// the first call's answer comes while the second waits.
//
// The article's caller ignores what its Event's wait returns: after a
// timeout it goes on to take whatever result is there, and the answer
// that comes late is left for whoever looks next. Ours removes a call
// given up from the pending table at once: the late answer finds no call,
// is counted and dropped, and the second call gets its own answer.
func TestArticleFlawStaleAnswer(t *testing.T) {
	addr, clock := slowServer(t)
	late := make(chan uint64, 1)
	c := dial(t, addr, WithLateAnswers(func(id uint64) { late <- id }))

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // slow(500) is held past it
	defer cancel()
	_, err := DemoClient{c}.Slow(ctx, 500)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	second := c.Go(t.Context(), "slow", 100)
	clock.waitAsleep(t, 2)
	clock.wake(500)
	select {
	case id := <-late:
		assert.Equal(t, uint64(1), id, "the late answer is the first call's")
	case call := <-second.Done:
		t.Fatalf("the second call ended with %v, %v: the first call's answer", call.Result, call.Error)
	case <-time.After(rpctest.Backstop):
		t.Fatal("the late answer was never counted")
	}

	clock.wake(100)
	<-second.Done
	require.NoError(t, second.Error)
	assert.Equal(t, 100, second.Result)
	assert.Equal(t, uint64(2), second.ID)
	assert.Equal(t, int64(1), c.LateAnswers())
}

// TestArticleFlawCallbackNeverRuns makes a GoFunc call that ends in each
// way a call can end, and counts how often its callback runs.
//
// The article builds the thread that waits for the answer and runs the
// callback, but never starts it: the callback never runs, however the call
// ends. Ours runs once, exactly, in every ending; counted after Close, so
// that a second run in Close would show.
func TestArticleFlawCallbackNeverRuns(t *testing.T) {
	// Each case makes the call with callback, brings its ending about, and
	// returns the client and what to do once the callback has run.
	for _, tt := range []struct {
		name  string
		start func(t *testing.T, callback func(*Call)) (c *Client, after func())
		check func(t *testing.T, call *Call)
	}{
		{
			name: "answered",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
				c.GoFunc(t.Context(), "add", callback, 1, 2)
				return c, nil
			},
			check: func(t *testing.T, call *Call) {
				assert.NoError(t, call.Error)
				assert.Equal(t, 3, call.Result)
			},
		},
		{
			name: "refused by the server",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
				c.GoFunc(t.Context(), "add", callback, 1, "two")
				return c, nil
			},
			check: func(t *testing.T, call *Call) {
				var serverErr *ServerError
				assert.ErrorAs(t, call.Error, &serverErr)
			},
		},
		{
			name: "timed out, its answer late",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				addr, clock := slowServer(t)
				late := make(chan uint64, 1)
				c := dial(t, addr, WithLateAnswers(func(id uint64) { late <- id }))
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // slow(500) is held past it
				t.Cleanup(cancel)
				c.GoFunc(ctx, "slow", callback, 500)
				return c, func() { // the answer comes before Close
					clock.wake(500)
					rpctest.Receive(t, late, "late answer")
				}
			},
			check: func(t *testing.T, call *Call) {
				assert.ErrorIs(t, call.Error, context.DeadlineExceeded)
			},
		},
		{
			name: "cancelled, its answer late",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				addr, clock := slowServer(t)
				late := make(chan uint64, 1)
				c := dial(t, addr, WithLateAnswers(func(id uint64) { late <- id }))
				ctx, cancel := context.WithCancel(t.Context())
				c.GoFunc(ctx, "slow", callback, 500)
				clock.waitAsleep(t, 1)
				cancel()
				return c, func() {
					clock.wake(500)
					rpctest.Receive(t, late, "late answer")
				}
			},
			check: func(t *testing.T, call *Call) {
				assert.ErrorIs(t, call.Error, context.Canceled)
			},
		},
		{
			name: "closed",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				addr, clock := slowServer(t)
				c := dial(t, addr)
				c.GoFunc(t.Context(), "slow", callback, 500)
				clock.waitAsleep(t, 1)
				require.NoError(t, c.Close())
				return c, nil
			},
			check: func(t *testing.T, call *Call) {
				assert.ErrorIs(t, call.Error, ErrBroken)
				assert.ErrorIs(t, call.Error, ErrClientClosed)
			},
		},
		{
			name: "the connection lost",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				c := dial(t, fakeServer(t, func(requests *decoder, _ *answerWriter) {
					var req Request
					_ = requests.decode(&req) // then hang up, the call unanswered
				}))
				c.GoFunc(t.Context(), "add", callback, 1, 2)
				return c, nil
			},
			check: func(t *testing.T, call *Call) {
				assert.ErrorIs(t, call.Error, ErrBroken)
				assert.ErrorIs(t, call.Error, io.EOF)
			},
		},
		{
			name: "arguments that cannot be sent",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
				c.GoFunc(t.Context(), "echo", callback, []byte("x"))
				return c, nil
			},
			check: func(t *testing.T, call *Call) {
				assert.ErrorContains(t, call.Error, "cannot be sent")
			},
		},
		{
			name: "the client broken already",
			start: func(t *testing.T, callback func(*Call)) (*Client, func()) {
				c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
				require.NoError(t, c.Close())
				c.GoFunc(t.Context(), "add", callback, 1, 2)
				return c, nil
			},
			check: func(t *testing.T, call *Call) {
				assert.ErrorIs(t, call.Error, ErrBroken)
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var runs atomic.Int64
			ended := make(chan *Call, 2)
			c, after := tt.start(t, func(call *Call) {
				runs.Add(1)
				ended <- call
			})
			var call *Call
			select {
			case call = <-ended:
			case <-time.After(rpctest.Backstop):
				t.Fatal("the callback never ran")
			}
			if after != nil {
				after()
			}
			if err := c.Close(); err != nil {
				require.ErrorIs(t, err, ErrClientClosed, "Close, called again")
			}
			assert.Equal(t, int64(1), runs.Load(), "callback runs")
			tt.check(t, call)
		})
	}
}

// TestArticleFlawSharedEventTable runs two clients in one process: both
// number their calls from 1, and their calls are in flight at once.
//
// The article keeps its table of Events in a class attribute, one table
// for every client in the process: the second client's call 1 takes the
// first's place in it, one caller is woken by the other's answer, and the
// other waits out its timeout. Ours gives each Client its own pending
// table: each call gets its own answer.
func TestArticleFlawSharedEventTable(t *testing.T) {
	addr, clock := slowServer(t)
	first, second := dial(t, addr), dial(t, addr)
	a := first.Go(t.Context(), "slow", 300)
	b := second.Go(t.Context(), "slow", 100)
	clock.waitAsleep(t, 2)
	require.Equal(t, a.ID, b.ID, "both clients' first call has id 1")

	for _, tt := range []struct {
		ms   int
		call *Call
	}{{100, b}, {300, a}} {
		clock.wake(tt.ms)
		select {
		case call := <-tt.call.Done:
			require.NoError(t, call.Error)
			assert.Equal(t, tt.ms, call.Result)
		case <-time.After(rpctest.Backstop):
			t.Fatalf("slow(%d) never got its answer", tt.ms)
		}
	}
	assert.Zero(t, first.LateAnswers()+second.LateAnswers())
}

// The article's server: one call at a time, and pickle.

// TestArticleFlawOneCallAtATime holds a slow call inside the server and
// makes fast calls meanwhile, on the slow call's connection and on
// another. The article's server is one select loop: for each connection
// with bytes to read, it reads a request, runs the function and sends the
// answer before it looks at the next, so one slow call holds up every
// caller on every connection. Ours runs each call on a goroutine of its
// own: the fast calls are answered while the slow one is still held.
func TestArticleFlawOneCallAtATime(t *testing.T) {
	srv := NewDemoServer(Service{})
	slowEntered, releaseSlow := make(chan struct{}), make(chan struct{})
	srv.beforeAnswer = func(req *Request) {
		if req.Func == "echo" && req.Params[0].Str == "slow" {
			close(slowEntered)
			<-releaseSlow
		}
	}
	addr := serve(t, srv, rpctest.Listen(t))
	defer close(releaseSlow) // before the server's shutdown, which waits for it

	c := dial(t, addr)
	slow := c.Go(t.Context(), "echo", "slow")
	<-slowEntered
	ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop) // only a broken server takes it
	defer cancel()
	for i := range 3 {
		sum, err := DemoClient{c}.Add(ctx, i, 1)
		require.NoError(t, err, "a fast call on the slow call's connection")
		assert.Equal(t, i+1, sum)
	}
	sum, err := DemoClient{dial(t, addr)}.Add(ctx, 2, 2)
	require.NoError(t, err, "a fast call on another connection")
	assert.Equal(t, 4, sum)
	select {
	case <-slow.Done:
		t.Fatal("the slow call was answered while it was held")
	default:
	}
}

// tripwire is a type whose GobDecode, code of the receiving program,
// records that it ran.
type tripwire struct{ Cmd string }

var tripped atomic.Bool

func (t tripwire) GobEncode() ([]byte, error) { return []byte(t.Cmd), nil }
func (*tripwire) GobDecode([]byte) error      { tripped.Store(true); return nil }

// hostileRequest is a Request whose Params carry a type with code of its
// own, as a sender hoping for pickle's behaviour might write it.
type hostileRequest struct {
	Func   string
	Params []*tripwire
}

// TestArticleFlawCodeOnLoad sends a call whose argument is a value of a
// type with decoding code of its own. pickle.loads would run whatever
// function the bytes name. Our decoder accepts only the type definitions
// our own encoder writes, so the call is refused before gob reads any of
// it, although the server's process has the type, registered with gob.
// gob alone would refuse it too: it fills in the types the receiver
// declares and nothing else, and Params are Values.
//
// A field of type any is where the bytes do choose: into one, gob decodes
// any type the receiving program has registered, and runs its GobDecode.
// That is why Value is a struct, not an any.
func TestArticleFlawCodeOnLoad(t *testing.T) {
	gob.Register(&tripwire{})
	tripped.Store(false) // a run before this one (-count) may have set it
	conn, answers := rawConn(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	hostile := foreignFrames(t, &hostileRequest{Func: "echo", Params: []*tripwire{{Cmd: "rm -rf /"}}})
	write(t, conn, hostile)
	refusal := nextAnswer(t, answers)
	assert.Contains(t, refusal.Error, "malformed message: a type definition that is not one of ours")
	assert.Zero(t, refusal.ID, "refused at its definitions: no call was read")
	err := gob.NewDecoder(bytes.NewReader(hostile[frameHeaderBytes:])).Decode(&Request{})
	assert.ErrorContains(t, err, "gob: wrong type ([]asyncrpc.Value) for received field hostileRequest.Params")
	assert.False(t, tripped.Load(), "gob ran code the sender chose")

	var stream bytes.Buffer
	require.NoError(t, gob.NewEncoder(&stream).Encode(struct{ Params []any }{[]any{&tripwire{Cmd: "rm -rf /"}}}))
	var into struct{ Params []any }
	require.NoError(t, gob.NewDecoder(&stream).Decode(&into))
	assert.True(t, tripped.Load(), "into a field of type any, the bytes choose which registered type's code runs")
}
