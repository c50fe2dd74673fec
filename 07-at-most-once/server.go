package atmostonce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// Default limits. Together they bound what the server holds: the requests
// it has read and not yet answered hold at most MaxRequestBytesHeld bytes,
// all connections together; one connection runs at most MaxInFlight calls
// and holds at most MaxInFlight answers waiting to be written, plus small
// fixed buffers; and at most MaxConns connections are served at once. The
// Server's doc gives the whole bound, measured.
const (
	DefaultMaxConns            = 1024
	DefaultMaxInFlight         = 64               // calls running at once on one connection
	DefaultMaxRequestBytesHeld = 64 << 20         // request bytes held at once, by every connection together
	DefaultFirstRequestTimeout = 5 * time.Second  // for a new connection to send its first whole request
	DefaultIdleTimeout         = 60 * time.Second // to receive the whole of each later request
	DefaultWriteTimeout        = 10 * time.Second // to write an answer to a client that reads slowly
	DefaultMaxTableBytes       = 64 << 20         // what the table of calls run holds, every client together
	DefaultMaxCallsPerClient   = 1024             // a client's calls from its Ack, in the table (DefaultMaxPending)
)

// closeLinger is how long the server keeps open a connection it is
// closing after it has written an answer: it reads and drops what the
// client still sends for that long at most, from one deadline that bytes
// arriving do not move. Closing a socket with unread input sends a reset,
// and a reset can destroy the answer the client has not read yet. After
// Shutdown begins, it is also how long a request on its way has to
// arrive, and an answer to be written.
const closeLinger = 500 * time.Millisecond

// ErrServerClosed is what Serve returns once Shutdown has begun, as
// net/http's Serve returns http.ErrServerClosed: a caller can tell a
// server that was stopped from one that failed.
var ErrServerClosed = errors.New("atmostonce: server closed")

// errStopping answers a request that arrives after Shutdown began: the
// caller learns that its call did not run, and may make it elsewhere.
var errStopping = failure(Unavailable, NotRun, "the server is shutting down")

// errEvicted is what the server reads from a connection it has evicted:
// the bytes that arrived after the eviction begin a request that it drops
// unread, and never runs. A client that had calls answered on the
// connection is told so, by an answer with ID 0 (see readRequests).
var errEvicted = errors.New("the server closed this idle connection to make room for another; no request sent after its last answer was run")

// evictedAnswer is the goodbye that tells a client of an evicted
// connection why: the calls it sent after it are not run.
var evictedAnswer = &Error{Code: Unavailable, Outcome: NotRun, Message: errEvicted.Error()}

// errZeroID refuses a request whose ID is 0: the wire keeps that ID for
// answers that refuse the stream, so such a call could not be answered.
var errZeroID = fmt.Errorf("%w: a request with ID 0; a call's ID is never 0", errMalformed)

