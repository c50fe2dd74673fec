package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// scrub replaces what changes from run to run (the port the embedded server
// got, the Date header) with fixed text, so the transcript can be golden.
func scrub(b []byte) []byte {
	b = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(b, []byte("127.0.0.1:PORT"))
	return regexp.MustCompile(`Date: [^\r\n␍]+ GMT`).ReplaceAll(b, []byte("Date: DATE"))
}

// TestDemoTranscript runs the demo with -trace against the embedded server
// and compares everything it prints with testdata/demo.golden: the calls,
// their results, and every byte on the wire. The lesson quotes this file.
func TestDemoTranscript(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-trace"}, &stdout, &stderr), stderr.String())
	rpctest.Golden(t, filepath.Join("..", "..", "testdata", "demo.golden"), scrub(stdout.Bytes()))
}

func TestDemoWithoutTrace(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), nil, &stdout, &stderr), stderr.String())
	assert.Equal(t, "add(1, 2) = 3\nadd(22, 3) = 25\n"+
		"error: add(9223372036854775807, 1): server answered 400 Bad Request: a + b overflows: 9223372036854775807 + 1 does not fit in an int (64 bits)\n",
		stdout.String())
	assert.Regexp(t, `^\(no -addr: serving on 127\.0\.0\.1:\d+ in this process\)\n$`, stderr.String())
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

func TestLoad(t *testing.T) {
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
