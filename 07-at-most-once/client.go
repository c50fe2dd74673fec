package atmostonce

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"os"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rpc-from-scratch/course/internal/wiretap"
)

// Client is the client stub. It sends calls by name, many in flight at
// once, over one connection at a time, and it survives that connection:
// when it breaks, the Client dials again, with a backoff, and sends again
// the calls whose answers were lost. The server runs each at most once,
// because every call carries the Client's random id and its own sequence
// number (its ID), the same on every attempt, and the server remembers
// the calls it ran (see Server). DemoClient puts typed stubs for the demo
// service on top of it.
//
// A Client may be used by many goroutines at once. There are three ways to
// call: Call waits for the answer; Go returns once the call is queued, and
// the call's Done channel delivers it when it ends; GoFunc runs a function
// when it ends.
//
// Every call that fails ends with an *Error, which says whether it ran:
// NotRun (the server refused it before running it, or it was never sent:
// safe to make again), Ran (the function ran and failed) or
// OutcomeUnknown (its answer was lost, and no attempt could settle it).
// A call carries its caller's deadline to the server, and a call given up
// because its context ended is cancelled on the server too (a cancel
// frame), if it was sent.
//
// While no connection is up, calls wait for one, up to their deadline
// (gRPC's wait-for-ready), unless WithFailFast says to fail them at once.
// Retries follow a RetryPolicy: a bounded number of attempts, a jittered
// backoff, and a budget of retries (gRPC's retry throttling), so that a
// server that keeps failing is not hammered.
//
// What a Client holds is bounded, by options whose defaults are the
// server's: at most 1024 calls in flight (WithMaxPending), each request
// and each answer at most 128 KiB (WithMaxRequestBytes,
// WithMaxAnswerBytes). A write of requests that the server has not taken
// within 30 s (WithWriteTimeout) breaks the connection.
type Client struct {
	id           uint64 // random: the server tells clients apart by it
	dial         Dialer
	queue        chan *Call      // calls waiting for a connection's writer
	cancels      chan *Call      // calls given up after they were sent, to cancel on the server
	again        chan struct{}   // a token when retries holds calls
	slots        chan struct{}   // one token for each call in pending: its capacity bounds the table
	closing      chan struct{}   // closed by Close
	dialing      context.Context // the context of every dial: Close ends it
	stopDialing  context.CancelFunc
	wg           sync.WaitGroup
	onLate       func(id uint64)
	onEvent      func(Event)
	tap          *wiretap.Tap
	late         atomic.Int64 // answers that came after their call was given up
	maxAnswer    int
	maxRequest   int
	writeTimeout time.Duration
	policy       RetryPolicy
	failFast     bool
	idempotent   map[string]bool // functions called without the server's table
	stats        clientCounters

	mu      sync.Mutex       // protects everything below
	seq     uint64           // the ID of the last call registered
	pending map[uint64]*Call // calls registered and not ended, by ID
	low     uint64           // the lowest ID in pending, or seq+1: the Ack
	lowUp   chan struct{}    // made by a call that waits for low to move, and closed when it does; nil while none waits
	epoch   uint64           // the server's epoch for this client, from its latest answer
	conn    *clientConn      // the connection calls go out on; nil while none is up
	retries []*Call          // calls to send again, before the queue
	tokens  float64          // the retry budget
	rng     *mathrand.Rand   // backoff jitter
	lastErr error            // why the last connection, or dial, failed
	closed  bool             // Close has been called
}

// Dialer opens a connection to the server. The Client calls it for its
// first connection and after each one breaks.
type Dialer func(ctx context.Context) (net.Conn, error)

// Call is one call. Go and GoFunc return it, or hand it to a function,
// when it ends: its Result or its Error is set then, never before.
type Call struct {
	// ID is the call's sequence number, the same on every attempt; 0 for
	// a call that ended before it was registered.
	ID       uint64
	Name     string     // the function called
	Args     []any      // its arguments
	Result   any        // the result, once the call has ended without error
	Error    error      // why the call failed, once it has ended: an *Error
	Done     chan *Call // receives the call, once, when it ends (Go only)
	Attempts int        // how many times the call was sent

	req      Request
	deadline time.Time   // the caller's, or zero
	callback func(*Call) // run when the call ends, instead of Done (GoFunc)
	stop     func() bool // stops watching the call's context
	sentOn   *clientConn // the connection its last attempt went out on, until answered
	lost     bool        // an attempt went out, and its connection broke before its answer came
	retry    bool        // it waits in retries, or for its backoff
	timer    *time.Timer // its backoff, while it waits for one
}

