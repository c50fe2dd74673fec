package gobrpc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Default limits. Together they bound what the server holds: one
// connection holds at most one request of MaxRequestBytes while it reads it,
// plus small fixed buffers, and at most MaxConns connections are served at
// once (the Server doc gives the whole bound).
const (
	DefaultMaxConns            = 1024
	DefaultFirstRequestTimeout = 5 * time.Second  // for a new connection to send its first whole request
	DefaultIdleTimeout         = 60 * time.Second // to receive the whole of each later request
	DefaultWriteTimeout        = 10 * time.Second // to write an answer to a client that reads slowly
)

// closeLinger is how long the server keeps a connection it is closing
// open: after Shutdown, to answer requests that were already on their way,
// and after refusing a stream or evicting a connection, to let the
// client's unread bytes arrive.
// Closing a socket with unread input sends a reset, and a reset can destroy
// the answer the client has not read yet.
const closeLinger = 500 * time.Millisecond

// errStopping answers a request that arrives after Shutdown began: the
// caller learns that its call did not run, and may make it elsewhere.
var errStopping = errors.New("the server is shutting down; the call did not run")

// ErrServerClosed is what Serve returns once Shutdown has begun, as
// net/http's Serve returns http.ErrServerClosed: a clean stop, not a
// failure.
var ErrServerClosed = errors.New("gobrpc: server closed")

// Server is the server stub: it reads calls from each connection, finds
// the method each one names in the route table, calls it, and writes back
// its answer.
//
// Register may be called at any time, and so may Shutdown. Set the limits
// before the first call of Serve. Serve may be called more than once, also
// at the same time with other listeners: the limits are the server's, and
// all its listeners share them. A zero limit means its default, so the
// zero Server is ready to use.
//
// What the server holds, whatever its peers do: at most MaxConns
// connections served, each reading at most one request of MaxRequestBytes;
// at most MaxConns more that it evicted (see Serve) and is closing, each
// for at most closeLinger; and one more for each call of Serve, accepted
// and not yet read while it waits for a slot. At the defaults that is 2,049
// connections and 128 MiB of requests.
type Server struct {
	MaxConns            int           // connections served at once; at the cap a new one takes an idle one's place (see Serve)
	MaxRequestBytes     int           // a larger request is refused and closes its connection
	FirstRequestTimeout time.Duration // a new connection that sends no whole request for this long is closed
	IdleTimeout         time.Duration // a connection that sends no whole request for this long is closed
	WriteTimeout        time.Duration // an answer not written in this long closes its connection

	funcs registry // the route table; it has a lock of its own

	mu        sync.Mutex // protects listeners, conns, closing, freed
	listeners map[net.Listener]struct{}
	conns     map[*servedConn]struct{}
	closing   bool           // Shutdown has begun
	stopped   chan struct{}  // closed when Shutdown begins
	wg        sync.WaitGroup // one per connection being served

	// Made once, by init, for eviction (see Serve).
	slots    chan struct{} // a token per connection served: MaxConns in all
	goodbyes chan struct{} // a token per evicted connection not yet closed: MaxConns in all
	waiting  atomic.Int32  // calls of Serve waiting for a slot, or for a connection to evict
	starting atomic.Int32  // connections accepted whose goroutine has not yet waited for a request
	freed    chan struct{} // closed, and made anew, when a wait for a slot may end
	epoch    time.Time     // idle times count from here

	running atomic.Int32 // calls in their function: if one is at Shutdown's deadline, it was cut off

	// beforeAnswer, when set, runs inside each call before its answer is
	// written. Tests use it to hold a call in flight.
	beforeAnswer func()
	linger       time.Duration // closeLinger, unless a test needs longer
}

// NewServer returns a Server with the default limits and an empty route
// table.
func NewServer() *Server {
	return &Server{
		MaxConns:            DefaultMaxConns,
		MaxRequestBytes:     DefaultMaxMessageBytes,
		FirstRequestTimeout: DefaultFirstRequestTimeout,
		IdleTimeout:         DefaultIdleTimeout,
		WriteTimeout:        DefaultWriteTimeout,
	}
}

// Register adds the exported methods of service to the route table, each
// under its name in snake case: Sum answers to sum, GetTime to get_time.
// A method can be called when its parameters are int, float64, string or
// any, and it returns one of those, or one of those and an error:
//
//	func (Service) Sum(a, b any) (any, error)   // sum
//	func (Service) GetTime() string             // get_time
//
// Register returns every other exported method, with the reason it was
// skipped. It fails, and adds nothing, if no method can be called or a
// name is taken already.
func (s *Server) Register(service any) ([]Skipped, error) {
	return s.funcs.register(service)
}

