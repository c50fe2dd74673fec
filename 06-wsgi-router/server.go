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
// most MaxConns connections are served at once, by every call of Serve
// together (the Server doc gives the whole bound).
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
// client still sends after the server's last answer on a connection (also
// on one it evicts to make room for a new one): one absolute deadline,
// not renewed by the bytes that come. Closing a socket with unread input
// makes the kernel send a reset, and a reset can destroy the answer before
// the client reads it. Once Shutdown has begun, it is also what every read
// and write of a connection gets, from when it starts: time for the
// answers on their way, not for slow clients.
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
// more than once, also at the same time on other listeners: the limits
// are the server's, and all its listeners share them (MaxConns counts
// the connections of every listener together), and Shutdown closes every
// listener. A zero limit means its default, so the zero Server is ready
// to use (with no App, it answers 404 to everything). Shutdown may be
// called at any time, from any goroutine.
//
// What the server holds, whatever its clients do: at most MaxConns
// connections served, each with at most one request and its answer; at
// most MaxConns more that it evicted (see Serve) and is closing, each for
// at most closeLinger; and one more for each call of Serve, accepted and
// not yet read while it waits for a slot. At the defaults that is 2,049
// connections.
type Server struct {
	App Application // what answers the requests

	MaxConns            int // connections served at once, by every listener together; at the cap a new one takes an idle one's place (see Serve)
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

	mu        sync.Mutex // protects listeners, conns, freed
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	stopped   chan struct{} // closed, once, when Shutdown begins
	wg        sync.WaitGroup

	// Made once, by init, for eviction (see Serve).
	slots    chan struct{} // a token per connection served: MaxConns in all
	goodbyes chan struct{} // a token per evicted connection not yet closed: MaxConns in all
	waiting  atomic.Int32  // calls of Serve waiting for a slot
	starting atomic.Int32  // connections accepted whose goroutine has not yet waited for a request
	freed    chan struct{} // closed, and made anew, when a wait for a slot may end
	epoch    time.Time     // idle times count from here

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
		s.slots = make(chan struct{}, s.MaxConns)
		s.goodbyes = make(chan struct{}, s.MaxConns)
		s.freed = make(chan struct{})
		s.epoch = time.Now()
	}
}