// ErrClientClosed is what Close returns when it is called again, and the
// cause of every call that Close ended or that was made after it.
var ErrClientClosed = errors.New("client closed")

// writeQueue is how many calls may wait for the writer goroutine. A call
// made when it is full waits, until its context ends: a server that stops
// reading slows its callers down instead of making the client hold more.
const writeQueue = 256

// DefaultMaxPending is how many calls a Client keeps in flight at once
// unless WithMaxPending says otherwise. It is also the window of IDs, from
// the lowest in flight, that the server keeps per client
// (DefaultMaxCallsPerClient): a Client never sends an ID beyond it.
const DefaultMaxPending = 1024

// DefaultClientWriteTimeout is how long one write of requests may take
// unless WithWriteTimeout says otherwise.
const DefaultClientWriteTimeout = 30 * time.Second

// Option changes how a Client is built.
type Option func(*clientOptions)

type clientOptions struct {
	tap             *wiretap.Tap
	maxAnswerBytes  int
	maxRequestBytes int
	maxPending      int
	writeTimeout    time.Duration
	onLate          func(id uint64)
	onEvent         func(Event)
	policy          RetryPolicy
	failFast        bool
	seed            *uint64
	idempotent      []string
}

// WithTap prints every byte the client sends and receives to t, on every
// connection it opens.
func WithTap(t *wiretap.Tap) Option {
	return func(o *clientOptions) { o.tap = t }
}

// WithMaxAnswerBytes sets the largest answer the client reads (the default
// is DefaultMaxMessageBytes). A larger answer breaks the connection.
func WithMaxAnswerBytes(n int) Option {
	return func(o *clientOptions) { o.maxAnswerBytes = n }
}

// WithMaxRequestBytes sets the largest request the client sends (the
// default is DefaultMaxMessageBytes, the server's default limit). A call
// whose request is larger fails alone, NotRun, before any byte of it is
// written. It panics if n is not positive.
func WithMaxRequestBytes(n int) Option {
	if n <= 0 {
		panic(fmt.Sprintf("atmostonce: WithMaxRequestBytes(%d): the limit must be positive", n))
	}
	return func(o *clientOptions) { o.maxRequestBytes = n }
}

// WithMaxPending sets how many calls may be in flight at once, registered
// and not ended (the default is DefaultMaxPending), and so the window of
// IDs from the lowest in flight; set the server's MaxCallsPerClient at
// least as large. A call made when that many are waits for one of them to
// end, or for its own context. It panics if n is not positive.
func WithMaxPending(n int) Option {
	if n <= 0 {
		panic(fmt.Sprintf("atmostonce: WithMaxPending(%d): the limit must be positive", n))
	}
	return func(o *clientOptions) { o.maxPending = n }
}

// WithWriteTimeout sets how long one write of requests may take (the
// default is DefaultClientWriteTimeout). A write that has not finished by
// then breaks the connection, and the Client dials again. It panics if d
// is not positive.
func WithWriteTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("atmostonce: WithWriteTimeout(%v): the timeout must be positive", d))
	}
	return func(o *clientOptions) { o.writeTimeout = d }
}

// WithLateAnswers makes the client call f with the id of each answer that
// arrives after its call was given up, as it drops it. f runs on the
// client's reader goroutine: it must not block, or call the Client.
func WithLateAnswers(f func(id uint64)) Option {
	return func(o *clientOptions) { o.onLate = f }
}

// WithEvents makes the client call f at each reconnect, retry and
// throttled retry (see Event). f runs on the client's own goroutines: it
// must not block, or call the Client.
func WithEvents(f func(Event)) Option {
	return func(o *clientOptions) { o.onEvent = f }
}

// WithRetryPolicy sets how the client retries (the default is
// DefaultRetryPolicy).
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *clientOptions) { o.policy = p }
}

// WithFailFast makes a call fail at once, Unavailable, when no connection
// is up, instead of waiting for one up to its deadline.
func WithFailFast() Option {
	return func(o *clientOptions) { o.failFast = true }
}

