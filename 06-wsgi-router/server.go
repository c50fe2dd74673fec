package wsgirouter

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Default limits. Together they bound what the server holds: one
// connection holds at most one request (MaxHeaderBytes of head and
// MaxBodyBytes of body) and its answer, plus two 4 KiB buffers; and at
// most MaxConns connections are served at once by each call of Serve.
const (
	DefaultMaxConns            = 1024
	DefaultMaxRequestLineBytes = 8 << 10  // a longer request line is answered 414
	DefaultMaxHeaderBytes      = 16 << 10 // request line and header fields together; past it, 431
	DefaultMaxHeaderFields     = 100      // header fields in one request; past it, 431
	DefaultMaxBodyBytes        = 64 << 10 // a larger body is answered 413
	DefaultHeaderTimeout       = 5 * time.Second
	DefaultReadTimeout         = 10 * time.Second
	DefaultIdleTimeout         = 60 * time.Second
	DefaultWriteTimeout        = 10 * time.Second
)

// closeLinger is how long the server keeps reading, and dropping, what a
// client still sends after the server's last answer on a connection: one
// absolute deadline, not renewed by the bytes that come. Closing a socket
// with unread input makes the kernel send a reset, and a reset can destroy
// the answer before the client reads it. Once Shutdown has begun, it is
// also what every read and write of a connection gets, from when it
// starts: time for the answers on their way, not for slow clients.
const closeLinger = 500 * time.Millisecond

// ErrServerClosed is what Serve returns once Shutdown has begun, as
// net/http's Serve returns http.ErrServerClosed: a clean stop, which a
// caller can tell apart from a listener that failed.
var ErrServerClosed = errors.New("wsgirouter: server closed")

// Server is an HTTP/1.1 server written over net.Listener: it reads
// requests from each connection, calls its Application for each, and
// writes the answers, in order, on the same connection.
//
// Set the fields before the first call of Serve. Serve may be called
// more than once, also at the same time on other listeners: each call
// serves up to MaxConns connections of its own, and Shutdown closes every
// listener. A zero limit means its default, so the zero Server is ready
// to use (with no App, it answers 404 to everything). Shutdown may be
// called at any time, from any goroutine.
type Server struct {
	App Application // what answers the requests

	MaxConns            int // connections served at once by one call of Serve; more wait in the kernel's accept queue
	MaxRequestLineBytes int // a longer request line is answered 414
	MaxHeaderBytes      int // a longer head (request line and fields) is answered 431
	MaxHeaderFields     int // more header fields are answered 431
	MaxBodyBytes        int // a larger body is answered 413

	// HeaderTimeout bounds the wait for a new connection's first byte,
	// and the time from a request's first byte to the end of its head.
	HeaderTimeout time.Duration
	// ReadTimeout bounds the time from a request's first byte to the end
	// of its body.
	ReadTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection.
	IdleTimeout time.Duration
	// WriteTimeout bounds the writing of each answer, so a client that
	// does not read cannot hold its connection open.
	WriteTimeout time.Duration

	mu        sync.Mutex // protects listeners, conns
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	stopped   chan struct{} // closed when Shutdown begins
	closing   atomic.Bool   // Shutdown has begun
	wg        sync.WaitGroup

	now    func() time.Time // the clock of Date: time.Now, unless a test needs a fixed Date
	linger time.Duration    // closeLinger, unless a test needs another
}

// NewServer returns a Server for app with the default limits.
func NewServer(app Application) *Server {
	s := &Server{App: app}
	s.setDefaults()
	return s
}

