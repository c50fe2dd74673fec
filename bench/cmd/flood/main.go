// Command flood attacks a stage's server with an idle flood, as a hostile
// peer would, and meanwhile makes calls as a well-behaved client would. It
// holds many connections open that send nothing (each one dialled again
// as soon as the server closes it, unless -redial=false), waits until all
// are dialled, then lets its callers make add(1, 2) calls, each on a
// connection of its own and each with a deadline, and prints how many
// failed and why, the latency of those that did not, and, given the
// server's process id, its peak resident memory (VmHWM) and open files,
// read from /proc (Linux):
//
//	go run ./cmd/flood -stage 02 -addr 127.0.0.1:5000 -pid PID [-idle 5000] [-redial=true] [-answered] [-warm] [-callers 4] [-calls 10000] [-for 20s] [-timeout 1s]
//
// A caller whose call fails closes its connection and dials a new one for
// its next call. With -answered each silent connection first makes one
// call; with -warm each caller makes one before the flood begins.
// Lesson 02 ("An idle flood", docs/02-json-tcp.md) runs it against each
// stage's cmd/server. It needs a file descriptor for each connection:
// raise its ulimit -n past -idle.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	httpadd "github.com/rpc-from-scratch/course/01-http-add"
	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
	customproto "github.com/rpc-from-scratch/course/03-custom-protocol"
	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
	asyncrpc "github.com/rpc-from-scratch/course/05-async-callback"
	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