// Serve accepts connections on l and serves each on its own goroutine
// until Shutdown is called; then it returns ErrServerClosed, and at once
// if Shutdown was called before. While a slot is free, a slow client
// delays nobody but itself. Once MaxConns connections are busy, slow or
// not, a new one waits until one of them ends or waits idle for its next
// request (see below); the timeouts bound each request's part (ReadTimeout
// to send it, WriteTimeout to read its answer), not a client that sends
// one after another. A flood of connections that send nothing cannot keep
// a client out.
//
// It serves at most MaxConns connections at once, of every listener
// together, and at the cap it goes on accepting. A new connection then
// takes the slot of an idle one, which is evicted: closed, politely if it
// was ever answered (see hangUp). Idle means waiting for a request with
// not one byte of it read: a connection reading a request, running the
// application or writing an answer is never evicted. HTTP lets a server
// close a kept-alive connection that waits (RFC 9112, 9.8); its client
// makes the request again on a new one. Of the idle connections, those
// that were never answered go first, so that a flood of connections that
// send nothing makes room among its own, and then the one idle the
// longest. If none is idle, the new connection waits, accepted and
// unread, until a slot frees or a connection becomes idle, and Serve
// accepts nothing more meanwhile.
//
// Out of file descriptors, it evicts an idle connection, chosen the same
// way, and tries again once it is closed; if none is idle, it tries again
// after a pause that doubles from 5 ms to 1 s.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if s.shuttingDown() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[&l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			if !passing(err) {
				return err
			}
			if (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && s.evictForDescriptor() {
				continue
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-s.stopped:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		if !s.takeSlot() {
			nc.Close()
			return ErrServerClosed
		}
		c := s.newConn(nc)
		if !s.track(c) {
			<-s.slots
			nc.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

// shuttingDown reports whether Shutdown has begun: whether stopped is
// closed. It never blocks.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
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
	if s.shuttingDown() {
		return false
	}
	s.conns[c] = struct{}{}
	s.starting.Add(1)
	s.wg.Add(1)
	return true
}

// takeSlot takes a slot for a connection Serve has just accepted: a free
// one, or the slot of an idle connection, which it evicts. With every
// connection busy it waits until a slot frees or a connection becomes
// idle. It reports false if Shutdown begins first.
func (s *Server) takeSlot() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	for {
		victim, freed := s.evictIdle()
		if victim != nil {
			return true
		}
		select {
		case s.slots <- struct{}{}:
			return true
		case <-freed:
		case <-s.stopped:
			return false
		}
	}
}

// evictForDescriptor evicts an idle connection, as takeSlot does, to free
// a file descriptor: it gives the evicted connection's slot back, and
// waits until the connection is closed, or 5 ms if it says goodbye. It
// reports false if no connection is idle: then Serve pauses.
func (s *Server) evictForDescriptor() bool {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	for {
		// Read before evictIdle: if no connection was starting then, and
		// it evicts none, none is idle.
		starting := s.starting.Load() > 0
		c, freed := s.evictIdle()
		if c != nil {
			<-s.slots
			select {
			case <-c.gone:
			case <-time.After(5 * time.Millisecond):
			case <-s.stopped:
			}
			return true
		}
		if !starting {
			return false
		}
		select {
		case <-freed: // a connection accepted has begun to wait
		case <-time.After(5 * time.Millisecond):
			return false
		case <-s.stopped:
			return false
		}
	}
}

// evictIdle evicts the connection idle the longest, among those never
// answered if any of them is idle: it marks it evicted and wakes its
// goroutine, which closes it. It returns the evicted connection, whose
// slot becomes the caller's: it holds a token of goodbyes instead until
// it is closed. If no connection is idle, or MaxConns evicted connections
// are still closing, it returns nil and a channel that is closed when that
// may have changed. So it does while a connection it accepted has not yet
// begun to wait for a request: the accept loop can run ahead of the
// goroutines it starts, and such a connection, soon idle, may be the one
// to go (one that sends nothing), or one to keep (one whose request is on
// its way).
func (s *Server) evictIdle() (*conn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.goodbyes <- struct{}{}:
	default:
		return nil, s.freed
	}
	for {
		// Read before the connections: one that stops starting is idle
		// first (setIdle), so the look at them below sees it.
		starting := s.starting.Load() > 0
		var oldest *conn
		var since int64
		var answered bool
		for c := range s.conns {
			t, a := c.idle.Load(), c.answered.Load()
			if t > 0 && (oldest == nil || answered && !a || a == answered && t < since) {
				oldest, since, answered = c, t, a
			}
		}
		if oldest == nil || starting {
			<-s.goodbyes
			return nil, s.freed
		}
		if oldest.idle.CompareAndSwap(since, evicted) {
			// A read deadline in the past wakes its goroutine.
			_ = oldest.nc.SetReadDeadline(time.Unix(1, 0))
			return oldest, nil
		}
		// Its first byte came in: it is busy now. Look again.
	}
}

// idleClock is the time as conn.idle keeps it: nanoseconds since
// s.epoch, plus one, so that an idle connection is never busy.
func (s *Server) idleClock() int64 {
	return int64(time.Since(s.epoch)) + 1
}

// setIdle marks c idle from now: its goroutine calls it when it waits for
// a request and holds no byte of one, once it has armed the read deadline
// of that wait, so that the deadline an eviction sets, to wake it, comes
// after. A Serve call waiting for a slot is told.
func (s *Server) setIdle(c *conn) {
	c.idle.Store(s.idleClock())
	s.started(c)
	if s.waiting.Load() > 0 {
		s.wakeWaiting()
	}
}

// started counts c out of s.starting, the first time it is called.
func (s *Server) started(c *conn) {
	if !c.started {
		c.started = true
		s.starting.Add(-1)
	}
}

// wakeWaiting wakes every Serve call waiting for a slot, to look again.
func (s *Server) wakeWaiting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.freed)
	s.freed = make(chan struct{})
}