// setDefaults gives every zero limit its default. It writes only the
// limits that are zero, so that reading a limit that was set is never a
// race.
func (s *Server) setDefaults() {
	setZero(&s.MaxConns, DefaultMaxConns)
	setZero(&s.MaxRequestLineBytes, DefaultMaxRequestLineBytes)
	setZero(&s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setZero(&s.MaxHeaderFields, DefaultMaxHeaderFields)
	setZero(&s.MaxBodyBytes, DefaultMaxBodyBytes)
	setZero(&s.HeaderTimeout, DefaultHeaderTimeout)
	setZero(&s.ReadTimeout, DefaultReadTimeout)
	setZero(&s.IdleTimeout, DefaultIdleTimeout)
	setZero(&s.WriteTimeout, DefaultWriteTimeout)
	setZero(&s.linger, closeLinger)
	if s.now == nil {
		s.now = time.Now
	}
}

func setZero[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// init makes what a zero Server lacks. s.mu is held, and the limits
// have their defaults.
func (s *Server) init() {
	if s.conns == nil {
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.stopped = make(chan struct{})
	}
}

// Serve accepts connections on l and serves each on its own goroutine
// until Shutdown is called; then it returns ErrServerClosed, and at once
// if Shutdown was called before. A slow client delays nobody but itself.
// With MaxConns connections of l open, Serve stops accepting until one of
// them closes: new ones wait in the kernel's accept queue.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[&l] = struct{}{}
	stopped := s.stopped
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &l)
		s.mu.Unlock()
	}()
	slots := make(chan struct{}, s.MaxConns) // one token per connection served
	var backoff time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-stopped:
			return ErrServerClosed
		}
		nc, err := l.Accept()
		if err != nil {
			<-slots
			if s.closing.Load() {
				return ErrServerClosed
			}
			if !passing(err) {
				return err
			}
			// Out of file descriptors, say: wait for some to be freed.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c := s.newConn(nc)
		if !s.track(c) {
			nc.Close()
			return ErrServerClosed
		}
		go func() {
			defer func() { <-slots }()
			s.serveConn(c)
		}()
	}
}

// passing reports whether an Accept error may go away by itself.
func passing(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || (errors.As(err, &ne) && ne.Timeout())
}

// track records c as served, unless the server is shutting down.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// conn is one connection and everything the server keeps for it from
// request to request.
type conn struct {
	srv   *Server
	nc    net.Conn
	in    requestReader
	env   Environ
	resp  response
	start StartResponse // resp.start, made once so a request costs no closure
	out   []byte        // the answer being written: its head, and its body if small
	body  []byte        // the answer's body, if large: written after out
	// idle is true while the connection waits for a request's first byte:
	// Shutdown wakes such connections and they close. lingering is true
	// once hangUp has begun: Shutdown leaves its deadline as it is.
	idle      atomic.Bool
	lingering atomic.Bool
	answered  bool   // an answer was written: a close must be polite
	dateSec   int64  // the second date was made for
	date      []byte // the Date field's value, made once a second
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc}
	c.in.br = bufio.NewReaderSize(nc, 4<<10)
	c.in.limits = limits{
		requestLine:  s.MaxRequestLineBytes + 2, // and its CR LF
		header:       s.MaxHeaderBytes,
		headerFields: s.MaxHeaderFields,
		body:         s.MaxBodyBytes,
	}
	c.start = c.resp.start
	c.env.RemoteAddr = nc.RemoteAddr().String()
	return c
}

// serveConn serves one connection until the client closes it, asks to
// close it, sends a request the server refuses, or breaks a limit, or the
// server shuts down. Requests are read and answered one after another, so
// answers go out in the order the requests came, even when a client sends
// several before it reads (pipelining).
func (s *Server) serveConn(c *conn) {
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	wait := s.HeaderTimeout // a new connection must start its first request soon
	for {
		if !c.waitForRequest(wait) {
			if c.answered && s.closing.Load() {
				// Shutdown ends a kept-alive connection: its last answer
				// may still be on its way, and so may the next request.
				c.hangUp()
			}
			return
		}
		wait = s.IdleTimeout
		keep, err := c.serveRequest()
		c.in.release()
		if err != nil {
			var refused *httpError
			if errors.As(err, &refused) {
				c.refuse(refused)
				c.hangUp()
			}
			return // an EOF, a timeout or a reset: nobody to answer
		}
		if !keep {
			c.hangUp()
			return
		}
	}
}