// Server is the server stub: it reads calls from each connection, finds
// the method each one names in the route table, calls it on a goroutine of
// its own, and writes back its answer, with the call's id, as soon as it
// is ready. Answers come back in the order the calls finish.
//
// Register may be called at any time, Serve too, and more than once, also
// on many listeners at once; Shutdown stops every one. Set the limits
// before the first Serve. A zero limit means its default, so the zero
// Server is ready to use.
//
// What the server holds is bounded, whatever its clients send. The
// requests it has read and not answered hold at most MaxRequestBytesHeld
// (64 MiB), all connections together, from the moment a frame's length is
// read until its answer is written; each counts its length and callBytes
// (12 KiB) for its call's goroutine and state. At that bound, every
// connection stops reading until an answer is written. For the demo
// service an answer is never larger than its request (echo's is the same
// string), and the writers hold at most one encoded copy of the answers
// they write, in buffers of up to twice its size (a large one is made a
// power of two: see largeBuffers): 128 MiB more. Between messages, a
// connection keeps at most 256 KiB (TestIdleConnectionKeepsAtMost: three
// buffers of up to 64 KiB, the frame read, gob's copy of it and the
// answers' frame; 4 KiB read ahead; its reader's and writer's
// goroutines), and there are at most MaxConns (1024) connections
// served: 256 MiB. At the cap, a new connection takes an idle one's place
// (see Serve); the evicted one holds no request and at most its goodbye
// answer while it closes, within twice closeLinger, and there are at most
// MaxConns of those, and one connection more for each Serve, accepted
// and waiting for a slot. So the heap in use stays under about 448 MiB at
// the defaults, and the process may grow to about twice that, since Go's
// collector lets the heap double before it collects.
// cmd/server's TestPeersThatNeverReadPeakRSS checks the process's peak
// RSS against this bound under peers that never read an answer; lesson
// 05 gives what it measured, with and without the budget.
type Server struct {
	MaxConns        int // connections served at once, by every Serve together; at the bound a new one takes an idle one's place (see Serve)
	MaxInFlight     int // calls running at once on one connection; at the bound, the server stops reading it
	MaxRequestBytes int // a larger request is refused: the stream's first closes the connection; a later one is answered by its ID, read and dropped
	// MaxRequestBytesHeld bounds the request bytes that every connection
	// together holds, from a frame's length to its answer's write; at the
	// bound, the server stops reading. A request larger than it is refused
	// as one larger than MaxRequestBytes.
	MaxRequestBytesHeld int
	FirstRequestTimeout time.Duration // a new connection that sends no whole request for this long is closed
	IdleTimeout         time.Duration // a connection that sends no whole request for this long, with no call unanswered, is closed
	WriteTimeout        time.Duration // an answer not written in this long closes its connection
	// MaxTableBytes bounds what the table of calls run holds, every
	// client together (see table); MaxCallsPerClient, how many calls
	// from its Ack one client may have in it.
	MaxTableBytes     int64
	MaxCallsPerClient int

	funcs registry // the route table; it has a lock of its own
	table *table   // the calls run, for at-most-once; made by init

	mu        sync.Mutex // protects listeners, conns and freed, and the making of what init makes
	listeners map[*net.Listener]struct{}
	conns     map[*serverConn]struct{}
	stopped   chan struct{}       // closed once, when Shutdown begins; see shuttingDown
	budget    *semaphore.Weighted // MaxRequestBytesHeld, in bytes
	halted    context.Context     // ends when Shutdown gives up waiting: readers waiting for budget stop
	halt      context.CancelFunc
	wg        sync.WaitGroup // one per connection being served

	// Made once, by init, for eviction (see Serve).
	slots    chan struct{} // a token per connection served, shared by every Serve: MaxConns in all
	goodbyes chan struct{} // a token per evicted connection not yet closed: MaxConns in all
	waiting  atomic.Int32  // calls of Serve waiting for a slot, or for a connection to evict
	starting atomic.Int32  // connections accepted whose reader has not yet waited for a request
	freed    chan struct{} // closed, and made anew, when a wait for a slot may end
	idleSeq  atomic.Int64  // the order in which connections became idle: the last one's number

	running atomic.Int32 // calls in their function: if one is at Shutdown's deadline, it was cut off

	// beforeAnswer, when set, runs inside each call before its answer is
	// queued; answerWritten, after the writer has written an answer;
	// waitingForBudget, when a reader must wait for budget before it reads
	// a frame of size bytes; armingRead, inside serverConn.armRead, between
	// choosing the read deadline and setting it. Tests use them to hold a
	// call in flight, to make answers cross, and to see where the server
	// waits.
	beforeAnswer     func(req *Request)
	answerWritten    func(id uint64)
	waitingForBudget func(size int)
	armingRead       func()
	linger           time.Duration // closeLinger, unless a test needs longer
}

