// Command client runs stage 05's demo calls, or a load test.
//
//	go run ./07-at-most-once/cmd/client [-addr HOST:PORT] [-trace]
//	go run ./07-at-most-once/cmd/client [-addr HOST:PORT] -calls N [-concurrency C] [-conns K]
//
// Without -addr it starts the demo server in this process on a free loopback
// port, so the demo needs no second terminal. With -trace it prints every
// byte that crosses the connection. The demo makes all its calls on one
// connection: three slow calls side by side, one given up at its deadline,
// one with a callback, then the calls of every stage.
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
	"strings"
	"sync/atomic"
	"time"

	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
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
	concurrency := flags.Int("concurrency", 8, "load mode: how many callers at once; they share the -conns connections")
	conns := flags.Int("conns", 1, "load mode: how many `connections` the callers share, a call on each in turn")
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
	if *conns < 1 {
		return fmt.Errorf("-conns must be at least 1, not %d", *conns)
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
		add, closeAll, err := dialShared(ctx, *addr, *conns)
		if err != nil {
			return err
		}
		defer closeAll()
		return loadgen.Run(ctx, stdout, stderr, *calls, *concurrency, *timeout, add)
	}

	// The reader goroutine reports each late answer here, as it drops it.
	// It must not block: the demo waits for one late answer at most.
	late := make(chan uint64, 1)
	opts := []atmostonce.Option{atmostonce.WithLateAnswers(func(id uint64) {
		select {
		case late <- id:
		default:
		}
	})}
	var tap *wiretap.Tap
	if *trace {
		tap = wiretap.New(stdout)
		opts = append(opts, atmostonce.WithTap(tap))
	}
	c, err := atmostonce.Dial(ctx, *addr, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	d := &demo{out: stdout, c: c, tap: tap, timeout: *timeout}
	if err := d.sideBySide(ctx); err != nil {
		return err
	}
	if err := d.deadline(ctx, late); err != nil {
		return err
	}
	return d.everyStage(ctx)
}

// Seams for the tests, which replace them to run the demo without timing:
// the server the demo starts when there is no -addr, the clock it reads for
// the time the slow calls took, and how it sets the deadline it lets expire.
var (
	newDemoServer = func() *atmostonce.Server { return atmostonce.NewDemoServer(atmostonce.Service{}) }
	now           = time.Now
	withTimeout   = context.WithTimeout
)

// shortDeadline is the deadline of the demo's call that is given up: far
// shorter than the call.
const shortDeadline = 50 * time.Millisecond

// demoCall is one call of the demo: a function and its arguments.
type demoCall struct {
	name string
	args []any
}

// String writes the call the way it reads in Go: sum(1.1, 2), echo("a,b").
func (d demoCall) String() string {
	var parts []string
	for _, a := range d.args {
		parts = append(parts, fmt.Sprintf("%#v", a))
	}
	return d.name + "(" + strings.Join(parts, ", ") + ")"
}

// demo makes the demo's calls on one connection and prints what happens.
// With a tap, it flushes the bytes seen so far before each line it prints,
// so the transcript shows each answer just before its result.
type demo struct {
	out     io.Writer
	c       *atmostonce.Client
	tap     *wiretap.Tap // nil without -trace
	timeout time.Duration
}

// println prints a line of the demo, after the bytes the tap has seen.
func (d *demo) println(format string, args ...any) {
	if d.tap != nil {
		d.tap.Flush()
	}
	fmt.Fprintf(d.out, format+"\n", args...)
}

// endStep ends a step of the trace with a blank line.
func (d *demo) endStep() {
	if d.tap != nil {
		fmt.Fprintln(d.out)
	}
}

// sideBySide starts three slow calls together with Go, and prints each as
// it ends: in the order they finish, not the order they were made. They run
// side by side on the server, so all three take about as long as the
// slowest, not the sum of the three.
func (d *demo) sideBySide(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	durations := []int{300, 100, 200}
	d.println("slow(300), slow(100) and slow(200), started together on one connection:")
	start := now()
	ended := make(chan *atmostonce.Call, len(durations))
	sum := 0
	for _, ms := range durations {
		call := d.c.Go(ctx, "slow", ms)
		go func() { ended <- <-call.Done }() // each call's Done into one channel, as they end
		sum += ms
	}
	for range durations {
		call := <-ended
		if call.Error != nil {
			return call.Error
		}
		d.println("%s = %#v (call %d)", demoCall{call.Name, call.Args}, call.Result, call.ID)
	}
	elapsed := now().Sub(start).Round(10 * time.Millisecond)
	d.println("all three took %v; one after another they would take %v", elapsed, time.Duration(sum)*time.Millisecond)
	d.endStep()
	return nil
}

