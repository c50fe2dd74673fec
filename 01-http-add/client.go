package httpadd

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rpc-from-scratch/course/internal/wiretap"
)

// ServerError is a failure the server reported: the call reached the server,
// and the server answered that it could not do it.
type ServerError struct {
	Status  int    // the HTTP status, such as 400
	Message string // the server's "error" text
}

// Error says that the server refused the call, and why.
func (e *ServerError) Error() string {
	return fmt.Sprintf("server answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Client is the client stub of add. Its Add method hides everything that
// makes the call remote: the URL, the HTTP request, the connection, the JSON
// answer. The caller sees a function that takes two ints and returns one.
//
// A Client keeps its connections open and reuses them from call to call. It
// is safe for use by many goroutines at once. Close it when done.
type Client struct {
	base string       // "http://host:port"
	http *http.Client // owns the pool of kept-alive connections
}

// Option changes how NewClient builds a Client.
type Option func(*clientOptions)

type clientOptions struct {
	tap *wiretap.Tap
}

// WithTap prints every byte the client sends and receives to t.
func WithTap(t *wiretap.Tap) Option {
	return func(o *clientOptions) { o.tap = t }
}

// NewClient returns a stub for the add server at addr ("host:port").
// It connects on the first call, not here.
func NewClient(addr string, opts ...Option) *Client {
	var o clientOptions
	for _, opt := range opts {
		opt(&o)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	dial := dialer.DialContext
	if o.tap != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return o.tap.Conn(c), nil
		}
	}
	transport := &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 64, // enough for many goroutines calling at once
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true, // answers are tiny; keep the wire plain
	}
	return &Client{
		base: "http://" + addr,
		http: &http.Client{Transport: transport},
	}
}

// Add calls add(a, b) on the server. It returns an error if the call cannot
// be made, if ctx ends first, or if the server answers with an error (then
// the error is a *ServerError holding the server's message).
func (c *Client) Add(ctx context.Context, a, b int) (int, error) {
	query := url.Values{"a": {strconv.Itoa(a)}, "b": {strconv.Itoa(b)}}
	sum, err := c.get(ctx, "/add?"+query.Encode())
	if err != nil {
		return 0, fmt.Errorf("add(%d, %d): %w", a, b, err)
	}
	return sum, nil
}

// get sends GET target and decodes the answer.
func (c *Client) get(ctx context.Context, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+target, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "rpc-course/01")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	// Reading the body to its end and closing it hands the connection
	// back to the pool for the next call.
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return 0, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxAnswerBytes {
		return 0, fmt.Errorf("answer is longer than %d bytes", maxAnswerBytes)
	}
	return decodeAnswer(resp.StatusCode, body)
}

// Close closes the connections the client keeps open between calls, so
// that the server sees them go at once. It does not end calls in flight:
// their connections go back to the pool when they end.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}