// NewServer returns a Server with the default limits and an empty route
// table.
func NewServer() *Server {
	return &Server{
		MaxConns:            DefaultMaxConns,
		MaxInFlight:         DefaultMaxInFlight,
		MaxRequestBytes:     DefaultMaxMessageBytes,
		MaxRequestBytesHeld: DefaultMaxRequestBytesHeld,
		FirstRequestTimeout: DefaultFirstRequestTimeout,
		IdleTimeout:         DefaultIdleTimeout,
		WriteTimeout:        DefaultWriteTimeout,
		MaxTableBytes:       DefaultMaxTableBytes,
		MaxCallsPerClient:   DefaultMaxCallsPerClient,
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

// Serve may be called more than once, also at the same time on other
// listeners. It accepts connections on l and serves each on its own
// goroutine until Shutdown is called; then it returns ErrServerClosed, at
// once if Shutdown began before it was called. It closes l.
//
// MaxConns counts the connections of every Serve together, and at the cap
// Serve goes on accepting. A new connection then takes the slot of an idle
// one, which is evicted: closed, once its goodbye is said (see
// readRequests). Idle means that no call of the connection is running or
// has an answer not yet written, and that its reader waits for a request
// with not one byte of it read: a connection reading a request, running a
// call or writing an answer is never evicted. Of the idle ones, those
// never answered go first, so that a flood of connections that send
// nothing makes room among its own, and then the one idle the longest. If
// none is idle, the new connection waits, accepted and unread, until a
// slot frees or a connection becomes idle, and Serve accepts nothing more
// meanwhile. So a flood of silent connections cannot keep a caller out.
//
// Out of file descriptors, it evicts an idle connection, chosen the same
// way, and tries again as soon as that connection is closed; with none
// idle, it tries again after a pause that doubles from 5 ms to 1 s.
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
		conn, err := l.Accept()
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
		// A slot is taken after Accept, not before: a Serve waiting in
		// Accept with a slot would keep it from every other listener.
		if !s.takeSlot() {
			conn.Close()
			return ErrServerClosed
		}
		c := s.track(conn)
		if c == nil {
			conn.Close()
			<-s.slots
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
	setZero(&s.MaxInFlight, DefaultMaxInFlight)
	setZero(&s.MaxRequestBytes, DefaultMaxMessageBytes)
	setZero(&s.MaxRequestBytesHeld, DefaultMaxRequestBytesHeld)
	setZero(&s.FirstRequestTimeout, DefaultFirstRequestTimeout)
	setZero(&s.IdleTimeout, DefaultIdleTimeout)
	setZero(&s.WriteTimeout, DefaultWriteTimeout)
	setZero(&s.MaxTableBytes, DefaultMaxTableBytes)
	setZero(&s.MaxCallsPerClient, DefaultMaxCallsPerClient)
	setZero(&s.linger, closeLinger)
}

func setZero[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// init makes what a zero Server lacks, once, from the limits set then.
// s.mu is held.
func (s *Server) init() {
	if s.conns == nil {
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*serverConn]struct{}{}
		s.stopped = make(chan struct{})
		s.slots = make(chan struct{}, s.MaxConns)
		s.goodbyes = make(chan struct{}, s.MaxConns)
		s.freed = make(chan struct{})
		s.budget = semaphore.NewWeighted(int64(s.MaxRequestBytesHeld))
		s.halted, s.halt = context.WithCancel(context.Background())
		s.table = newTable(s.MaxTableBytes, uint64(s.MaxCallsPerClient))
	}
}

// requestLimit is the largest request the server reads: MaxRequestBytes,
// or the whole budget if that is smaller, since a request must fit in the
// budget to be read at all.
func (s *Server) requestLimit() int {
	return min(s.MaxRequestBytes, s.MaxRequestBytesHeld)
}

// callBytes is what the budget counts for a request besides its frame:
// what its call holds while it runs or waits to hand over its answer, its
// goroutine's stack and its state, its context and its timer, 10.5 to
// 10.8 KiB measured (TestBudgetCountsCalls). Without it, small requests
// would pass the budget unseen: 1024 connections of 64 calls of
// slow(10000) would hold 640 MiB in goroutines alone.
const callBytes = 12 << 10

// requestCost is what a request of size bytes takes from the budget: its
// size and callBytes, or the whole budget if that is less.
func (s *Server) requestCost(size int) int64 {
	return min(int64(size)+callBytes, int64(s.MaxRequestBytesHeld))
}

// release gives back n bytes of budget, taken for a request whose answer
// has been written, or that was dropped.
func (s *Server) release(n int64) {
	if n > 0 {
		s.budget.Release(n)
	}
}

// passing reports whether an Accept error may go away by itself.
func passing(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || (errors.As(err, &ne) && ne.Timeout())
}

// shuttingDown reports whether Shutdown has begun; it may be called at
// any time after init. Every request asks, so it takes no lock: Shutdown
// closes stopped (once, under s.mu), and a receive that sees it closed
// happens after the close, as for any synchronising operation of a
// race-free Go program.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

// track records conn as served and returns it as a serverConn, unless the
// server is shutting down: then it returns nil. Shutdown closes stopped
// under the same lock, so a connection it does not reach is never served.
func (s *Server) track(conn net.Conn) *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown() {
		return nil
	}
	c := &serverConn{Conn: conn, srv: s, mu: make(connLock, 1), gone: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(s.halted)
	s.conns[c] = struct{}{}
	s.starting.Add(1)
	s.wg.Add(1)
	return c
}

// Eviction. A connection is busy from when it is accepted until its
// reader waits for a request with no byte of one read; then it is idle,
// and stays so until a byte arrives. But an idle connection is evicted
// only once it has no answer to come (connWriter.unanswered is 0): with
// calls in flight its reader waits too. While the reader waits, no call
// can start, so that count only falls, and a connection that Serve sees
// idle with no answer to come stays so until a byte arrives.

const (
	busy    = 0
	evicted = -1
)

// Read reads for the connection's request reader. The first bytes read
// while the connection is idle make it busy, unless Serve has evicted it
// first: then they are dropped, and the request they begin is never read,
// so never run.
func (c *serverConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.setBusy() {
		return 0, errEvicted
	}
	return n, err
}

// setBusy makes the connection busy, and reports false if it was evicted.
func (c *serverConn) setBusy() bool {
	for {
		since := c.idle.Load()
		switch {
		case since == busy:
			return true
		case since == evicted:
			return false
		case c.idle.CompareAndSwap(since, busy):
			return true
		}
		// The writer has just renumbered it (see answered): again.
	}
}

// setIdle marks c idle, as the latest to be, if it is busy: its reader
// calls it when it waits for a request and holds no byte of one, once it
// has armed the read deadline of that wait, so that the deadline an
// eviction sets, to wake it, comes after. If it may be evicted now, a
// Serve waiting for a slot is told.
func (s *Server) setIdle(c *serverConn) {
	c.idle.CompareAndSwap(busy, s.idleSeq.Add(1))
	s.started(c)
	if !c.answers.busy() && s.waiting.Load() > 0 {
		s.wakeWaiting()
	}
}

// lastAnswerWritten is the writer's, once every answer to come has been
// written: an idle connection is idle from now, the latest to be, and a
// Serve waiting for a slot is told.
func (s *Server) lastAnswerWritten(c *serverConn) {
	if since := c.idle.Load(); since > 0 {
		c.idle.CompareAndSwap(since, s.idleSeq.Add(1))
		if s.waiting.Load() > 0 {
			s.wakeWaiting()
		}
	}
}

// started counts c out of s.starting, the first time it is called. Only
// c's reader goroutine calls it.
func (s *Server) started(c *serverConn) {
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
// one, or the slot of an idle connection, which it evicts. With no
// connection idle it waits until a slot frees or one becomes idle. It
// reports false if Shutdown begins first.
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

// evictIdle evicts an idle connection with no answer to come: the one
// idle the longest among those never answered, if any of them is idle,
// or else among all. It marks it evicted and wakes its reader, which says
// goodbye and closes it, and returns it. The evicted connection's slot
// becomes the caller's, and it holds a token of goodbyes instead until it
// is closed. If no connection is idle, or MaxConns evicted connections
// are still closing, it returns nil and a channel that is closed when that may
// have changed. So it does while a connection Serve accepted has not yet
// begun to wait for a request: the accept loop can run ahead of the
// goroutines it starts, and such a connection, soon idle, may be the one
// to go (one that sends nothing), or one to keep (one whose request is on
// its way).
func (s *Server) evictIdle() (*serverConn, <-chan struct{}) {
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
		var oldest *serverConn
		var since int64
		var answered bool
		for c := range s.conns {
			t := c.idle.Load()
			if t <= 0 || c.answers.busy() {
				continue
			}
			a := c.answered.Load()
			if oldest == nil || answered && !a || a == answered && t < since {
				oldest, since, answered = c, t, a
			}
		}
		if oldest == nil || starting {
			<-s.goodbyes
			return nil, s.freed
		}
		if oldest.idle.CompareAndSwap(since, evicted) {
			oldest.wake()
			return oldest, nil
		}
		// Its first byte came in, or its last answer was just written:
		// look again.
	}
}

// done gives back what c held: its slot, or, if it was evicted, its token
// of goodbyes (its slot went to the connection that took its place).
func (s *Server) done(c *serverConn) {
	s.started(c)
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

// serverConn is a connection the server serves, with what Shutdown must
// reach in it: its deadlines, and a context that stops its reader's wait
// for budget when its writer fails or Shutdown gives up. Its reader and
// its writer each set their own deadline, and Shutdown moves both; c.mu
// makes each of those one step, from choosing the deadline to setting it,
// so a deadline chosen before Shutdown began is never set after Shutdown
// moved it. The lock is the connection's own: setting deadlines takes no
// lock of the server's. (The budget has one: a call takes it once for its
// request, and a batch of answers once to give back what they held.)
type serverConn struct {
	net.Conn
	srv     *Server
	ctx     context.Context // ends when the connection does, or the server halts
	cancel  context.CancelFunc
	answers *connWriter // set before the reader starts

	// idle is the connection's number in the order connections became
	// idle (from 1), while its reader waits for a request with no byte of
	// one read. Or it is busy (0): from when it is accepted until its
	// reader waits so, and while it reads a request. Or it is evicted
	// (-1), for good. The reader moves it from busy to idle and back, the
	// writer renumbers it, and Serve moves it to evicted; the moves out of
	// idle are compare-and-swaps, so exactly one wins the race between a
	// request's first byte and an eviction.
	idle atomic.Int64
	// answered is set by the writer once it has written an answer. Such a
	// connection is evicted only when no unanswered one is idle, and its
	// goodbye is polite.
	answered atomic.Bool
	// started is set by the reader when it first waits for a request;
	// only the connection's goroutine uses it.
	started bool
	// gone is closed once the connection is closed.
	gone chan struct{}

	callsMu sync.Mutex                    // protects calls
	calls   map[uint64]context.CancelFunc // the calls run without the table, by ID, for a cancel frame

	mu     connLock  // protects stopAt and readBy, and orders the setting of deadlines
	stopAt time.Time // the deadline Shutdown set; zero until then
	readBy time.Time // the read deadline set last
}

// connLock is a lock: a channel with room for one token. It is a channel,
// not a sync.Mutex, for one test's sake: a goroutine that waits for a
// channel is durably blocked in a synctest bubble, and one that waits for
// a Mutex is not, so only with a channel can a test stop a connection
// while it arms its deadline and see Shutdown wait for it
// (TestShutdownReachesAConnectionArmingItsDeadline).
type connLock chan struct{}

func (l connLock) lock()   { l <- struct{}{} }
func (l connLock) unlock() { <-l }

// armRead sets the read deadline for the next request: wait from now, or
// the deadline Shutdown set, once it has begun. It reports whether the
// connection can still be read.
func (c *serverConn) armRead(wait time.Duration) bool {
	c.mu.lock()
	defer c.mu.unlock()
	deadline := c.stopAt
	if deadline.IsZero() {
		deadline = time.Now().Add(wait)
	}
	if c.srv.armingRead != nil {
		c.srv.armingRead()
	}
	c.readBy = deadline
	return c.SetReadDeadline(deadline) == nil
}

// stop is Shutdown's: it gives the connection until at to read a request
// on its way and to write the answer being written. It never moves a
// deadline later: a hang-up that began before keeps its own.
func (c *serverConn) stop(at time.Time) {
	c.mu.lock()
	defer c.mu.unlock()
	if !c.stopAt.IsZero() && !at.Before(c.stopAt) {
		return // an earlier Shutdown's stands
	}
	c.stopAt = at
	if c.readBy.IsZero() || c.readBy.After(at) {
		c.readBy = at
		_ = c.SetReadDeadline(at)
	}
	_ = c.SetWriteDeadline(at)
}

// wake is Serve's, when it evicts c: a read deadline in the past wakes its
// reader, and stands.
func (c *serverConn) wake() {
	c.mu.lock()
	defer c.mu.unlock()
	c.readBy = time.Unix(1, 0)
	_ = c.SetReadDeadline(c.readBy)
}

// write writes p within WriteTimeout, or within closeLinger once Shutdown
// has begun or Serve has evicted c, so that a client that stops reading
// cannot hold Shutdown, or a slot.
func (c *serverConn) write(p []byte) bool {
	c.mu.lock()
	wait := c.srv.WriteTimeout
	if !c.stopAt.IsZero() || c.idle.Load() == evicted {
		wait = c.srv.linger
	}
	err := c.SetWriteDeadline(time.Now().Add(wait))
	c.mu.unlock()
	if err == nil {
		_, err = c.Write(p)
	}
	return err == nil
}

// hangUp makes the close of c polite: serveConn calls it once every answer
// has been written, and closes c when it returns. Closing a socket that
// still has unread input makes the kernel send a reset, which destroys
// what it has not sent of the answers, and what the client has not read.
// So hangUp first says it is done writing, then reads and drops what the
// client is still sending. It stops when the client closes its side, after
// maxDrainBytes, or at one deadline, closeLinger from when it began, which
// bytes arriving do not move and which Shutdown does not bring earlier
// (see stop).
func (s *Server) hangUp(c *serverConn) {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.mu.lock()
	c.readBy = time.Now().Add(s.linger)
	err := c.SetReadDeadline(c.readBy)
	c.mu.unlock()
	if err == nil {
		_, _ = io.CopyN(io.Discard, c.Conn, maxDrainBytes)
	}
}

// maxDrainBytes bounds what hangUp reads and drops.
const maxDrainBytes = 64 << 20

// serveConn serves one connection until the client closes it, a limit is
// broken, Serve evicts it, or the server shuts down. Its goroutine reads the requests; each
// call runs on a goroutine of its own, at most MaxInFlight at once; and one
// writer goroutine writes the answers (see connWriter). Once the answers
// are written, it hangs up politely if it wrote any, and closes.
//
// At MaxInFlight calls, the reader waits for one to finish before it reads
// the next request: the client's requests wait in the socket, then the
// client's own writes block. That is backpressure: a client that sends
// calls faster than they finish, or never reads its answers, is slowed
// down instead of making the server hold more. The budget of request
// bytes does the same for all connections together.
func (s *Server) serveConn(c *serverConn) {
	defer func() {
		c.cancel()
		c.Close()
		close(c.gone)
		s.done(c)
	}()
	answers := s.newConnWriter(c)
	c.answers = answers
	var calls errgroup.Group
	calls.SetLimit(s.MaxInFlight)
	s.readRequests(c, answers, &calls)
	_ = calls.Wait() // the calls in flight finish, and queue their answers
	if answers.close() {
		s.hangUp(c)
	}
}

// readRequests reads requests from c and starts a call for each, until the
// stream ends or fails, or it refuses the stream, with an answer saying
// why.
//
// Before it reads a frame's payload, it takes the frame's length from the
// server's budget, waiting while the budget is spent; the call gives it
// back once its answer is written. A frame that is too large takes none:
// the stream's first is refused, and a later one, whose ID the decoder can
// read, is answered by that ID and dropped as it is read.
//
// When Serve evicts the connection, the reader stops. If the connection
// has had calls answered, its client is told why, by an answer with ID 0
// (errEvicted), after which the connection is hung up politely; one never
// answered, most likely one of a flood that sends nothing, is closed at
// once: it has no answer to lose, and its slot is needed.
func (s *Server) readRequests(c *serverConn, answers *connWriter, calls *errgroup.Group) {
	requests := newDecoder(c, s.requestLimit())
	requests.skipLarge = true
	wait := s.FirstRequestTimeout
	var held int64 // budget taken for the frame being read
	requests.frames.admit = func(size int) error {
		cost := s.requestCost(size)
		if !s.budget.TryAcquire(cost) {
			if s.waitingForBudget != nil {
				s.waitingForBudget(size)
			}
			if err := s.budget.Acquire(c.ctx, cost); err != nil {
				return err
			}
			// The wait was the server's: the client gets its time again.
			if !c.armRead(wait) {
				s.release(cost)
				return net.ErrClosed
			}
		}
		held = cost
		return nil
	}
	for {
		if !c.armRead(wait) {
			return
		}
		if requests.waiting() {
			s.setIdle(c)
		}
		var req Request
		err := requests.decode(&req)
		n := held // what the request holds, from now on
		held = 0
		if err != nil {
			s.release(n)
			var large *frameTooLarge
			switch {
			case c.idle.Load() == evicted:
				if c.answered.Load() {
					answers.refuse(0, evictedAnswer)
				}
			case errors.Is(err, os.ErrDeadlineExceeded) && requests.waiting() &&
				answers.busy() && !s.shuttingDown():
				// Not idle: the client waits for answers. Wait again.
				continue
			case errors.As(err, &large) && large.skipped:
				answers.refuse(req.ID, failure(ResourceExhausted, NotRun, "request of %d bytes is larger than MaxRequestBytes %d", large.size, large.max))
				continue
			case errors.Is(err, errTooLarge) || errors.Is(err, errMalformed):
				// After these the stream cannot be trusted: say why,
				// if the client is still listening, and hang up. The
				// answer carries the call's id if the frame got that far.
				answers.refuse(req.ID, failure(Internal, NotRun, "%v; closing the connection", err))
			}
			return
		}
		wait = s.IdleTimeout
		readAt := time.Now() // the caller's Timeout counts from here
		switch {
		case req.isHello():
			s.release(n)
			welcome := s.table.hello(req.Client)
			answers.started()
			answers.send(welcome, 0)
			if welcome.Error != "" {
				return // the table is full: the refusal says the connection closes
			}
			continue
		case req.ID == 0:
			s.release(n)
			answers.refuse(0, failure(Internal, NotRun, "%v; closing the connection", errZeroID))
			return
		case s.shuttingDown():
			// Shutdown began while this request was on its way: say
			// that it did not run. The reader goes on until the
			// deadline Shutdown set, answering each the same way.
			s.release(n)
			answers.refuse(req.ID, errStopping)
			continue
		case req.Cancel:
			s.release(n)
			s.cancel(c, &req)
			continue
		}
		answers.started()
		// Go waits while MaxInFlight calls are running: backpressure.
		calls.Go(func() error {
			s.running.Add(1)
			resp := s.serve(c, &req, readAt)
			if s.beforeAnswer != nil {
				s.beforeAnswer(&req)
			}
			s.running.Add(-1)
			answers.send(resp, n)
			return nil
		})
	}
}

// connWriter writes the answers of one connection, from one goroutine.
// Calls hand it their answers through a queue; it encodes every answer
// waiting and writes them all at once when the queue is empty, so under
// load many answers share one write, and one system call. (Before it
// looks at the queue, it yields once to the calls that are ready to run,
// so that their answers join the write: under load, far fewer writes.)
//
// The queue holds at most MaxInFlight answers. When the client does not
// read, the writer blocks, then the calls that finish block handing their
// answers over, then the reader stops reading, at MaxInFlight calls: what
// the connection holds stays bounded. Once an answer is written, or
// dropped, the writer gives back the budget its request took.
type connWriter struct {
	srv    *Server
	conn   *serverConn
	queue  chan answer
	failed chan struct{} // closed when a write fails: answers are dropped from then on
	done   chan struct{} // closed when the writer goroutine returns
	// unanswered counts the calls started, and refusals queued, whose
	// answers are not written yet.
	unanswered atomic.Int64
	wrote      bool // an answer has been written; read once done is closed
}

// answer is an answer waiting to be written, with the budget its request
// took.
type answer struct {
	resp Response
	held int64
}

// newConnWriter starts the writer goroutine of c.
func (s *Server) newConnWriter(c *serverConn) *connWriter {
	w := &connWriter{
		srv:    s,
		conn:   c,
		queue:  make(chan answer, s.MaxInFlight),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	go w.run()
	return w
}

// started counts a call whose answer is to come.
func (w *connWriter) started() { w.unanswered.Add(1) }

// busy reports whether an answer is to come.
func (w *connWriter) busy() bool { return w.unanswered.Load() > 0 }

// refuse queues an answer that no call gives: a refusal of request id.
func (w *connWriter) refuse(id uint64, err *Error) {
	w.started()
	resp := newResponse(nil, err)
	resp.ID = id
	w.send(resp, 0)
}

// send queues resp, the answer to a request that took held bytes of
// budget. It blocks while the queue is full, unless writing has failed:
// then the answer is dropped, and its budget given back.
func (w *connWriter) send(resp Response, held int64) {
	a := answer{resp: resp, held: held}
	select {
	case w.queue <- a:
	case <-w.failed:
		w.srv.release(held)
	}
}

// close lets the writer write what is queued, and waits for it. It
// reports whether every answer was written, and at least one: then the
// connection is to be hung up politely. Call it once no call can send.
func (w *connWriter) close() bool {
	close(w.queue)
	<-w.done
	select {
	case <-w.failed:
		return false
	default:
		return w.wrote
	}
}

// run writes answers until the queue is closed. After a failed write it
// closes the connection, which ends the reader, stops the reader's wait
// for budget, and drops what is queued.
func (w *connWriter) run() {
	defer close(w.done)
	answers := newEncoder()
	var ids []uint64 // of the answers in frames, for answerWritten
	var held int64   // budget of the answers in frames
	var next answer  // reused: encode takes an any, which would put each one on the heap
	for next = range w.queue {
		frames, err := answers.encode(&next.resp)
		ids, held = append(ids, next.resp.ID), held+next.held
		// Let the calls that are about to finish run first, so that
		// their answers join this write, then take the answers waiting,
		// up to a batch: answers that keep coming cannot grow one write
		// without end.
		runtime.Gosched()
		for waiting := true; waiting && err == nil && fits(len(ids), len(frames), cap(w.queue)); {
			select {
			case a, ok := <-w.queue:
				if ok {
					next = a
					frames, err = answers.encode(&next.resp)
					ids, held = append(ids, next.resp.ID), held+next.held
				}
				waiting = ok
			default:
				waiting = false
			}
		}
		if err == nil && !w.conn.write(frames) {
			err = net.ErrClosed
		}
		answers.release()
		next = answer{} // an idle connection keeps no answer
		w.srv.release(held)
		held = 0
		if err != nil {
			close(w.failed)
			w.conn.cancel()
			w.conn.Close()
			for a := range w.queue {
				w.srv.release(a.held)
			}
			return
		}
		w.wrote = true
		w.conn.answered.Store(true) // before the count falls: see evictIdle
		if w.unanswered.Add(-int64(len(ids))) == 0 {
			w.srv.lastAnswerWritten(w.conn)
		}
		if w.srv.answerWritten != nil {
			for _, id := range ids {
				w.srv.answerWritten(id)
			}
		}
		ids = ids[:0]
	}
}

// serve answers one request: from the table, if it is an attempt of a
// call the table remembers, or by running the call. A request with no
// Client is run without the table.
func (s *Server) serve(c *serverConn, req *Request, readAt time.Time) Response {
	var resp Response
	fn, args, refusal := s.lookup(req)
	switch {
	case refusal != nil:
		resp = newResponse(nil, refusal)
	case req.Client == 0:
		ctx, stop := s.callContext(req, readAt, fn)
		if stop != nil {
			c.running(req.ID, stop)
			defer c.running(req.ID, nil)
			defer stop()
		}
		resp = s.run(ctx, req, readAt, fn, args)
	default:
		resp = s.serveOnce(c, req, readAt, fn, args)
	}
	resp.ID = req.ID
	return resp
}

// serveOnce answers a request through the table: it runs the call if the
// table says so, waits for the attempt that runs it, or answers what the
// table says.
func (s *Server) serveOnce(c *serverConn, req *Request, readAt time.Time, fn *function, args []any) Response {
	var resp Response
	a := s.table.admit(req)
	switch {
	case a.refusal != nil:
		resp = newResponse(nil, a.refusal)
	case a.run:
		ctx, stop := s.callContext(req, readAt, fn)
		if stop != nil {
			s.table.running(a.e, stop)
		}
		resp = s.run(ctx, req, readAt, fn, args)
		if stop != nil {
			stop()
		}
		s.table.finish(a.client, req.ID, a.e, resp)
	case a.resp != nil:
		resp = *a.resp // the call has run: its answer again
	default:
		// Another attempt runs the call: its answer is this one's.
		select {
		case <-a.done:
			resp = s.table.answer(a.e)
		case <-c.ctx.Done():
			resp = newResponse(nil, failure(Unavailable, OutcomeUnknown, "the connection closed while the call ran"))
		}
	}
	resp.Epoch = a.epoch
	return resp
}

// lookup reads a request as a call, and finds the function it names: or
// says why the call cannot run, before it runs.
func (s *Server) lookup(req *Request) (*function, []any, *Error) {
	name, args, err := parseCall(req)
	if err != nil {
		return nil, nil, failure(InvalidArgument, NotRun, "%v", err)
	}
	fn, ok := s.funcs.lookup(name)
	if !ok {
		return nil, nil, failure(Unimplemented, NotRun, "no function %s; there are: %s", quoteShort(name),
			strings.Join(slices.Sorted(maps.Keys(s.funcs.table())), ", "))
	}
	if err := fn.check(args); err != nil {
		return nil, nil, failure(InvalidArgument, NotRun, "%s: %v", name, err)
	}
	return fn, args, nil
}

// callContext returns the context a call of fn runs with, if fn takes
// one: its caller's deadline, counted from when its request was read, and
// the call's CallInfo; it ends when the server halts, too. A function
// that takes no context gets none, and no way to stop it: making one
// would cost four allocations a call for nothing.
func (s *Server) callContext(req *Request, readAt time.Time, fn *function) (context.Context, context.CancelFunc) {
	if !fn.ctxIn {
		return nil, nil
	}
	ctx := &infoContext{Context: s.halted, info: CallInfo{Client: req.Client, ID: req.ID, Attempt: req.Attempt}}
	if req.Timeout != 0 {
		return context.WithDeadline(ctx, readAt.Add(time.Duration(req.Timeout)))
	}
	return context.WithCancel(ctx)
}

// infoContext is a context that carries a CallInfo: one allocation, where
// context.WithValue would take two.
type infoContext struct {
	context.Context
	info CallInfo
}

func (c *infoContext) Value(key any) any {
	if key == (callInfoKey{}) {
		return c.info
	}
	return c.Context.Value(key)
}

// run calls fn with ctx and args, unless the caller's deadline has passed
// already, or ctx has ended: then the call is not run.
func (s *Server) run(ctx context.Context, req *Request, readAt time.Time, fn *function, args []any) Response {
	var err error
	switch {
	case ctx != nil:
		err = ctx.Err()
	case req.Timeout != 0 && !time.Now().Before(readAt.Add(time.Duration(req.Timeout))):
		err = context.DeadlineExceeded
	}
	if err != nil {
		code := Canceled
		if errors.Is(err, context.DeadlineExceeded) {
			code = DeadlineExceeded
		}
		return newResponse(nil, failure(code, NotRun, "%s: no time left: its caller's deadline passed before it could start", req.Func))
	}
	res, err := fn.call(ctx, args)
	if err != nil {
		e := &Error{Code: Unknown, Outcome: Ran, Message: req.Func + ": " + err.Error()}
		switch {
		case errors.Is(err, context.Canceled):
			e.Code = Canceled
		case errors.Is(err, context.DeadlineExceeded):
			e.Code = DeadlineExceeded
		}
		return newResponse(nil, e)
	}
	return newResponse(res, nil)
}

// cancel is a cancel frame's: it cancels the context of the call it names,
// if that call is running.
func (s *Server) cancel(c *serverConn, req *Request) {
	if req.Client != 0 {
		s.table.cancel(req.Client, req.ID)
		return
	}
	c.callsMu.Lock()
	stop := c.calls[req.ID]
	c.callsMu.Unlock()
	if stop != nil {
		stop()
	}
}

// running records stop as the way to cancel call id of c, a call run
// without the table; a nil stop forgets it.
func (c *serverConn) running(id uint64, stop context.CancelFunc) {
	c.callsMu.Lock()
	defer c.callsMu.Unlock()
	if stop == nil {
		delete(c.calls, id)
		return
	}
	if c.calls == nil {
		c.calls = map[uint64]context.CancelFunc{}
	}
	c.calls[id] = stop
}

// CallInfo is what a function that takes a context can learn of the call
// it runs, through CallFrom.
type CallInfo struct {
	Client  uint64 // the client's id; 0 for a call run without the table
	ID      uint64 // the call's sequence number
	Attempt uint32 // the attempt that runs it
}

type callInfoKey struct{}

// CallFrom returns the CallInfo of the call whose context ctx is.
func CallFrom(ctx context.Context) (CallInfo, bool) {
	info, ok := ctx.Value(callInfoKey{}).(CallInfo)
	return info, ok
}

// Shutdown may be called at any time, and more than once; each call waits
// as the first does.
//
// Shutdown stops the server. At once, it makes every Serve return
// ErrServerClosed and closes their listeners, and it gives every
// connection closeLinger (500 ms) more to read: a request that arrives by
// then is not run, and is answered with its ID that it did not run
// (Unavailable, NotRun: safe to send elsewhere); what arrives later is not
// read. A call in
// flight runs to its end and is answered. Once Shutdown has begun, a write
// of answers gets closeLinger, so a client that does not read cannot hold
// it. When a connection's answers are written, it is hung up politely
// (closeLinger at most, see hangUp) and closed. Shutdown returns nil when
// every connection is closed.
//
// If ctx ends first, Shutdown closes every connection at once, without
// waiting for the functions still running, and returns ctx's error if a
// call was still running then: it was cut off, its answer is lost, and its
// caller sees the connection close. It returns nil if all that was left
// was connections waiting for a request, or answers their clients did not
// read.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if !s.shuttingDown() {
		close(s.stopped) // under s.mu, so once
	}
	for l := range s.listeners {
		(*l).Close()
	}
	// No connection joins these once stopped is closed: track checks it
	// under s.mu. Each is stopped under its own lock only, so that one
	// that is arming its deadline holds up no other.
	conns := slices.Collect(maps.Keys(s.conns))
	s.mu.Unlock()
	stopAt := time.Now().Add(s.linger)
	for _, c := range conns {
		// A connection blocked reading or writing gets closeLinger more;
		// one in a call finishes it and answers, and then does the same.
		c.stop(stopAt)
	}

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
			c.Close()
		}
		s.mu.Unlock()
		s.halt() // and a reader waiting for budget stops
		if s.running.Load() > 0 {
			return ctx.Err()
		}
		return nil
	}
}
