package asyncrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
// and hands each to the call whose id it carries. DemoClient puts typed
// stubs for the demo service on top of it.
//
// A Client may be used by many goroutines at once. There are three ways to
// call: Call waits for the answer; Go returns once the call is queued, and
// the call's Done channel delivers it when it ends; GoFunc runs a function
// when it ends.
//
// A call given up because its context ended is forgotten at once: its
// answer, if it comes, is counted and dropped (see LateAnswers), never
// handed to another call. If the connection fails, every call on it fails
// at once, and so does every later call: the Client does not dial again by
// itself, because it cannot know whether the server ran the calls whose
// answers were lost, and running one twice may not be safe.
//
// What a Client holds is bounded, by options whose defaults are the
// server's: at most 1024 calls in flight (WithMaxPending), each request
// and each answer at most 128 KiB (WithMaxRequestBytes,
// WithMaxAnswerBytes). A write of requests that the server has not taken
// within 30 s (WithWriteTimeout) breaks the connection, rather than
// leaving calls to wait for ever.
type Client struct {
	conn         net.Conn
	queue        chan *Call     // calls waiting for the writer goroutine
	slots        chan struct{}  // one token for each call in pending: its capacity bounds the table
	broken       chan struct{}  // closed when the connection fails or is closed
	wg           sync.WaitGroup // the reader and the writer goroutines
	onLate       func(id uint64)
	late         atomic.Int64  // answers that came after their call was given up
	maxRequest   int           // the largest request payload the writer sends
	writeTimeout time.Duration // how long one write may take

	mu      sync.Mutex       // protects seq, pending, failure, closed
	seq     uint64           // the id of the last call registered
	pending map[uint64]*Call // calls registered and not ended, by id
	failure error            // why the connection is unusable, or nil
	closed  bool             // Close has been called
}

// Call is one call. Go and GoFunc return it, or hand it to a function,
// when it ends: its Result or its Error is set then, never before.
type Call struct {
	// ID is the call's id on the wire, given when the call is registered
	// in the pending table. It stays 0 for a call that ended before that:
	// its arguments could not be sent, its context had ended, or the
	// Client was broken. A call with an ID may still never have been sent:
	// given up while it waited for the writer, or refused by the writer as
	// larger than WithMaxRequestBytes.
	ID     uint64
	Name   string     // the function called
	Args   []any      // its arguments
	Result any        // the result, once the call has ended without error
	Error  error      // why the call failed, once it has ended
	Done   chan *Call // receives the call, once, when it ends (Go only)

	req      Request
	callback func(*Call) // run when the call ends, instead of Done (GoFunc)
	stop     func() bool // stops watching the call's context
}

// ServerError is a failure the server reported: the call reached the
// server, and the server answered that it could not do it.
type ServerError struct {
	Message string // the answer's Error
}

func (e *ServerError) Error() string {
	return "server answered: " + e.Message
}

// ErrBroken is returned for calls on a Client whose connection failed or
// was closed. It wraps the cause. Dial a new Client.
var ErrBroken = errors.New("client connection is broken")

// ErrClientClosed is what Close returns when it is called again, and the
// cause, besides ErrBroken, of every call that Close failed or that was
// made after it.
var ErrClientClosed = errors.New("client closed")

// errClosedClient is the error of a call made after Close.
var errClosedClient = fmt.Errorf("%w: %w", ErrBroken, ErrClientClosed)

// writeQueue is how many calls may wait for the writer goroutine. A call
// made when it is full waits, until its context ends: a server that stops
// reading slows its callers down instead of making the client hold more.
const writeQueue = 256

// DefaultMaxPending is how many calls a Client keeps in flight at once
// unless WithMaxPending says otherwise: four times the writer's queue, and
// sixteen times the calls the server runs at once on a connection
// (DefaultMaxInFlight), so that calls keep the server busy; the rest wait
// for an answer, or for their context.
const DefaultMaxPending = 1024

// DefaultClientWriteTimeout is how long one write of requests may take
// unless WithWriteTimeout says otherwise. A server that runs MaxInFlight
// calls stops reading until one ends, so a write may wait as long as a
// call takes: 30 s is three times the demo's slowest call (MaxSlow), and
// a server that takes nothing for that long is taken for dead.
const DefaultClientWriteTimeout = 30 * time.Second

