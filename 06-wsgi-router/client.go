package wsgirouter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rpc-from-scratch/course/internal/wiretap"
)

// Client is a small HTTP/1.1 client written over net.Conn, the other half
// of the stage's wire: it writes a request, reads the answer's framing,
// and keeps the connection for the next request when the server lets it.
// Its stubs (Add, Servers, Server) hide the URLs and the JSON.
//
// A Client is safe for use by many goroutines at once: each request takes
// a kept-alive connection of its own, or dials one. Close it when done.
type Client struct {
	addr string
	tap  *wiretap.Tap

	mu     sync.Mutex // protects idle, closed
	idle   []*clientConn
	closed bool
}

// Response is an answer the client read.
type Response struct {
	Status int
	Proto  string // the server's version: "HTTP/1.1"
	Header Header
	Body   []byte
}

// Limits of what the client reads, so that a server cannot make it hold
// without bound.
const (
	maxAnswerHeadBytes = 64 << 10
	maxAnswerBodyBytes = 16 << 20
	maxIdleConns       = 64 // connections kept for reuse; more are closed after their answer
)

// Option changes how NewClient builds a Client.
type Option func(*Client)

// WithTap prints every byte the client sends and receives to t.
func WithTap(t *wiretap.Tap) Option {
	return func(c *Client) { c.tap = t }
}

// NewClient returns a client of the server at addr ("host:port"). It
// connects on the first request, not here.
func NewClient(addr string, opts ...Option) *Client {
	c := &Client{addr: addr}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// ErrClosed is returned by a request made after Close.
var ErrClosed = errors.New("the client is closed")

// Get sends GET target ("/path?query") and returns the answer.
func (c *Client) Get(ctx context.Context, target string) (*Response, error) {
	return c.Do(ctx, http.MethodGet, target, nil)
}

// Do sends one request and returns the answer, whatever its status. A
// body, if any, is sent with its Content-Length. A request that fails on
// a kept-alive connection before any byte of the answer arrived is sent
// again, once, on a new connection, if its method is GET or HEAD: the
// server may have closed that connection while it was idle.
func (c *Client) Do(ctx context.Context, method, target string, body []byte) (*Response, error) {
	if !isToken(method) || !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n") {
		return nil, fmt.Errorf("request %s %s: not a method and an origin-form target", quoteShort(method), quoteShort(target))
	}
	for attempt := 0; ; attempt++ {
		cc, reused, err := c.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(ctx, c.addr, method, target, body)
		if err == nil {
			c.put(cc, resp)
			return resp, nil
		}
		cc.nc.Close()
		retry := reused && attempt == 0 && cc.answerBytes == 0 && ctx.Err() == nil &&
			(method == http.MethodGet || method == http.MethodHead)
		if !retry {
			if ctxErr := contextError(ctx, err); ctxErr != nil {
				err = fmt.Errorf("%w (%v)", ctxErr, err)
			}
			return nil, fmt.Errorf("%s %s: %w", method, target, err)
		}
	}
}

// contextError returns ctx's error if ctx is why a request failed with
// err. The connection's deadline is ctx's, and it may pass a moment before
// ctx's own timer marks ctx done: a timeout at or after ctx's deadline is
// ctx's.
func contextError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if deadline, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// conn takes a kept-alive connection, or dials a new one.
func (c *Client) conn(ctx context.Context) (cc *clientConn, reused bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	if n := len(c.idle); n > 0 {
		cc = c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cc, true, nil
	}
	c.mu.Unlock()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, false, err
	}
	if c.tap != nil {
		nc = c.tap.Conn(nc)
	}
	cc = &clientConn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10)}
	return cc, false, nil
}

// put keeps cc for the next request, if the answer lets it be reused.
func (c *Client) put(cc *clientConn, resp *Response) {
	connection := resp.Header.Get("Connection")
	keep := !cc.mustClose && (resp.Proto == "HTTP/1.1" && !hasToken(connection, "close") ||
		resp.Proto == "HTTP/1.0" && hasToken(connection, "keep-alive"))
	c.mu.Lock()
	if keep && !c.closed && len(c.idle) < maxIdleConns {
		c.idle = append(c.idle, cc)
		cc = nil
	}
	c.mu.Unlock()
	if cc != nil {
		cc.nc.Close()
	}
}

// Close closes the kept-alive connections. Requests in flight finish, and
// then close their connections.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, cc := range idle {
		cc.nc.Close()
	}
	return nil
}