// Serve accepts connections on l and serves each on its own goroutine
// until Shutdown is called; then it returns ErrServerClosed.
//
// It serves at most MaxConns connections at once, and at the cap it goes
// on accepting. A new connection then takes the slot of an idle one, which
// is evicted: closed, at once if it never answered a call, or after a
// polite goodbye if it did (see serveConn and hangUp). Idle means waiting
// for a request with not one byte of it read: a connection reading a
// request, running a call or writing an answer is never evicted.
// Of the idle ones, those not yet answered go first, so that a
// flood of connections that send nothing makes room among its own, and
// then the one idle the longest. If none is idle, the new connection
// waits, accepted and unread, until a slot frees or a connection becomes
// idle, and Serve accepts nothing more meanwhile. So a flood of silent
// connections cannot keep a caller out.
//
// Out of file descriptors, it evicts an idle connection, chosen the same
// way, and tries again as soon as that connection is closed; with none
// idle, it tries again after a pause that doubles from 5 ms to 1 s.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosing() {
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
			conn.Close()
			return ErrServerClosed
		}
		c, ok := s.track(conn)
		if !ok {
			<-s.slots
			conn.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

// setDefaults gives every zero limit its default. It writes only the
// limits that are zero, so that reading a limit that was set is never a
// race. s.mu is held.
func (s *Server) setDefaults() {
	setZero(&s.MaxConns, DefaultMaxConns)
	setZero(&s.MaxRequestBytes, DefaultMaxMessageBytes)
	setZero(&s.FirstRequestTimeout, DefaultFirstRequestTimeout)
	setZero(&s.IdleTimeout, DefaultIdleTimeout)
	setZero(&s.WriteTimeout, DefaultWriteTimeout)
	setZero(&s.linger, closeLinger)
}

func setZero[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// init makes what a zero Server lacks, once. s.mu is held, and the limits
// have their defaults.
func (s *Server) init() {
	if s.conns == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*servedConn]struct{}{}
		s.stopped = make(chan struct{})
		s.slots = make(chan struct{}, s.MaxConns)
		s.goodbyes = make(chan struct{}, s.MaxConns)
		s.freed = make(chan struct{})
		s.epoch = time.Now()
	}
}

// passing reports whether an Accept error may go away by itself.
func passing(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || (errors.As(err, &ne) && ne.Timeout())
}

// track records conn as served, unless the server is shutting down.
func (s *Server) track(conn net.Conn) (*servedConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, false
	}
	c := &servedConn{conn: conn, gone: make(chan struct{})}
	s.conns[c] = struct{}{}
	s.starting.Add(1)
	s.wg.Add(1)
	return c, true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// servedConn is a connection being served, with what eviction needs to
// know of it. Its goroutine reads requests through it (Read), so that the
// first byte of a request makes it busy the moment it is read.
type servedConn struct {
	conn net.Conn
	// idle is when the connection began to wait for a request with no
	// byte of one read, as Server.now gives it, while it waits so. Or it is
	// busy: from when it is accepted until its goroutine waits for a
	// request, and while it reads a request, runs a call or writes an
	// answer. Or it is evicted. The connection's goroutine moves it from
	// busy to idle and back; Serve moves it from idle to evicted, for
	// good. The moves out of idle are compare-and-swaps, so exactly one
	// wins the race between a request's first byte and an eviction.
	idle atomic.Int64
	// answered is set by the connection's goroutine once it has written an
	// answer. Such a connection is evicted only when no unanswered one is
	// idle, and its goodbye is polite.
	answered atomic.Bool
	// started is set by the connection's goroutine when it first waits for
	// a request; only that goroutine uses it.
	started bool
	// gone is closed once the connection is closed.
	gone chan struct{}
}

const (
	busy    = 0
	evicted = -1
)

// errEvicted is what a read of an evicted connection returns: the bytes
// it read begin a request that will never be run.
var errEvicted = errors.New("evicted to make room for a new connection")

// Read reads for the connection's request reader. The first bytes read
// while the connection is idle make it busy, unless Serve has evicted it
// first: then they are dropped, and the request they begin is never read,
// so never run.
func (c *servedConn) Read(p []byte) (int, error) {
	n, err := c.conn.Read(p)
	if n > 0 && !c.setBusy() {
		return 0, errEvicted
	}
	return n, err
}

// setBusy makes the connection busy, and reports false if it was evicted.
func (c *servedConn) setBusy() bool {
	since := c.idle.Load()
	return since == busy || since > 0 && c.idle.CompareAndSwap(since, busy)
}

