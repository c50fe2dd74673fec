package jsontcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Default limits. Together they bound what the server holds: one
// connection holds at most one request of MaxRequestBytes while it reads it,
// plus small fixed buffers, and at most MaxConns connections are served at
// once.
const (
	DefaultMaxConns            = 1024
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

// Server is the server stub: it reads calls from each connection, finds the
// function each one names, calls it, and writes back its answer.
//
// Register may be called at any time. Set the limits before calling Serve,
// and call Serve once. A zero limit means its default, so the zero Server
// is ready to use.
type Server struct {
	MaxConns            int           // connections served at once; more wait in the kernel's accept queue
	MaxRequestBytes     int           // a larger request is refused and closes its connection
	FirstRequestTimeout time.Duration // a new connection that sends no whole request for this long is closed
	IdleTimeout         time.Duration // a connection that sends no whole request for this long is closed
	WriteTimeout        time.Duration // an answer not written in this long closes its connection

	funcs registry

	mu       sync.Mutex // protects listener, conns, closing, stopped
	listener net.Listener
	conns    map[net.Conn]struct{}
	closing  bool           // Shutdown has begun
	stopped  chan struct{}  // closed when Shutdown begins
	wg       sync.WaitGroup // one per connection being served

	// beforeAnswer, when set, runs inside each call before its answer is
	// written. Tests use it to hold a call in flight.
	beforeAnswer func()
	linger       time.Duration // closeLinger, unless a test needs longer
}

// NewServer returns a Server with the default limits and no functions.
func NewServer() *Server {
	return &Server{
		MaxConns:            DefaultMaxConns,
		MaxRequestBytes:     DefaultMaxMessageBytes,
		FirstRequestTimeout: DefaultFirstRequestTimeout,
		IdleTimeout:         DefaultIdleTimeout,
		WriteTimeout:        DefaultWriteTimeout,
	}
}

// Register makes fn callable under name. The strings after fn name its
// parameters in order: "a" for one the caller must give, "c=10" for one with
// a default (in JSON), "*args" for a slice that takes any further positional
// arguments, "**kwargs" for a map[string]T that takes any further keyword
// arguments. fn returns one result, or a result and an error:
//
//	s.Register("add", add, "a", "b", "c=10") // func add(a, b, c int) (int, error)
func (s *Server) Register(name string, fn any, params ...string) error {
	return s.funcs.register(name, fn, params...)
}

// Methods returns the names of the registered functions, sorted: the list a
// call that names none of them is given. It may be called at any time.
func (s *Server) Methods() []string {
	return s.funcs.names()
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

// serveConn answers the calls on one connection, in order, until the client
// closes it, a limit is broken, or the server shuts down.
func (s *Server) serveConn(conn net.Conn) {
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		s.wg.Done()
	}()
	frames := newFrameReader(conn, s.MaxRequestBytes)
	var out bytes.Buffer
	wait := s.FirstRequestTimeout
	for {
		if !s.waitForRequest(conn, wait) {
			return
		}
		wait = s.IdleTimeout
		msg, err := frames.next()
		if err != nil {
			// After these the stream cannot be trusted: say why, if the
			// client is still listening, and hang up.
			if errors.Is(err, errTooLarge) || errors.Is(err, errMalformed) {
				s.answer(conn, &out, nil, fmt.Errorf("%v; closing the connection", err))
				s.hangUp(conn, s.WriteTimeout)
			}
			return
		}
		if s.isClosing() {
			// Shutdown began while this request was on its way: say
			// that it did not run, and hang up.
			if s.answer(conn, &out, nil, errStopping) {
				s.hangUp(conn, s.linger)
			}
			return
		}
		res, callErr := s.handle(msg)
		if s.beforeAnswer != nil {
			s.beforeAnswer()
		}
		if !s.answer(conn, &out, res, callErr) {
			return
		}
	}
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

// answer writes the answer to a call that returned res, or failed with
// callErr. An answer buffer that grew for a large answer goes back to
// largeBuffers once written, so an idle connection holds only a small one.
func (s *Server) answer(conn net.Conn, out *bytes.Buffer, res any, callErr error) bool {
	out.Reset()
	writeResponse(out, res, callErr)
	ok := s.write(conn, out.Bytes())
	if putLarge(out.Bytes()) {
		*out = bytes.Buffer{}
	}
	return ok
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

// handle decodes one request and calls the function it names.
func (s *Server) handle(msg []byte) (any, error) {
	req, err := decodeRequest(msg)
	if err != nil {
		return nil, err
	}
	f, ok := s.funcs.lookup(req.MethodName)
	if !ok {
		return nil, fmt.Errorf("no method %s; there are: %s", quoteName(req.MethodName),
			strings.Join(s.funcs.names(), ", "))
	}
	res, err := f.call(req.MethodArgs, req.MethodKwargs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.MethodName, err)
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
