package customproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Default limits. Each bounds what one connection may cost the server.
const (
	DefaultIdleTimeout  = 60 * time.Second // to receive the whole of the next request
	DefaultWriteTimeout = 10 * time.Second // to write an answer to a client that reads slowly
)

// Server is the server stub: it reads calls from each connection, in the
// form the connection chose, finds the method each one names in the route
// table, calls it, and writes back its answer.
//
// Register the services, then call Serve. Change the limits before calling
// Serve, and call Serve once.
type Server struct {
	MaxRequestBytes int           // a larger request closes its connection
	IdleTimeout     time.Duration // a connection that sends no whole request for this long is closed
	WriteTimeout    time.Duration

	funcs registry // the route table: filled by Register before Serve; read-only after

	mu       sync.Mutex // protects listener, conns, closing
	listener net.Listener
	conns    map[net.Conn]struct{}
	closing  bool
	wg       sync.WaitGroup // one per connection being served

	// beforeAnswer, when set, runs inside each call before its answer is
	// written. Tests use it to hold a call in flight.
	beforeAnswer func()
}

// NewServer returns a Server with the default limits and an empty route
// table.
func NewServer() *Server {
	return &Server{
		MaxRequestBytes: DefaultMaxMessageBytes,
		IdleTimeout:     DefaultIdleTimeout,
		WriteTimeout:    DefaultWriteTimeout,
		funcs:           registry{},
		conns:           map[net.Conn]struct{}{},
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
// Shutdown is called; then it returns nil.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listener = l
	s.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
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
		go s.serveConn(conn)
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
	r := bufio.NewReaderSize(conn, readBufferBytes)
	if !s.waitForRequest(conn) {
		return
	}
	form, err := detectForm(r, s.MaxRequestBytes)
	if err != nil {
		return // closed, or silent for too long, before its first byte
	}
	var out []byte
	for {
		msg, err := form.next()
		if err != nil {
			// After these the stream cannot be trusted: say why, if the
			// client is still listening, and hang up.
			if errors.Is(err, errTooLarge) || errors.Is(err, errMalformed) {
				out = form.appendAnswer(out[:0], nil, fmt.Errorf("%v; closing the connection", err))
				s.write(conn, out)
			}
			return
		}
		res, callErr := s.handle(form, msg)
		if s.beforeAnswer != nil {
			s.beforeAnswer()
		}
		out = form.appendAnswer(out[:0], res, callErr)
		if !s.write(conn, out) || !s.waitForRequest(conn) {
			return
		}
	}
}

// waitForRequest arms the idle timeout for the next request, unless the
// server is shutting down. Shutdown holds the same lock when it cuts the
// deadline short, so a connection cannot miss it.
func (s *Server) waitForRequest(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	return conn.SetReadDeadline(time.Now().Add(s.IdleTimeout)) == nil
}

func (s *Server) write(conn net.Conn, p []byte) bool {
	if conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout)) != nil {
		return false
	}
	_, err := conn.Write(p)
	return err == nil
}

// handle parses one request and calls the function it names.
func (s *Server) handle(f form, msg []byte) (any, error) {
	name, args, err := f.parse(msg)
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

// Shutdown stops accepting connections, closes those waiting for a request,
// and waits for the calls in flight to be answered. If ctx ends first, it
// closes every connection and returns ctx's error at once, without waiting
// for functions that are still running.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	if s.listener != nil {
		s.listener.Close()
	}
	for conn := range s.conns {
		// A connection blocked reading wakes up and sees closing; one in
		// a call finishes it, answers, and then sees closing.
		_ = conn.SetReadDeadline(time.Now())
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