// config is what the flags ask for.
type config struct {
	stage, addr   string
	idle          int
	redial        bool
	answered      bool
	warm          bool
	callers       int
	calls         int
	duration      time.Duration
	timeout       time.Duration
	pid           int
	dialParallel  int           // dials of silent connections at once
	redialBackoff time.Duration // after a dial that failed
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	flags := flag.NewFlagSet("flood", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cfg := config{dialParallel: 256, redialBackoff: 100 * time.Millisecond}
	flags.StringVar(&cfg.stage, "stage", "02", "the stage whose server listens at -addr: 01, 02, 03, 04, 05, 06 or 07")
	flags.StringVar(&cfg.addr, "addr", "", "the server's `host:port`")
	flags.IntVar(&cfg.idle, "idle", 5000, "how many silent connections to hold open")
	flags.BoolVar(&cfg.redial, "redial", true, "dial a silent connection again when the server closes it")
	flags.BoolVar(&cfg.answered, "answered", false, "each silent connection makes one call before it goes silent")
	flags.BoolVar(&cfg.warm, "warm", false, "each caller dials and makes one call before the flood begins")
	flags.IntVar(&cfg.callers, "callers", 4, "well-behaved callers, each on a connection of its own")
	flags.IntVar(&cfg.calls, "calls", 10000, "stop after this many calls")
	flags.DurationVar(&cfg.duration, "for", 20*time.Second, "or after this long")
	flags.DurationVar(&cfg.timeout, "timeout", time.Second, "each call's deadline, its dial included")
	flags.IntVar(&cfg.pid, "pid", 0, "the server's process id, for its VmHWM and open files (0: not read)")
	if err := flags.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case cfg.addr == "":
		return cfg, errors.New("-addr is required")
	case !slices.Contains([]string{"01", "02", "03", "04", "05", "06", "07"}, cfg.stage):
		return cfg, fmt.Errorf("-stage %q: want 01, 02, 03, 04, 05, 06 or 07", cfg.stage)
	case cfg.idle < 0 || cfg.callers < 1 || cfg.calls < 1 || cfg.duration <= 0 || cfg.timeout <= 0:
		return cfg, errors.New("-idle must not be negative, and -callers, -calls, -for and -timeout must be positive")
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var warmed []caller
	if cfg.warm {
		for range cfg.callers {
			c, err := warmCaller(ctx, cfg)
			if err != nil {
				closeAll(warmed)
				return fmt.Errorf("a call before the flood failed: %w", err)
			}
			warmed = append(warmed, c)
		}
	}

	f := &flood{cfg: cfg, conns: map[net.Conn]bool{}, stop: make(chan struct{})}
	f.start()
	defer f.end()
	fmt.Fprintf(stdout, "flood: %d silent connections dialled (%d open, %d dials or first calls failed)\n",
		cfg.idle, f.open.Load(), f.failed.Load())

	peak := watch(cfg.pid)
	res := callMeanwhile(ctx, cfg, warmed)
	closed := f.closed.Load()
	maxFiles := peak.stop()
	fmt.Fprintf(stdout, "meanwhile the server closed %d silent connections; %d are open\n", closed, f.open.Load())
	res.print(stdout, cfg)
	if cfg.pid != 0 {
		fmt.Fprintf(stdout, "server: VmHWM %d kB, open files at most %d\n", procStatus(cfg.pid, "VmHWM"), maxFiles)
	}
	return nil
}

func closeAll(callers []caller) {
	for _, c := range callers {
		c.close()
	}
}

func warmCaller(ctx context.Context, cfg config) (caller, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dial(ctx, cfg.stage, cfg.addr)
	if err == nil {
		if err = c.add(ctx); err != nil {
			c.close()
		}
	}
	return c, err
}

// flood holds the silent connections.
type flood struct {
	cfg    config
	open   atomic.Int64 // silent connections open now
	closed atomic.Int64 // silent connections the server closed
	failed atomic.Int64 // dials, or first calls with -answered, that failed

	mu    sync.Mutex // protects conns
	conns map[net.Conn]bool
	stop  chan struct{} // closed by end
	wg    sync.WaitGroup
}

// start dials every silent connection once, and returns when each dial has
// ended; the goroutines go on, dialling again when the server closes one.
func (f *flood) start() {
	dialled := make(chan struct{}, f.cfg.idle)
	turns := make(chan struct{}, f.cfg.dialParallel)
	for range f.cfg.idle {
		f.wg.Go(func() {
			first := true
			for !f.stopping() {
				turns <- struct{}{}
				conn, err := net.DialTimeout("tcp", f.cfg.addr, 5*time.Second)
				done := func() {}
				if err == nil && f.cfg.answered {
					done, err = oneCall(f.cfg.stage, conn)
					if err != nil {
						conn.Close()
						done()
					}
				}
				<-turns
				if first {
					dialled <- struct{}{}
					first = false
				}
				if err != nil {
					f.failed.Add(1)
					select {
					case <-f.stop:
					case <-time.After(f.cfg.redialBackoff):
					}
					continue
				}
				f.hold(conn)
				done()
				if !f.cfg.redial {
					return
				}
			}
		})
	}
	for range f.cfg.idle {
		<-dialled
	}
}

// hold keeps conn open until the server closes it or the flood ends.
func (f *flood) hold(conn net.Conn) {
	f.mu.Lock()
	if f.stopping() {
		f.mu.Unlock()
		conn.Close()
		return
	}
	f.conns[conn] = true
	f.mu.Unlock()
	f.open.Add(1)
	_, _ = conn.Read(make([]byte, 1))
	f.open.Add(-1)
	f.mu.Lock()
	delete(f.conns, conn)
	f.mu.Unlock()
	conn.Close()
	if !f.stopping() {
		f.closed.Add(1)
	}
}

func (f *flood) stopping() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// end closes every silent connection and waits for the goroutines.
func (f *flood) end() {
	f.mu.Lock()
	close(f.stop)
	for conn := range f.conns {
		conn.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// results is what the callers saw.
type results struct {
	ok      []time.Duration // each call that succeeded, how long it took
	failed  int
	slowest time.Duration // of the calls that failed
	why     map[string]int
	elapsed time.Duration
}

func (r *results) print(w io.Writer, cfg config) {
	fmt.Fprintf(w, "calls: %d ok, %d failed in %v (%d callers, a %v deadline each)\n",
		len(r.ok), r.failed, r.elapsed.Round(time.Millisecond), cfg.callers, cfg.timeout)
	slices.Sort(r.ok)
	at := func(q float64) time.Duration {
		if len(r.ok) == 0 {
			return 0
		}
		return r.ok[min(len(r.ok)-1, int(q*float64(len(r.ok))))]
	}
	fmt.Fprintf(w, "latency of the calls that succeeded: median %v, 99th percentile %v, worst %v\n", at(0.5), at(0.99), at(1))
	if r.failed > 0 {
		fmt.Fprintf(w, "the slowest failure took %v; the failures:\n", r.slowest)
		reasons := make([]string, 0, len(r.why))
		for why := range r.why {
			reasons = append(reasons, why)
		}
		slices.Sort(reasons)
		for _, why := range reasons {
			fmt.Fprintf(w, "  %6d  %s\n", r.why[why], why)
		}
	}
}

// callMeanwhile runs the callers until they have made cfg.calls calls in
// all, or for cfg.duration.
func callMeanwhile(ctx context.Context, cfg config, warmed []caller) *results {
	res := &results{why: map[string]int{}}
	var mu sync.Mutex // protects res
	var made atomic.Int64
	start := time.Now()
	until := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for i := range cfg.callers {
		wg.Go(func() {
			var c caller
			if i < len(warmed) {
				c = warmed[i]
			}
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for ctx.Err() == nil && time.Now().Before(until) && made.Add(1) <= int64(cfg.calls) {
				began := time.Now()
				callCtx, cancel := context.WithTimeout(ctx, cfg.timeout)
				var err error
				if c == nil {
					c, err = dial(callCtx, cfg.stage, cfg.addr)
				}
				if err == nil {
					err = c.add(callCtx)
				}
				cancel()
				took := time.Since(began)
				mu.Lock()
				if err == nil {
					res.ok = append(res.ok, took)
				} else {
					res.failed++
					res.slowest = max(res.slowest, took)
					res.why[reason(err, cfg.addr)]++
				}
				mu.Unlock()
				if err != nil && c != nil {
					c.close()
					c = nil
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// reason is an error's text without what differs from one call to the
// next: the client's port.
func reason(err error, addr string) string {
	msg := err.Error()
	if i := strings.Index(msg, "127.0.0.1:"); i >= 0 && !strings.HasPrefix(msg[i:], addr) {
		end := i + len("127.0.0.1:")
		for end < len(msg) && msg[end] >= '0' && msg[end] <= '9' {
			end++
		}
		msg = msg[:i] + "127.0.0.1:PORT" + msg[end:]
	}
	return msg
}

// caller is one well-behaved client, on a connection of its own.
type caller interface {
	add(ctx context.Context) error
	close()
}

// dial returns a caller of the stage's server at addr, or an error.
func dial(ctx context.Context, stage, addr string) (caller, error) {
	var c caller
	var err error
	switch stage {
	case "01":
		c = stage01{httpadd.NewClient(addr)}
	case "02":
		var jc *jsontcp.Client
		if jc, err = jsontcp.Dial(ctx, addr); err == nil {
			c = stage02{jc}
		}
	case "03":
		var cc *customproto.Client
		if cc, err = customproto.Dial(ctx, addr); err == nil {
			c = stage03{cc}
		}
	case "04":
		var gc *gobrpc.Client
		if gc, err = gobrpc.Dial(ctx, addr); err == nil {
			c = stage04{gc}
		}
	case "05":
		var ac *asyncrpc.Client
		if ac, err = asyncrpc.Dial(ctx, addr); err == nil {
			c = stage05{ac}
		}
	case "07":
		var ac *atmostonce.Client
		if ac, err = atmostonce.Dial(ctx, addr); err == nil {
			c = stage07{ac}
		}
	default:
		c = stage06{wsgirouter.NewClient(addr)}
	}
	return c, err
}

type stage01 struct{ c *httpadd.Client }

func (s stage01) add(ctx context.Context) error {
	sum, err := s.c.Add(ctx, 1, 2)
	return check(sum, err)
}
func (s stage01) close() { s.c.Close() }

type stage02 struct{ c *jsontcp.Client }

func (s stage02) add(ctx context.Context) error {
	res, err := s.c.Call(ctx, "add", []any{1, 2, 0}, nil)
	if err != nil {
		return err
	}
	sum, err := strconv.Atoi(string(res))
	return check(sum, err)
}
func (s stage02) close() { s.c.Close() }

type stage03 struct{ c *customproto.Client }

func (s stage03) add(ctx context.Context) error {
	res, err := s.c.Call(ctx, "add", 1, 2)
	sum, _ := res.(int)
	return check(sum, err)
}
func (s stage03) close() { s.c.Close() }

type stage04 struct{ c *gobrpc.Client }

func (s stage04) add(ctx context.Context) error {
	res, err := s.c.Call(ctx, "add", 1, 2)
	sum, _ := res.(int)
	return check(sum, err)
}
func (s stage04) close() { s.c.Close() }

type stage05 struct{ c *asyncrpc.Client }

func (s stage05) add(ctx context.Context) error {
	res, err := s.c.Call(ctx, "add", 1, 2)
	sum, _ := res.(int)
	return check(sum, err)
}
func (s stage05) close() { s.c.Close() }

type stage07 struct{ c *atmostonce.Client }

func (s stage07) add(ctx context.Context) error {
	res, err := s.c.Call(ctx, "add", 1, 2)
	sum, _ := res.(int)
	return check(sum, err)
}
func (s stage07) close() { s.c.Close() }

// onlyConn is a Dialer whose first connection is conn: a stage 07 client
// on it makes its calls on conn, and dials nothing else until it is
// closed.
func onlyConn(conn net.Conn) atmostonce.Dialer {
	var once atomic.Bool
	return func(ctx context.Context) (net.Conn, error) {
		if once.CompareAndSwap(false, true) {
			return conn, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
}

type stage06 struct{ c *wsgirouter.Client }

func (s stage06) add(ctx context.Context) error {
	sum, err := s.c.Add(ctx, 1, 2)
	return check(sum, err)
}
func (s stage06) close() { s.c.Close() }

func check(sum int, err error) error {
	if err == nil && sum != 3 {
		err = fmt.Errorf("add(1, 2) = %d", sum)
	}
	return err
}

// oneCall makes an add call on conn, for -answered, and leaves conn open
// with no deadline. It returns what to call once conn is closed: a stage
// 07 client dials again when its connection closes, and must be closed.
func oneCall(stage string, conn net.Conn) (done func(), err error) {
	done = func() {}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer conn.SetDeadline(time.Time{})
	switch stage {
	case "01", "06":
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: flood\r\n\r\n"); err != nil {
			return done, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return done, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return done, err
	case "02":
		return done, stage02{jsontcp.NewClient(conn)}.add(ctx)
	case "03":
		return done, stage03{customproto.NewClient(conn)}.add(ctx)
	case "04":
		return done, stage04{gobrpc.NewClient(conn)}.add(ctx)
	case "05":
		return done, stage05{asyncrpc.NewClient(conn)}.add(ctx)
	default:
		c := atmostonce.NewClient(onlyConn(conn))
		return func() { c.Close() }, stage07{c}.add(ctx)
	}
}

// peak samples the server's open files every 50 ms until stop.
type peak struct {
	files atomic.Int64
	done  chan struct{}
	ended chan struct{}
}

func watch(pid int) *peak {
	p := &peak{done: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
		for pid != 0 {
			if entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil && int64(len(entries)) > p.files.Load() {
				p.files.Store(int64(len(entries)))
			}
			select {
			case <-p.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *peak) stop() int64 {
	close(p.done)
	<-p.ended
	return p.files.Load()
}

// procStatus reads a field of /proc/PID/status, in kB, or -1.
func procStatus(pid int, field string) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(status)) {
		if value, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " kB"))
			if err == nil {
				return n
			}
		}
	}
	return -1
}
