package httpadd

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
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
type Server struct {
	HeaderTimeout  time.Duration
	WriteTimeout   time.Duration
	IdleTimeout    time.Duration
	MaxHeaderBytes int
	// MaxConns caps the connections open at once, on all listeners
	// together; 0 means no cap. Past it the server accepts nothing until
	// a connection closes: new ones wait in the kernel's accept queue.
	MaxConns int

	http    *http.Server
	setUp   sync.Once     // sets http's limits and makes slots, at the first Serve
	slots   chan struct{} // a token per connection open, if MaxConns caps them
	running atomic.Int64  // calls whose handler has not returned

	// beforeAnswer, when set, runs inside each call before its answer is
	// written. Tests use it to hold a call in flight.
	beforeAnswer func()
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
// goroutine, so a slow client delays nobody but itself.
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
			s.slots = make(chan struct{}, s.MaxConns)
		}
	})
	if s.slots != nil {
		l = newLimitListener(l, s.slots)
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

// limitListener hands net/http a connection only once it has a slot for
// it; the Server's listeners share one set of slots. When all the slots
// are taken, Accept holds the connection it has accepted, unread, until a
// connection closes, and takes no other from the kernel meanwhile: new
// connections wait in the kernel's accept queue (its length is the listen
// backlog, net.core.somaxconn on Linux); once that is full, the kernel
// ignores new attempts and clients retry or time out. It is the standard
// library's idea, written out: golang.org/x/net/netutil has the same as
// LimitListener, which takes the slot first; ours accepts first, so that a
// listener waiting for a connection never holds a slot another listener
// could use.
type limitListener struct {
	net.Listener
	slots     chan struct{} // holds one value per open connection
	closed    chan struct{} // closed by Close: Accept stops waiting for a slot
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, slots chan struct{}) *limitListener {
	return &limitListener{Listener: l, slots: slots, closed: make(chan struct{})}
}

// Accept waits for a connection, then for a free slot.
func (l *limitListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		conn.Close()
		return nil, net.ErrClosed
	}
	return &limitedConn{Conn: conn, release: sync.OnceFunc(func() { <-l.slots })}, nil
}

// Close stops the listener, and wakes an Accept that waits for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitedConn gives its slot back when it is closed, once however many
// times it is closed.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// CloseWrite lets net/http close the sending half first, as it does on a
// TCP connection before hanging up, so the client reads the last answer.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
