package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// ctime matches a time as get_time answers it, in Python's ctime layout.
var ctime = regexp.MustCompile(`[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}`)

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

// scrub replaces the port the embedded server got with PORT, so that a
// transcript can be compared. (In the bubble it is always the pipe
// network's, but a transcript on the real clock has a real one.)
func scrub(b []byte) []byte {
	return regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(b, []byte("127.0.0.1:PORT"))
}

// epochMark is what an epoch's eight bytes become in the golden transcript.
var epochMark = []byte("<epoch!>")

// epochOf decodes the first answer in a transcript, and returns its
// server's epoch.
func epochOf(t *testing.T, transcript []byte) uint64 {
	t.Helper()
	_, after, ok := bytes.Cut(transcript, []byte("<-- conn 1 received"))
	require.True(t, ok, "no answer in the transcript")
	frame := undump(hexDump.Find(after))
	require.Greater(t, len(frame), 4)
	var resp atmostonce.Response
	require.NoError(t, gob.NewDecoder(bytes.NewReader(frame[4:])).Decode(&resp))
	require.NotZero(t, resp.Epoch)
	return resp.Epoch
}

// scrubEpoch replaces epoch in the hex dumps of a transcript by epochMark.
// The server draws its first epoch at random (table.go), so it is the
// one thing in the bytes that the seeds do not fix. gob writes a uint of
// eight bytes as 0xf8 and the bytes: an epoch of fewer bytes would change
// every frame's length, so scrubEpoch reports false for one.
func scrubEpoch(transcript []byte, epoch uint64) ([]byte, bool) {
	if epoch < 1<<56 {
		return nil, false
	}
	var enc [9]byte
	enc[0] = 0xf8
	binary.BigEndian.PutUint64(enc[1:], epoch)
	mark := append([]byte{0xf8}, epochMark...)
	return hexDump.ReplaceAllFunc(transcript, func(dump []byte) []byte {
		return redump(bytes.ReplaceAll(undump(dump), enc[:], mark))
	}), true
}

// pipeNet is the demo's network in a synctest bubble: a listener of
// net.Pipe connections that says it is on loopback, so that a transcript
// reads as the real one does.
type pipeNet struct {
	conns     chan net.Conn // the server's ends, dialled and not accepted yet
	closed    chan struct{}
	closeOnce sync.Once
}

var pipeAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50051}

func newPipeNet() *pipeNet {
	return &pipeNet{conns: make(chan net.Conn, 16), closed: make(chan struct{})}
}

func (l *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeNet) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeNet) Addr() net.Addr { return pipeAddr }

func (l *pipeNet) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return loopbackConn{client}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// loopbackConn is a pipe that says its peer is on loopback.
type loopbackConn struct{ net.Conn }

func (loopbackConn) RemoteAddr() net.Addr { return pipeAddr }

// laterDeadline is a context whose deadline is reported a millisecond
// later than it passes. The demo's short deadline goes to the server as
// its own: in a bubble, where no time passes on the way, the two would
// pass at the same instant, and whether the client gives up first or the
// server's answer comes first would be up to the scheduler. With the
// server's a millisecond later, the client gives up first, every time, and
// its cancel stops the call on the server.
type laterDeadline struct{ context.Context }

func (l laterDeadline) Deadline() (time.Time, bool) {
	d, ok := l.Context.Deadline()
	return d.Add(time.Millisecond), ok
}

