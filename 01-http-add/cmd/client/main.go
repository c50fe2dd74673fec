// Command client runs stage 01's demo calls, or a load test.
//
//	go run ./01-http-add/cmd/client [-addr HOST:PORT] [-trace]
//	go run ./01-http-add/cmd/client [-addr HOST:PORT] -calls N [-concurrency C]
//
// Without -addr it starts an add server in this process on a free loopback
// port, so the demo needs no second terminal. With -trace it prints every
// byte that crosses the connection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"time"

	httpadd "github.com/rpc-from-scratch/course/01-http-add"
	"github.com/rpc-from-scratch/course/internal/loadgen"
	"github.com/rpc-from-scratch/course/internal/wiretap"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h printed the usage
		}
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("client", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", "", "`host:port` of a running server; empty starts one in this process")
	trace := flags.Bool("trace", false, "print the bytes that cross the connection")
	calls := flags.Int("calls", 0, "load mode: make `N` add calls and check every result")
	concurrency := flags.Int("concurrency", 8, "load mode: how many callers at once")
	timeout := flags.Duration("timeout", 10*time.Second, "deadline for each call")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if *calls < 0 {
		return fmt.Errorf("-calls must not be negative, not %d", *calls)
	}

	if *addr == "" {
		stop, err := startServer(addr)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(stderr, "(no -addr: serving on %s in this process)\n", *addr)
	}

	var opts []httpadd.Option
	var tap *wiretap.Tap
	if *trace {
		tap = wiretap.New(stdout)
		opts = append(opts, httpadd.WithTap(tap))
	}
	c := httpadd.NewClient(*addr, opts...)
	defer c.Close()

	if *calls > 0 {
		return loadgen.Run(ctx, stdout, stderr, *calls, *concurrency, *timeout, c.Add)
	}
	return demo(ctx, stdout, c, tap, *timeout)
}

// demo makes the article's two calls, then one the server must refuse.
func demo(ctx context.Context, stdout io.Writer, c *httpadd.Client, tap *wiretap.Tap, timeout time.Duration) error {
	for _, args := range [][2]int{{1, 2}, {22, 3}, {math.MaxInt, 1}} {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		sum, err := c.Add(callCtx, args[0], args[1])
		cancel()
		if tap != nil {
			tap.Flush()
		}
		var refused *httpadd.ServerError
		switch {
		case errors.As(err, &refused):
			fmt.Fprintf(stdout, "error: %v\n", err) // the server said no: part of the demo
		case err != nil:
			return err
		default:
			fmt.Fprintf(stdout, "add(%d, %d) = %d\n", args[0], args[1], sum)
		}
		if tap != nil {
			fmt.Fprintln(stdout)
		}
	}
	return nil
}

// startServer starts an add server on a free loopback port, sets *addr to
// its address, and returns a function that stops it.
func startServer(addr *string) (stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := httpadd.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	*addr = l.Addr().String()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	}, nil
}
