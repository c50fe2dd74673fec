package asyncrpc

import (
	"context"
	"errors"
	"fmt"
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
)

// Default limits. Together they bound what the server holds: one
// connection holds at most one request of MaxRequestBytes while it reads it,
// MaxInFlight calls running and MaxInFlight answers waiting to be written,
// plus small fixed buffers; and at most MaxConns connections are served at
// once.
const (
	DefaultMaxConns            = 1024
	DefaultMaxInFlight         = 64               // calls running at once on one connection
	DefaultFirstRequestTimeout = 5 * time.Second  // for a new connection to send its first whole request
	DefaultIdleTimeout         = 60 * time.Second // to receive the whole of each later request
	DefaultWriteTimeout        = 10 * time.Second // to write an answer to a client that reads slowly
)

// closeLinger is how long the server keeps a connection it is closing
// open: after Shutdown, to answer requests that were already on their way,
// and after refusing a stream, to let the client's unread bytes arrive.
// Closing a socket with unread input sends a reset, and a reset can destroy
// the answer the client has not read yet.
const closeLinger = 500 * time.Millisecond

// errStopping answers a request that arrives after Shutdown began: the
// caller learns that its call did not run, and may make it elsewhere.
var errStopping = errors.New("the server is shutting down; the call did not run")

// Server is the server stub: it reads calls from each connection, finds
// the method each one names in the route table, calls it on a goroutine of
// its own, and writes back its answer, with the call's id, as soon as it
// is ready. Answers come back in the order the calls finish.
//
// Register may be called at any time. Set the limits before calling Serve,
// and call Serve once. A zero limit means its default, so the zero Server
// is ready to use.
type Server struct {
	MaxConns            int           // connections served at once; more wait in the kernel's accept queue
	MaxInFlight         int           // calls running at once on one connection; at the bound, the server stops reading it
	MaxRequestBytes     int           // a larger request is refused and closes its connection
	FirstRequestTimeout time.Duration // a new connection that sends no whole request for this long is closed
	IdleTimeout         time.Duration // a connection that sends no whole request for this long is closed
	WriteTimeout        time.Duration // an answer not written in this long closes its connection

	funcs registry // the route table; it has a lock of its own

	mu       sync.Mutex // protects listener, conns, closing, stopped
	listener net.Listener
	conns    map[net.Conn]struct{}
	closing  bool           // Shutdown has begun
	stopped  chan struct{}  // closed when Shutdown begins
	wg       sync.WaitGroup // one per connection being served

	// beforeAnswer, when set, runs inside each call before its answer is
	// queued; answerWritten, after the writer has written an answer. Tests
	// use them to hold a call in flight, and to make answers cross.
	beforeAnswer  func(req *Request)
	answerWritten func(id uint64)
	linger        time.Duration // closeLinger, unless a test needs longer
}