// clientConn is one connection of a Client.
type clientConn struct {
	nc   net.Conn
	br   *bufio.Reader
	out  []byte // the request being written
	head []byte // the answer's head being read
	// answerBytes counts the bytes of the answer read so far: a request
	// that failed after some arrived must not be sent again.
	answerBytes int
	mustClose   bool // the answer's body ran to the end of the stream
}

// roundTrip writes one request and reads its answer, within ctx.
func (cc *clientConn) roundTrip(ctx context.Context, host, method, target string, body []byte) (*Response, error) {
	cc.answerBytes = 0
	deadline, _ := ctx.Deadline()
	if err := cc.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		// When ctx ends, a deadline in the past wakes the read or write
		// that waits; the connection is closed, not reused.
		stop := context.AfterFunc(ctx, func() { _ = cc.nc.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	b := append(cc.out[:0], method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: rpc-course/06\r\n"...)
	if body != nil || needsBody(method) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	cc.out = b
	if _, err := cc.nc.Write(b); err != nil {
		return nil, err
	}
	// 1xx answers (100 Continue) may come before the real one; a server
	// that sends nothing else gets a bounded number of them read.
	for range maxInterimAnswers {
		resp, err := cc.readResponse(method)
		if err != nil {
			return nil, err
		}
		if resp.Status >= 200 {
			return resp, nil
		}
	}
	return nil, fmt.Errorf("more than %d 1xx answers and no final one", maxInterimAnswers)
}

// maxInterimAnswers bounds the 1xx answers read before the final one.
const maxInterimAnswers = 8

// readResponse reads one answer to a request with method: its head, then
// the body the head frames.
func (cc *clientConn) readResponse(method string) (*Response, error) {
	head, err := cc.readAnswerHead()
	if err != nil {
		return nil, err
	}
	statusLine, fields, _ := strings.Cut(head, "\r\n")
	resp, err := parseStatusLine(statusLine)
	if err != nil {
		return nil, err
	}
	for {
		var line string
		line, fields, _ = strings.Cut(fields, "\r\n")
		if line == "" {
			break
		}
		f, err := parseField(line)
		if err != nil {
			return nil, fmt.Errorf("answer: %w", err)
		}
		resp.Header = append(resp.Header, f)
	}
	if resp.Status < 200 {
		return resp, nil
	}
	if resp.Body, err = cc.readAnswerBody(method, resp); err != nil {
		return nil, fmt.Errorf("answer's body: %w", answerError(err))
	}
	return resp, nil
}

// readAnswerHead reads an answer's status line and fields, up to the
// empty line, CR LF included, into cc.head, and returns them as one
// string: the fields are slices of it. It returns io.EOF if the
// connection closed before the answer's first byte.
func (cc *clientConn) readAnswerHead() (string, error) {
	cc.head = cc.head[:0]
	for {
		start := len(cc.head)
		var err error
		cc.head, err = readLine(cc.br, cc.head, maxAnswerHeadBytes)
		cc.answerBytes += len(cc.head) - start
		switch {
		case err == io.ErrUnexpectedEOF && cc.answerBytes == 0:
			return "", io.EOF
		case err == errLineTooLong:
			return "", fmt.Errorf("answer's head is longer than %d bytes", maxAnswerHeadBytes)
		case err != nil:
			return "", fmt.Errorf("answer's head: %w", err)
		case len(cc.head)-start == 2 && start > 0:
			return string(cc.head), nil // the empty line that ends the head
		}
	}
}

// parseStatusLine reads an answer's first line: HTTP/1.x, a status of
// three digits, and a reason, which it drops.
func parseStatusLine(line string) (*Response, error) {
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if (proto != "HTTP/1.1" && proto != "HTTP/1.0") || err != nil || len(code) != 3 {
		return nil, fmt.Errorf("status line %s is not HTTP/1.x NNN", quoteShort(line))
	}
	return &Response{Status: status, Proto: proto, Header: make(Header, 0, 8)}, nil
}

// readAnswerBody reads the body of resp, an answer to a request with
// method, framed as its head says: none (HEAD, 204, 304), chunks, a
// Content-Length, or, with neither, the rest of the stream, after which
// the connection must close.
func (cc *clientConn) readAnswerBody(method string, resp *Response) ([]byte, error) {
	var body bytes.Buffer
	var err error
	switch {
	case method == http.MethodHead || resp.Status == http.StatusNoContent || resp.Status == http.StatusNotModified:
		return nil, nil
	case strings.EqualFold(resp.Header.Get("Transfer-Encoding"), "chunked"):
		err = readChunked(cc.br, &body, maxAnswerBodyBytes, maxAnswerHeadBytes)
	case resp.Header.Get("Content-Length") != "":
		return cc.readSizedBody(resp.Header)
	default:
		cc.mustClose = true
		_, err = io.Copy(&body, io.LimitReader(cc.br, maxAnswerBodyBytes+1))
		if err == nil && body.Len() > maxAnswerBodyBytes {
			err = fmt.Errorf("answer is over the client's limit of %d bytes", maxAnswerBodyBytes)
		}
	}
	cc.answerBytes += body.Len()
	return body.Bytes(), err
}

// readSizedBody reads a body of the length its head's Content-Length says.
func (cc *clientConn) readSizedBody(h Header) ([]byte, error) {
	n, ok := parseLength(h.Get("Content-Length"))
	switch {
	case !ok || h.count("Content-Length") > 1:
		return nil, fmt.Errorf("answer's Content-Length %s is not one length", quoteShort(h.Get("Content-Length")))
	case n > maxAnswerBodyBytes:
		return nil, fmt.Errorf("answer of %d bytes is over the client's limit of %d", n, maxAnswerBodyBytes)
	case n <= keepBufferBytes*16:
		// Small enough to take at once, whatever the server sends.
		body := make([]byte, n)
		_, err := io.ReadFull(cc.br, body)
		cc.answerBytes += int(n)
		return body, err
	}
	var body bytes.Buffer
	err := readN(cc.br, &body, int(n))
	cc.answerBytes += body.Len()
	return body.Bytes(), err
}

// answerError turns the codec's refusal of what the server sent into
// plain words: its status would read as if the server had answered it.
func answerError(err error) error {
	var refused *httpError
	if errors.As(err, &refused) {
		return errors.New(refused.reason)
	}
	return err
}

// StatusError is an answer whose status says the request failed.
type StatusError struct {
	Status int
	Body   string // the start of the answer's body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// getJSON sends GET target and decodes a 200 answer's JSON into v.
func (c *Client) getJSON(ctx context.Context, target string, v any) error {
	resp, err := c.Get(ctx, target)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return &StatusError{Status: resp.Status, Body: strings.TrimSpace(quoteShortBody(resp.Body))}
	}
	if err := json.Unmarshal(resp.Body, v); err != nil {
		return fmt.Errorf("GET %s: answer %s: %w", target, quoteShortBody(resp.Body), err)
	}
	return nil
}

func quoteShortBody(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// Add calls add(a, b) through GET /add?a=1&b=2, as stage 01's stub does.
func (c *Client) Add(ctx context.Context, a, b int) (int, error) {
	var answer struct {
		Result *int   `json:"result"`
		Error  string `json:"error"`
	}
	target := "/add?" + url.Values{"a": {strconv.Itoa(a)}, "b": {strconv.Itoa(b)}}.Encode()
	err := c.getJSON(ctx, target, &answer)
	var status *StatusError
	if errors.As(err, &status) && json.Unmarshal([]byte(status.Body), &answer) == nil && answer.Error != "" {
		status.Body = answer.Error
	}
	if err != nil {
		return 0, fmt.Errorf("add(%d, %d): %w", a, b, err)
	}
	if answer.Result == nil {
		return 0, fmt.Errorf("add(%d, %d): the answer has no \"result\"", a, b)
	}
	return *answer.Result, nil
}

// ErrNotFound is what Server returns for a name the API does not know.
var ErrNotFound = errors.New("not found")

// Servers returns every server the REST API lists.
func (c *Client) Servers(ctx context.Context) ([]ServerInfo, error) {
	var answer struct {
		Infos []ServerInfo `json:"infos"`
	}
	if err := c.getJSON(ctx, "/api/v1.0/servers", &answer); err != nil {
		return nil, err
	}
	return answer.Infos, nil
}

// Server returns the server called name. A name the API does not know
// returns an error that wraps ErrNotFound.
func (c *Client) Server(ctx context.Context, name string) (ServerInfo, error) {
	var answer struct {
		Infos []ServerInfo `json:"infos"`
	}
	err := c.getJSON(ctx, "/api/v1.0/servers/"+url.PathEscape(name), &answer)
	var status *StatusError
	if errors.As(err, &status) && status.Status == http.StatusNotFound {
		return ServerInfo{}, fmt.Errorf("server %s: %w (%w)", quoteShort(name), ErrNotFound, err)
	}
	if err != nil {
		return ServerInfo{}, err
	}
	if len(answer.Infos) != 1 {
		return ServerInfo{}, fmt.Errorf("server %s: the answer lists %d servers, not 1", quoteShort(name), len(answer.Infos))
	}
	return answer.Infos[0], nil
}
