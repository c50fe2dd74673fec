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
	"time"
)

// Default limits. Each bounds what one connection may cost the server.
const (
	DefaultHeaderTimeout  = 5 * time.Second  // to read a request's line and headers
	DefaultWriteTimeout   = 10 * time.Second // to write an answer to a client that reads slowly
	DefaultIdleTimeout    = 60 * time.Second // a kept-alive connection waiting for its next request
	DefaultMaxHeaderBytes = 8 << 10          // request line and headers together
)

// Server is the server stub of add: it maps GET /add?a=1&b=2 (or GET /?a=1&b=2,
// the article's form) to a call of add(1, 2) and writes the answer as JSON.
//
// The zero value is not ready to use; call NewServer. Change the limits
// before calling Serve, and call Serve once.
type Server struct {
	HeaderTimeout  time.Duration
	WriteTimeout   time.Duration
	IdleTimeout    time.Duration
	MaxHeaderBytes int

	http *http.Server

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
// is called, then returns nil. Each connection is served on its own
// goroutine, so a slow client delays nobody but itself.
func (s *Server) Serve(l net.Listener) error {
	hs := s.http
	hs.Handler = s
	hs.ReadHeaderTimeout = s.HeaderTimeout
	hs.ReadTimeout = s.HeaderTimeout // a GET has no body: the whole request is its headers
	hs.WriteTimeout = s.WriteTimeout
	hs.IdleTimeout = s.IdleTimeout
	hs.MaxHeaderBytes = s.MaxHeaderBytes
	hs.ErrorLog = log.New(io.Discard, "", 0) // a client hanging up is not the server's error

	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, closes idle ones, and waits for the
// calls in flight to finish or for ctx to end, whichever comes first.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}