// WithSeed seeds the client's backoff jitter, and its id, so that a test or
// a demo runs the same way every time.
func WithSeed(seed uint64) Option {
	return func(o *clientOptions) { o.seed = &seed }
}

// WithIdempotent names functions that are safe to run more than once, as
// a get is: their calls skip the server's table (they carry no client
// id), and are sent again whatever happened to the attempt before.
func WithIdempotent(names ...string) Option {
	return func(o *clientOptions) { o.idempotent = append(o.idempotent, names...) }
}

// Dial connects to the server at addr ("host:port"), and returns a Client
// that dials addr again whenever its connection breaks. It fails if the
// first connection cannot be made.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	dial := func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	}
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	first := conn
	return NewClient(func(ctx context.Context) (net.Conn, error) {
		if first != nil {
			c := first
			first = nil // only the keeper goroutine dials: no race
			return c, nil
		}
		return dial(ctx)
	}, opts...), nil
}

// NewClient returns a Client that opens its connections with dial, and
// starts the goroutine that keeps one up. Close stops it.
func NewClient(dial Dialer, opts ...Option) *Client {
	o := clientOptions{
		maxAnswerBytes:  DefaultMaxMessageBytes,
		maxRequestBytes: DefaultMaxMessageBytes,
		maxPending:      DefaultMaxPending,
		writeTimeout:    DefaultClientWriteTimeout,
		policy:          DefaultRetryPolicy,
	}
	for _, opt := range opts {
		opt(&o)
	}
	var seed [16]byte
	if o.seed != nil {
		binary.LittleEndian.PutUint64(seed[:], *o.seed)
	} else {
		_, _ = rand.Read(seed[:]) // never fails (crypto/rand)
	}
	rng := mathrand.New(mathrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	c := &Client{
		id:           rng.Uint64() | 1, // never 0: 0 is a call without the table
		dial:         dial,
		queue:        make(chan *Call, writeQueue),
		cancels:      make(chan *Call, writeQueue),
		again:        make(chan struct{}, 1),
		slots:        make(chan struct{}, o.maxPending),
		closing:      make(chan struct{}),
		onLate:       o.onLate,
		onEvent:      o.onEvent,
		tap:          o.tap,
		maxAnswer:    o.maxAnswerBytes,
		maxRequest:   o.maxRequestBytes,
		writeTimeout: o.writeTimeout,
		policy:       o.policy.withDefaults(),
		failFast:     o.failFast,
		idempotent:   map[string]bool{},
		pending:      map[uint64]*Call{},
		low:          1,
		rng:          rng,
	}
	c.dialing, c.stopDialing = context.WithCancel(context.Background())
	for _, name := range o.idempotent {
		c.idempotent[name] = true
	}
	c.tokens = c.policy.MaxTokens
	c.wg.Add(1)
	go c.keep()
	return c
}

// ID returns the client's id, as the server sees it.
func (c *Client) ID() uint64 { return c.id }

// Call calls the function name on the server with args, each an int, a
// float64 or a string, waits for its answer, and returns its result: an
// int, a float64 or a string, as the answer's type code says. A failure is
// an *Error. If ctx ends first, Call returns at once, with an *Error that
// wraps ctx's error.
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
// call's Done channel receives it when it ends.
func (c *Client) Go(ctx context.Context, name string, args ...any) *Call {
	call := &Call{Name: name, Args: args, Done: make(chan *Call, 1)}
	c.send(ctx, call)
	c.watch(ctx, call)
	return call
}

// GoFunc starts a call as Go does, and returns when Go would: fire and
// forget. When the call ends, whichever way it ends, callback runs once
// with it, on a goroutine of its own that the Client starts then, never on
// the goroutine that called GoFunc. Close does not wait for callbacks.
// GoFunc panics if callback is nil.
func (c *Client) GoFunc(ctx context.Context, name string, callback func(*Call), args ...any) {
	if callback == nil {
		panic("atmostonce: GoFunc with a nil callback: the call's end would go nowhere")
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
// the writer. A call that fails before it is registered ends here.
func (c *Client) send(ctx context.Context, call *Call) {
	var err error
	if call.req, err = newRequest(call.Name, call.Args); err != nil {
		c.end(call, nil, &Error{Code: InvalidArgument, Outcome: NotRun, Message: err.Error()})
		return
	}
	if err := ctx.Err(); err != nil {
		c.end(call, nil, c.given(call, err))
		return
	}
	call.deadline, _ = ctx.Deadline()
	if !c.idempotent[call.Name] {
		call.req.Client = c.id
	}
	// A place in the pending table, once one is free.
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		c.end(call, nil, c.given(call, ctx.Err()))
		return
	case <-c.closing:
		c.end(call, nil, closedError(NotRun))
		return
	}
	if err := c.register(ctx, call); err != nil {
		<-c.slots
		c.end(call, nil, err)
		return
	}
	select {
	case c.queue <- call:
	case <-ctx.Done():
		c.giveUp(call, ctx.Err())
	case <-c.closing: // Close ended the call
	}
}

// register gives the call the next ID and puts it in the pending table,
// or returns why it cannot. The ID must stay within the window of
// WithMaxPending IDs from the lowest in flight, the server's limit too:
// register waits while it would not.
func (c *Client) register(ctx context.Context, call *Call) *Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case c.closed:
			return closedError(NotRun)
		case c.failFast && c.conn == nil && c.lastErr != nil:
			return &Error{Code: Unavailable, Outcome: NotRun, Message: "no connection is up (WithFailFast)", Cause: c.lastErr}
		}
		if c.seq+1-c.low < uint64(cap(c.slots)) {
			break
		}
		if c.lowUp == nil {
			c.lowUp = make(chan struct{})
		}
		moved := c.lowUp
		c.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			c.mu.Lock()
			return c.given(call, ctx.Err())
		case <-c.closing:
		}
		c.mu.Lock()
	}
	c.seq++
	call.ID, call.req.ID = c.seq, c.seq
	c.pending[call.ID] = call
	c.stats.calls.Add(1)
	return nil
}