// NewServer returns a Server with the default limits and an empty route
// table.
func NewServer() *Server {
	return &Server{
		MaxConns:            DefaultMaxConns,
		MaxInFlight:         DefaultMaxInFlight,
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

// Serve accepts connections on l and serves each on its own goroutine until
// Shutdown is called; then it returns nil. With MaxConns connections open,
// it stops accepting until one of them closes: new ones wait in the kernel's
// accept queue.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listener = l
	stopped := s.stopped
	s.mu.Unlock()
	slots := make(chan struct{}, s.MaxConns) // one token per connection served
	var backoff time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-stopped:
			return nil
		}
		conn, err := l.Accept()
		if err != nil {
			<-slots
			if s.isClosing() {
				return nil
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
		if !s.track(conn) {
			conn.Close()
			return nil
		}
		go func() {
			defer func() { <-slots }()
			s.serveConn(conn)
		}()
	}
}

// setDefaults gives every zero limit its default. It writes only the
// limits that are zero, so that reading a limit that was set is never a
// race. s.mu is held.
func (s *Server) setDefaults() {
	setZero(&s.MaxConns, DefaultMaxConns)
	setZero(&s.MaxInFlight, DefaultMaxInFlight)
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

// init makes what a zero Server lacks. s.mu is held.
func (s *Server) init() {
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
		s.stopped = make(chan struct{})
	}
}

// passing reports whether an Accept error may go away by itself.
func passing(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || (errors.As(err, &ne) && ne.Timeout())
}

// track records conn as served, unless the server is shutting down.
func (s *Server) track(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// serveConn serves one connection until the client closes it, a limit is
// broken, or the server shuts down. Its goroutine reads the requests; each
// call runs on a goroutine of its own, at most MaxInFlight at once; and one
// writer goroutine writes the answers (see connWriter).
//
// At MaxInFlight calls, the reader waits for one to finish before it reads
// the next request: the client's requests wait in the socket, then the
// client's own writes block. That is backpressure: a client that sends
// calls faster than they finish, or never reads its answers, is slowed
// down instead of making the server hold more.
func (s *Server) serveConn(conn net.Conn) {
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		s.wg.Done()
	}()
	answers := s.newConnWriter(conn)
	var calls errgroup.Group
	calls.SetLimit(s.MaxInFlight)
	refused := s.readRequests(conn, answers, &calls)
	_ = calls.Wait() // the calls in flight finish, and queue their answers
	if answers.close() && refused {
		s.hangUp(conn, s.WriteTimeout)
	}
}

// readRequests reads requests from conn and starts a call for each, until
// the stream ends or fails. It reports whether it refused the stream, with
// an answer saying why.
func (s *Server) readRequests(conn net.Conn, answers *connWriter, calls *errgroup.Group) (refused bool) {
	requests := newDecoder(conn, s.MaxRequestBytes)
	wait := s.FirstRequestTimeout
	for {
		if !s.waitForRequest(conn, wait) {
			return false
		}
		var req Request
		if err := requests.decode(&req); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded) && requests.waiting() &&
				answers.busy() && !s.isClosing():
				// Not idle: the client waits for answers. Wait again.
				continue
			case errors.Is(err, errTooLarge) || errors.Is(err, errMalformed):
				// After these the stream cannot be trusted: say why,
				// if the client is still listening, and hang up. The
				// answer carries the call's id if the frame got that far.
				answers.refuse(req.ID, fmt.Errorf("%v; closing the connection", err))
				return true
			}
			return false
		}
		wait = s.IdleTimeout
		if s.isClosing() {
			// Shutdown began while this request was on its way: say
			// that it did not run. The reader goes on until the
			// deadline Shutdown set, answering each the same way.
			answers.refuse(req.ID, errStopping)
			continue
		}
		answers.started()
		// Go waits while MaxInFlight calls are running: backpressure.
		calls.Go(func() error {
			res, err := s.handle(&req)
			if s.beforeAnswer != nil {
				s.beforeAnswer(&req)
			}
			answers.send(req.ID, res, err)
			return nil
		})
	}
}

// connWriter writes the answers of one connection, from one goroutine.
// Calls hand it their answers through a queue; it encodes every answer
// waiting and writes them all at once when the queue is empty, so under
// load many answers share one write, and one system call. (Before it
// looks at the queue, it yields once to the calls that are ready to run:
// with 64 calls in flight, that makes its writes about fifteen times
// fewer.)
//
// The queue holds at most MaxInFlight answers. When the client does not
// read, the writer blocks, then the calls that finish block handing their
// answers over, then the reader stops reading, at MaxInFlight calls: what
// the connection holds stays bounded.
type connWriter struct {
	srv    *Server
	conn   net.Conn
	queue  chan Response
	failed chan struct{} // closed when a write fails: answers are dropped from then on
	done   chan struct{} // closed when the writer goroutine returns
	// unanswered counts the calls started, and refusals queued, whose
	// answers are not written yet.
	unanswered atomic.Int64
}