// runDemoInBubble runs the demo with args in a synctest bubble, over
// pipes, with a seeded client: the same on every run, and in no time.
func runDemoInBubble(t *testing.T, args ...string) (stdout []byte, stderr string) {
	savedListen, savedOptions, savedTimeout := listenLocal, clientOptions, withTimeout
	t.Cleanup(func() { listenLocal, clientOptions, withTimeout = savedListen, savedOptions, savedTimeout })
	listenLocal = func() (net.Listener, atmostonce.Dialer, error) {
		l := newPipeNet()
		return l, l.dial, nil
	}
	clientOptions = func() []atmostonce.Option { return []atmostonce.Option{atmostonce.WithSeed(1)} }
	withTimeout = func(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(ctx, d)
		return laterDeadline{ctx}, cancel
	}
	synctest.Test(t, func(t *testing.T) {
		var out, errOut bytes.Buffer
		require.NoError(t, run(t.Context(), args, &out, &errOut), errOut.String())
		stdout, stderr = out.Bytes(), errOut.String()
	})
	return stdout, stderr
}

// TestDemoTranscript runs the demo with -trace and compares everything it
// prints with testdata/demo.golden: the calls, their results, what the
// client did when a connection was cut, and every byte on the wire. The
// demo runs in a synctest bubble, over pipes, with a seeded client, so the
// transcript is the same on every run but for the server's epoch, which
// is scrubbed. The lesson quotes this file.
func TestDemoTranscript(t *testing.T) {
	var stdout []byte
	for range 4 { // one epoch in 128 is short (see scrubEpoch): run again
		out, stderr := runDemoInBubble(t, "-trace")
		assert.Equal(t, "(no -addr: serving on 127.0.0.1:50051 in this process)\n", stderr)
		var ok bool
		if stdout, ok = scrubEpoch(out, epochOf(t, out)); ok {
			break
		}
	}
	require.NotNil(t, stdout, "four short epochs in a row")
	rpctest.Golden(t, filepath.Join("..", "..", "testdata", "demo.golden"), scrub(stdout))
}

// demoOutput is what the demo prints without -trace, in the bubble: the
// seeded client's backoff is the same on every run, and its calls take no
// time.
const demoOutput = `9 calls of incr("demo"), one after another; the network loses the answers to calls 4 and 7, after they ran:
incr("demo") = 1 (call 1)
incr("demo") = 2 (call 2)
incr("demo") = 3 (call 3)
  call 4: its connection broke before the answer came; it goes again, as attempt 2
  dialling again in 9ms (the server closed the connection: EOF)
incr("demo") = 4 (call 4, attempt 2)
incr("demo") = 5 (call 5)
incr("demo") = 6 (call 6)
  call 7: its connection broke before the answer came; it goes again, as attempt 2
  dialling again in 72ms (the server closed the connection: EOF)
incr("demo") = 7 (call 7, attempt 2)
incr("demo") = 8 (call 8)
incr("demo") = 9 (call 9)
get("demo") = 9
run twice: 0
slow(500) with a 50ms deadline -> deadline exceeded (outcome unknown): given up: context deadline exceeded
  the server stopped slow(500) too: its answer came 50ms after the call began, late, and was dropped
sub(3, 1) -> unimplemented (did not run): no function "sub"; there are: add, echo, get, get_time, incr, ran_twice, slow, sum
`

func TestDemoWithoutTrace(t *testing.T) {
	stdout, stderr := runDemoInBubble(t)
	assert.Equal(t, demoOutput, string(stdout))
	assert.Equal(t, "(no -addr: serving on 127.0.0.1:50051 in this process)\n", stderr)
}

// twice is the demo service, but its incr runs twice each time it is
// called: the demo's server, with at most once broken.
type twice struct{ atmostonce.Service }

func (s twice) Incr(ctx context.Context, key string) (int, error) {
	if _, err := s.Service.Incr(ctx, key); err != nil {
		return 0, err
	}
	return s.Service.Incr(ctx, key)
}

// liesAboutTwice is the demo service, but its ran_twice says 1.
type liesAboutTwice struct{ atmostonce.Service }

func (liesAboutTwice) RanTwice() (int, error) { return 1, nil }

