package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// scrub replaces what changes from run to run (the port the embedded server
// got) with fixed text, so the transcript can be golden.
func scrub(b []byte) []byte {
	return regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(b, []byte("127.0.0.1:PORT"))
}

// TestDemoTranscript runs the demo with -trace against the embedded server
// and compares everything it prints with testdata/demo.golden: the calls,
// their results, and every byte on the wire. The lesson quotes this file.
//
// All but the last call, that is. The last names no method, and the answer
// lists the server's methods: that call is checked here, byte for byte,
// against the list the registry gives, so that a method added to the demo
// server (lesson 02's exercise 1) leaves the golden file true.
func TestDemoTranscript(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-trace"}, &stdout, &stderr), stderr.String())
	got := string(scrub(stdout.Bytes()))

	methods := demoMethods(t)
	answer := `{"res":null,"error":"no method 'sub'; there are: ` + methods + `"}`
	lastCall := "--> conn 1 sent 61 bytes\n" +
		"    {\"method_name\":\"sub\",\"method_args\":[3,1],\"method_kwargs\":{}}␊\n" +
		fmt.Sprintf("<-- conn 1 received %d bytes\n", len(answer)+1) +
		"    " + answer + "␊\n" +
		"sub(3, 1) -> error: no method 'sub'; there are: " + methods + "\n" +
		"\n" +
		"=== conn 1 closed by this side\n"
	cut := max(strings.LastIndex(got, "--> "), 0)
	assert.Equal(t, lastCall, got[cut:])
	rpctest.Golden(t, filepath.Join("..", "..", "testdata", "demo.golden"), []byte(got[:cut]))
}

// demoMethods is what the demo server says, after "there are: ", to a call
// that names no method of it: its methods, sorted and joined by ", ". The
// tests build the list from the server rather than write it out, so a
// method added to the demo server (lesson 02's exercise 1) keeps them true;
// the demo's three must still be there.
func demoMethods(t *testing.T) string {
	t.Helper()
	names := slices.Sorted(slices.Values(jsontcp.NewDemoServer().Methods()))
	require.Subset(t, names, []string{"add", "echo", "test"})
	return strings.Join(names, ", ")
}

func TestDemoWithoutTrace(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), nil, &stdout, &stderr), stderr.String())
	assert.Equal(t, `add(1, 2, c=3) = 6
add(1, 2) = 13
test("测试项", kw1="1") = "the test function has been called"
echo("a, b: {c} \"d\"\n") = "a, b: {c} \"d\"\n"
add(1, "two") -> error: add: argument 'b': want int, got "two"
add(1, d=4) -> error: add: no parameter named 'd'
sub(3, 1) -> error: no method 'sub'; there are: `+demoMethods(t)+`
`, stdout.String())
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

// liar serves the wire format by hand: it answers every seventh call with a
// wrong sum and refuses every eleventh.
func liar(t *testing.T) string {
	var calls atomic.Int64
	return rpctest.ServeConns(t, func(conn net.Conn) {
		dec := json.NewDecoder(conn)
		for {
			var req struct {
				MethodArgs []int `json:"method_args"`
			}
			if dec.Decode(&req) != nil {
				return
			}
			sum := req.MethodArgs[0] + req.MethodArgs[1] + req.MethodArgs[2]
			switch n := calls.Add(1); {
			case n%11 == 0:
				fmt.Fprintln(conn, `{"res": null, "error": "no"}`)
			case n%7 == 0:
				fmt.Fprintf(conn, "{\"res\": %d}\n", sum+1)
			default:
				fmt.Fprintf(conn, "{\"res\": %d}\n", sum)
			}
		}
	})
}

// TestLoadCatchesWrongAnswers points load mode at the liar: the summary
// must count the wrong sums and the refusals, and the run must fail.
func TestLoadCatchesWrongAnswers(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-addr", liar(t), "-calls", "77", "-concurrency", "4"}, &stdout, &stderr)
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
