package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"

	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// scrub replaces what changes from run to run with fixed text of the same
// length, so the transcript can be golden and its byte counts stay true:
// the port the embedded server got, the Date field, and the time /time
// answered, in ctime's layout.
func scrub(b []byte) []byte {
	b = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(b, []byte("127.0.0.1:PORT"))
	b = regexp.MustCompile(`Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT`).
		ReplaceAll(b, []byte("Date: Www, dd Mmm yyyy hh:mm:ss GMT"))
	return regexp.MustCompile(`[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}`).
		ReplaceAll(b, []byte("Www Mmm dd hh:mm:ss yyyy"))
}

// TestDemoTranscript runs the demo with -trace against the embedded server
// and compares everything it prints with testdata/demo.golden: the
// requests, the answers, every byte on the wire. The lesson quotes this
// file.
func TestDemoTranscript(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-trace"}, &stdout, &stderr), stderr.String())
	assert.Regexp(t, `^\(no -addr: serving on 127\.0\.0\.1:\d+ in this process\)\n$`, stderr.String())
	rpctest.Golden(t, filepath.Join("..", "..", "testdata", "demo.golden"), scrub(stdout.Bytes()))
}

// demoOutput is what the demo prints without -trace, scrubbed.
const demoOutput = `GET / -> 200 OK: 601 bytes of text/html; charset=utf-8
GET /time -> 200 OK: Www Mmm dd hh:mm:ss yyyy
GET /user -> 200 OK: <h2>Hello, I am the /user page: a line of the route table, not a module named by the URL</h2>
Servers() = alpha at 10.0.0.1:8080, up; beta at 10.0.0.2:8080, up; gamma at 10.0.0.3:9090, down
Server("alpha") = alpha at 10.0.0.1:8080, up
POST /api/v1.0/servers/beta -> 200 OK: beta at 10.0.0.2:8080, up
GET /api/v1.0/servers/nobody -> 404 Not Found: {"data": "Not Found", "status": 404}
Server("nobody") -> error: server "nobody": not found (server answered 404 Not Found: {"data": "Not Found", "status": 404}); errors.Is(err, ErrNotFound) = true
add(1, 2) = 3
GET /../../etc/passwd -> 400 Bad Request: "/../../etc/passwd" is not the name of a file in the web folder
GET /%2e%2e/%2e%2e/etc/passwd -> 400 Bad Request: "/../../etc/passwd" is not the name of a file in the web folder
`

func TestDemoWithoutTrace(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), nil, &stdout, &stderr), stderr.String())
	assert.Equal(t, demoOutput, string(scrub(stdout.Bytes())))
	assert.Regexp(t, `^\(no -addr: serving on 127\.0\.0\.1:\d+ in this process\)\n$`, stderr.String())
}

// startCounted serves the demo application on a free port until the test
// ends, and returns the listener, which counts the connections accepted.
func startCounted(t *testing.T) *rpctest.CountingListener {
	t.Helper()
	srv := wsgirouter.NewServer(wsgirouter.NewApp(wsgirouter.Service{}))
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, wsgirouter.ErrServerClosed)
	})
	return l
}

// TestDemoKeepsOneConnection runs the demo against a server that counts
// the connections it accepts: every request of the demo, the 404 and the
// 400 among them, goes on one kept-alive connection.
func TestDemoKeepsOneConnection(t *testing.T) {
	l := startCounted(t)
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-addr", l.Addr().String()}, &stdout, &stderr), stderr.String())
	assert.Equal(t, demoOutput, string(scrub(stdout.Bytes())))
	assert.Empty(t, stderr.String(), "with -addr, no server of its own")
	assert.Equal(t, 1, l.Accepted(), "connections accepted")
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

// TestLoad runs load mode against a server that counts the connections it
// accepts: the callers keep their connections alive, so there are at most
// as many as callers, however many calls they make.
func TestLoad(t *testing.T) {
	for _, concurrency := range []int{1, 4, 16} {
		t.Run(fmt.Sprint("-concurrency ", concurrency), func(t *testing.T) {
			l := startCounted(t)
			args := []string{"-addr", l.Addr().String(), "-calls", "500", "-concurrency", fmt.Sprint(concurrency)}
			var stdout, stderr bytes.Buffer
			require.NoError(t, run(t.Context(), args, &stdout, &stderr), stderr.String())
			calls, ok, errs, mismatches := loadSummary(t, stdout.String())
			assert.Equal(t, []int{500, 500, 0, 0}, []int{calls, ok, errs, mismatches})
			assert.GreaterOrEqual(t, l.Accepted(), 1)
			assert.LessOrEqual(t, l.Accepted(), concurrency, "connections accepted for 500 calls")
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

// TestLoadCatchesWrongAnswers points load mode at a server that answers
// every seventh call with a wrong sum and refuses every eleventh: the
// summary must count both, and the run must fail.
func TestLoadCatchesWrongAnswers(t *testing.T) {
	var calls atomic.Int64
	liar := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		a, _ := strconv.Atoi(r.URL.Query().Get("a"))
		b, _ := strconv.Atoi(r.URL.Query().Get("b"))
		w.Header().Set("Content-Type", "application/json")
		switch {
		case n%11 == 0:
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"error": "no"}`)
		case n%7 == 0:
			fmt.Fprintf(w, `{"result": %d}`, a+b+1)
		default:
			fmt.Fprintf(w, `{"result": %d}`, a+b)
		}
	})}
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- liar.Serve(l) }()
	defer func() {
		require.NoError(t, liar.Shutdown(context.Background()))
		<-served
	}()

	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-addr", l.Addr().String(), "-calls", "77", "-concurrency", "4"}, &stdout, &stderr)
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
