// Command server runs stage 07's server, offering the demo service's
// sum(a, b), get_time(), echo(s), add(a, b), slow(ms), incr(key), get(key)
// and ran_twice() over gob, in frames, with many calls in flight on each
// connection, each run at most once however often its client sends it.
//
//	go run ./07-at-most-once/cmd/server [-addr 127.0.0.1:50051] [-grace 12s] [-max-conns 1024] [-max-in-flight 64] [-max-request 131072] [-max-held 67108864] [-idle 60s] [-max-table 67108864] [-max-calls-per-client 1024]
//
// It prints "listening on HOST:PORT" once it accepts connections. On SIGINT
// or SIGTERM it stops accepting, lets calls in flight finish for up to
// -grace, and exits 0 if every one finished. The default grace outlasts
// the slowest slow(ms). A call still running when the grace ends is cut
// off: its connection is closed, its caller gets no answer, and the server
// exits 1.
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

	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
)

// defaultGrace lets the slowest call the demo service takes, slow(MaxSlow),
// finish after a stop signal, with time to spare for writing its answer.
const defaultGrace = atmostonce.MaxSlow*time.Millisecond + 2*time.Second

// newDemoServer builds the server run serves. Tests replace it, to give
// the service a clock of their own or to see the limits run set.
var newDemoServer = func() *atmostonce.Server { return atmostonce.NewDemoServer(atmostonce.Service{}) }

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
	grace := flags.Duration("grace", defaultGrace, "how long calls in flight may take to finish after a stop signal; the server exits 0 if every one finished, 1 if one was still running and was cut off")
	maxConns := flags.Int("max-conns", atmostonce.DefaultMaxConns, "the most `connections` served at once; at the cap a new one takes the place of an idle one")
	maxInFlight := flags.Int("max-in-flight", atmostonce.DefaultMaxInFlight, "the most `calls` running at once on one connection; at the bound the server stops reading it")
	maxRequest := flags.Int("max-request", atmostonce.DefaultMaxMessageBytes, "the largest request, in `bytes`; a larger one is refused: the first on a connection closes it, a later one is answered by its id and dropped")
	maxHeld := flags.Int("max-held", atmostonce.DefaultMaxRequestBytesHeld, "the request `bytes` all connections together hold, from a request's length to its answer's write; at the bound the server stops reading")
	idle := flags.Duration("idle", atmostonce.DefaultIdleTimeout, "close a connection that sends no whole request for this long")
	maxTable := flags.Int64("max-table", atmostonce.DefaultMaxTableBytes, "the `bytes` the table of calls run holds, every client together; at the bound it forgets the clients idle the longest, and refuses (aborted) a call of theirs sent again, rather than run it twice")
	maxPerClient := flags.Int("max-calls-per-client", atmostonce.DefaultMaxCallsPerClient, "how many `calls` of one client, from the lowest it still waits for, the table keeps; a call beyond is refused; set it at least as large as the clients' WithMaxPending (1024 by default)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *maxConns < 1 || *maxInFlight < 1 || *maxRequest < 1 || *maxHeld < 1 || *idle <= 0 || *maxTable < 1 || *maxPerClient < 1 {
		return errors.New("-max-conns, -max-in-flight, -max-request, -max-held, -idle, -max-table and -max-calls-per-client must be positive")
	}

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := newDemoServer()
	srv.MaxConns = *maxConns
	srv.MaxInFlight = *maxInFlight
	srv.MaxRequestBytes = *maxRequest
	srv.MaxRequestBytesHeld = *maxHeld
	srv.IdleTimeout = *idle
	srv.MaxTableBytes = *maxTable
	srv.MaxCallsPerClient = *maxPerClient
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
	if err := <-served; !errors.Is(err, atmostonce.ErrServerClosed) {
		return err
	}
	return nil // stopped, as asked
}
