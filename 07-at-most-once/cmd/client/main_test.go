package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// ctime matches a time as get_time answers it, in Python's ctime layout.
var ctime = regexp.MustCompile(`[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}`)

// scrub replaces what changes from run to run (the port the embedded server
// got, and the time get_time answered) with fixed text, so the transcript
// can be golden. In the demo's lines the time becomes DATE. In a hex dump
// it becomes its layout, Www Mmm dd hh:mm:ss yyyy: a ctime is always 24
// bytes, so the lengths and offsets around it do not change.
func scrub(b []byte) []byte {
	b = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(b, []byte("127.0.0.1:PORT"))
	b = hexDump.ReplaceAllFunc(b, func(dump []byte) []byte {
		return redump(ctime.ReplaceAll(undump(dump), []byte("Www Mmm dd hh:mm:ss yyyy")))
	})
	return ctime.ReplaceAll(b, []byte("DATE"))
}

// hexDump matches the lines of one hex dump in a transcript.
var hexDump = regexp.MustCompile(`(?m)(^    [0-9a-f]{8}  .*\n)+`)

// undump returns the bytes a hex dump shows.
func undump(dump []byte) []byte {
	var b []byte
	for line := range strings.Lines(string(dump)) {
		hexPart, _, _ := strings.Cut(line[len("    00000000  "):], "|")
		digits, err := hex.DecodeString(strings.Join(strings.Fields(hexPart), ""))
		if err != nil {
			panic(fmt.Sprintf("not a hex dump line: %q", line))
		}
		b = append(b, digits...)
	}
	return b
}

// redump writes b as the Tap writes a hex dump.
func redump(b []byte) []byte {
	var out strings.Builder
	for line := range strings.Lines(hex.Dump(b)) {
		out.WriteString("    " + line)
	}
	return []byte(out.String())
}

// events tells waiters that something changed: each wait gets a channel
// that the next fire closes. A test waits on it, with a backstop, instead
// of polling.
type events struct {
	mu sync.Mutex // protects ch
	ch chan struct{}
}

// next returns a channel that closes at the next fire.
func (e *events) next() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.ch
}

func (e *events) fire() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch != nil {
		close(e.ch)
		e.ch = nil
	}
}

// waitUntil waits until done reports true, checking it again each time e
// fires.
func waitUntil(t *testing.T, e *events, what string, done func() bool) {
	t.Helper()
	backstop := time.NewTimer(rpctest.Backstop)
	defer backstop.Stop()
	for {
		changed := e.next() // before the check, so a change after it is not missed
		if done() {
			return
		}
		select {
		case <-changed:
		case <-backstop.C:
			t.Fatalf("still waiting, after %v, for %s", rpctest.Backstop, what)
		}
	}
}

// fakeClock is the demo's clock and the demo service's Sleep, in one. A
// slow call falls asleep and stays asleep until the test wakes it, and
// waking the call of d moves the clock to d after the start: the test
// makes the slow calls end in the order it wants, and the time the demo
// reports is the same on every run.
type fakeClock struct {
	start    time.Time
	mu       sync.Mutex // protects now, sleepers
	now      time.Time
	sleepers map[time.Duration]chan struct{} // the slow calls asleep, by duration
	changed  events                          // fires when a call falls asleep
}

