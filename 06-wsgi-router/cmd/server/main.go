// Command server runs stage 06's HTTP/1.1 server with the demo
// application: the index page and the files of www/, /time, /user, stage
// 01's /add, and the REST API under /api/v1.0/servers.
//
//	go run ./06-wsgi-router/cmd/server [-addr 127.0.0.1:8080] [-www DIR] [-grace 5s] [-max-conns 1024] [-max-header 16384] [-max-body 65536] [-idle 60s] [-stdlib]
//
// It prints "listening on HOST:PORT" once it accepts connections. On SIGINT
// or SIGTERM it stops accepting, closes the connections that wait for a
// request, lets the requests being answered finish for up to -grace, and
// exits 0. A connection still busy when the grace ends, such as one whose
// client does not read its answer, is closed, and the server exits 1.
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
	"syscall"
	"time"

	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
)

// Seams for the tests: newServer builds the server run serves with our
// code (a test sees the limits run set), and newApp the application (a
// test adds a page to it).
var (
	newServer = wsgirouter.NewServer
	newApp    = func(svc wsgirouter.Service) (wsgirouter.Application, error) { return wsgirouter.NewApp(svc) }
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
	grace := flags.Duration("grace", 5*time.Second, "how long requests being answered may take to finish after a stop signal; connections still busy then are closed, and the server exits 1")
	var lim limits
	flags.IntVar(&lim.maxConns, "max-conns", wsgirouter.DefaultMaxConns, "the most `connections` served at once; more wait to be accepted (not with -stdlib)")
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
		svc.Files = root.FS()
	}
	app, err := newApp(svc)
	if err != nil {
		return err
	}

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
		return fmt.Errorf("connections still busy after %v, closed: %w", *grace, err)
	}
	return <-served
}

// server is what run needs of our Server and of net/http's.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// openFolder opens dir as an os.Root: every file served is opened through
// it, so no name and no link leads out of dir.
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
type stdlibServer struct{ hs *http.Server }

func newStdlibServer(app wsgirouter.Application, lim limits) stdlibServer {
	return stdlibServer{&http.Server{
		Handler:           wsgirouter.Handler(app, lim.maxBody),
		MaxHeaderBytes:    lim.maxHeader,
		ReadHeaderTimeout: wsgirouter.DefaultHeaderTimeout,
		ReadTimeout:       wsgirouter.DefaultReadTimeout,
		WriteTimeout:      wsgirouter.DefaultWriteTimeout,
		IdleTimeout:       lim.idle,
	}}
}

// Serve returns nil once Shutdown has begun, as our Server's does.
func (s stdlibServer) Serve(l net.Listener) error {
	if err := s.hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown closes every connection left when ctx ends, as our Server's
// does; net/http's own Shutdown leaves them open.
func (s stdlibServer) Shutdown(ctx context.Context) error {
	err := s.hs.Shutdown(ctx)
	if err != nil {
		s.hs.Close()
	}
	return err
}
