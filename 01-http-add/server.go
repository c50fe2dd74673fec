package httpadd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Default limits. Each bounds what one connection may cost the server.
const (
	DefaultHeaderTimeout  = 5 * time.Second  // to read a request's line and headers
	DefaultWriteTimeout   = 10 * time.Second // to write an answer to a client that reads slowly
	DefaultIdleTimeout    = 60 * time.Second // a kept-alive connection waiting for its next request
	DefaultMaxHeaderBytes = 8 << 10          // request line and headers together
	DefaultMaxConns       = 1024             // connections open at once
)

// ErrServerClosed is what Serve returns once Shutdown has begun. It is
// net/http's own http.ErrServerClosed, since net/http serves the
// connections.
var ErrServerClosed = http.ErrServerClosed

// Server is the server stub of add: it maps GET /add?a=1&b=2 (or GET /?a=1&b=2,
// the article's form) to a call of add(1, 2) and writes the answer as JSON.
//
// The zero value is not ready to use; call NewServer. Change the limits
// before the first call of Serve. Serve may be called more than once, also
// at the same time with other listeners: they share the limits, MaxConns
// included. Shutdown may be called at any time, from any goroutine.
//
// What the server holds, whatever its peers do: at most MaxConns
// connections, those it evicted and is saying goodbye to included (each
// for at most closeLinger), and one more for each call of Serve, accepted
// and not yet read while it waits for a slot.
type Server struct {
	HeaderTimeout  time.Duration
	WriteTimeout   time.Duration
	IdleTimeout    time.Duration
	MaxHeaderBytes int
	// MaxConns caps the connections open at once, on all listeners
	// together; 0 means no cap. At the cap the server goes on accepting:
	// a new connection takes the slot of an idle one, which is closed
	// (see Serve). If none is idle, the new one waits, accepted and
	// unread, until a connection closes or becomes idle, and the ones
	// after it wait in the kernel's accept queue.
	MaxConns int

	http    *http.Server
	setUp   sync.Once    // sets http's limits and makes conns, at the first Serve
	conns   *connTable   // the connections open, and their slots, if MaxConns caps them
	running atomic.Int64 // calls whose handler has not returned

	// beforeAnswer, when set, runs inside each call before its answer is
	// written. Tests use it to hold a call in flight.
	beforeAnswer func()
	linger       time.Duration // closeLinger, unless a test needs another
}

// NewServer returns a Server with the default limits.
func NewServer() *Server {
	return &Server{
		HeaderTimeout:  DefaultHeaderTimeout,
		WriteTimeout:   DefaultWriteTimeout,
		IdleTimeout:    DefaultIdleTimeout,
		MaxHeaderBytes: DefaultMaxHeaderBytes,
		MaxConns:       DefaultMaxConns,
		http:           &http.Server{},
	}
}

// ServeHTTP answers one HTTP request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/add" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no procedure at %s: call GET /add?a=1&b=2", quoteShort(r.URL.Path)))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed: call GET /add?a=1&b=2", quoteShort(r.Method)))
		return
	}
	a, b, err := parseOperands(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sum, err := add(a, b)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.beforeAnswer != nil {
		s.beforeAnswer()
	}
	writeResult(w, sum)
}

// add is the procedure the server offers. Unlike Python's integers, Go's
// wrap around when they overflow, so add checks before it adds.
func add(a, b int) (int, error) {
	if (b > 0 && a > math.MaxInt-b) || (b < 0 && a < math.MinInt-b) {
		return 0, fmt.Errorf("a + b overflows: %d + %d does not fit in an int (%d bits)", a, b, strconv.IntSize)
	}
	return a + b, nil
}