// deadline gives up a call at its deadline, makes a call whose callback
// prints its result, then waits for the given-up call's answer: it comes
// late, and the client drops it. late receives the ids of late answers.
func (d *demo) deadline(ctx context.Context, late <-chan uint64) error {
	short, cancel := withTimeout(ctx, shortDeadline)
	call := d.c.Go(short, "slow", 500)
	<-call.Done
	cancel()
	if !errors.Is(call.Error, context.DeadlineExceeded) {
		return fmt.Errorf("slow(500) should have missed its deadline; it ended with %v, %v", call.Result, call.Error)
	}
	d.println("slow(500) with a %v deadline -> error: %v (call %d, given up)", shortDeadline, call.Error, call.ID)
	d.endStep()

	// The callback runs on a goroutine of its own; the demo waits for it,
	// so that what it prints comes here and not later.
	printed := make(chan struct{})
	cbCtx, cbCancel := context.WithTimeout(ctx, d.timeout)
	defer cbCancel()
	d.c.GoFunc(cbCtx, "add", func(cb *atmostonce.Call) {
		defer close(printed)
		if cb.Error != nil {
			d.println("%s -> error: %v, printed by its callback", demoCall{cb.Name, cb.Args}, cb.Error)
			return
		}
		d.println("%s = %#v (call %d), printed by its callback", demoCall{cb.Name, cb.Args}, cb.Result, cb.ID)
	}, 2, 3)
	<-printed // the callback always runs: on an answer, an error or the deadline
	d.endStep()

	// slow(500) is still running on the server. Its answer comes when it
	// ends, finds no call waiting, and is dropped.
	backstop := time.NewTimer(atmostonce.MaxSlow*time.Millisecond + d.timeout)
	defer backstop.Stop()
	for {
		select {
		case id := <-late:
			if id != call.ID {
				continue
			}
			d.println("the late answer to call %d came and was dropped (late answers so far: %d)", id, d.c.LateAnswers())
			d.endStep()
			return nil
		case <-backstop.C:
			return fmt.Errorf("the answer to call %d never came", call.ID)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// everyStage makes the article's calls and echoes a string that stage 03
// had to escape, then makes some calls the server must refuse: the calls
// of every stage's demo.
func (d *demo) everyStage(ctx context.Context) error {
	for _, call := range []demoCall{
		{"sum", []any{1, 2}},
		{"sum", []any{1.1, 2}},
		{"get_time", nil},
		{"echo", []any{"a,b-c:d@e%f\n中文 ✓"}},
		{"sub", []any{3, 1}},
		{"sum", []any{1}},
		{"sum", []any{math.MaxInt, 1}},
		{"echo", []any{42}},
	} {
		callCtx, cancel := context.WithTimeout(ctx, d.timeout)
		res, err := d.c.Call(callCtx, call.name, call.args...)
		cancel()
		var refused *atmostonce.ServerError
		switch {
		case errors.As(err, &refused):
			d.println("%s -> error: %s", call, refused.Message) // the server said no: part of the demo
		case err != nil:
			return err
		default:
			d.println("%s = %#v", call, res)
		}
		d.endStep()
	}
	return nil
}

// dialShared dials n connections and returns an add function that makes
// each call on the next connection in turn. A Client takes calls from many
// goroutines at once and keeps them all in flight on its one connection, so
// the load test's callers share the connections instead of taking turns.
func dialShared(ctx context.Context, addr string, n int) (add loadgen.AddFunc, closeAll func(), err error) {
	clients := make([]*atmostonce.Client, 0, n)
	closeAll = func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for range n {
		c, err := atmostonce.Dial(ctx, addr)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		clients = append(clients, c)
	}
	var next atomic.Uint64
	add = func(ctx context.Context, a, b int) (int, error) {
		c := clients[(next.Add(1)-1)%uint64(n)]
		return atmostonce.DemoClient{Client: c}.Add(ctx, a, b)
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
	srv := newDemoServer()
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
