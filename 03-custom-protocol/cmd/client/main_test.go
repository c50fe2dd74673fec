package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	customproto "github.com/rpc-from-scratch/course/03-custom-protocol"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// scrub replaces what changes from run to run (the port the embedded server
// got, and the time get_time answered) with fixed text, so the transcript
// can be golden. A ctime is always 24 bytes, so the lengths and byte counts
// around it do not change.
func scrub(b []byte) []byte {
	b = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(b, []byte("127.0.0.1:PORT"))
	return regexp.MustCompile(`[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}`).ReplaceAll(b, []byte("DATE"))
}

// TestDemoTranscript runs the demo with -trace against the embedded server
// and compares everything it prints with testdata/demo.golden: the calls,
// their results, and every byte on the wire. The lesson quotes this file.
func TestDemoTranscript(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-trace"}, &stdout, &stderr), stderr.String())
	rpctest.Golden(t, filepath.Join("..", "..", "testdata", "demo.golden"), scrub(stdout.Bytes()))
}

// demoFunctions is what the demo server says, after "there are: ", to a
// call that names no function of it: the methods of customproto.Service,
// each in snake case (GetTime answers to get_time), sorted and joined by
// ", ". The test builds the list from the service rather than write it
// out, so a method added to Service (lesson 03's exercise 1) keeps it
// true.
func demoFunctions() string {
	wordStart := regexp.MustCompile(`([\p{Ll}\d])(\p{Lu})`)
	var names []string
	for m := range reflect.TypeFor[customproto.Service]().Methods() {
		names = append(names, strings.ToLower(wordStart.ReplaceAllString(m.Name, "${1}_${2}")))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func TestDemoWithoutTrace(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), nil, &stdout, &stderr), stderr.String())
	assert.Equal(t, `sum(1, 2) = 3
sum(1.1, 2) = 3.1
get_time() = "DATE"
echo("a,b-c:d@e%f\n中文 ✓") = "a,b-c:d@e%f\n中文 ✓"
sub(3, 1) -> error: no function "sub"; there are: `+demoFunctions()+`
sum(1) -> error: sum: takes 2 arguments, got 1
sum(9223372036854775807, 1) -> error: sum: 9223372036854775807 + 1 does not fit in an int (64 bits)
echo(42) -> error: echo: argument 1: want str, got int 42
`, string(scrub(stdout.Bytes())))
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
	srv := customproto.NewServer()
	_, err := srv.Register(liar{calls: new(atomic.Int64)})
	require.NoError(t, err)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, customproto.ErrServerClosed)
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