// Serve accepts connections on l and answers their requests until Shutdown
// is called, then returns ErrServerClosed; called after Shutdown, it
// returns ErrServerClosed at once. Each connection is served on its own
// goroutine, so a slow client delays nobody but itself while slots are
// free: MaxConns slow clients busy at once make the next caller wait.
//
// It serves at most MaxConns connections at once, and at the cap it goes
// on accepting. A new connection then takes the slot of an idle one, which
// is evicted: closed, at once if it never answered a request, or after a
// goodbye of at most closeLinger if it did (see trackedConn.goodbye). Idle
// means waiting for a request with not one byte of it read: a connection
// reading a request, running a call or writing an answer is never
// evicted. Of the idle ones, those that never answered go first, so that
// a flood of connections that send nothing makes room among its own, and
// then the one idle the longest. If none is idle, the new connection
// waits, accepted and unread, until a slot frees or a connection becomes
// idle, and Serve accepts nothing more meanwhile. So a flood of silent
// connections cannot keep a caller out. Out of file descriptors, Serve
// evicts an idle connection, chosen the same way, and tries again after a
// pause.
//
// An eviction races with a request on its way: bytes that have reached
// the server's socket but that net/http has not read yet do not make a
// connection busy, and if it is evicted, they are never read, the request
// never runs, and the client reads the end of the stream. Closing a
// kept-alive connection while it is idle is what HTTP/1.1 allows a server
// (RFC 9112, section 9.8); a client that sent a request on it as it closed
// must try again, on a new connection, as http.Client does for a GET.
func (s *Server) Serve(l net.Listener) error {
	s.setUp.Do(func() {
		hs := s.http
		hs.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.running.Add(1)
			defer s.running.Add(-1)
			s.ServeHTTP(w, r)
		})
		hs.ReadHeaderTimeout = s.HeaderTimeout
		hs.ReadTimeout = s.HeaderTimeout // a GET has no body: the whole request is its headers
		hs.WriteTimeout = s.WriteTimeout
		hs.IdleTimeout = s.IdleTimeout
		hs.MaxHeaderBytes = s.MaxHeaderBytes
		hs.ErrorLog = log.New(io.Discard, "", 0) // a client hanging up is not the server's error
		if s.MaxConns > 0 {
			if s.linger == 0 {
				s.linger = closeLinger
			}
			s.conns = newConnTable(s.MaxConns, s.linger)
			hs.ConnState = connState
		}
	})
	if s.conns != nil {
		l = newLimitListener(l, s.conns)
	}
	return s.http.Serve(l)
}

// Shutdown stops accepting connections, closes idle ones, and waits for the
// calls in flight to finish and their answers to be written. If ctx ends
// first, it closes every connection at once, so that no client can hold it
// longer: one that stops reading its answer would otherwise hold it for
// the WriteTimeout. It returns ctx's error if a call was still running
// then, and nil if all that was left was answers nobody was reading.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err == nil || ctx.Err() == nil {
		return err
	}
	s.http.Close()
	if s.running.Load() > 0 {
		return err
	}
	return nil
}

// closeLinger bounds the goodbye of an evicted connection that has
// answered a call: the server says it is done writing, then reads and
// drops what the client still sends, for at most this long, and only then
// closes. Closing a socket with unread input makes the kernel send a
// reset, and a reset can destroy the part of an answer the client has not
// read yet. (net/http waits as long before it closes a connection whose
// request body it did not read.)
const closeLinger = 500 * time.Millisecond

// limitListener hands net/http a connection only once it has a slot for
// it; the Server's listeners share one connTable, and its slots. When all
// the slots are taken, Accept makes room: it evicts the connection idle
// the longest (see connTable.evictIdle) and gives its slot to the new
// one. If none is idle, it holds the connection it has accepted, unread,
// until a slot frees or a connection becomes idle, and takes no other from
// the kernel meanwhile: new connections wait in the kernel's accept queue
// (its length is the listen backlog, net.core.somaxconn on Linux). The
// slots are the standard library's idea, written out:
// golang.org/x/net/netutil has them as LimitListener, which takes the
// slot first; ours accepts first, so that a listener waiting for a
// connection never holds a slot another listener could use.
type limitListener struct {
	net.Listener
	conns     *connTable
	closed    chan struct{} // closed by Close: Accept stops waiting for a slot
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, conns *connTable) *limitListener {
	return &limitListener{Listener: l, conns: conns, closed: make(chan struct{})}
}