// done gives back what c held: its slot, or, if it was evicted, its token
// of goodbyes (its slot went to the connection that took its place).
func (s *Server) done(c *conn) {
	s.started(c)
	c.nc.Close()
	close(c.gone)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if c.idle.Load() == evicted {
		<-s.goodbyes
		if s.waiting.Load() > 0 {
			s.wakeWaiting()
		}
	} else {
		<-s.slots
	}
	s.wg.Done()
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
	// idle is when the connection began to wait for a request with no
	// byte of one read, as Server.idleClock gives it, while it waits so:
	// Shutdown wakes such connections and they close, and Serve may evict
	// one. Or it is busy: from when it is accepted until its goroutine
	// waits for a request, and while it reads a request, runs the
	// application or writes an answer. Or it is evicted. The connection's
	// goroutine moves it from busy to idle and back; Serve moves it from
	// idle to evicted, for good. The moves out of idle are
	// compare-and-swaps, so exactly one wins the race between a request's
	// first byte and an eviction.
	idle atomic.Int64
	// lingering is true once hangUp has begun: Shutdown leaves its
	// deadline as it is.
	lingering atomic.Bool
	// answered is set once an answer was written: a close must be polite,
	// and Serve evicts such a connection only when no connection that was
	// never answered is idle.
	answered atomic.Bool
	started  bool          // the connection has waited for a request; only its goroutine uses it
	gone     chan struct{} // closed once the connection is closed
	dateSec  int64         // the second date was made for
	date     []byte        // the Date field's value, made once a second
}

const (
	busy    = 0
	evicted = -1
)

// errEvicted is what a read of an evicted connection returns: the bytes
// it read begin a request that will never be read, so never answered.
var errEvicted = errors.New("evicted to make room for a new connection")

// Read reads for the connection's requestReader. The first bytes of a
// request read while the connection is idle make it busy, unless Serve
// has evicted it first: then they are dropped, and the request they begin
// is never run. Empty lines alone leave it idle: skipEmptyLines drops
// them, and the wait for a request goes on.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	if n > 0 && !emptyLines(p[:n]) && !c.setBusy() {
		return 0, errEvicted
	}
	return n, err
}

// emptyLines reports whether p holds nothing but CR and LF.
func emptyLines(p []byte) bool {
	for _, b := range p {
		if b != '\r' && b != '\n' {
			return false
		}
	}
	return true
}

// setBusy makes the connection busy, and reports false if it was evicted.
func (c *conn) setBusy() bool {
	since := c.idle.Load()
	return since == busy || since > 0 && c.idle.CompareAndSwap(since, busy)
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, gone: make(chan struct{})}
	c.in.br = bufio.NewReaderSize(c, 4<<10)
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
	defer s.done(c)
	wait := s.HeaderTimeout // a new connection must start its first request soon
	for {
		if !c.waitForRequest(wait) {
			if c.answered.Load() && (s.shuttingDown() || c.idle.Load() == evicted) {
				// Shutdown, or an eviction, ends a kept-alive connection:
				// its last answer may still be on its way, and so may the
				// next request. One never answered has nothing to lose,
				// and its slot is needed now.
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
// request, with the connection idle. It reports false if none came, if
// Serve evicted the connection, or if the server is shutting down.
func (c *conn) waitForRequest(wait time.Duration) bool {
	if c.in.requestBuffered() {
		return !c.srv.shuttingDown() // a pipelined request is here already
	}
	if c.nc.SetReadDeadline(time.Now().Add(wait)) != nil {
		return false
	}
	// Shutdown closes stopped, then looks at idle; this stores idle, then
	// looks at stopped. Go's synchronising operations are sequentially
	// consistent, so whatever the order, one of the two sees the other:
	// the connection closes now, or Shutdown wakes it.
	c.srv.setIdle(c)
	if c.srv.shuttingDown() {
		return false
	}
	// Read makes the connection busy when bytes come. The request may
	// also have been read with the last one, behind an empty line: then
	// no read does.
	return c.in.skipEmptyLines() == nil && c.setBusy()
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
	keep = keepAlive(env) && !c.srv.shuttingDown()
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
		c.answered.Store(true)
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
// Shutdown closes stopped, then moves the deadlines of every connection;
// these set the deadline, then look at stopped. Whatever the order, the
// deadline that stands is at most closeLinger after Shutdown's move.
func (c *conn) setReadDeadline(t time.Time) error {
	err := c.nc.SetReadDeadline(t)
	if err == nil && c.srv.shuttingDown() {
		err = c.nc.SetReadDeadline(c.srv.soon(t))
	}
	return err
}

func (c *conn) setWriteDeadline(t time.Time) error {
	err := c.nc.SetWriteDeadline(t)
	if err == nil && c.srv.shuttingDown() {
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
	if !s.shuttingDown() { // s.mu makes this close the only one
		close(s.stopped)
	}
	for l := range s.listeners {
		(*l).Close()
	}
	now := time.Now()
	for c := range s.conns {
		switch {
		case c.idle.Load() > 0:
			_ = c.nc.SetReadDeadline(now) // wake it: it sees stopped and closes
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
