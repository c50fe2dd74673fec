// Command client runs stage 07's demo, a load test, or one call.
//
//	go run ./07-at-most-once/cmd/client [-addr HOST:PORT] [-trace]
//	go run ./07-at-most-once/cmd/client [-addr HOST:PORT] -calls N [-concurrency C] [-conns K] [-incr KEY] [-faults SPEC]
//	go run ./07-at-most-once/cmd/client [-addr HOST:PORT] [-trace] -call 'incr("k")'
//
// Without -addr it starts the demo server in this process, so that nothing
// needs a second terminal. With -trace it prints every byte that crosses
// the connection.
//
// The demo makes nine incr("demo") calls one after another, through a
// network that loses answers: the server in this process loses the answer
// to call 4 on its first connection, and to call 7 on its second, after
// each call arrived and ran, and closes the connection. The client
// dials again, sends the call again, and the server answers it from its
// table of calls run, without running it twice: the counter ends at 9, and
// the server's ran_twice() says 0. Then a call given up at its deadline,
// which the server stops too, and a call the server refuses without
// running it. (With -addr the network is what it is: no faults are added.)
//
// Load mode makes N calls of add(a, b), or of incr(KEY) with -incr, and
// checks every one. -faults puts faultnet's faults on the client's
// connections (for example lose-answer=0.05,cut=0.01,seed=7; see
// faultnet.ParseSpec). It prints one line: loadgen's fields, then retries=
// and unknown= (the calls sent again, and those whose outcome stayed
// unknown, from the clients' Stats), ran-twice= (the server's
// ran_twice(): calls it ran more than once, since it started), and with
// -incr, counter= (how much KEY grew). It fails if a call failed, except,
// under -faults, a call whose outcome is unknown: that one is counted, not
// an error; if the server ran a call twice; or, with -incr, if the counter
// grew by less than the incr calls that succeeded, or by more than those
// and the unknown ones together.
//
// One-call mode makes the call -call names, written as in Go: a function
// name, and in parentheses ints, floats and double-quoted strings. It
// prints the result alone (a string without its quotes), or the error on
// stderr, and exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
	"github.com/rpc-from-scratch/course/internal/faultnet"
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
	calls := flags.Int("calls", 0, "load mode: make `N` calls and check every result")
	concurrency := flags.Int("concurrency", 8, "load mode: how many callers at once; they share the -conns clients")
	conns := flags.Int("conns", 1, "load mode: how many `clients` the callers share, a call on each in turn; each keeps one connection up at a time")
	incr := flags.String("incr", "", "load mode: call incr(`KEY`) instead of add, and check how much the counter grew")
	faults := flags.String("faults", "", "load mode: faultnet's `SPEC` for the clients' connections, such as lose-answer=0.05,cut=0.01,seed=7; a call whose outcome stays unknown is then counted, not an error")
	oneCall := flags.String("call", "", "make one `CALL`, such as 'incr(\"k\")' or 'add(1, 2)', and print its result")
	timeout := flags.Duration("timeout", 10*time.Second, "deadline for each call")
	attempts := flags.Int("attempts", atmostonce.DefaultRetryPolicy.MaxAttempts, "load mode: attempts per call, the first included; 1 sends every call once, never again")
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
	if *attempts < 1 {
		return fmt.Errorf("-attempts must be at least 1, not %d", *attempts)
	}
	if *calls == 0 && (*incr != "" || *faults != "") {
		return errors.New("-incr and -faults are for load mode: give -calls too")
	}
	if *calls > 0 && *oneCall != "" {
		return errors.New("-call makes one call, -calls a load test: give one of them")
	}
	var fn *faultnet.Net
	if *faults != "" {
		spec, err := faultnet.ParseSpec(*faults)
		if err != nil {
			return fmt.Errorf("-faults: %w", err)
		}
		fn = faultnet.New(spec)
	}
	var name string
	var callArgs []any
	if *oneCall != "" {
		var err error
		if name, callArgs, err = parseCall(*oneCall); err != nil {
			return fmt.Errorf("-call %s: %w", *oneCall, err)
		}
	}

	demoMode := *calls == 0 && *oneCall == ""
	dial := tcpDialer(*addr)
	if *addr == "" {
		// Only the demo's server loses answers: the load test puts its
		// faults on the client's side, where -addr can reach them too.
		var serverFaults *faultnet.Net
		if demoMode {
			serverFaults = demoFaults()
		}
		var stop func()
		var where net.Addr
		var err error
		if dial, where, stop, err = startServer(serverFaults); err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(stderr, "(no -addr: serving on %s in this process)\n", where)
	}

	switch {
	case *calls > 0:
		return load(ctx, stdout, stderr, dial, loadTest{
			calls: *calls, concurrency: *concurrency, conns: *conns, timeout: *timeout, key: *incr, faults: fn,
			attempts: *attempts,
		})
	case *oneCall != "":
		var opts []atmostonce.Option
		var tap *wiretap.Tap
		if *trace {
			tap = wiretap.New(stdout)
			opts = append(opts, atmostonce.WithTap(tap))
		}
		c, err := connect(ctx, dial, opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		callCtx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		res, err := c.Call(callCtx, name, callArgs...)
		if tap != nil {
			tap.Flush()
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, res)
		return nil
	}

	// The demo's lines and the tap's transcript go to stdout from the
	// demo's goroutine and from the client's.
	out := &lockedWriter{w: stdout}
	d := &demo{out: out, timeout: *timeout, late: make(chan uint64, 1), checks: *addr == ""}
	opts := append(clientOptions(), atmostonce.WithEvents(d.event), atmostonce.WithLateAnswers(d.lateAnswer))
	if *trace {
		d.tap = wiretap.New(out)
		opts = append(opts, atmostonce.WithTap(d.tap))
	}
	d.intro() // before the client opens its connection, and the tap says so
	c, err := connect(ctx, dial, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	d.c = c
	return d.run(ctx)
}

// lockedWriter is a writer that many goroutines may write to at once.
type lockedWriter struct {
	mu sync.Mutex // protects w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Seams for the tests, which replace them to run the demo in a
// testing/synctest bubble, over net.Pipe, on the bubble's clock: where
// the server in this process listens and how a client dials it, the
// options the demo's client gets (a seed, so that its id and its backoff
// are the same on every run), and how the demo sets the deadline of the
// call it gives up. A test also gives the demo a server that breaks its
// promise, to see the demo catch it.
var (
	newDemoServer = func() *atmostonce.Server { return atmostonce.NewDemoServer(atmostonce.Service{}) }
	listenLocal   = func() (net.Listener, atmostonce.Dialer, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		return l, tcpDialer(l.Addr().String()), nil
	}
	clientOptions = func() []atmostonce.Option { return nil }
	withTimeout   = context.WithTimeout
)

// demoCalls is how many incr calls the demo makes.
const demoCalls = 9

// demoFaults returns the faults of the demo's server. Its first
// connection writes four answers (the hello's, then calls 1 to 3) and
// loses the fifth, call 4's; its second writes three (calls 4 to 6) and
// loses call 7's; its third works.
func demoFaults() *faultnet.Net {
	return faultnet.Script(
		faultnet.Fault{Kind: faultnet.LoseAnswer, After: 4},
		faultnet.Fault{Kind: faultnet.LoseAnswer, After: 3},
		faultnet.Fault{})
}

// shortDeadline is the deadline of the demo's call that is given up: far
// shorter than the call.
const shortDeadline = 50 * time.Millisecond

// demoCall is one call of the demo: a function and its arguments.
type demoCall struct {
	name string
	args []any
}

// String writes the call the way it reads in Go: sum(1.1, 2), incr("demo").
func (d demoCall) String() string {
	var parts []string
	for _, a := range d.args {
		parts = append(parts, fmt.Sprintf("%#v", a))
	}
	return d.name + "(" + strings.Join(parts, ", ") + ")"
}

// demo makes the demo's calls on one client and prints what happens, with
// what the client did to survive the faults, as it does it. With a tap, it
// flushes the bytes seen so far before each line it prints, so the
// transcript shows each answer just before its result.
type demo struct {
	c       *atmostonce.Client
	tap     *wiretap.Tap // nil without -trace
	timeout time.Duration
	late    chan uint64 // the ids of late answers, as the client drops them
	checks  bool        // the server is this process's: the counter starts at 0

	mu  sync.Mutex // protects out: the client's events print too, and a line must follow the bytes before it
	out io.Writer
}

// println prints a line of the demo, after the bytes the tap has seen.
func (d *demo) println(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tap != nil {
		d.tap.Flush()
	}
	fmt.Fprintf(d.out, format+"\n", args...)
}

// endStep ends a step of the trace with a blank line.
func (d *demo) endStep() {
	if d.tap != nil {
		d.println("")
	}
}

// event prints what the client does to survive a failure, as it does it.
// It runs on the client's goroutines, while the demo waits for a call.
func (d *demo) event(e atmostonce.Event) {
	switch {
	case e.Kind == atmostonce.Retrying && e.Wait == 0:
		d.println("  call %d: its connection broke before the answer came; it goes again, as attempt %d", e.ID, e.Attempt)
	case e.Kind == atmostonce.Retrying:
		d.println("  call %d: refused before it ran; it goes again in %v, as attempt %d", e.ID, e.Wait.Round(time.Millisecond), e.Attempt)
	case e.Kind == atmostonce.Reconnecting:
		d.println("  dialling again in %v (%v)", e.Wait.Round(time.Millisecond), e.Err)
	case e.Kind == atmostonce.Throttled:
		d.println("  call %d is not sent again: the retry budget is spent", e.ID)
	}
}

// lateAnswer is the client's WithLateAnswers: it must not block. The demo
// waits for one late answer at most.
func (d *demo) lateAnswer(id uint64) {
	select {
	case d.late <- id:
	default:
	}
}

// intro says what the demo is about to do.
func (d *demo) intro() {
	if d.checks {
		d.println("%d calls of incr(\"demo\"), one after another; the network loses the answers to calls 4 and 7, after they ran:", demoCalls)
	} else {
		d.println("%d calls of incr(\"demo\"), one after another:", demoCalls)
	}
	d.endStep()
}

func (d *demo) run(ctx context.Context) error {
	if err := d.incrs(ctx); err != nil {
		return err
	}
	if err := d.deadline(ctx); err != nil {
		return err
	}
	return d.refusal(ctx)
}

// incrs makes the incr calls, then asks the server for the counter and for
// how many calls it ran twice.
func (d *demo) incrs(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	for range demoCalls {
		call := d.c.Go(ctx, "incr", "demo")
		<-call.Done
		if call.Error != nil {
			return call.Error
		}
		attempts := ""
		if call.Attempts > 1 {
			attempts = fmt.Sprintf(", attempt %d", call.Attempts)
		}
		d.println("%s = %#v (call %d%s)", demoCall{call.Name, call.Args}, call.Result, call.ID, attempts)
		d.endStep()
	}
	stub := atmostonce.DemoClient{Client: d.c}
	n, err := stub.Get(ctx, "demo")
	if err != nil {
		return err
	}
	d.println("get(\"demo\") = %d", n)
	d.endStep()
	if d.checks && n != demoCalls {
		return fmt.Errorf("the counter is %d after %d calls of incr: at most once is broken", n, demoCalls)
	}
	twice, err := stub.RanTwice(ctx)
	if err != nil {
		return err
	}
	d.println("run twice: %d", twice)
	d.endStep()
	if twice != 0 {
		return fmt.Errorf("the server ran %d calls twice", twice)
	}
	return nil
}

// deadline gives up slow(500) at a deadline of 50 ms. The deadline went
// with the request, and the client sends a cancel as it gives up: the
// server stops the call too, and its answer comes at once, not 500 ms
// later. It comes late, after the call was given up, and is dropped; the
// demo waits for it before it prints, so that with -trace the lines come
// after the cancel and the answer.
func (d *demo) deadline(ctx context.Context) error {
	short, cancel := withTimeout(ctx, shortDeadline)
	defer cancel()
	start := time.Now()
	call := d.c.Go(short, "slow", 500)
	<-call.Done
	e, ok := errors.AsType[*atmostonce.Error](call.Error)
	if !ok || e.Code != atmostonce.DeadlineExceeded {
		return fmt.Errorf("slow(500) should have missed its deadline; it ended with %v, %v", call.Result, call.Error)
	}
	how := "" // the server's answer, at its deadline, came before the client gave up
	if e.Outcome != atmostonce.Ran {
		if err := d.waitLate(ctx, call.ID); err != nil {
			return err
		}
		how = ", late, and was dropped"
	}
	d.println("slow(500) with a %v deadline -> %v", shortDeadline, e)
	d.println("  the server stopped slow(500) too: its answer came %v after the call began%s", d.since(start), how)
	d.endStep()
	return nil
}

// waitLate waits for the late answer to call id.
func (d *demo) waitLate(ctx context.Context, id uint64) error {
	backstop := time.NewTimer(atmostonce.MaxSlow*time.Millisecond + d.timeout)
	defer backstop.Stop()
	for {
		select {
		case late := <-d.late:
			if late == id {
				return nil
			}
		case <-backstop.C:
			return fmt.Errorf("the answer to call %d never came", id)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// since returns the time since start, to the 10 ms.
func (d *demo) since(start time.Time) time.Duration {
	return time.Since(start).Round(10 * time.Millisecond)
}

// refusal makes a call that the server refuses without running it.
func (d *demo) refusal(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	call := demoCall{"sub", []any{3, 1}}
	_, err := d.c.Call(ctx, call.name, call.args...)
	e, ok := errors.AsType[*atmostonce.Error](err)
	if !ok || e.Code != atmostonce.Unimplemented {
		return fmt.Errorf("%s should have been refused; it ended with %v", call, err)
	}
	d.println("%s -> %v", call, e)
	d.endStep()
	return nil
}

// loadTest is what load mode's flags ask for.
type loadTest struct {
	calls, concurrency, conns int
	timeout                   time.Duration
	key                       string        // call incr(key); "" calls add
	faults                    *faultnet.Net // on the load clients' connections; nil for none
	attempts                  int           // the clients' RetryPolicy.MaxAttempts
}

// load runs the load test: lt.conns clients, each dialling through the
// faults, share the callers; one more client, outside the faults, reads
// the counter before and after, and asks the server for ran_twice() at
// the end.
func load(ctx context.Context, stdout, stderr io.Writer, dial atmostonce.Dialer, lt loadTest) error {
	control, err := connect(ctx, dial)
	if err != nil {
		return err
	}
	defer control.Close()
	stub := atmostonce.DemoClient{Client: control}
	ask := func(f func(ctx context.Context) (int, error)) (int, error) {
		ctx, cancel := context.WithTimeout(ctx, lt.timeout)
		defer cancel()
		return f(ctx)
	}
	var before int
	if lt.key != "" {
		if before, err = ask(func(ctx context.Context) (int, error) { return stub.Get(ctx, lt.key) }); err != nil {
			return err
		}
	}

	faulty := dial
	if lt.faults != nil {
		faulty = func(ctx context.Context) (net.Conn, error) { return lt.faults.Dial(ctx, dial) }
	}
	clients := make([]*atmostonce.Client, 0, lt.conns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	policy := atmostonce.RetryPolicy{MaxAttempts: lt.attempts}
	for range lt.conns {
		c, err := connect(ctx, faulty, atmostonce.WithRetryPolicy(policy))
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}
	// Call i goes to client i mod conns: every client carries calls.
	client := func(i int) atmostonce.DemoClient { return atmostonce.DemoClient{Client: clients[i%len(clients)]} }
	call := loadgen.Adds(func(ctx context.Context, a, b int) (int, error) { return client(a).Add(ctx, a, b) })
	if lt.key != "" {
		call = func(ctx context.Context, i int) error {
			_, err := client(i).Incr(ctx, lt.key)
			return err
		}
	}
	test := loadgen.Test{Calls: lt.calls, Concurrency: lt.concurrency, Timeout: lt.timeout, Call: call}
	if lt.faults != nil {
		test.Excused = func(err error) bool { return errors.Is(err, atmostonce.ErrOutcomeUnknown) }
	}
	r, err := test.Run(ctx, stderr)
	if err != nil {
		return err
	}
	var stats atmostonce.Stats
	for _, c := range clients {
		st := c.Stats()
		stats.Retries += st.Retries
		stats.Unknown += st.Unknown
	}
	if lt.faults != nil {
		fmt.Fprintf(stderr, "faults fired: %s\n", fired(lt.faults))
	}

	ranTwice, err := ask(stub.RanTwice)
	if err != nil {
		return fmt.Errorf("ran_twice(): %w", err)
	}
	extra := fmt.Sprintf("retries=%d unknown=%d ran-twice=%d", stats.Retries, stats.Unknown, ranTwice)
	if lt.key != "" {
		after, err := ask(func(ctx context.Context) (int, error) { return stub.Get(ctx, lt.key) })
		if err != nil {
			return err
		}
		// Each incr that succeeded ran once; each whose outcome is
		// unknown ran once or not at all; the others did not run.
		grew := after - before
		if grew < r.OK || grew > r.OK+int(stats.Unknown) {
			r.Mismatches++
			fmt.Fprintf(stderr, "the counter %q grew by %d, for %d incr calls that succeeded and %d whose outcome is unknown\n",
				lt.key, grew, r.OK, stats.Unknown)
		}
		extra += fmt.Sprintf(" counter=%d", grew)
	}
	fmt.Fprintf(stdout, "%v %s\n", r, extra)
	if err := r.Err(); err != nil {
		return err
	}
	if ranTwice > 0 {
		return fmt.Errorf("the server ran %d calls twice", ranTwice)
	}
	return nil
}

// fired writes how many faults of each kind fired: "cut=1 lose-answer=3",
// or "none".
func fired(n *faultnet.Net) string {
	counts := n.Fired()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%v=%d", k, counts[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// parseCall parses a call written as in Go: a function's name, and in
// parentheses its arguments, each an int, a float or a double-quoted
// string, such as incr("k"), add(1, -2) or sum(1.5, 2).
func parseCall(s string) (name string, args []any, err error) {
	expr, err := parser.ParseExpr(s)
	if err != nil {
		return "", nil, fmt.Errorf("not a call such as add(1, 2): %w", err)
	}
	call, ok := expr.(*ast.CallExpr)
	if !ok {
		return "", nil, errors.New("not a call such as add(1, 2)")
	}
	fun, ok := call.Fun.(*ast.Ident)
	if !ok {
		return "", nil, errors.New("the function must be a name, such as add")
	}
	if call.Ellipsis.IsValid() {
		return "", nil, errors.New("no ... in a call")
	}
	for i, a := range call.Args {
		v, err := literal(a)
		if err != nil {
			return "", nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		args = append(args, v)
	}
	return fun.Name, args, nil
}

// literal returns the value of an argument: an int, a float64 or a string,
// a number perhaps with a sign.
func literal(e ast.Expr) (any, error) {
	sign := ""
	if u, ok := e.(*ast.UnaryExpr); ok && (u.Op == token.SUB || u.Op == token.ADD) {
		sign, e = u.Op.String(), u.X
	}
	lit, ok := e.(*ast.BasicLit)
	if !ok {
		return nil, errors.New("want an int, a float or a double-quoted string")
	}
	switch {
	case lit.Kind == token.INT:
		n, err := strconv.ParseInt(sign+lit.Value, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("%s%s does not fit in an int", sign, lit.Value)
		}
		return int(n), nil
	case lit.Kind == token.FLOAT:
		f, err := strconv.ParseFloat(sign+lit.Value, 64)
		if err != nil {
			return nil, fmt.Errorf("%s%s does not fit in a float", sign, lit.Value)
		}
		return f, nil
	case lit.Kind == token.STRING && sign == "" && strings.HasPrefix(lit.Value, `"`):
		return strconv.Unquote(lit.Value)
	}
	return nil, fmt.Errorf("want an int, a float or a double-quoted string, not %s%s", sign, lit.Value)
}

// tcpDialer dials addr over TCP.
func tcpDialer(addr string) atmostonce.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	}
}

// connect returns a Client that dials with dial, once it has made its
// first connection: it fails if that cannot be made, as atmostonce.Dial
// does, instead of waiting for a server that is not there.
func connect(ctx context.Context, dial atmostonce.Dialer, opts ...atmostonce.Option) (*atmostonce.Client, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	var first atomic.Pointer[net.Conn]
	first.Store(&conn)
	return atmostonce.NewClient(func(ctx context.Context) (net.Conn, error) {
		if c := first.Swap(nil); c != nil {
			return *c, nil
		}
		return dial(ctx)
	}, opts...), nil
}

// startServer starts the demo server in this process, through faults if
// faults is not nil, and returns how to dial it, its address, and a
// function that stops it.
func startServer(faults *faultnet.Net) (dial atmostonce.Dialer, addr net.Addr, stop func(), err error) {
	l, dial, err := listenLocal()
	if err != nil {
		return nil, nil, nil, err
	}
	addr = l.Addr()
	if faults != nil {
		l = faults.Listener(l)
	}
	srv := newDemoServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	return dial, addr, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	}, nil
}