// Accept waits for a connection, then for a slot. Out of file
// descriptors, it evicts an idle connection, chosen as at the cap, to free
// one, and tries again once it is closed (see evictForDescriptor). With
// none idle, it returns the error: net/http takes it as temporary, and
// accepts again after a pause that doubles from 5 ms to 1 s.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			if (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && l.conns.evictForDescriptor(l.closed) {
				continue
			}
			return nil, err
		}
		c := l.conns.takeSlot(conn, l.closed)
		if c == nil {
			conn.Close()
			return nil, net.ErrClosed
		}
		return c, nil
	}
}

// Close stops the listener, and wakes an Accept that waits for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// connTable is the connections a Server's listeners have handed to
// net/http, with a slot each, and what eviction needs to know of them.
// Its methods are safe for use by many goroutines.
type connTable struct {
	slots    chan struct{} // a token per connection open: MaxConns in all
	linger   time.Duration // closeLinger, unless a test needs longer
	epoch    time.Time     // idle times count from here
	waiting  atomic.Int32  // Accept calls waiting for a slot
	starting atomic.Int32  // connections handed to net/http that it has not yet read from

	mu    sync.Mutex // protects conns, idled
	conns map[*trackedConn]struct{}
	idled chan struct{} // closed, and made anew, when a connection becomes idle while an Accept waits
}

func newConnTable(maxConns int, linger time.Duration) *connTable {
	return &connTable{
		slots:  make(chan struct{}, maxConns),
		linger: linger,
		epoch:  time.Now(),
		conns:  map[*trackedConn]struct{}{},
		idled:  make(chan struct{}),
	}
}

// takeSlot takes a slot for conn, which Accept has just accepted, and
// returns conn tracked: a free slot, or the slot of the connection idle
// the longest, which it evicts. With no connection idle it waits until a
// slot frees or a connection becomes idle. It returns nil if closed is
// closed first.
func (t *connTable) takeSlot(conn net.Conn, closed <-chan struct{}) *trackedConn {
	select {
	case t.slots <- struct{}{}:
		return t.track(conn)
	default:
	}
	t.waiting.Add(1)
	defer t.waiting.Add(-1)
	for {
		select {
		case t.slots <- struct{}{}: // freed since the last look
			return t.track(conn)
		default:
		}
		// Either a victim, whose slot comes back when it is closed, or
		// a channel that tells when a connection may be evicted.
		victim, idled := t.evictIdle()
		var gone <-chan struct{}
		if victim != nil {
			gone = victim.gone
		}
		select {
		case t.slots <- struct{}{}:
			return t.track(conn)
		case <-gone: // and another listener took its slot: look again
		case <-idled:
		case <-closed:
			return nil
		}
	}
}

// track records conn, which holds a slot now, as busy and starting: it
// becomes idle when net/http first reads from it (see trackedConn.Read).
func (t *connTable) track(conn net.Conn) *trackedConn {
	c := &trackedConn{Conn: conn, table: t, woken: make(chan struct{}), gone: make(chan struct{})}
	c.starting.Store(true)
	t.starting.Add(1)
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return c
}