func newFakeClock() *fakeClock {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &fakeClock{start: start, now: start, sleepers: map[time.Duration]chan struct{}{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep is the demo service's: it sleeps until the test wakes it.
func (c *fakeClock) Sleep(d time.Duration) {
	wake := make(chan struct{})
	c.mu.Lock()
	c.sleepers[d] = wake
	c.mu.Unlock()
	c.changed.fire()
	<-wake
}

// waitAsleep waits until the slow call of d is asleep.
func (c *fakeClock) waitAsleep(t *testing.T, d time.Duration) {
	t.Helper()
	waitUntil(t, &c.changed, fmt.Sprintf("slow(%d) to start", d.Milliseconds()), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sleepers[d] != nil
	})
}

// wake waits until the slow call of d is asleep, moves the clock to d after
// the start, and wakes the call.
func (c *fakeClock) wake(t *testing.T, d time.Duration) {
	t.Helper()
	c.waitAsleep(t, d)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.start.Add(d)
	close(c.sleepers[d])
	delete(c.sleepers, d)
}

// wakeAll wakes every call still asleep, so that a failed test leaves no
// call behind.
func (c *fakeClock) wakeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, wake := range c.sleepers {
		close(wake)
		delete(c.sleepers, d)
	}
}

// watchedOutput is the demo's standard output: it keeps what the demo
// prints, and lets the test wait for a line.
type watchedOutput struct {
	mu      sync.Mutex // protects buf
	buf     bytes.Buffer
	changed events // fires after each write
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.buf.Write(p)
	w.mu.Unlock()
	w.changed.fire()
	return n, err
}

func (w *watchedOutput) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// waitFor waits until the demo has printed s.
func (w *watchedOutput) waitFor(t *testing.T, s string) {
	t.Helper()
	waitUntil(t, &w.changed, fmt.Sprintf("the demo to print %q", s), func() bool {
		return bytes.Contains(w.Bytes(), []byte(s))
	})
}

// deadlineAtWill is a context whose deadline passes when its cancel
// function is called: the demo's short deadline, at the moment the test
// chooses.
type deadlineAtWill struct{ context.Context }

func (d deadlineAtWill) Err() error {
	if d.Context.Err() != nil {
		return context.DeadlineExceeded
	}
	return nil
}

// runDemoWithoutTiming runs the demo with args against the demo server in
// this process, with the test's clock, and drives it: once all three slow
// calls are running on the server, it wakes them one at a time, each once
// the demo has printed the one before; it lets the short deadline pass
// once slow(500) is running on the server; and it wakes slow(500) once the
// callback has printed, so its late answer comes at the same place on
// every run. Nothing waits for real time.
func runDemoWithoutTiming(t *testing.T, args ...string) (stdout []byte, stderr string) {
	clock := newFakeClock()
	expire := make(chan context.CancelFunc, 1)
	savedServer, savedNow, savedTimeout := newDemoServer, now, withTimeout
	t.Cleanup(func() { newDemoServer, now, withTimeout = savedServer, savedNow, savedTimeout })
	newDemoServer = func() *atmostonce.Server { return atmostonce.NewDemoServer(atmostonce.Service{Sleep: clock.Sleep}) }
	now = clock.Now
	withTimeout = func(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(ctx)
		expire <- cancel
		return deadlineAtWill{ctx}, cancel
	}

	out := &watchedOutput{}
	var errOut bytes.Buffer
	ran := make(chan error, 1)
	go func() { ran <- run(t.Context(), args, out, &errOut) }()
	t.Cleanup(func() {
		clock.wakeAll()
		select {
		case <-ran: // run has returned, or returns now that every call is awake
		case <-time.After(rpctest.Backstop):
		}
	})

	// On the real clock, slow(100) ends long after the three requests
	// are sent. Here the test decides: it ends none before the server is
	// running all three, so all three requests cross before any answer,
	// however the client's writer happened to batch them.
	for _, ms := range []time.Duration{300, 100, 200} {
		clock.waitAsleep(t, ms*time.Millisecond)
	}
	clock.wake(t, 100*time.Millisecond)
	out.waitFor(t, "slow(100) = 100")
	clock.wake(t, 200*time.Millisecond)
	out.waitFor(t, "slow(200) = 200")
	clock.wake(t, 300*time.Millisecond)
	clock.waitAsleep(t, 500*time.Millisecond)
	(<-expire)() // slow(500) is on the server now: its deadline passes
	out.waitFor(t, "printed by its callback")
	clock.wake(t, 500*time.Millisecond)

	select {
	case err := <-ran:
		ran <- err // for the cleanup
		require.NoError(t, err, errOut.String())
	case <-time.After(rpctest.Backstop):
		t.Fatalf("the demo did not end within %v; it printed:\n%s", rpctest.Backstop, out.Bytes())
	}
	return out.Bytes(), errOut.String()
}

// TestDemoTranscript runs the demo with -trace against the embedded server
// and compares everything it prints with testdata/demo.golden: the calls,
// their results, and every byte on the wire, answers crossing. The test's
// clock decides when each slow call ends, so the transcript is the same on
// every run. The lesson quotes this file.
func TestDemoTranscript(t *testing.T) {
	stdout, stderr := runDemoWithoutTiming(t, "-trace")
	assert.Regexp(t, `^\(no -addr: serving on 127\.0\.0\.1:\d+ in this process\)\n$`, stderr)
	rpctest.Golden(t, filepath.Join("..", "..", "testdata", "demo.golden"), scrub(stdout))
}

// demoOutput is what the demo prints without -trace, when the slow calls
// end in the order of their durations and the clock moves only as they do.
const demoOutput = `slow(300), slow(100) and slow(200), started together on one connection:
slow(100) = 100 (call 2)
slow(200) = 200 (call 3)
slow(300) = 300 (call 1)
all three took 300ms; one after another they would take 600ms
slow(500) with a 50ms deadline -> error: slow: context deadline exceeded (call 4, given up)
add(2, 3) = 5 (call 5), printed by its callback
the late answer to call 4 came and was dropped (late answers so far: 1)
sum(1, 2) = 3
sum(1.1, 2) = 3.1
get_time() = "DATE"
echo("a,b-c:d@e%f\n中文 ✓") = "a,b-c:d@e%f\n中文 ✓"
sub(3, 1) -> error: no function "sub"; there are: add, echo, get_time, slow, sum
sum(1) -> error: sum: takes 2 arguments, got 1
sum(9223372036854775807, 1) -> error: sum: 9223372036854775807 + 1 does not fit in an int (64 bits)
echo(42) -> error: echo: argument 1: want str, got int 42
`

func TestDemoWithoutTrace(t *testing.T) {
	stdout, stderr := runDemoWithoutTiming(t)
	assert.Equal(t, demoOutput, string(scrub(stdout)))
	assert.Regexp(t, `^\(no -addr: serving on 127\.0\.0\.1:\d+ in this process\)\n$`, stderr)
}

// TestDemoOnTheRealClock runs the demo as a reader runs it, slow calls
// sleeping for real. How long they took, and so the order they end in,
// depends on the machine: the test checks only that every line is there.
func TestDemoOnTheRealClock(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), nil, &stdout, &stderr), stderr.String())
	took := regexp.MustCompile(`^all three took \S+; one after another they would take 600ms$`)
	want := strings.Split(strings.TrimSuffix(demoOutput, "\n"), "\n")
	got := strings.Split(strings.TrimSuffix(string(scrub(stdout.Bytes())), "\n"), "\n")
	for i, line := range got {
		if took.MatchString(line) {
			got[i] = "all three took 300ms; one after another they would take 600ms"
		}
	}
	assert.ElementsMatch(t, want, got)
}

