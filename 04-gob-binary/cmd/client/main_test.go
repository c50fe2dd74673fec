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
	"sync/atomic"
	"testing"

	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
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
	assert.Equal(t, `sum(1, 2) = 3
sum(1.1, 2) = 3.1
get_time() = "DATE"
echo("a,b-c:d@e%f\n中文 ✓") = "a,b-c:d@e%f\n中文 ✓"
sub(3, 1) -> error: no function "sub"; there are: add, echo, get_time, sum
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
	srv := gobrpc.NewServer()
	_, err := srv.Register(liar{calls: new(atomic.Int64)})
	require.NoError(t, err)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, gobrpc.ErrServerClosed)
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
