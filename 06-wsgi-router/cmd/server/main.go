// Command server runs stage 06's HTTP/1.1 server with the demo
// application: the index page and the files of www/, /time, /user, stage
// 01's /add, and the REST API under /api/v1.0/servers.
//
//	go run ./06-wsgi-router/cmd/server [-addr 127.0.0.1:8080] [-www DIR] [-grace 5s] [-max-conns 1024] [-max-header 16384] [-max-body 65536] [-idle 60s] [-stdlib]
//
// It prints "listening on HOST:PORT" once it accepts connections. On SIGINT
// or SIGTERM it stops accepting and closes the connections that wait for a
// request. Every other connection gets 500 ms to finish what it reads or
// writes: a request on its way must arrive, and an answer be taken by its
// client, within that. An application still running may finish for up to
// -grace. The exit status says whether every one did: 0 if so, even when a
// client that did not read lost its answer, and 1 if the grace ended with
// an application still running, whose request was cut off.
//
// With -www DIR it serves the files of DIR, read from disk through os.Root,
// instead of the www/ folder built into the binary. With -stdlib it serves
// the same application behind net/http's server, through
// wsgirouter.Handler, so that a load tool such as wrk can compare the two.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
)

// Seams for the tests: newServer builds the server run serves with our
// code (a test sees the limits run set), and newApp the application (a
// test adds a page to it).
var (
	newServer = wsgirouter.NewServer
	newApp    = func(svc wsgirouter.Service) wsgirouter.Application { return wsgirouter.NewApp(svc) }
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h printed the usage
		}
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// limits are the flags that bound what a client can make the server hold.
type limits struct {
	maxConns, maxHeader, maxBody int
	idle                         time.Duration
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("server", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", "127.0.0.1:8080", "`host:port` to listen on; port 0 picks a free one")
	www := flags.String("www", "", "serve the files of `DIR`, from disk, instead of the www/ folder built into the binary; nothing outside DIR is served, not even through a link")
	grace := flags.Duration("grace", 5*time.Second, "how long requests being answered may take to finish after a stop signal; the server exits 0 if every one finished, 1 if one was still running and was cut off")
	var lim limits
	flags.IntVar(&lim.maxConns, "max-conns", wsgirouter.DefaultMaxConns, "the most `connections` served at once; at the cap a new one takes the place of an idle one (not with -stdlib)")
	flags.IntVar(&lim.maxHeader, "max-header", wsgirouter.DefaultMaxHeaderBytes, "the largest request head, request line and header fields, in `bytes`; a larger one is answered 431")
	flags.IntVar(&lim.maxBody, "max-body", wsgirouter.DefaultMaxBodyBytes, "the largest request body, in `bytes`; a larger one is answered 413")
	flags.DurationVar(&lim.idle, "idle", wsgirouter.DefaultIdleTimeout, "close a kept-alive connection that sends no request for this long")
	stdlib := flags.Bool("stdlib", false, "serve the same application behind net/http's server (through wsgirouter.Handler) instead of ours, to compare the two with a load tool such as wrk")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if lim.maxConns < 1 || lim.maxHeader < 1 || lim.maxBody < 1 || lim.idle <= 0 {
		return errors.New("-max-conns, -max-header, -max-body and -idle must be positive")
	}

	svc := wsgirouter.Service{}
	if *www != "" {
		root, err := openFolder(*www)
		if err != nil {
			return err
		}
		defer root.Close()
		svc.Files = wsgirouter.RootFS(root)
	}
	app := newApp(svc)

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var srv server
	if *stdlib {
		srv = newStdlibServer(app, lim)
	} else {
		s := newServer(app)
		s.MaxConns = lim.maxConns
		s.MaxHeaderBytes = lim.maxHeader
		s.MaxBodyBytes = lim.maxBody
		s.IdleTimeout = lim.idle
		srv = s
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(stdout, "listening on %s\n", l.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "stopping: finishing requests being answered")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		<-served
		return fmt.Errorf("requests still running after %v, cut off: %w", *grace, err)
	}
	if err := <-served; !errors.Is(err, wsgirouter.ErrServerClosed) {
		return err
	}
	return nil
}

// server is what run needs of our Server and of net/http's.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// openFolder opens dir as an os.Root: every file served is opened through
// it (with wsgirouter.RootFS), so no name and no link leads out of dir.
func openFolder(dir string) (*os.Root, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("-www: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("-www %s: not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("-www: %w", err)
	}
	return root, nil
}

// stdlibServer is net/http's server with the same application and the
// same limits, as far as net/http has them: it has no bound on the
// connections served at once.
type stdlibServer struct {
	hs      *http.Server
	closing atomic.Bool // Shutdown has begun

	mu    sync.Mutex          // protects conns
	conns map[string]net.Conn // by the client's address, as Environ.RemoteAddr has it
}

func newStdlibServer(app wsgirouter.Application, lim limits) *stdlibServer {
	s := &stdlibServer{conns: map[string]net.Conn{}}
	// An answer made once Shutdown has begun gets stdlibLinger to be
	// written, as our Server's do. Shutdown stores closing, then moves
	// every connection's deadlines; this looks at closing once the
	// application has returned. Whatever the order, the answer has
	// stdlibLinger from the later of the two.
	lingering := wsgirouter.AppFunc(func(env *wsgirouter.Environ, start wsgirouter.StartResponse) []byte {
		out := app.ServeWSGI(env, start)
		if s.closing.Load() {
			s.mu.Lock()
			c := s.conns[env.RemoteAddr]
			s.mu.Unlock()
			if c != nil {
				_ = c.SetWriteDeadline(time.Now().Add(stdlibLinger))
			}
		}
		return out
	})
	s.hs = &http.Server{
		Handler:           wsgirouter.Handler(lingering, lim.maxBody),
		MaxHeaderBytes:    lim.maxHeader,
		ReadHeaderTimeout: wsgirouter.DefaultHeaderTimeout,
		ReadTimeout:       wsgirouter.DefaultReadTimeout,
		WriteTimeout:      wsgirouter.DefaultWriteTimeout,
		IdleTimeout:       lim.idle,
		ConnState:         s.track,
	}
	return s
}

// track keeps the connections net/http serves, for Shutdown.
func (s *stdlibServer) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c.RemoteAddr().String()] = c
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c.RemoteAddr().String())
	}
}

// Serve returns wsgirouter.ErrServerClosed once Shutdown has begun, as
// our Server's does.
func (s *stdlibServer) Serve(l net.Listener) error {
	if err := s.hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return wsgirouter.ErrServerClosed
}

// Shutdown does what our Server's does, as far as net/http lets it: each
// connection gets stdlibLinger to finish what it reads or writes, so only
// an application still running holds Shutdown longer, and every
// connection left when ctx ends is closed. net/http's own Shutdown waits
// for a client that does not read until WriteTimeout, and leaves
// connections open when ctx ends.
func (s *stdlibServer) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	linger := time.Now().Add(stdlibLinger)
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.SetDeadline(linger)
	}
	s.mu.Unlock()
	err := s.hs.Shutdown(ctx)
	if err != nil {
		s.hs.Close()
	}
	return err
}

// stdlibLinger is what our Server gives each connection once Shutdown
// has begun (its closeLinger).
const stdlibLinger = 500 * time.Millisecond