// given is the error of a call given up because its context ended with
// err: Canceled or DeadlineExceeded, and whether it may have run.
func (c *Client) given(call *Call, err error) *Error {
	code := Canceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = DeadlineExceeded
	}
	return &Error{Code: code, Outcome: c.outcome(call), Message: "given up", Cause: err}
}

// outcome is what the client knows of whether a call that ends now, with
// no answer, ran: not if it was never sent. c.mu need not be held: an
// ended call is no longer touched by anyone else.
func (c *Client) outcome(call *Call) Outcome {
	if call.Attempts == 0 {
		return NotRun
	}
	return OutcomeUnknown
}

// closedError is the error of a call that Close ended.
func closedError(o Outcome) *Error {
	return &Error{Code: Canceled, Outcome: o, Message: "the client was closed", Cause: ErrClientClosed}
}

// giveUp ends the call with its context's error err, if it has not ended
// yet; if it was sent, the server is asked to cancel it. Its answer, if it
// comes, will find no call, and will be dropped.
func (c *Client) giveUp(call *Call, err error) {
	c.mu.Lock()
	taken := c.takeLocked(call.ID) == call
	sentOn := call.sentOn
	c.mu.Unlock()
	if !taken {
		return
	}
	if sentOn != nil && !sentOn.isBroken() {
		select {
		case c.cancels <- call:
		default: // the writer is behind: the deadline the server has will do
		}
	}
	c.end(call, nil, c.given(call, err))
}

// take removes the call id from the pending table and returns it, or nil
// if it is not there. Whoever takes a call ends it: that is how a call ends
// exactly once.
func (c *Client) take(id uint64) *Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.takeLocked(id)
}

// takeLocked is take, with c.mu held. It moves the Ack if the call was the
// lowest in flight.
func (c *Client) takeLocked(id uint64) *Call {
	call := c.pending[id]
	if call == nil {
		return nil
	}
	delete(c.pending, id)
	if call.timer != nil {
		call.timer.Stop()
	}
	<-c.slots // its place, for the next call
	if id == c.low {
		for c.low++; c.low <= c.seq && c.pending[c.low] == nil; c.low++ {
		}
		if c.lowUp != nil {
			close(c.lowUp)
			c.lowUp = nil
		}
	}
	return call
}