// TestDemoCatchesBrokenAtMostOnce gives the demo a server that runs each
// incr twice, or says it ran one twice: the demo must say so, and fail.
func TestDemoCatchesBrokenAtMostOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		service any
		want    string
	}{
		{"incr runs twice", twice{atmostonce.Service{Counters: atmostonce.NewCounters()}},
			"the counter is 18 after 9 calls of incr: at most once is broken"},
		{"ran_twice says 1", liesAboutTwice{atmostonce.Service{Counters: atmostonce.NewCounters()}},
			"the server ran 1 calls twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := newDemoServer
			t.Cleanup(func() { newDemoServer = saved })
			newDemoServer = func() *atmostonce.Server {
				srv := atmostonce.NewServer()
				_, err := srv.Register(tc.service)
				require.NoError(t, err)
				return srv
			}
			var stdout, stderr bytes.Buffer
			assert.EqualError(t, run(t.Context(), nil, &stdout, &stderr), tc.want)
		})
	}
}

// timings matches what changes from run to run on the real clock: the
// backoff the client drew, and how long the server took to stop slow(500).
var timings = regexp.MustCompile(`(dialling again in|its answer came) \S+`)

// TestDemoOnTheRealClock runs the demo as a reader runs it, over TCP, with
// a random client id and backoff: every line must be there, but for the
// timings.
func TestDemoOnTheRealClock(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), nil, &stdout, &stderr), stderr.String())
	assert.Regexp(t, `^\(no -addr: serving on 127\.0\.0\.1:\d+ in this process\)\n$`, stderr.String())
	want := timings.ReplaceAllString(demoOutput, "$1 T")
	got := timings.ReplaceAllString(stdout.String(), "$1 T")
	// On the real clock the server's answer, at the deadline it was sent,
	// may beat the client's own timer (often under the race detector):
	// then the call ends with the server's answer, and it is no late
	// answer.
	got = strings.Replace(got, "deadline exceeded (ran): slow: context deadline exceeded\n",
		"deadline exceeded (outcome unknown): given up: context deadline exceeded\n", 1)
	got = strings.Replace(got, "the call began\n", "the call began, late, and was dropped\n", 1)
	assert.Equal(t, want, got)
	m := regexp.MustCompile(`its answer came (\S+) after`).FindStringSubmatch(stdout.String())
	require.NotNil(t, m)
	took, err := time.ParseDuration(m[1])
	require.NoError(t, err)
	assert.Less(t, took, 500*time.Millisecond, "slow(500) ran on after its caller gave up")
}

// summary is the line load mode prints.
var summary = regexp.MustCompile(`^calls=(\d+) ok=(\d+) errors=(\d+) mismatches=(\d+) elapsed=\S+ rps=\d+ p50=\S+ p99=\S+ retries=(\d+) unknown=(\d+) ran-twice=(\d+)(?: counter=(-?\d+))?\n$`)

// loadResult is what the summary line says.
type loadResult struct {
	calls, ok, errors, mismatches, retries, unknown, ranTwice int
	counter                                                   int // -1 without -incr
}

// loadSummary parses the one line load mode prints.
func loadSummary(t *testing.T, out string) loadResult {
	t.Helper()
	m := summary.FindStringSubmatch(out)
	require.NotNil(t, m, "load mode printed %q", out)
	n := make([]int, 8)
	for i := range n {
		n[i] = -1
		if m[i+1] != "" {
			n[i], _ = strconv.Atoi(m[i+1])
		}
	}
	return loadResult{n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]}
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

// serve serves srv on l until the test ends.
func serve(t *testing.T, srv *atmostonce.Server, l net.Listener) {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, atmostonce.ErrServerClosed)
	})
}

func startConnsServer(t *testing.T) *connsServer {
	l := &connsServer{CountingListener: rpctest.Listen(t)}
	serve(t, atmostonce.NewDemoServer(atmostonce.Service{}), l)
	return l
}

