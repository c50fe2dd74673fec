package customproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/rpc-from-scratch/course/internal/wiretap"
)

// ServerError is a failure the server reported: the call reached the
// server, and the server answered that it could not do it.
type ServerError struct {
	Message string // the text after "error:"
}

// Error says that the server refused the call, and why.
func (e *ServerError) Error() string {
	return "server answered: " + e.Message
}

// Client is the client stub. Call sends a call by name over one TCP
// connection, in the framed form, and waits for its answer. It knows no
// procedure by name: DemoClient, beside the demo service in service.go,
// puts typed stubs on top of it, which read like local Go functions.
//
// A Client may be used by many goroutines at once, but its calls take turns:
// one call is on the wire at a time, because an answer carries nothing that
// says which call it belongs to. (Stage 05 lifts this with request ids.) A
// call waiting for its turn gives up when its context ends.
//
// If a call fails in a way that leaves the connection in doubt (the network
// failed, the server hung up, or ctx ended while the call was on the wire),
// the Client is broken: every later call returns ErrBroken at once. It does
// not dial again by itself, because it cannot know whether the server ran
// the call whose answer was lost, and running it twice may not be safe.
type Client struct {
	conn net.Conn
	turn chan struct{} // holds a token while a call is on the wire

	// Only the call holding the turn uses these. Each is kept from call
	// to call while small; a large one goes to largeBuffers after its call.
	frames  *frameReader // reads answers from conn
	payload []byte       // the call being encoded
	out     []byte       // its frame, as sent

	mu     sync.Mutex // protects broken, closed
	broken error      // why the connection is unusable, or nil
	closed bool       // Close has been called
}

// ErrBroken is returned for calls on a Client whose connection failed or
// was closed. Dial a new Client.
var ErrBroken = errors.New("client connection is broken")

// ErrClientClosed is returned by every call of Close after the first, and,
// with ErrBroken, by every call made after Close.
var ErrClientClosed = errors.New("client closed")

// Option changes how Dial builds a Client.
type Option func(*clientOptions)

type clientOptions struct {
	tap            *wiretap.Tap
	maxAnswerBytes int
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

// Dial connects to the server at addr ("host:port").
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(conn, opts...), nil
}

// NewClient returns a Client that makes its calls over conn.
func NewClient(conn net.Conn, opts ...Option) *Client {
	o := clientOptions{maxAnswerBytes: DefaultMaxMessageBytes}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tap != nil {
		conn = o.tap.Conn(conn)
	}
	return &Client{
		conn:   conn,
		turn:   make(chan struct{}, 1),
		frames: newFrameReader(conn, o.maxAnswerBytes),
	}
}

// Call calls the function name on the server with args, each an int, a
// float64 or a string, and returns its result: an int, a float64 or a
// string, as the answer's type code says. A failure the server reports is a
// *ServerError; the connection stays usable after it.
func (c *Client) Call(ctx context.Context, name string, args ...any) (any, error) {
	select {
	case c.turn <- struct{}{}:
		defer func() { <-c.turn }()
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for the connection: %w", name, ctx.Err())
	}
	var err error
	if c.payload, err = encodeRequest(c.payload[:0], name, args); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.out = appendFrame(c.out[:0], c.payload)
	putLarge(&c.payload)
	answer, err := c.roundTrip(ctx, c.out)
	putLarge(&c.out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	res, err := decodeAnswer(answer)
	c.frames.release()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return res, nil
}

// roundTrip sends one request and reads one answer. The answer is valid
// until the next roundTrip. The caller holds the turn.
func (c *Client) roundTrip(ctx context.Context, msg []byte) ([]byte, error) {
	if err := c.brokenErr(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // not sent: the connection is still good
	}
	// The context's deadline becomes the connection's; cancelling the
	// context cuts the deadline short, which wakes a blocked read or write.
	deadline, _ := ctx.Deadline()
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, c.breakConn(err)
	}
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.conn.SetDeadline(time.Now())
		close(cancelled)
	})
	defer func() {
		if !stop() {
			<-cancelled // let it finish, so it cannot cut the next call short
		}
	}()

	if _, err := c.conn.Write(msg); err != nil {
		return nil, c.breakConn(contextOr(ctx, err))
	}
	answer, err := c.frames.next()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			err = fmt.Errorf("the server closed the connection before answering: %w", err)
		case errors.Is(err, errTooLarge):
			err = fmt.Errorf("this client refused the answer: %w (see WithMaxAnswerBytes)", err)
		}
		return nil, c.breakConn(contextOr(ctx, err))
	}
	return answer, nil
}

// contextOr returns ctx's error if ctx has ended, since that is why the
// connection failed, else err. A read that timed out at ctx's deadline
// may beat ctx's own timer by a hair; that is the deadline too.
func contextOr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if deadline, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return err
}

// brokenErr returns why the client cannot make calls, or nil.
func (c *Client) brokenErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

// breakConn marks the client broken because of err, closes the connection,
// and returns err. If Close came first, its closing the connection is what
// made the call fail, and the call gets Close's error: ErrBroken and
// ErrClientClosed.
func (c *Client) breakConn(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	c.broken = fmt.Errorf("%w: an earlier call failed: %v", ErrBroken, err)
	c.conn.Close()
	return err
}

// Close may be called at any time, from any goroutine. The first call
// closes the connection at once and returns the error closing it gave (nil
// if a failed call had closed it already); a call on the wire then fails,
// and so does every later call, with an error that is both ErrBroken and
// ErrClientClosed. Every later Close returns ErrClientClosed, as net/rpc's
// returns ErrShutdown.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClientClosed
	}
	c.closed = true
	alreadyClosed := c.broken != nil // breakConn closed the connection
	c.broken = fmt.Errorf("%w: %w", ErrBroken, ErrClientClosed)
	if alreadyClosed {
		return nil
	}
	return c.conn.Close()
}

// callAs calls name with args and checks that the result is a T. It is
// what a typed stub is made of, such as DemoClient's in service.go.
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