// end sets the call's result, or its error, and delivers it: on its Done
// channel, or to its callback, on a goroutine of its own.
func (c *Client) end(call *Call, res any, err *Error) {
	if call.stop != nil {
		call.stop()
	}
	if err != nil {
		if err.Outcome == OutcomeUnknown {
			c.stats.unknown.Add(1)
		}
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

// keep is the goroutine that keeps a connection up: it dials, serves the
// connection until it breaks, sends again what was lost with it, and
// dials again, with a backoff that grows after each connection that
// carried no answer, until Close.
func (c *Client) keep() {
	defer c.wg.Done()
	failures := 0
	for {
		conn, err := c.dial(c.dialing)
		if err == nil {
			cc := c.serve(conn)
			if cc == nil {
				return
			}
			<-cc.broken
			cc.wg.Wait()
			c.lose(cc)
			if cc.answered.Load() {
				failures = 0
			}
			err = cc.failure
		}
		if c.isClosed() {
			return
		}
		c.mu.Lock()
		c.lastErr = err
		wait := c.policy.Backoff.wait(c.rng, failures)
		c.mu.Unlock()
		if c.failFast {
			c.failWaiting(err)
		}
		failures++
		c.event(Event{Kind: Reconnecting, Wait: wait, Err: err})
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-c.closing:
			timer.Stop()
			return
		}
	}
}

// isClosed reports whether Close has been called.
func (c *Client) isClosed() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// clientConn is one connection of a Client, with its reader and writer.
type clientConn struct {
	conn     net.Conn
	broken   chan struct{} // closed when the connection fails or is closed
	wg       sync.WaitGroup
	answered atomic.Bool   // an answer came on it
	welcome  chan struct{} // closed when the answer to the hello comes
	welcomed sync.Once
	once     sync.Once
	failure  error // why it broke; set before broken is closed
}

// isBroken reports whether the connection has failed.
func (cc *clientConn) isBroken() bool {
	select {
	case <-cc.broken:
		return true
	default:
		return false
	}
}

// serve starts the reader and the writer of a new connection, and makes
// it the one calls go out on; or closes it, and returns nil, if the
// Client has been closed.
func (c *Client) serve(conn net.Conn) *clientConn {
	if c.tap != nil {
		conn = c.tap.Conn(conn)
	}
	cc := &clientConn{conn: conn, broken: make(chan struct{}), welcome: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		// Close came while this connection was being dialled.
		c.mu.Unlock()
		conn.Close()
		return nil
	}
	c.conn, c.lastErr = cc, nil
	c.mu.Unlock()
	c.stats.connections.Add(1)
	cc.wg.Add(2)
	go c.readAnswers(cc, newDecoder(conn, c.maxAnswer))
	go c.writeCalls(cc)
	return cc
}

// fail breaks cc because of err, and closes it: its reader and writer
// return. The first failure is the one kept.
func (c *Client) fail(cc *clientConn, err error) {
	cc.once.Do(func() {
		cc.failure = err
		c.mu.Lock()
		if c.conn == cc {
			c.conn = nil
		}
		c.mu.Unlock()
		close(cc.broken)
		cc.conn.Close()
	})
}

// lose deals with the calls whose last attempt went out on cc, which broke
// before their answers came: each is sent again on the next connection if
// the retry policy allows, or ends with its outcome unknown. A lost
// connection takes one token from the retry budget, however many calls it
// carried: they failed together, and go out again together.
func (c *Client) lose(cc *clientConn) {
	c.mu.Lock()
	var lost []*Call
	for _, call := range c.pending {
		if call.sentOn == cc {
			call.sentOn = nil
			call.lost = true
			lost = append(lost, call)
		}
	}
	if len(lost) > 0 {
		c.spend()
	}
	var ended []*Call
	for _, call := range lost {
		if c.mayRetryLocked(call) {
			c.retryLocked(call, 0)
			continue
		}
		c.takeLocked(call.ID)
		ended = append(ended, call)
	}
	c.mu.Unlock()
	for _, call := range ended {
		c.end(call, nil, &Error{Code: Unavailable, Outcome: OutcomeUnknown, Message: "the connection broke before the answer came", Cause: cc.failure})
	}
}

// failWaiting ends every call that waits for a connection: a Client with
// WithFailFast does not let them wait.
func (c *Client) failWaiting(err error) {
	c.mu.Lock()
	var ended []*Call
	for id, call := range c.pending {
		if call.sentOn == nil {
			ended = append(ended, c.takeLocked(id))
		}
	}
	c.mu.Unlock()
	for _, call := range ended {
		c.end(call, nil, &Error{Code: Unavailable, Outcome: c.outcome(call), Message: "no connection is up (WithFailFast)", Cause: err})
	}
}

// writeCalls is a connection's writer goroutine: it takes the calls to
// send again first, then those waiting in the queue, encodes every one
// waiting and writes them all at once, so that calls made from many
// goroutines share one write, and one system call.
func (c *Client) writeCalls(cc *clientConn) {
	defer cc.wg.Done()
	calls := newEncoder()
	calls.max = c.maxRequest
	var frames []byte
	var next *Call // taken, and held back for the next write
	for {
		call := next
		if call == nil {
			var ok bool
			if call, ok = c.nextCall(cc); !ok {
				return
			}
			// Let the callers that are about to call run first, so
			// that their requests join this write.
			runtime.Gosched()
		}
		next = nil
		if c.needsHello(call) && !c.hello(cc, calls) {
			c.putBack(call)
			return
		}
		for n := 1; call != nil; n++ {
			frames = c.encodeCall(cc, calls, call, frames)
			call = nil
			if fits(n, len(frames), writeQueue) {
				call = c.waitingCall()
			}
			if call != nil && c.needsHello(call) {
				next, call = call, nil // after the hello, in a write of its own
			}
		}
		var err error
		if len(frames) > 0 {
			err = c.write(cc, frames)
		}
		frames = nil
		calls.release()
		if err != nil {
			c.fail(cc, err)
			if next != nil {
				c.putBack(next)
			}
			return
		}
	}
}

// putBack gives a call the writer took and did not send back, to be sent
// first on the next connection, if it has not ended.
func (c *Client) putBack(call *Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[call.ID] == call {
		c.retries = append([]*Call{call}, c.retries...)
		c.poke()
	}
}

// needsHello reports whether call must wait for a hello: it goes through
// the server's table, and the client knows no epoch yet.
func (c *Client) needsHello(call *Call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch == 0 && call.req.Client != 0 && c.pending[call.ID] == call
}

// hello says hello on cc, and waits for the answer, before the client's
// first call through the table: every such call then carries an epoch,
// and the server can vouch for it if its connection breaks before it
// arrives (see table). It costs one round trip, once in a Client's life
// unless the server forgets it. It reports false if cc broke first.
func (c *Client) hello(cc *clientConn, calls *encoder) bool {
	frames, err := calls.encode(&Request{Client: c.id})
	if err == nil {
		err = c.write(cc, frames)
	}
	calls.release()
	if err != nil {
		c.fail(cc, err)
		return false
	}
	select {
	case <-cc.welcome:
		return true
	case <-cc.broken:
		return false
	}
}

// greeted is the reader's, when the answer to a hello comes: the client
// knows its epoch, and the writer may send calls.
func (c *Client) greeted(cc *clientConn, epoch uint64) {
	c.mu.Lock()
	c.epoch = epoch
	c.mu.Unlock()
	cc.welcomed.Do(func() { close(cc.welcome) })
}

// nextCall waits for a call to send, or a cancel, on cc: a call to send
// again first. It reports false once cc is broken.
func (c *Client) nextCall(cc *clientConn) (*Call, bool) {
	for {
		if call := c.takeRetry(); call != nil {
			return call, true
		}
		select {
		case call := <-c.queue:
			return call, true
		case call := <-c.cancels:
			return call, true
		case <-c.again:
		case <-cc.broken:
			return nil, false
		}
	}
}

// waitingCall returns a call waiting to be sent, or a cancel, or nil if
// none is.
func (c *Client) waitingCall() *Call {
	if call := c.takeRetry(); call != nil {
		return call
	}
	select {
	case call := <-c.queue:
		return call
	case call := <-c.cancels:
		return call
	default:
		return nil
	}
}

// takeRetry returns a call to send again, or nil.
func (c *Client) takeRetry() *Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.retries) == 0 {
		return nil
	}
	call := c.retries[0]
	c.retries = c.retries[1:]
	call.retry = false
	return call
}