// TestLoad runs load mode against a server that counts the connections it
// accepts: the callers share one client unless -conns says more, and then
// every client's connection carries calls. One connection more, the
// first, asks for ran_twice() at the end.
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
			assert.Equal(t, loadResult{calls: 500, ok: 500, counter: -1}, loadSummary(t, stdout.String()))
			assert.Equal(t, tc.conns+1, l.Accepted(), "connections accepted")
			for i, n := range l.bytesRead()[1:] {
				// The first request alone, with its type definitions, is
				// 250 bytes; a later one about 50.
				assert.Greater(t, n, int64(500), "connection %d carried only %d bytes", i+1, n)
			}
		})
	}
}

// TestLoadWithoutAddr runs load mode against the server it starts itself,
// with add and with incr.
func TestLoadWithoutAddr(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-calls", "500", "-concurrency", "16"}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	assert.Equal(t, loadResult{calls: 500, ok: 500, counter: -1}, loadSummary(t, stdout.String()))

	stdout.Reset()
	err = run(t.Context(), []string{"-calls", "500", "-concurrency", "16", "-incr", "k", "-conns", "3"}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	assert.Equal(t, loadResult{calls: 500, ok: 500, counter: 500}, loadSummary(t, stdout.String()))
}

// TestLoadIncrCountsTheGrowth runs -incr twice against one server: the
// second run reports how much the counter grew, not its value.
func TestLoadIncrCountsTheGrowth(t *testing.T) {
	l := startConnsServer(t)
	for range 2 {
		var stdout, stderr bytes.Buffer
		args := []string{"-addr", l.Addr().String(), "-calls", "100", "-incr", "k"}
		require.NoError(t, run(t.Context(), args, &stdout, &stderr), stderr.String())
		assert.Equal(t, 100, loadSummary(t, stdout.String()).counter)
	}
}

// loadFaults are the faults of the load tests: each connection of the
// clients is cut after up to 4000 bytes, or loses what it writes after its
// first answer, or, one time in five, works. A cut connection carried
// requests the server was running: their answers are lost, and the calls
// go again, to be answered from the table.
const loadFaults = "cut=0.5,lose-answer=0.3,max-after=4000,seed=10"

// TestLoadWithFaults runs load mode through faults on the clients'
// connections: calls are sent again (retries > 0), the server runs none
// twice, and the counter grew by between the calls that succeeded and
// those plus the ones whose outcome is unknown. A call whose outcome is
// unknown is no error under -faults.
func TestLoadWithFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"incr", []string{"-incr", "k"}},
		{"incr on 3 connections", []string{"-incr", "k", "-conns", "3"}},
		{"add", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-calls", "300", "-concurrency", "8", "-faults", loadFaults}, tc.args...)
			require.NoError(t, run(t.Context(), args, &stdout, &stderr), stderr.String())
			r := loadSummary(t, stdout.String())
			t.Logf("%s%s", stdout.String(), stderr.String())
			assert.Equal(t, 300, r.calls)
			assert.Zero(t, r.errors)
			assert.Zero(t, r.mismatches)
			assert.Zero(t, r.ranTwice)
			assert.Equal(t, r.calls, r.ok+r.unknown, "every call ended well, or with its outcome unknown")
			assert.Positive(t, r.retries, "the faults fired")
			assert.Regexp(t, `faults fired: .*cut=\d+`, stderr.String())
			if r.counter >= 0 {
				assert.GreaterOrEqual(t, r.counter, r.ok)
				assert.LessOrEqual(t, r.counter, r.ok+r.unknown)
			}
		})
	}
}

// TestLoadWithoutRetries makes the calls of TestLoadWithFaults with
// -attempts 1: no call is sent twice, so every lost answer leaves its
// call's outcome unknown, and none is settled by a retry.
func TestLoadWithoutRetries(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-calls", "300", "-concurrency", "8", "-faults", loadFaults, "-incr", "k", "-attempts", "1"}
	require.NoError(t, run(t.Context(), args, &stdout, &stderr), stderr.String())
	r := loadSummary(t, stdout.String())
	t.Logf("%s%s", stdout.String(), stderr.String())
	assert.Zero(t, r.retries, "-attempts 1 sends no call twice")
	assert.Positive(t, r.unknown, "the faults fired, and nothing settled them")
	assert.Zero(t, r.ranTwice)
	assert.GreaterOrEqual(t, r.counter, r.ok)
	assert.LessOrEqual(t, r.counter, r.ok+r.unknown)
}

