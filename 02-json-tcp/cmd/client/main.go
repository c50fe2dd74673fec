// Command client runs stage 02's demo calls, or a load test.
//
//	go run ./02-json-tcp/cmd/client [-addr HOST:PORT] [-trace]
//	go run ./02-json-tcp/cmd/client [-addr HOST:PORT] -calls N [-concurrency C]
//
// Without -addr it starts the demo server in this process on a free loopback
// port, so the demo needs no second terminal. With -trace it prints every
// byte that crosses the connection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
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
	concurrency := flags.Int("concurrency", 8, "load mode: how many callers at once, each with its own connection")
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

	if *calls > 0 {
		add, closeAll, err := dialPool(ctx, *addr, *concurrency)
		if err != nil {
			return err
		}
		defer closeAll()
		return loadgen.Run(ctx, stdout, stderr, *calls, *concurrency, *timeout, add)
	}

	var opts []jsontcp.Option
	var tap *wiretap.Tap
	if *trace {
		tap = wiretap.New(stdout)
		opts = append(opts, jsontcp.WithTap(tap))
	}
	c, err := jsontcp.Dial(ctx, *addr, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	return demo(ctx, stdout, c, tap, *timeout)
}

// demoCall is one call of the demo: a method and its arguments.
type demoCall struct {
	method string
	args   []any
	kwargs map[string]any
}

// String writes the call the way Python would: add(1, 2, c=3).
func (d demoCall) String() string {
	var parts []string
	for _, a := range d.args {
		parts = append(parts, fmt.Sprintf("%#v", a))
	}
	for k, v := range d.kwargs { // the demo's calls have at most one keyword
		parts = append(parts, fmt.Sprintf("%s=%#v", k, v))
	}
	return d.method + "(" + strings.Join(parts, ", ") + ")"
}

// demo makes the articles' calls, then some the server must refuse.
func demo(ctx context.Context, stdout io.Writer, c *jsontcp.Client, tap *wiretap.Tap, timeout time.Duration) error {
	for _, call := range []demoCall{
		{"add", []any{1, 2}, map[string]any{"c": 3}},
		{"add", []any{1, 2}, nil},
		{"test", []any{"测试项"}, map[string]any{"kw1": "1"}},
		{"echo", []any{"a, b: {c} \"d\"\n"}, nil},
		{"add", []any{1, "two"}, nil},
		{"add", []any{1}, map[string]any{"d": 4}},
		{"sub", []any{3, 1}, nil},
	} {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		res, err := c.Call(callCtx, call.method, call.args, call.kwargs)
		cancel()
		if tap != nil {
			tap.Flush()
		}
		var refused *jsontcp.ServerError
		switch {
		case errors.As(err, &refused):
			fmt.Fprintf(stdout, "%s -> error: %s\n", call, refused.Message) // the server said no: part of the demo
		case err != nil:
			return err
		default:
			fmt.Fprintf(stdout, "%s = %s\n", call, res)
		}
		if tap != nil {
			fmt.Fprintln(stdout)
		}
	}
	return nil
}

// dialPool dials n connections and returns an add function that hands
// them out, one per caller at a time: a Client makes one call at a time,
// so load mode gives each concurrent caller a connection of its own.
func dialPool(ctx context.Context, addr string, n int) (add loadgen.AddFunc, closeAll func(), err error) {
	pool := make(chan *jsontcp.Client, max(n, 1))
	closeAll = func() {
		close(pool)
		for c := range pool {
			c.Close()
		}
	}
	for range cap(pool) {
		c, err := jsontcp.Dial(ctx, addr)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		pool <- c
	}
	add = func(ctx context.Context, a, b int) (int, error) {
		c := <-pool
		defer func() { pool <- c }()
		return jsontcp.DemoClient{Client: c}.Add(ctx, a, b, 0)
	}
	return add, closeAll, nil
}

// startServer starts the demo server on a free loopback port, sets *addr to
// its address, and returns a function that stops it.
func startServer(addr *string) (stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := jsontcp.NewDemoServer()
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