// evictIdle evicts the connection idle the longest, among those not yet
// answered if any of them is idle, and returns it; its slot comes back
// when it is closed. One that has not answered is closed at once: it has
// nothing to lose. One that has is woken, and says goodbye before it
// closes (see trackedConn.goodbye). If no connection is idle, evictIdle
// returns nil and a channel that is closed when one may be. So it does
// while a connection handed to net/http has not yet been read from:
// Accept can run ahead of the goroutines net/http starts, and such a
// connection, soon idle, may be the one to go (one that sends nothing),
// or one to keep (one whose request is on its way).
func (t *connTable) evictIdle() (*trackedConn, <-chan struct{}) {
	t.mu.Lock()
	var victim *trackedConn
	var answered bool
	for victim == nil {
		// Read before the connections: one that stops starting is idle
		// first (trackedConn.Read), so the look at them below sees it.
		starting := t.starting.Load() > 0
		var since int64
		for c := range t.conns {
			at, a := c.idle.Load(), c.answered.Load()
			if at > 0 && (victim == nil || answered && !a || a == answered && at < since) {
				victim, since, answered = c, at, a
			}
		}
		if victim == nil || starting {
			idled := t.idled
			t.mu.Unlock()
			return nil, idled
		}
		if !victim.idle.CompareAndSwap(since, evicted) {
			victim = nil // a byte of a request came in: it is busy now
		}
	}
	t.mu.Unlock()
	if !answered {
		victim.Close()
	} else {
		// A read deadline in the past wakes its reader.
		_ = victim.SetReadDeadline(time.Unix(1, 0))
	}
	close(victim.woken)
	return victim, nil
}

// evictForDescriptor evicts an idle connection, chosen as evictIdle
// chooses it, to free a file descriptor, and waits until it is closed
// (5 ms at most, for one that says goodbye), so that Accept can try again
// at once: returning the error after each eviction would have net/http
// pause, and take one connection every few milliseconds from an accept
// queue that a flood keeps full. While a connection handed to net/http has
// not yet been read from, it waits for it (5 ms at most) and looks again.
// It reports false if no connection is idle: then Accept returns the
// error, and net/http pauses.
func (t *connTable) evictForDescriptor(closed <-chan struct{}) bool {
	t.waiting.Add(1)
	defer t.waiting.Add(-1)
	for {
		// Read before evictIdle: if no connection was starting then, and
		// it evicts none, none is idle.
		starting := t.starting.Load() > 0
		victim, idled := t.evictIdle()
		if victim != nil {
			select {
			case <-victim.gone:
			case <-time.After(5 * time.Millisecond):
			case <-closed:
			}
			return true
		}
		if !starting {
			return false
		}
		select {
		case <-idled: // a connection has been read from, or become idle
		case <-time.After(5 * time.Millisecond):
			return false
		case <-closed:
			return false
		}
	}
}

// now is the time as trackedConn.idle keeps it: nanoseconds since
// t.epoch, plus one, so that an idle connection is never busy.
func (t *connTable) now() int64 {
	return int64(time.Since(t.epoch)) + 1
}

// wakeWaiting wakes every Accept waiting for a slot, to look again.
func (t *connTable) wakeWaiting() {
	if t.waiting.Load() == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.idled)
	t.idled = make(chan struct{})
}

// connState is net/http's http.Server.ConnState hook: it keeps each
// trackedConn's state as net/http sees it. StateNew: accepted, not one
// byte of a request read yet, and never answered. StateIdle: it has
// answered, and waits for the next request. In both, the connection is
// idle from the moment net/http waits to read a request (see Read), not
// before: one whose request is there already is never idle. StateActive:
// a request was read, and is being served. StateHijacked: taken from
// net/http. (A connection is closed, and leaves the table, when net/http
// calls Close.)
func connState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*trackedConn)
	if !ok {
		return // MaxConns is 0: nothing is tracked
	}
	switch state {
	case http.StateNew:
		c.waits.Store(true)
	case http.StateIdle:
		c.answered.Store(true)
		c.waits.Store(true)
	case http.StateActive, http.StateHijacked:
		c.waits.Store(false)
		c.setBusy()
	}
}