// counters is a service with the demo's get and ran_twice, whose incr
// adds step, and whose ran_twice says what the test sets.
type counters struct {
	n        *atomic.Int64
	step     int64
	ranTwice int
}

func (c counters) Incr(key string) int     { return int(c.n.Add(c.step)) }
func (c counters) Get(key string) int      { return int(c.n.Load()) }
func (c counters) RanTwice() int           { return c.ranTwice }
func (counters) Add(a, b int) (int, error) { return a + b, nil }

// startCounters serves counters on a free port until the test ends.
func startCounters(t *testing.T, step int64, ranTwice int) string {
	srv := atmostonce.NewServer()
	_, err := srv.Register(counters{n: new(atomic.Int64), step: step, ranTwice: ranTwice})
	require.NoError(t, err)
	l := rpctest.Listen(t)
	serve(t, srv, l)
	return l.Addr().String()
}

// TestLoadIncrCatchesACounterThatGrewTooMuch points -incr at a server whose
// incr adds 2: the counter grows by twice the calls, which no unknown
// outcome explains. The run must report it and fail.
func TestLoadIncrCatchesACounterThatGrewTooMuch(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-addr", startCounters(t, 2, 0), "-calls", "50", "-incr", "k"}, &stdout, &stderr)
	require.Error(t, err)
	assert.Equal(t, loadResult{calls: 50, ok: 50, mismatches: 1, counter: 100}, loadSummary(t, stdout.String()))
	assert.Contains(t, stderr.String(), `the counter "k" grew by 100, for 50 incr calls that succeeded and 0 whose outcome is unknown`)
}

// TestLoadIncrCatchesACounterThatGrewTooLittle points -incr at a server
// whose incr answers and does not count: the counter grows by less than
// the calls that succeeded. The run must report it and fail.
func TestLoadIncrCatchesACounterThatGrewTooLittle(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-addr", startCounters(t, 0, 0), "-calls", "50", "-incr", "k"}, &stdout, &stderr)
	require.Error(t, err)
	assert.Equal(t, loadResult{calls: 50, ok: 50, mismatches: 1, counter: 0}, loadSummary(t, stdout.String()))
}

// TestLoadExcusesUnknownOutcomesUnderFaults makes every connection of the
// client lose what it writes after its first answer: each call after the
// first on a connection is lost with it, until the retry budget is spent,
// and then such calls end with their outcome unknown. Under -faults they
// are counted, not errors, and the run succeeds; the counter grew by the
// calls that succeeded, as the lost ones never reached the server.
func TestLoadExcusesUnknownOutcomesUnderFaults(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-calls", "30", "-concurrency", "1", "-incr", "k", "-faults", "lose-answer=1"}
	require.NoError(t, run(t.Context(), args, &stdout, &stderr), stderr.String())
	r := loadSummary(t, stdout.String())
	assert.Positive(t, r.unknown)
	assert.Zero(t, r.errors)
	assert.Equal(t, r.calls, r.ok+r.unknown)
	assert.Equal(t, r.ok, r.counter)
}

// TestLoadFailsIfTheServerRanACallTwice points load mode at a server whose
// ran_twice() says 3: the run must report it and fail.
func TestLoadFailsIfTheServerRanACallTwice(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-addr", startCounters(t, 1, 3), "-calls", "50"}, &stdout, &stderr)
	require.ErrorContains(t, err, "the server ran 3 calls twice")
	assert.Equal(t, loadResult{calls: 50, ok: 50, ranTwice: 3, counter: -1}, loadSummary(t, stdout.String()))
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
		return 0, fmt.Errorf("no")
	case n%7 == 0:
		return a + b + 1, nil
	}
	return a + b, nil
}