// waitForRequest waits, for at most wait, for the first byte of the next
// request. It reports false if none came, or if the server is shutting
// down.
func (c *conn) waitForRequest(wait time.Duration) bool {
	if c.in.requestBuffered() {
		return !c.srv.closing.Load() // a pipelined request is here already
	}
	if c.nc.SetReadDeadline(time.Now().Add(wait)) != nil {
		return false
	}
	// Shutdown stores closing, then looks at idle; this stores idle, then
	// looks at closing. Whatever the order, one of the two sees the
	// other: the connection closes now, or Shutdown wakes it.
	c.idle.Store(true)
	defer c.idle.Store(false)
	if c.srv.closing.Load() {
		return false
	}
	return c.in.skipEmptyLines() == nil
}

// serveRequest reads one request, calls the application, and writes its
// answer. It reports whether the connection may carry another request.
func (c *conn) serveRequest() (keep bool, err error) {
	s := c.srv
	first := time.Now()
	_ = c.setReadDeadline(first.Add(s.HeaderTimeout))
	env := &c.env
	if err := c.in.readHead(env); err != nil {
		return false, err
	}
	n, chunked, err := bodyLength(env, s.MaxBodyBytes)
	if err != nil {
		return false, err
	}
	waits, err := expectsContinue(env.Header)
	if err != nil {
		return false, err
	}
	if waits && env.Proto == "HTTP/1.1" && (n > 0 || chunked) {
		// The client waits for this before it sends the body.
		if err := c.write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
			return false, err
		}
	}
	_ = c.setReadDeadline(first.Add(s.ReadTimeout))
	if err := c.in.readBody(env, n, chunked); err != nil {
		return false, err
	}
	keep = c.answer()
	return keep, c.flush()
}

// keepAlive reports whether the client lets the connection carry another
// request: HTTP/1.1 keeps it unless asked to close, HTTP/1.0 closes it
// unless asked to keep it.
func keepAlive(env *Environ) bool {
	if env.Header.hasToken("Connection", "close") {
		return false
	}
	return env.Proto == "HTTP/1.1" || env.Header.hasToken("Connection", "keep-alive")
}

// answer calls the application and puts its answer in c.out. It reports
// whether the connection may carry another request. Once Shutdown has
// begun, even while the application ran, the answer is the connection's
// last: it says so, and the connection is hung up politely after it.
func (c *conn) answer() (keep bool) {
	env := &c.env
	env.Params = env.Params[:0]
	c.resp.started = false
	body, ok := c.callApp()
	keep = keepAlive(env) && !c.srv.closing.Load()
	head := responseHead{
		status:      c.resp.status,
		header:      c.resp.header,
		date:        c.dateNow(),
		close:       !keep,
		keepAlive10: keep && env.Proto == "HTTP/1.0",
	}
	if !ok || !c.resp.started {
		head.status, head.header = http.StatusInternalServerError, nil
		body = []byte("500 Internal Server Error: the application did not start a response\n")
		if !ok {
			body = []byte("500 Internal Server Error: the application failed\n")
		}
	}
	head.contentLength = len(body)
	if env.Method == http.MethodHead && len(body) == 0 {
		head.contentLength = -1 // no body to measure: no length, rather than a false 0
	}
	if head.status == http.StatusNoContent || head.status == http.StatusNotModified {
		head.contentLength, body = -1, nil // these answers have no body, and no length
	}
	c.out = appendResponseHead(c.out[:0], &head)
	c.body = nil
	switch {
	case env.Method == http.MethodHead:
	case len(body) <= keepBufferBytes:
		c.out = append(c.out, body...)
	default:
		c.body = body // written after the head, without a copy
	}
	return keep
}

// callApp calls the application, and reports false if it panicked: a bug
// in one page answers 500 and the server goes on serving.
func (c *conn) callApp() (body []byte, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	app := c.srv.App
	if app == nil {
		app = notFoundApp
	}
	return app.ServeWSGI(&c.env, c.start), true
}

var notFoundApp = AppFunc(func(env *Environ, start StartResponse) []byte {
	_ = start(http.StatusNotFound, nil)
	return []byte("404 Not Found\n")
})