// trackedConn is a connection net/http serves, with what eviction needs to
// know of it. net/http reads requests through it (Read), so that the
// first byte of a request makes it busy the moment it is read, not only
// once the whole request head is (StateActive).
type trackedConn struct {
	net.Conn
	table *connTable
	// idle is when the connection began to wait for a request with no
	// byte of one read, as connTable.now gives it, while it waits so. Or
	// it is busy: from when it is accepted until net/http first reads
	// from it, and while it reads a request, runs a call or writes an
	// answer. Or it is evicted, for good. The moves out of idle are
	// compare-and-swaps, so exactly one wins the race between a request's
	// first byte and an eviction.
	idle atomic.Int64
	// answered is set once the connection has answered a request
	// (StateIdle). Such a connection is evicted only when no unanswered
	// one is idle, and its goodbye is polite.
	answered atomic.Bool
	// waits is set by the hook at StateNew and StateIdle: net/http's next
	// Read waits for a request, and makes the connection idle.
	waits    atomic.Bool
	starting atomic.Bool   // net/http has not read from it yet; counted in table.starting
	woken    chan struct{} // closed by evictIdle once it has woken the reader
	said     bool          // the goodbye is said; only the reader uses it
	gone     chan struct{} // closed by the first Close, once the slot is given back
	once     sync.Once     // for Close
}

const (
	busy    = 0
	evicted = -1
)

// setIdle marks c idle from now, unless it was evicted.
func (c *trackedConn) setIdle() {
	for at := c.idle.Load(); at != evicted; at = c.idle.Load() {
		if c.idle.CompareAndSwap(at, c.table.now()) {
			return
		}
	}
}

// started counts c out of table.starting, the first time it is called.
func (c *trackedConn) started() {
	if c.starting.Swap(false) {
		c.table.starting.Add(-1)
	}
}

// setBusy marks c busy, and reports false if it was evicted.
func (c *trackedConn) setBusy() bool {
	for at := c.idle.Load(); at != evicted; at = c.idle.Load() {
		if at == busy || c.idle.CompareAndSwap(at, busy) {
			return true
		}
	}
	return false
}

// Read reads for net/http. Its first call after StateNew or StateIdle
// waits for a request: it makes the connection idle (net/http has set its
// read deadline for that wait by then, so an eviction's comes after). The
// first bytes read while the connection is idle make it busy, unless it
// was evicted first: then they are dropped, the request they begin is
// never read, so never run, and net/http reads the end of the stream,
// once the goodbye is said.
func (c *trackedConn) Read(p []byte) (int, error) {
	if c.waits.Swap(false) {
		c.setIdle()
		c.started()
		c.table.wakeWaiting() // an Accept may wait for this one
	}
	if c.idle.Load() == evicted {
		return 0, c.goodbye()
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.setBusy() || c.idle.Load() == evicted {
		return 0, c.goodbye()
	}
	return n, err
}

// goodbye ends an evicted connection for its reader. If it has answered
// a call, its answer may still be on its way to the client: it closes
// its sending half, then reads and drops what the client still sends
// until the client closes too, or for closeLinger at most. (A client that
// reads, as an http.Client does, closes at once.) Then it returns io.EOF,
// and net/http closes the connection, which gives its slot back.
func (c *trackedConn) goodbye() error {
	<-c.woken // evictIdle has set its read deadline, which this one replaces
	if c.answered.Load() && !c.said {
		c.said = true
		_ = c.CloseWrite()
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.table.linger))
		buf := make([]byte, 4<<10)
		for {
			if _, err := c.Conn.Read(buf); err != nil {
				break
			}
		}
	}
	return io.EOF
}

// Close closes the connection and gives its slot back, once however many
// times it is closed.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.started()
		c.table.mu.Lock()
		delete(c.table.conns, c)
		c.table.mu.Unlock()
		<-c.table.slots
		close(c.gone)
	})
	return err
}

// CloseWrite lets net/http close the sending half first, as it does on a
// TCP connection before hanging up, so the client reads the last answer.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