// RanTwice is the demo's ran_twice, which load mode asks at the end.
func (liar) RanTwice() int { return 0 }

// TestLoadCatchesWrongAnswers points load mode at the liar: the summary
// must count the wrong sums and the refusals, and the run must fail.
func TestLoadCatchesWrongAnswers(t *testing.T) {
	srv := atmostonce.NewServer()
	_, err := srv.Register(liar{calls: new(atomic.Int64)})
	require.NoError(t, err)
	l := rpctest.Listen(t)
	serve(t, srv, l)
	var stdout, stderr bytes.Buffer
	err = run(t.Context(), []string{"-addr", l.Addr().String(), "-calls", "77", "-concurrency", "4"}, &stdout, &stderr)
	require.Error(t, err)
	// Of calls 1..77, 7 are multiples of 11 (refused) and 11 are multiples
	// of 7, one of them (77) also a multiple of 11: 10 wrong sums.
	assert.Equal(t, loadResult{calls: 77, ok: 60, errors: 7, mismatches: 10, counter: -1}, loadSummary(t, stdout.String()))
	assert.Contains(t, stderr.String(), "want")
}

// TestOneCall makes one call with -call, against the server in this
// process, and checks what it prints.
func TestOneCall(t *testing.T) {
	for _, tc := range []struct{ call, want string }{
		{`get("k")`, "0\n"},
		{`incr("k")`, "1\n"},
		{`add(1, 2)`, "3\n"},
		{`add(-1, +5)`, "4\n"},
		{`add(0x10, 1_000)`, "1016\n"},
		{`sum(1.5, 2)`, "3.5\n"},
		{`sum(-1e3, .5)`, "-999.5\n"},
		{`echo("x")`, "x\n"},
		{`echo("a \"b\"\tc\u00e9 中文")`, "a \"b\"\tcé 中文\n"},
		{`echo("")`, "\n"},
		{`slow(10)`, "10\n"},
		{` ran_twice( ) `, "0\n"},
	} {
		t.Run(tc.call, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.NoError(t, run(t.Context(), []string{"-call", tc.call}, &stdout, &stderr), stderr.String())
			assert.Equal(t, tc.want, stdout.String())
		})
	}
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-call", "get_time()"}, &stdout, &stderr))
	assert.Regexp(t, `^`+ctime.String()+`\n$`, stdout.String())
}

// TestOneCallTrace makes one call with -trace: the bytes come first, then
// the result, alone on its line, and then the client closes.
func TestOneCallTrace(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-trace", "-call", `echo("hi")`}, &stdout, &stderr), stderr.String())
	out := stdout.String()
	assert.Regexp(t, `^=== conn 1 open to 127\.0\.0\.1:\d+\n--> conn 1 sent \d+ bytes\n`, out)
	assert.Contains(t, out, "<-- conn 1 received")
	assert.Regexp(t, `<-- conn 1 received \d+ bytes\n(    .*\n)+hi\n=== conn 1 closed by this side\n$`, out, "the result after the bytes")
}

// TestOneCallAtAddr makes calls with -call against a server at -addr: the
// counter it increments is the server's.
func TestOneCallAtAddr(t *testing.T) {
	l := startConnsServer(t)
	for _, want := range []string{"1\n", "2\n"} {
		var stdout, stderr bytes.Buffer
		require.NoError(t, run(t.Context(), []string{"-addr", l.Addr().String(), "-call", `incr("k")`}, &stdout, &stderr))
		assert.Equal(t, want, stdout.String())
	}
}