var summary = regexp.MustCompile(`^calls=(\d+) ok=(\d+) errors=(\d+) mismatches=(\d+) elapsed=\S+ rps=\d+ p50=\S+ p99=\S+\n$`)

// loadSummary parses the one line load mode prints.
func loadSummary(t *testing.T, out string) (calls, ok, errs, mismatches int) {
	t.Helper()
	m := summary.FindStringSubmatch(out)
	require.NotNil(t, m, "load mode printed %q", out)
	n := make([]int, 4)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	return n[0], n[1], n[2], n[3]
}

// connsServer serves the demo on a free port until the test ends, and
// keeps each connection it accepted, with the bytes it read from it.
type connsServer struct {
	*rpctest.CountingListener
	mu    sync.Mutex // protects conns
	conns []*readCountingConn
}

type readCountingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *readCountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (l *connsServer) Accept() (net.Conn, error) {
	conn, err := l.CountingListener.Accept()
	if err != nil {
		return nil, err
	}
	counted := &readCountingConn{Conn: conn}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = append(l.conns, counted)
	return counted, nil
}

// bytesRead returns, for each connection accepted, the bytes read from it.
func (l *connsServer) bytesRead() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var read []int64
	for _, c := range l.conns {
		read = append(read, c.read.Load())
	}
	return read
}

