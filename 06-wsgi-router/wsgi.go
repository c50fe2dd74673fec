package wsgirouter

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// Application answers one request. It is WSGI's application callable,
// typed: the server calls it with what it read (env) and a way to start
// the answer (start), and writes the body it returns. An Application knows
// nothing of sockets, so the same one runs behind our Server and, through
// Handler, behind net/http's.
//
// The server calls ServeWSGI from one goroutine per connection, so an
// Application must be safe for use by many goroutines at once.
type Application interface {
	ServeWSGI(env *Environ, start StartResponse) []byte
}

// AppFunc lets an ordinary function be an Application.
type AppFunc func(env *Environ, start StartResponse) []byte

// ServeWSGI calls f(env, start).
func (f AppFunc) ServeWSGI(env *Environ, start StartResponse) []byte { return f(env, start) }

// StartResponse starts the answer: its status and header fields. The
// server writes Date, Content-Length and Connection itself, and a
// Content-Type of text/plain if the application gives none.
//
// It may be called once per request, as in WSGI: a second call returns
// ErrStarted and changes nothing. It returns an error, and starts nothing,
// for a status outside 200 to 999, a field the server owns, or a field
// that is not a valid name or holds a control character. An application
// that returns without a successful start gets a 500 answer.
type StartResponse func(status int, header Header) error

// ErrStarted is what StartResponse returns when the answer has started
// already.
var ErrStarted = errors.New("the response has started already: start may be called once")

// Environ is what the server tells an application about one request:
// WSGI's environ dictionary, as a struct.
//
// An Environ, and every slice in it, belongs to the server and is valid
// only until the application returns: the server reuses them for the next
// request on the connection. Copy what you keep.
type Environ struct {
	Method     string // "GET"
	Target     string // the request target as sent: "/add?a=1&b=2"
	RawPath    string // the path as sent, not decoded: "/a%2Fb" (a Router matches its segments)
	Path       string // the path, percent-decoded: "/a/b"
	Query      string // the query string, not decoded: "a=1&b=2"
	Proto      string // "HTTP/1.1" or "HTTP/1.0"
	Header     Header // the header fields, in the order they came
	Body       []byte // the body, after chunked decoding; empty if none
	RemoteAddr string // the client's "host:port"
	Params     []Param
}

// Param is one parameter of a route, such as name in
// /api/v1.0/servers/{name}, with the value the path gave it.
type Param struct {
	Name, Value string
}

// Param returns the value of the route parameter name, or "" if the route
// has none by that name.
func (e *Environ) Param(name string) string {
	for _, p := range e.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// Field is one header field.
type Field struct {
	Name, Value string
}

// Header is a list of header fields, in order. Names compare without
// regard to case, as HTTP says.
type Header []Field

// Get returns the value of the first field named name, or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// count returns how many fields are named name.
func (h Header) count(name string) int {
	n := 0
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			n++
		}
	}
	return n
}

// response records what an application passed to start. Our Server keeps
// one per connection; Handler makes one per request.
type response struct {
	started bool
	status  int
	header  Header
}

// start is the StartResponse of r.
func (r *response) start(status int, header Header) error {
	if r.started {
		return ErrStarted
	}
	if err := checkResponseFields(status, header); err != nil {
		return err
	}
	r.started, r.status = true, status
	r.header = append(r.header[:0], header...)
	return nil
}

// Handler runs app behind net/http's server: http.Handler is Go's WSGI,
// and this is the adapter between the two. It reads each request's body
// whole before it calls app, and answers 413 to one over maxBodyBytes, as
// our Server does. The Environ it gives app has the header fields sorted by
// name, in net/http's canonical case (net/http keeps them in a map), and
// Host among them. An application that starts no answer gets a 500. Like
// app, the handler is safe for use by many goroutines at once.
func Handler(app Application, maxBodyBytes int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(maxBodyBytes)))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		env := &Environ{
			Method:     r.Method,
			Target:     r.RequestURI,
			RawPath:    cmp.Or(r.URL.EscapedPath(), "/"), // "" for an absolute target with no path
			Path:       cmp.Or(r.URL.Path, "/"),
			Query:      r.URL.RawQuery,
			Proto:      r.Proto,
			Body:       body,
			RemoteAddr: r.RemoteAddr,
		}
		// net/http keeps fields in a map; sort them, so an application
		// sees the same order every time.
		for _, name := range slices.Sorted(maps.Keys(r.Header)) {
			for _, v := range r.Header[name] {
				env.Header = append(env.Header, Field{name, v})
			}
		}
		if r.Host != "" {
			// net/http takes Host out of the fields; put it back.
			env.Header = append(env.Header, Field{"Host", r.Host})
		}
		var resp response
		out := app.ServeWSGI(env, resp.start)
		if !resp.started {
			http.Error(w, "the application did not start a response", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		for _, f := range resp.header {
			h.Add(f.Name, f.Value)
		}
		if resp.header.count("Content-Type") == 0 {
			h.Set("Content-Type", defaultContentType)
		}
		if r.Method != http.MethodHead || len(out) > 0 {
			// For a HEAD, a length is the length a GET would get: with
			// no body to measure, say none rather than a false 0, as
			// net/http's own handlers do (RFC 9110, 9.3.2).
			h.Set("Content-Length", fmt.Sprint(len(out)))
		}
		w.WriteHeader(resp.status)
		_, _ = w.Write(out) // net/http drops it for HEAD, as our server does
	})
}