// Option changes how Dial builds a Client.
type Option func(*clientOptions)

type clientOptions struct {
	tap             *wiretap.Tap
	maxAnswerBytes  int
	maxRequestBytes int
	maxPending      int
	writeTimeout    time.Duration
	onLate          func(id uint64)
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

// WithMaxRequestBytes sets the largest request the client sends (the
// default is DefaultMaxMessageBytes, the server's default limit), counted
// as the server counts it: the bytes of its frame after the length. A
// call whose request is larger fails alone, before any byte of it is
// written; the connection, and every other call, go on. Raise it with
// the server's MaxRequestBytes. It panics if n is not positive.
func WithMaxRequestBytes(n int) Option {
	if n <= 0 {
		panic(fmt.Sprintf("asyncrpc: WithMaxRequestBytes(%d): the limit must be positive", n))
	}
	return func(o *clientOptions) { o.maxRequestBytes = n }
}

// WithMaxPending sets how many calls may be in flight at once, registered
// and not ended (the default is DefaultMaxPending). A call made when that
// many are waits for one of them to end, or for its own context. It panics
// if n is not positive.
func WithMaxPending(n int) Option {
	if n <= 0 {
		panic(fmt.Sprintf("asyncrpc: WithMaxPending(%d): the limit must be positive", n))
	}
	return func(o *clientOptions) { o.maxPending = n }
}

// WithWriteTimeout sets how long one write of requests may take (the
// default is DefaultClientWriteTimeout). A write that has not finished by
// then, because the server reads too slowly or not at all, breaks the
// client: the calls in flight fail, even those with no deadline of their
// own. It panics if d is not positive.
func WithWriteTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("asyncrpc: WithWriteTimeout(%v): the timeout must be positive", d))
	}
	return func(o *clientOptions) { o.writeTimeout = d }
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
	o := clientOptions{
		maxAnswerBytes:  DefaultMaxMessageBytes,
		maxRequestBytes: DefaultMaxMessageBytes,
		maxPending:      DefaultMaxPending,
		writeTimeout:    DefaultClientWriteTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tap != nil {
		conn = o.tap.Conn(conn)
	}
	c := &Client{
		conn:         conn,
		queue:        make(chan *Call, writeQueue),
		slots:        make(chan struct{}, o.maxPending),
		broken:       make(chan struct{}),
		onLate:       o.onLate,
		maxRequest:   o.maxRequestBytes,
		writeTimeout: o.writeTimeout,
		pending:      map[uint64]*Call{},
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

// Go starts a call and returns it once it is queued for the writer: at
// once, unless as many calls are in flight as WithMaxPending allows, or
// the writer's queue is full, when it waits for room, or for ctx. The
// call's Done channel receives it when it ends: answered, refused, given
// up because ctx ended, or failed with the connection.
func (c *Client) Go(ctx context.Context, name string, args ...any) *Call {
	call := &Call{Name: name, Args: args, Done: make(chan *Call, 1)}
	c.send(ctx, call)
	c.watch(ctx, call)
	return call
}

// GoFunc starts a call as Go does, and returns when Go would: fire and
// forget. When the call ends, whichever way it ends, callback runs once
// with it, on a goroutine of its own that the Client starts then. It never
// runs on the goroutine that called GoFunc, not even when the call fails
// before it is sent (arguments the wire cannot carry, ctx ended already,
// the Client broken), so a caller may hold a lock that its callback takes.
// Callbacks may run at the same time as each other, may make calls and may
// Close the Client; Close does not wait for them. GoFunc panics if
// callback is nil, as net/rpc's Go panics on a Done channel with no room.
func (c *Client) GoFunc(ctx context.Context, name string, callback func(*Call), args ...any) {
	if callback == nil {
		panic("asyncrpc: GoFunc with a nil callback: the call's end would go nowhere")
	}
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
	// A place in the pending table, once one is free.
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		c.end(call, nil, ctx.Err())
		return
	case <-c.broken:
		c.end(call, nil, c.refusal())
		return
	}
	if err := c.register(call); err != nil {
		<-c.slots
		c.end(call, nil, err)
		return
	}
	select {
	case c.queue <- call:
	case <-ctx.Done():
		c.giveUp(call, ctx.Err())
	case <-c.broken: // the failure ended the call
	}
}

// register gives the call the next id and puts it in the pending table,
// or returns why the Client takes no more calls.
func (c *Client) register(call *Call) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refusalLocked(); err != nil {
		return err
	}
	c.seq++
	call.ID, call.req.ID = c.seq, c.seq
	c.pending[call.ID] = call
	return nil
}

