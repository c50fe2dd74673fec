package asyncrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rpc-from-scratch/course/internal/wiretap"
)

// Client is the client stub. It sends calls by name over one TCP
// connection, each with an id of its own, and many calls can be on the wire
// at once: a reader goroutine reads the answers as they come, in any order,
// and hands each to the call whose id it carries. Add, Echo and Slow are
// typed stubs on top of Call.
//
// A Client may be used by many goroutines at once. There are three ways to
// call: Call waits for the answer; Go returns at once, and the call's Done
// channel delivers it when it ends; GoFunc runs a function when it ends.
//
// A call given up because its context ended is forgotten at once: its
// answer, if it comes, is counted and dropped (see LateAnswers), never
// handed to another call. If the connection fails, every call on it fails
// at once, and so does every later call: the Client does not dial again by
// itself, because it cannot know whether the server ran the calls whose
// answers were lost, and running one twice may not be safe.
type Client struct {
	conn   net.Conn
	queue  chan *Call    // calls waiting for the writer goroutine
	broken chan struct{} // closed when the connection fails or is closed
	wg     sync.WaitGroup
	onLate func(id uint64)
	late   atomic.Int64 // answers that came after their call was given up

	mu      sync.Mutex       // protects seq, pending, failure
	seq     uint64           // the id of the last call registered
	pending map[uint64]*Call // calls registered and not ended, by id
	failure error            // why the connection is unusable, or nil
}

// Call is one call. Go and GoFunc return it, or hand it to a function,
// when it ends: its Result or its Error is set then, never before.
type Call struct {
	ID     uint64     // the call's id on the wire; 0 if it was never sent
	Name   string     // the function called
	Args   []any      // its arguments
	Result any        // the result, once the call has ended without error
	Error  error      // why the call failed, once it has ended
	Done   chan *Call // receives the call, once, when it ends (Go only)

	req      Request
	callback func(*Call) // run when the call ends, instead of Done (GoFunc)
	stop     func() bool // stops watching the call's context
}

// ErrBroken is returned for calls on a Client whose connection failed or
// was closed. It wraps the cause. Dial a new Client.
var ErrBroken = errors.New("client connection is broken")

// errClosed is why the calls of a closed Client fail.
var errClosed = errors.New("the client was closed")

// writeQueue is how many calls may wait for the writer goroutine. A call
// made when it is full waits, until its context ends: a server that stops
// reading slows its callers down instead of making the client hold more.
const writeQueue = 256

// Option changes how Dial builds a Client.
type Option func(*clientOptions)

type clientOptions struct {
	tap            *wiretap.Tap
	maxAnswerBytes int
	onLate         func(id uint64)
}

// WithTap prints every byte the client sends and receives to t.
func WithTap(t *wiretap.Tap) Option {
	return func(o *clientOptions) { o.tap = t }
}

// WithMaxAnswerBytes sets the largest answer the client reads (the default
// is DefaultMaxMessageBytes). A larger answer breaks the client. Raise it
// with the server's MaxRequestBytes when calls echo large values.
func WithMaxAnswerBytes(n int) Option {
	return func(o *clientOptions) { o.maxAnswerBytes = n }
}

// WithLateAnswers makes the client call f with the id of each answer that
// arrives after its call was given up, as it drops it. f runs on the
// client's reader goroutine: it must not block, or call the Client.
func WithLateAnswers(f func(id uint64)) Option {
	return func(o *clientOptions) { o.onLate = f }
}

// Dial connects to the server at addr ("host:port").
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(conn, opts...), nil
}

// NewClient returns a Client that makes its calls over conn, and starts
// its reader and writer goroutines. Close stops them.
func NewClient(conn net.Conn, opts ...Option) *Client {
	o := clientOptions{maxAnswerBytes: DefaultMaxMessageBytes}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tap != nil {
		conn = o.tap.Conn(conn)
	}
	c := &Client{
		conn:    conn,
		queue:   make(chan *Call, writeQueue),
		broken:  make(chan struct{}),
		onLate:  o.onLate,
		pending: map[uint64]*Call{},
	}
	c.wg.Add(2)
	go c.readAnswers(newDecoder(conn, o.maxAnswerBytes))
	go c.writeCalls()
	return c
}