// now is the time as servedConn.idle keeps it: nanoseconds since s.epoch,
// plus one, so that an idle connection is never busy.
func (s *Server) now() int64 {
	return int64(time.Since(s.epoch)) + 1
}

// setIdle marks c idle from now: its goroutine calls it when it waits for
// a request and holds no byte of one (from just after it was accepted, or
// just after its last answer), once it has armed the read deadline of that
// wait, so that the deadline an eviction sets, to wake it, comes after. A
// Serve call waiting for a slot is told.
func (s *Server) setIdle(c *servedConn) {
	c.idle.Store(s.now())
	s.started(c)
	if s.waiting.Load() > 0 {
		s.wakeWaiting()
	}
}

// started counts c out of s.starting, the first time it is called.
func (s *Server) started(c *servedConn) {
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

// takeSlot takes a slot for a connection Serve has just accepted: a free
// one, or the slot of the connection idle the longest, which it evicts.
// With every connection busy it waits until a slot frees or a connection
// becomes idle. It reports false if Shutdown begins first.
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
// a file descriptor, and gives the evicted connection's slot back. It
// waits until the connection is closed (5 ms at most, for one that says
// goodbye), so that Serve calls Accept again at once: pausing after each
// eviction would take one connection every few milliseconds from an
// accept queue that a flood keeps full. While a connection Serve accepted
// has not yet begun to wait for a request, it waits for it (5 ms at most)
// and looks again. It reports false if no connection is idle: then Serve
// pauses.
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
		case <-freed: // a connection has begun to wait, or one has closed
		case <-time.After(5 * time.Millisecond):
			return false
		case <-s.stopped:
			return false
		}
	}
}

// evictIdle evicts the connection idle the longest, among those not yet
// answered if any of them is idle: it marks it evicted and wakes its
// goroutine, which says goodbye and closes it, and returns it. The
// evicted connection's slot becomes the caller's, and it holds a token of
// goodbyes instead until it is closed. If no connection is idle, or
// MaxConns evicted connections are still closing, it returns nil and a
// channel that is closed when that may have changed. So it does while a connection it
// accepted has not yet begun to wait for a request: the accept loop can
// run ahead of the goroutines it starts, and such a connection, soon
// idle, may be the one to go (one that sends nothing), or one to keep
// (one whose request is on its way).
func (s *Server) evictIdle() (*servedConn, <-chan struct{}) {
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
		var oldest *servedConn
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
			_ = oldest.conn.SetReadDeadline(time.Unix(1, 0))
			return oldest, nil
		}
		// Its first byte came in: it is busy now. Look again.
	}
}

// done gives back what c held: its slot, or, if it was evicted, its token
// of goodbyes (its slot went to the connection that took its place).
func (s *Server) done(c *servedConn) {
	s.started(c)
	c.conn.Close()
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

// serveConn answers the calls on one connection, in order, until the
// client closes it, a limit is broken, Serve evicts it, or the server
// shuts down.
func (s *Server) serveConn(c *servedConn) {
	defer s.done(c)
	conn := c.conn
	requests := newDecoder(c, s.MaxRequestBytes)
	answers := newEncoder()
	wait := s.FirstRequestTimeout
	for {
		if !s.waitForRequest(conn, wait) {
			return
		}
		wait = s.IdleTimeout
		if !requestBegun(requests) {
			s.setIdle(c)
		}
		var req Request
		if err := requests.decode(&req); err != nil {
			switch {
			case c.idle.Load() == evicted:
				// A connection that answered may still have an answer on
				// its way to the client; one that never did has nothing
				// to lose, and its slot is needed now.
				if c.answered.Load() {
					s.hangUp(conn, s.linger)
				}
			case errors.Is(err, errTooLarge) || errors.Is(err, errMalformed):
				// After these the stream cannot be trusted: say why, if
				// the client is still listening, and hang up.
				s.answer(conn, answers, nil, fmt.Errorf("%v; closing the connection", err))
				s.hangUp(conn, s.WriteTimeout)
			}
			return
		}
		if s.isClosing() {
			// Shutdown began while this request was on its way: say
			// that it did not run, and hang up.
			if s.answer(conn, answers, nil, errStopping) {
				s.hangUp(conn, s.linger)
			}
			return
		}
		s.running.Add(1)
		res, callErr := s.handle(&req)
		if s.beforeAnswer != nil {
			s.beforeAnswer()
		}
		s.running.Add(-1)
		if !s.answer(conn, answers, res, callErr) {
			return
		}
		c.answered.Store(true)
	}
}

// requestBegun reports whether requests holds bytes of a next request,
// read with the last one.
func requestBegun(requests *decoder) bool {
	return requests.frames.r.Buffered() > 0
}

// answer writes the answer to a call that returned res, or failed with
// callErr, as the next frame of the connection's answers. It reports
// whether the answer was written.
func (s *Server) answer(conn net.Conn, answers *encoder, res any, callErr error) bool {
	resp := newResponse(res, callErr)
	frame, err := answers.encode(&resp)
	defer answers.release() // once the frame is written
	return err == nil && s.write(conn, frame)
}

// waitForRequest arms the read deadline for the next request: wait from
// now, or, once Shutdown has begun, closeLinger from Shutdown's start, to
// answer what was already on its way. Shutdown holds the same lock when it
// moves the deadline, so a connection cannot miss it. It reports false if
// the deadline could not be set: the connection is closed.
func (s *Server) waitForRequest(conn net.Conn, wait time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		return conn.SetReadDeadline(time.Now().Add(wait)) == nil
	}
	return true // the deadline Shutdown set stands
}