func startConnsServer(t *testing.T) *connsServer {
	l := &connsServer{CountingListener: rpctest.Listen(t)}
	srv := atmostonce.NewDemoServer(atmostonce.Service{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, atmostonce.ErrServerClosed)
	})
	return l
}

// TestLoad runs load mode against a server that counts the connections it
// accepts: the callers share one connection unless -conns says more, and
// then every connection carries calls.
func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		conns int
	}{
		{"one connection by default", nil, 1},
		{"-conns 1", []string{"-conns", "1"}, 1},
		{"-conns 4", []string{"-conns", "4"}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startConnsServer(t)
			args := append([]string{"-addr", l.Addr().String(), "-calls", "500", "-concurrency", "16"}, tc.args...)
			var stdout, stderr bytes.Buffer
			require.NoError(t, run(t.Context(), args, &stdout, &stderr), stderr.String())
			calls, ok, errs, mismatches := loadSummary(t, stdout.String())
			assert.Equal(t, []int{500, 500, 0, 0}, []int{calls, ok, errs, mismatches})
			assert.Equal(t, tc.conns, l.Accepted(), "connections accepted")
			for i, n := range l.bytesRead() {
				// The first request alone, with its type definitions, is
				// 150 bytes; a later one about 30.
				assert.Greater(t, n, int64(300), "connection %d carried only %d bytes", i+1, n)
			}
		})
	}
}

// TestLoadWithoutAddr runs load mode against the server it starts itself.
func TestLoadWithoutAddr(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-calls", "500", "-concurrency", "16"}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	calls, ok, errs, mismatches := loadSummary(t, stdout.String())
	assert.Equal(t, []int{500, 500, 0, 0}, []int{calls, ok, errs, mismatches})
}

// liar is a service whose add answers every seventh call with a wrong sum
// and refuses every eleventh.
type liar struct {
	calls *atomic.Int64
}

// Add answers add(a, b), when it does not lie.
func (l liar) Add(a, b int) (int, error) {
	switch n := l.calls.Add(1); {
	case n%11 == 0:
		return 0, errors.New("no")
	case n%7 == 0:
		return a + b + 1, nil
	}
	return a + b, nil
}

// startLiar serves liar on a free port until the test ends.
func startLiar(t *testing.T) string {
	srv := atmostonce.NewServer()
	_, err := srv.Register(liar{calls: new(atomic.Int64)})
	require.NoError(t, err)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, atmostonce.ErrServerClosed)
	})
	return l.Addr().String()
}

// TestLoadCatchesWrongAnswers points load mode at the liar: the summary
// must count the wrong sums and the refusals, and the run must fail.
func TestLoadCatchesWrongAnswers(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-addr", startLiar(t), "-calls", "77", "-concurrency", "4"}, &stdout, &stderr)
	require.Error(t, err)
	total, ok, errs, mismatches := loadSummary(t, stdout.String())
	// Of calls 1..77, 7 are multiples of 11 (refused) and 11 are multiples
	// of 7, one of them (77) also a multiple of 11: 10 wrong sums.
	assert.Equal(t, []int{77, 60, 7, 10}, []int{total, ok, errs, mismatches})
	assert.Contains(t, stderr.String(), "want")
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-calls", "-1"},
		{"-calls", "10", "-concurrency", "0"},
		{"-calls", "10", "-conns", "0"},
		{"-nosuchflag"},
		{"stray"},
	} {
		var stdout, stderr bytes.Buffer
		assert.Error(t, run(t.Context(), args, &stdout, &stderr), "%q", args)
	}
}

// TestServerGone checks that the client reports a server it cannot reach.
func TestServerGone(t *testing.T) {
	l := rpctest.Listen(t)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-addr", addr}, &stdout, &stderr)
	var opErr *net.OpError
	assert.ErrorAs(t, err, &opErr)
}