// Call calls the function name on the server with args, each an int, a
// float64 or a string, waits for its answer, and returns its result: an
// int, a float64 or a string, as the answer's type code says. A failure the
// server reports is a *ServerError; the connection stays usable after it.
// If ctx ends first, Call returns ctx's error at once, and the connection
// stays usable too.
func (c *Client) Call(ctx context.Context, name string, args ...any) (any, error) {
	call := &Call{Name: name, Args: args, Done: make(chan *Call, 1)}
	c.send(ctx, call)
	select {
	case <-call.Done:
	case <-ctx.Done():
		c.giveUp(call, ctx.Err())
		<-call.Done // the answer, if it won the race, or ctx's error
	}
	return call.Result, call.Error
}

// Go starts a call and returns at once. The call's Done channel receives
// it when it ends: answered, refused, given up because ctx ended, or failed
// with the connection.
func (c *Client) Go(ctx context.Context, name string, args ...any) *Call {
	call := &Call{Name: name, Args: args, Done: make(chan *Call, 1)}
	c.send(ctx, call)
	c.watch(ctx, call)
	return call
}

// GoFunc starts a call and returns at once: fire and forget. When the
// call ends, whichever way it ends, callback runs once with it, on a
// goroutine of its own. (If the call cannot be started at all, because its
// arguments cannot be sent or the Client is broken, callback runs before
// GoFunc returns.) A callback may make calls, but not Close the Client:
// Close waits for the callbacks that are running.
func (c *Client) GoFunc(ctx context.Context, callback func(*Call), name string, args ...any) {
	call := &Call{Name: name, Args: args, callback: callback}
	c.send(ctx, call)
	c.watch(ctx, call)
}

// watch gives the call up when ctx ends, if it has not ended by then.
func (c *Client) watch(ctx context.Context, call *Call) {
	if ctx.Done() == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[call.ID] == call {
		call.stop = context.AfterFunc(ctx, func() { c.giveUp(call, ctx.Err()) })
	}
}

// send registers the call, before anything is written, and queues it for
// the writer. Registered first, its answer finds it however soon it comes.
// A call that fails before it is registered ends here.
func (c *Client) send(ctx context.Context, call *Call) {
	var err error
	if call.req, err = newRequest(call.Name, call.Args); err != nil {
		c.end(call, nil, err)
		return
	}
	if err := ctx.Err(); err != nil {
		c.end(call, nil, err) // not sent: the connection is still good
		return
	}
	c.mu.Lock()
	if c.failure != nil {
		c.mu.Unlock()
		c.end(call, nil, c.failure)
		return
	}
	c.seq++
	call.ID, call.req.ID = c.seq, c.seq
	c.pending[call.ID] = call
	c.mu.Unlock()
	select {
	case c.queue <- call:
	case <-ctx.Done():
		c.giveUp(call, ctx.Err())
	case <-c.broken: // the failure ended the call
	}
}

// giveUp ends the call with err, if it has not ended yet. Its answer, if
// it comes, will find no call, and will be dropped.
func (c *Client) giveUp(call *Call, err error) {
	if c.take(call.ID) == call {
		c.end(call, nil, err)
	}
}

// take removes the call id from the pending table and returns it, or nil
// if it is not there. Whoever takes a call ends it: that is how a call ends
// exactly once.
func (c *Client) take(id uint64) *Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.takeLocked(id)
}

// takeLocked is take, with c.mu held.
func (c *Client) takeLocked(id uint64) *Call {
	call := c.pending[id]
	if call == nil {
		return nil
	}
	delete(c.pending, id)
	if call.callback != nil {
		c.wg.Add(1) // under c.mu, so Close cannot miss it
	}
	return call
}

// end sets the call's result, or its error, and delivers it.
func (c *Client) end(call *Call, res any, err error) {
	if call.stop != nil {
		call.stop()
	}
	if err != nil {
		call.Error = fmt.Errorf("%s: %w", call.Name, err)
	} else {
		call.Result = res
	}
	switch {
	case call.callback == nil:
		call.Done <- call // buffered: never blocks
	case call.ID == 0:
		call.callback(call) // never registered, so not counted by take
	default:
		go func() {
			defer c.wg.Done()
			call.callback(call)
		}()
	}
}