// refusal returns why the Client takes no more calls, or nil.
func (c *Client) refusal() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusalLocked()
}

// refusalLocked is refusal, with c.mu held.
func (c *Client) refusalLocked() error {
	if c.closed {
		return errClosedClient // even if the connection had failed before
	}
	return c.failure
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
	<-c.slots // its place, for the next call
	return call
}

// end sets the call's result, or its error, and delivers it: on its Done
// channel, or to its callback, on a goroutine of its own. Whoever ends a
// call may hold locks of its own (the caller of GoFunc), or be the reader,
// which must go on reading: a callback runs on none of them.
func (c *Client) end(call *Call, res any, err error) {
	if call.stop != nil {
		call.stop()
	}
	if err != nil {
		call.Error = fmt.Errorf("%s: %w", call.Name, err)
	} else {
		call.Result = res
	}
	if call.callback != nil {
		go call.callback(call)
		return
	}
	call.Done <- call // buffered: never blocks
}

// writeCalls is the writer goroutine: it encodes every call waiting and
// writes them all at once, so calls made from many goroutines at once share
// one write, and one system call.
func (c *Client) writeCalls() {
	defer c.wg.Done()
	calls := newEncoder()
	calls.max = c.maxRequest
	for {
		var call *Call
		select {
		case call = <-c.queue:
		case <-c.broken:
			return
		}
		var frames []byte
		// Let the callers that are about to call run first, so that
		// their requests join this write.
		runtime.Gosched()
		for n := 1; call != nil; n++ {
			if c.isPending(call) { // a call given up while it waited is not sent
				if more, err := calls.encode(&call.req); err == nil {
					frames = more
				} else {
					// This call alone fails: the frames before it are
					// as they were, and the stream too.
					c.giveUp(call, fmt.Errorf("this client refused to send the request: %w (see WithMaxRequestBytes)", err))
				}
			}
			call = nil
			if fits(n, len(frames), writeQueue) {
				select {
				case call = <-c.queue:
				default:
				}
			}
		}
		var err error
		if len(frames) > 0 {
			err = c.write(frames)
		}
		calls.release()
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// write writes frames within the write timeout: a server that has not
// taken them all by then reads too slowly, or not at all, and a write
// left half done cannot be taken back.
func (c *Client) write(frames []byte) error {
	err := c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	if err == nil {
		_, err = c.conn.Write(frames)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the server did not take %d bytes of requests within %v (see WithWriteTimeout): %w", len(frames), c.writeTimeout, err)
	}
	return err
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
// ends every call in flight with an error that wraps ErrBroken and err. It
// returns what closing the connection returned. If the client is broken
// already, it does nothing, and returns nil.
func (c *Client) fail(err error) error {
	c.mu.Lock()
	if c.failure != nil {
		c.mu.Unlock()
		return nil
	}
	c.failure = fmt.Errorf("%w: %w", ErrBroken, err)
	close(c.broken)
	closeErr := c.conn.Close() // wakes the reader, and the writer
	var calls []*Call
	for id := range c.pending {
		calls = append(calls, c.takeLocked(id))
	}
	c.mu.Unlock()
	for _, call := range calls {
		c.end(call, nil, c.failure)
	}
	return closeErr
}

// Close may be called at any time, from any goroutine, a callback's too.
// The first call closes the connection, if a failure has not closed it
// already: every call in flight fails at once, with an error that wraps
// ErrBroken and ErrClientClosed, and so does every call made after. It
// returns once the Client's reader and writer goroutines have returned,
// with nil, or the error that closing the connection gave. It does not
// wait for callbacks, which are the caller's code and may block: a program
// that must know its callbacks have run counts them itself. Every later
// call returns ErrClientClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClientClosed
	}
	c.closed = true
	c.mu.Unlock()
	err := c.fail(ErrClientClosed)
	c.wg.Wait()
	return err
}

// LateAnswers returns how many answers came after their call was given up,
// and were dropped.
func (c *Client) LateAnswers() int64 {
	return c.late.Load()
}

// callAs calls name with args and checks that the result is a T: the core
// of a typed stub (see DemoClient).
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