// encodeCall appends the request of call, or its cancel, to frames, if
// the call has not ended, and marks it sent on cc. A call whose request
// is too large fails alone.
func (c *Client) encodeCall(cc *clientConn, calls *encoder, call *Call, frames []byte) []byte {
	c.mu.Lock()
	if c.pending[call.ID] != call {
		// Given up: a cancel, if it had been sent on cc; otherwise
		// nothing to send.
		c.mu.Unlock()
		return c.encodeCancel(cc, calls, call, frames)
	}
	call.Attempts++
	call.req.Attempt = uint32(call.Attempts)
	call.req.Ack = c.low
	if !call.lost {
		// No attempt of it can be on its way: the server may vouch for
		// it from the epoch known now.
		call.req.Epoch = c.epoch
	}
	call.req.Timeout = 0
	if !call.deadline.IsZero() {
		call.req.Timeout = max(int64(time.Until(call.deadline)), 1)
	}
	call.sentOn = cc
	c.stats.attempts.Add(1)
	if call.Attempts > 1 {
		c.stats.retries.Add(1)
	}
	c.mu.Unlock()
	more, err := calls.encode(&call.req)
	if err != nil {
		// This call alone fails: the frames before it are as they
		// were, and the stream too.
		if c.take(call.ID) == call {
			c.end(call, nil, &Error{Code: ResourceExhausted, Outcome: c.outcomeUnsent(call), Message: "this client refused to send the request (see WithMaxRequestBytes)", Cause: err})
		}
		return frames
	}
	return more
}