// writeCalls is the writer goroutine: it encodes every call waiting and
// writes them all at once, so calls made from many goroutines at once share
// one write, and one system call.
func (c *Client) writeCalls() {
	defer c.wg.Done()
	calls := newEncoder()
	for {
		var call *Call
		select {
		case call = <-c.queue:
		case <-c.broken:
			return
		}
		var frames []byte
		var err error
		// Let the callers that are about to call run first, so that
		// their requests join this write.
		runtime.Gosched()
		for n := 1; call != nil && err == nil; n++ {
			if c.isPending(call) { // a call given up while it waited is not sent
				frames, err = calls.encode(&call.req)
			}
			call = nil
			if fits(n, len(frames), writeQueue) {
				select {
				case call = <-c.queue:
				default:
				}
			}
		}
		if err == nil && len(frames) > 0 {
			_, err = c.conn.Write(frames)
		}
		calls.release()
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// isPending reports whether the call has not ended.
func (c *Client) isPending(call *Call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[call.ID] == call
}

// readAnswers is the reader goroutine: it reads answers as they come, and
// ends the call each one names.
func (c *Client) readAnswers(answers *decoder) {
	defer c.wg.Done()
	var refusal error // the server's reason, if it refused the stream
	var resp Response // reused: decode takes an any, which would put each one on the heap
	for {
		resp = Response{}
		if err := answers.decode(&resp); err != nil {
			switch {
			case refusal != nil:
				err = refusal
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				err = fmt.Errorf("the server closed the connection: %w", err)
			case errors.Is(err, errTooLarge):
				err = fmt.Errorf("this client refused an answer: %w (see WithMaxAnswerBytes)", err)
			}
			c.fail(err)
			return
		}
		if call := c.take(resp.ID); call != nil {
			res, err := decodeAnswer(&resp)
			c.end(call, res, err)
			continue
		}
		c.mu.Lock()
		sent := resp.ID <= c.seq
		c.mu.Unlock()
		switch {
		case resp.ID == 0:
			// The server refused the stream, and will hang up.
			refusal = &ServerError{Message: resp.Error}
		case sent:
			c.late.Add(1)
			if c.onLate != nil {
				c.onLate(resp.ID)
			}
		default:
			c.fail(fmt.Errorf("an answer to call %d, which was never made", resp.ID))
			return
		}
	}
}

// fail marks the client broken because of err, closes the connection, and
// ends every call in flight with an error that wraps ErrBroken and err. If
// the client is broken already, it does nothing.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.failure != nil {
		c.mu.Unlock()
		return
	}
	c.failure = fmt.Errorf("%w: %w", ErrBroken, err)
	close(c.broken)
	c.conn.Close() // wakes the reader, and the writer
	var calls []*Call
	for id := range c.pending {
		calls = append(calls, c.takeLocked(id))
	}
	c.mu.Unlock()
	for _, call := range calls {
		c.end(call, nil, c.failure)
	}
}

// Close closes the connection at once. It may be called at any time: every
// call in flight fails with ErrBroken, and so does every later call. It
// returns once the client's goroutines, and the callbacks running, have
// returned.
func (c *Client) Close() error {
	c.fail(errClosed)
	c.wg.Wait()
	return nil
}

// LateAnswers returns how many answers came after their call was given up,
// and were dropped.
func (c *Client) LateAnswers() int64 {
	return c.late.Load()
}

// Add is a typed stub for the demo server's add(a, b).
func (c *Client) Add(ctx context.Context, a, b int) (int, error) {
	return callAs[int](ctx, c, "add", a, b)
}

// Echo is a typed stub for the demo server's echo(s).
func (c *Client) Echo(ctx context.Context, s string) (string, error) {
	return callAs[string](ctx, c, "echo", s)
}

// Slow is a typed stub for the demo server's slow(ms).
func (c *Client) Slow(ctx context.Context, ms int) (int, error) {
	return callAs[int](ctx, c, "slow", ms)
}

// callAs calls name with args and checks that the result is a T.
func callAs[T any](ctx context.Context, c *Client, name string, args ...any) (T, error) {
	res, err := c.Call(ctx, name, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	t, ok := res.(T)
	if !ok {
		return t, fmt.Errorf("%s: result is %s, want %s", name, describe(res), wireTypes[reflect.TypeFor[T]()])
	}
	return t, nil
}
