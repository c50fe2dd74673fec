// Command server runs stage 03's server, offering the demo service's
// sum(a, b), get_time(), echo(s) and add(a, b) in the article's form and in
// the framed form.
//
//	go run ./03-custom-protocol/cmd/server [-addr 127.0.0.1:50051] [-grace 5s] [-max-conns 1024] [-max-request 131072] [-idle 60s]
//
// It prints "listening on HOST:PORT" once it accepts connections. On SIGINT
// or SIGTERM it stops accepting, lets calls in flight finish for up to
// -grace, and exits 0 if every one finished. A call still running when the
// grace ends is cut off: its connection is closed, its caller gets no
// answer, and the server exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	customproto "github.com/rpc-from-scratch/course/03-custom-protocol"
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

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("server", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", "127.0.0.1:50051", "`host:port` to listen on; port 0 picks a free one")
	grace := flags.Duration("grace", 5*time.Second, "how long calls in flight may take to finish after a stop signal; the server exits 0 if every one finished, 1 if one was still running and was cut off")
	maxConns := flags.Int("max-conns", customproto.DefaultMaxConns, "the most `connections` served at once; at the cap a new one takes the place of the one idle the longest")
	maxRequest := flags.Int("max-request", customproto.DefaultMaxMessageBytes, "the largest request, in `bytes`; a larger one closes its connection")
	idle := flags.Duration("idle", customproto.DefaultIdleTimeout, "close a connection that sends no whole request for this long")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *maxConns < 1 || *maxRequest < 1 || *idle <= 0 {
		return errors.New("-max-conns, -max-request and -idle must be positive")
	}

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := customproto.NewDemoServer()
	srv.MaxConns = *maxConns
	srv.MaxRequestBytes = *maxRequest
	srv.IdleTimeout = *idle
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(stdout, "listening on %s\n", l.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "stopping: finishing calls in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("calls still in flight after %v: %w", *grace, err)
	}
	if err := <-served; !errors.Is(err, customproto.ErrServerClosed) {
		return err
	}
	return nil
}