// outcomeUnsent is the outcome of a call whose latest attempt was not
// sent: unknown if an earlier one was lost.
func (c *Client) outcomeUnsent(call *Call) Outcome {
	if call.lost {
		return OutcomeUnknown
	}
	return NotRun
}

// encodeCancel appends a cancel frame for call, given up, if its last
// attempt went out on cc.
func (c *Client) encodeCancel(cc *clientConn, calls *encoder, call *Call, frames []byte) []byte {
	if call.sentOn != cc {
		return frames
	}
	req := Request{ID: call.ID, Client: call.req.Client, Cancel: true}
	more, err := calls.encode(&req)
	if err != nil {
		return frames
	}
	return more
}

// write writes frames within the write timeout.
func (c *Client) write(cc *clientConn, frames []byte) error {
	err := cc.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	if err == nil {
		_, err = cc.conn.Write(frames)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the server did not take %d bytes of requests within %v (see WithWriteTimeout): %w", len(frames), c.writeTimeout, err)
	}
	return err
}

// readAnswers is a connection's reader goroutine: it reads answers as
// they come, and ends, or sends again, the call each one names.
func (c *Client) readAnswers(cc *clientConn, answers *decoder) {
	defer cc.wg.Done()
	var resp Response // reused: decode takes an any, which would put each one on the heap
	for {
		resp = Response{}
		if err := answers.decode(&resp); err != nil {
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				err = fmt.Errorf("the server closed the connection: %w", err)
			case errors.Is(err, errTooLarge):
				err = fmt.Errorf("this client refused an answer: %w (see WithMaxAnswerBytes)", err)
			}
			c.fail(cc, err)
			return
		}
		cc.answered.Store(true)
		if resp.ID == 0 {
			if resp.Error == "" && resp.Epoch != 0 {
				c.greeted(cc, resp.Epoch)
				continue
			}
			// The server refused the stream, and will hang up: what
			// is sent from now on would not be run.
			c.fail(cc, answerError(&resp))
			return
		}
		if !c.answer(cc, &resp) {
			c.fail(cc, fmt.Errorf("an answer to call %d, which was never made", resp.ID))
			return
		}
	}
}

// answer hands resp to the call it answers: it ends the call, or sends it
// again if the answer says it did not run and the policy allows. An answer
// to a call given up is counted and dropped. It reports false for an
// answer to a call never made.
func (c *Client) answer(cc *clientConn, resp *Response) bool {
	c.mu.Lock()
	if resp.Epoch != 0 {
		c.epoch = resp.Epoch
	}
	call := c.pending[resp.ID]
	if call == nil || call.sentOn != cc {
		sent := resp.ID <= c.seq
		c.mu.Unlock()
		if sent {
			c.late.Add(1)
			if c.onLate != nil {
				c.onLate(resp.ID)
			}
		}
		return sent
	}
	call.sentOn = nil
	res, err := decodeAnswer(resp)
	var e *Error
	if err != nil {
		e = asError(err)
		if call.lost && e.Outcome == NotRun {
			// This attempt did not run; one that was lost may yet.
			e.Outcome = OutcomeUnknown
		}
	}
	if e != nil && c.retriable(call, resp) && c.mayRetryLocked(call) {
		c.spendFor(resp)
		c.retryLocked(call, call.Attempts)
		c.mu.Unlock()
		return true
	}
	if e == nil {
		c.earn()
	}
	c.takeLocked(call.ID)
	c.mu.Unlock()
	c.end(call, res, e)
	return true
}