// TestOneCallFails checks that a call the server refuses is an error that
// says so, its code and its outcome, with nothing on stdout.
func TestOneCallFails(t *testing.T) {
	for _, tc := range []struct {
		call string
		code atmostonce.Code
		want string
	}{
		{`sub(3, 1)`, atmostonce.Unimplemented, `sub: unimplemented (did not run): no function "sub"`},
		{`add(1)`, atmostonce.InvalidArgument, "add: invalid argument (did not run)"},
		{`add(9223372036854775807, 1)`, atmostonce.Unknown, "add: unknown (ran): add: 9223372036854775807 + 1 does not fit in an int"},
		{`slow(-1)`, atmostonce.Unknown, "slow sleeps 0 to 10000 ms, not -1"},
	} {
		t.Run(tc.call, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), []string{"-call", tc.call}, &stdout, &stderr)
			assert.ErrorIs(t, err, tc.code)
			assert.ErrorContains(t, err, tc.want)
			assert.Empty(t, stdout.String())
		})
	}
}

// TestOneCallBadInput checks that a -call that is not a call, or has an
// argument that is not a literal of the wire's types, is refused before
// any connection, with an error that says what is wrong.
func TestOneCallBadInput(t *testing.T) {
	for _, tc := range []struct{ call, want string }{
		{``, ""}, // no -call: the demo; tested elsewhere
		{`get(`, "not a call such as add(1, 2)"},
		{`get("k"`, "not a call such as add(1, 2)"},
		{`get("k") x`, "not a call such as add(1, 2)"},
		{`get`, "not a call such as add(1, 2)"},
		{`1 + 2`, "not a call such as add(1, 2)"},
		{`"get"("k")`, "the function must be a name"},
		{`a.get("k")`, "the function must be a name"},
		{`get(k)`, "argument 1: want an int, a float or a double-quoted string"},
		{`add(1, 1+1)`, "argument 2: want an int, a float or a double-quoted string"},
		{`get('k')`, "argument 1: want an int, a float or a double-quoted string, not 'k'"},
		{"get(`k`)", "argument 1: want an int, a float or a double-quoted string, not `k`"},
		{`get(-"k")`, `argument 1: want an int, a float or a double-quoted string, not -"k"`},
		{`add(2i, 1)`, "argument 1: want an int, a float or a double-quoted string, not 2i"},
		{`add(99999999999999999999, 1)`, "argument 1: 99999999999999999999 does not fit in an int"},
		{`sum(1e999, 1)`, "argument 1: 1e999 does not fit in a float"},
		{`add(1, xs...)`, "no ... in a call"},
	} {
		if tc.call == "" {
			continue
		}
		t.Run(tc.call, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// An -addr where nothing listens: a bad -call must fail before
			// it dials.
			err := run(t.Context(), []string{"-addr", "127.0.0.1:1", "-call", tc.call}, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "-call "+tc.call+": "+tc.want)
			assert.Empty(t, stdout.String())
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-calls", "-1"},
		{"-calls", "10", "-concurrency", "0"},
		{"-calls", "10", "-conns", "0"},
		{"-calls", "10", "-attempts", "0"},
		{"-calls", "10", "-faults", "cut=2"},
		{"-calls", "10", "-faults", "nonsense"},
		{"-incr", "k"},
		{"-faults", "cut=0.1"},
		{"-calls", "10", "-call", "get(\"k\")"},
		{"-nosuchflag"},
		{"stray"},
	} {
		var stdout, stderr bytes.Buffer
		assert.Error(t, run(t.Context(), args, &stdout, &stderr), "%q", args)
	}
}

// TestServerGone checks that the client reports a server it cannot reach,
// in each mode, instead of waiting for it.
func TestServerGone(t *testing.T) {
	l := rpctest.Listen(t)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	for _, args := range [][]string{
		nil,
		{"-calls", "10"},
		{"-call", "get(\"k\")"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"-addr", addr}, args...), &stdout, &stderr)
		var opErr *net.OpError
		assert.ErrorAs(t, err, &opErr, "%q", args)
	}
}