// newConnWriter starts the writer goroutine of conn.
func (s *Server) newConnWriter(conn net.Conn) *connWriter {
	w := &connWriter{
		srv:    s,
		conn:   conn,
		queue:  make(chan Response, s.MaxInFlight),
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
func (w *connWriter) refuse(id uint64, err error) {
	w.started()
	w.send(id, nil, err)
}

// send queues the answer to the call id, which returned res or failed with
// callErr. It blocks while the queue is full, unless writing has failed.
func (w *connWriter) send(id uint64, res any, callErr error) {
	resp := newResponse(res, callErr)
	resp.ID = id
	select {
	case w.queue <- resp:
	case <-w.failed:
	}
}

// close lets the writer write what is queued, and waits for it. It
// reports whether every answer was written. Call it once no call can send.
func (w *connWriter) close() bool {
	close(w.queue)
	<-w.done
	select {
	case <-w.failed:
		return false
	default:
		return true
	}
}

// run writes answers until the queue is closed. After a failed write it
// closes the connection, which ends the reader, and drops what is queued.
func (w *connWriter) run() {
	defer close(w.done)
	answers := newEncoder()
	var ids []uint64  // of the answers in frames, for answerWritten
	var resp Response // reused: encode takes an any, which would put each one on the heap
	for resp = range w.queue {
		frames, err := answers.encode(&resp)
		ids = append(ids, resp.ID)
		// Let the calls that are about to finish run first, so that
		// their answers join this write, then take the answers waiting,
		// up to a batch: answers that keep coming cannot grow one write
		// without end.
		runtime.Gosched()
		for waiting := true; waiting && err == nil && fits(len(ids), len(frames), cap(w.queue)); {
			select {
			case next, ok := <-w.queue:
				if ok {
					resp = next
					frames, err = answers.encode(&resp)
					ids = append(ids, resp.ID)
				}
				waiting = ok
			default:
				waiting = false
			}
		}
		if err == nil && !w.srv.write(w.conn, frames) {
			err = net.ErrClosed
		}
		answers.release()
		resp = Response{} // an idle connection keeps no answer
		if err != nil {
			close(w.failed)
			w.conn.Close()
			for range w.queue {
			}
			return
		}
		w.unanswered.Add(-int64(len(ids)))
		if w.srv.answerWritten != nil {
			for _, id := range ids {
				w.srv.answerWritten(id)
			}
		}
		ids = ids[:0]
	}
}

// fits reports whether a write that holds n messages in size bytes may
// take one more: at most max messages, and no more once it reaches
// maxKeptBuffer bytes, the most a connection keeps between messages. (One
// message may be larger alone.)
func fits(n, size, max int) bool {
	return n < max && size < maxKeptBuffer
}

// waitForRequest arms the read deadline for the next request: wait from
// now, or, once Shutdown has begun, closeLinger from Shutdown's start, to
// answer what was already on its way. Shutdown holds the same lock when it
// moves the deadline, so a connection cannot miss it.
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
// Shutdown holds the same lock when it moves the deadline.
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

// hangUp closes conn politely after an answer that refused its stream,
// or refused a call because the server is shutting down. Closing a socket
// that still has unread input makes the kernel send a reset, which can
// destroy the answer before the client reads it. So it first says it is
// done writing, then reads and drops what the client is still sending, and
// only then lets the caller close. It stops when the client has been silent
// for closeLinger, after within in all (closeLinger once Shutdown has
// begun), or after maxDrainBytes.
func (s *Server) hangUp(conn net.Conn, within time.Duration) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	giveUp := time.Now().Add(within)
	buf := make([]byte, 32<<10)
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

// Shutdown stops accepting connections and lets each connection finish
// what it has, then closes it: a call in flight is answered, and a request
// that arrives within closeLinger is answered with an error saying that it
// did not run. Once Shutdown has begun, an answer gets closeLinger to be
// written, so a client that does not read cannot hold it. If ctx ends
// first, Shutdown closes every connection and returns ctx's error at once,
// without waiting for functions that are still running.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.setDefaults()
	s.init()
	if !s.closing {
		s.closing = true
		close(s.stopped)
	}
	if s.listener != nil {
		s.listener.Close()
	}
	linger := time.Now().Add(s.linger)
	for conn := range s.conns {
		// A connection blocked reading or writing gets closeLinger more;
		// one in a call finishes it and answers, and then does the same.
		_ = conn.SetReadDeadline(linger)
		_ = conn.SetWriteDeadline(linger)
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
		for conn := range s.conns {
			conn.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}
