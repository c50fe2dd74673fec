// Command server runs stage 01's add server.
//
//	go run ./01-http-add/cmd/server [-addr 127.0.0.1:8003] [-grace 5s]
//
// It prints "listening on HOST:PORT" once it accepts connections. On SIGINT
// or SIGTERM it stops accepting, lets calls in flight finish for up to
// -grace, and exits 0 if every one finished. At the end of the grace it
// closes every connection still open, such as one whose client stopped
// reading its answers; a call still running then is cut off, its caller
// gets no answer, and the server exits 1.
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

	httpadd "github.com/rpc-from-scratch/course/01-http-add"
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
	addr := flags.String("addr", "127.0.0.1:8003", "`host:port` to listen on; port 0 picks a free one")
	grace := flags.Duration("grace", 5*time.Second, "how long calls in flight may take to finish after a stop signal; the server exits 0 if every one finished, 1 if one was still running and was cut off")
	if err := flags.Parse(args); err != nil {
		return err
	}

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := httpadd.NewServer()
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
	if err := <-served; !errors.Is(err, httpadd.ErrServerClosed) {
		return err
	}
	return nil
}