// dateNow returns the Date field's value, made at most once a second.
func (c *conn) dateNow() []byte {
	now := c.srv.now()
	if sec := now.Unix(); sec != c.dateSec || c.date == nil {
		c.date, c.dateSec = appendDate(c.date[:0], now), sec
	}
	return c.date
}

// refuse answers a request the server could not accept, and says the
// connection closes.
func (c *conn) refuse(e *httpError) {
	body := []byte(e.Error() + "\n")
	head := responseHead{status: e.status, date: c.dateNow(), contentLength: len(body), close: true}
	c.out = append(appendResponseHead(c.out[:0], &head), body...)
	_ = c.flush()
}

// flush writes c.out, and c.body if the answer's body is large, within
// WriteTimeout.
func (c *conn) flush() error {
	err := c.write(c.out)
	if err == nil && c.body != nil {
		err = c.write(c.body)
	}
	c.body = nil
	if cap(c.out) > keepBufferBytes {
		c.out = nil // a large answer; an idle connection keeps a small buffer
	}
	if err == nil {
		c.answered = true
	}
	return err
}

func (c *conn) write(p []byte) error {
	if err := c.setWriteDeadline(time.Now().Add(c.srv.WriteTimeout)); err != nil {
		return err
	}
	_, err := c.nc.Write(p)
	return err
}

// setReadDeadline and setWriteDeadline set a deadline of the connection:
// t, or closeLinger from now if Shutdown has begun and that is sooner.
// Shutdown stores closing, then moves the deadlines of every connection;
// these set the deadline, then look at closing. Whatever the order, the
// deadline that stands is at most closeLinger after Shutdown's move.
func (c *conn) setReadDeadline(t time.Time) error {
	err := c.nc.SetReadDeadline(t)
	if err == nil && c.srv.closing.Load() {
		err = c.nc.SetReadDeadline(c.srv.soon(t))
	}
	return err
}

func (c *conn) setWriteDeadline(t time.Time) error {
	err := c.nc.SetWriteDeadline(t)
	if err == nil && c.srv.closing.Load() {
		err = c.nc.SetWriteDeadline(c.srv.soon(t))
	}
	return err
}

// soon returns t, or closeLinger from now if that is sooner.
func (s *Server) soon(t time.Time) time.Time {
	if linger := time.Now().Add(s.linger); linger.Before(t) {
		return linger
	}
	return t
}

// hangUp closes the connection politely after its last answer: it says
// it is done writing, then reads and drops what the client still sends,
// until the client closes too, or has sent maxDrainBytes, or closeLinger
// has passed since hangUp began. That is one deadline, set once: a
// client that sends a byte now and then does not move it.
func (c *conn) hangUp() {
	c.lingering.Store(true)
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	if c.setReadDeadline(time.Now().Add(c.srv.linger)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, c.nc, maxDrainBytes)
}

// maxDrainBytes bounds what hangUp reads and drops.
const maxDrainBytes = 1 << 20

// Shutdown stops accepting connections on every listener Serve was
// given, closes the connections waiting for a request, and lets each
// request in flight finish: it is answered with Connection: close, and its
// connection is hung up politely. Every read and write of a connection,
// and every polite close, gets at most closeLinger (500 ms) from
// Shutdown's call, or from its own start if later: a request on its way
// must arrive, and an answer be taken by its client, within that. So only
// an application still running can hold Shutdown longer. If ctx ends first, Shutdown
// closes every connection and returns ctx's error at once, without
// waiting for applications still running.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if !s.closing.Swap(true) {
		close(s.stopped)
	}
	for l := range s.listeners {
		(*l).Close()
	}
	now := time.Now()
	for c := range s.conns {
		switch {
		case c.idle.Load():
			_ = c.nc.SetReadDeadline(now) // wake it: it sees closing and closes
		case c.lingering.Load():
			// Its one deadline stands: at most closeLinger away.
		default:
			_ = c.nc.SetDeadline(now.Add(s.linger))
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}