// write writes p within WriteTimeout, or within closeLinger once Shutdown
// has begun, so that a client that stops reading cannot hold Shutdown.
// Shutdown holds the same lock when it moves the deadline. It reports
// whether all of p was written.
func (s *Server) write(conn net.Conn, p []byte) bool {
	s.mu.Lock()
	deadline := time.Now().Add(s.WriteTimeout)
	if s.closing {
		deadline = time.Now().Add(s.linger)
	}
	err := conn.SetWriteDeadline(deadline)
	s.mu.Unlock()
	if err == nil {
		_, err = conn.Write(p)
	}
	return err == nil
}

// hangUp closes conn politely after an answer that refused its stream, or
// refused a call because the server is shutting down, or when Serve has
// evicted a connection that has answered calls. Closing a socket that
// still has unread input makes the kernel send a reset, which can destroy
// the answer before the client reads it. So it first says it is done
// writing, then reads and drops what the client is still sending, and only
// then lets the caller close. It stops when the client has been silent for
// closeLinger, after within in all (closeLinger once Shutdown has begun),
// or after maxDrainBytes.
func (s *Server) hangUp(conn net.Conn, within time.Duration) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	giveUp := time.Now().Add(within)
	buf := make([]byte, 4<<10)
	for drained := 0; drained < maxDrainBytes; {
		deadline := time.Now().Add(s.linger)
		if s.isClosing() && deadline.Before(giveUp) {
			giveUp = deadline // Shutdown has begun: a short goodbye
		}
		if deadline.After(giveUp) {
			deadline = giveUp
		}
		_ = conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		drained += n
		if err != nil {
			return
		}
	}
}

// maxDrainBytes bounds what hangUp reads and drops.
const maxDrainBytes = 64 << 20

// handle reads one request as a call and calls the function it names.
func (s *Server) handle(req *Request) (any, error) {
	name, args, err := parseCall(req)
	if err != nil {
		return nil, err
	}
	fn, ok := s.funcs.lookup(name)
	if !ok {
		return nil, fmt.Errorf("no function %s; there are: %s", quoteShort(name),
			strings.Join(slices.Sorted(maps.Keys(s.funcs.table())), ", "))
	}
	res, err := fn.call(args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return res, nil
}

// Shutdown closes every listener, so that each Serve call returns
// ErrServerClosed, and lets each connection finish what it has, then
// closes it: a call in flight is answered, and a request that arrives
// within closeLinger is answered with an error saying that it did not
// run. Once Shutdown has begun, an answer gets closeLinger to be written,
// so a client that does not read cannot hold it. If ctx ends first,
// Shutdown closes every connection at once, without waiting for functions
// that are still running, and returns ctx's error if a call was still
// running then: it was cut off, and its caller gets no answer. It returns
// nil if all that was left was connections waiting for a request, or
// answers their clients did not read.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if !s.closing {
		s.closing = true
		close(s.stopped)
	}
	for l := range s.listeners {
		l.Close()
	}
	linger := time.Now().Add(s.linger)
	for c := range s.conns {
		// A connection blocked reading or writing gets closeLinger more;
		// one in a call finishes it and answers, and then does the same.
		_ = c.conn.SetReadDeadline(linger)
		_ = c.conn.SetWriteDeadline(linger)
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
			c.conn.Close()
		}
		s.mu.Unlock()
		if s.running.Load() > 0 {
			return ctx.Err()
		}
		return nil
	}
}