// retriable reports whether an answer that call failed lets it be sent
// again: it did not run, with a code the policy retries, or the server
// forgot the client and no attempt of the call was lost. c.mu is held.
func (c *Client) retriable(call *Call, resp *Response) bool {
	if resp.Ran {
		return false
	}
	if resp.Code == Aborted {
		return !call.lost
	}
	return c.policy.retries(resp.Code)
}

// spendFor takes a token for a failed attempt, unless the server forgot
// the client, which is no sign of a server failing. c.mu is held.
func (c *Client) spendFor(resp *Response) {
	if resp.Code != Aborted {
		c.spend()
	}
}

// mayRetryLocked reports whether call may be sent again: its caller still
// waits, it has attempts left, and the retry budget allows. A retry the
// budget refuses is counted. c.mu is held.
func (c *Client) mayRetryLocked(call *Call) bool {
	if c.closed || call.Attempts >= c.policy.MaxAttempts {
		return false
	}
	if !call.deadline.IsZero() && !time.Now().Before(call.deadline) {
		return false
	}
	if c.tokens <= c.policy.MaxTokens/2 {
		c.stats.throttled.Add(1)
		c.event(Event{Kind: Throttled, ID: call.ID, Attempt: call.Attempts})
		return false
	}
	return true
}

// retryLocked queues call to be sent again, after a backoff if the server
// refused its attempt n (n > 0): at once on the next connection if its
// connection broke (n == 0), as the reconnect has a backoff of its own.
// c.mu is held.
func (c *Client) retryLocked(call *Call, n int) {
	call.retry = true
	if n == 0 {
		c.retries = append(c.retries, call)
		c.event(Event{Kind: Retrying, ID: call.ID, Attempt: call.Attempts + 1})
		c.poke()
		return
	}
	wait := c.policy.Backoff.wait(c.rng, n-1)
	c.event(Event{Kind: Retrying, ID: call.ID, Attempt: call.Attempts + 1, Wait: wait})
	call.timer = time.AfterFunc(wait, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.pending[call.ID] == call && call.retry {
			call.timer = nil
			c.retries = append(c.retries, call)
			c.poke()
		}
	})
}

// poke tells a writer waiting for calls that retries holds some.
func (c *Client) poke() {
	select {
	case c.again <- struct{}{}:
	default:
	}
}

// spend takes a token from the retry budget for a failed attempt; earn
// gives back TokenRatio for a success. c.mu is held.
func (c *Client) spend() { c.tokens = max(c.tokens-1, 0) }
func (c *Client) earn()  { c.tokens = min(c.tokens+c.policy.TokenRatio, c.policy.MaxTokens) }

// event reports e to the WithEvents function, if there is one. It is
// called with c.mu held or not: that function must not call the Client.
func (c *Client) event(e Event) {
	if c.onEvent != nil {
		c.onEvent(e)
	}
}

// Close may be called at any time, from any goroutine, a callback's too.
// The first call stops the Client: its connection is closed, every call in
// flight ends at once (Canceled, wrapping ErrClientClosed, with its
// outcome unknown if it was sent), and so does every call made after. It
// returns once the Client's goroutines have returned. It does not wait
// for callbacks. Every later call returns ErrClientClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClientClosed
	}
	c.closed = true
	close(c.closing)
	c.stopDialing()
	cc := c.conn
	var calls []*Call
	for id := range c.pending {
		calls = append(calls, c.takeLocked(id))
	}
	c.mu.Unlock()
	if cc != nil {
		c.fail(cc, ErrClientClosed)
	}
	for _, call := range calls {
		c.end(call, nil, closedError(c.outcome(call)))
	}
	c.wg.Wait()
	return nil
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
