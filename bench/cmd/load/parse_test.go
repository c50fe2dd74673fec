package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return string(b)
}

func TestParseClientOutput(t *testing.T) {
	r, err := parseClientOutput(readTestdata(t, "client-ok.txt"))
	require.NoError(t, err)
	assert.Equal(t, clientRun{
		Calls: 20000, OK: 20000, Errors: 0, Mismatches: 0,
		Elapsed: 1886 * time.Millisecond, RPS: 10603,
		P50: 4147 * time.Microsecond, P99: 35148 * time.Microsecond,
	}, r)

	r, err = parseClientOutput("calls=20000 ok=20000 errors=0 mismatches=0 elapsed=192ms rps=104051 p50=457µs p99=4.516ms\n")
	require.NoError(t, err, "the line of the brief, with µs")
	assert.Equal(t, 457*time.Microsecond, r.P50)
}

func TestParseClientOutputRefusesFailedRuns(t *testing.T) {
	for _, tc := range []struct {
		name, out, want string
	}{
		{"errors", readTestdata(t, "client-errors.txt"), "errors=200"},
		{"mismatches", "calls=100 ok=97 errors=0 mismatches=3 elapsed=5ms rps=20000 p50=1ms p99=2ms\n", "mismatches=3"},
		{"errors, though ok counts every call", "calls=100 ok=100 errors=1 mismatches=0 elapsed=5ms rps=20000 p50=1ms p99=2ms\n", "errors=1"},
		{"mismatches, though ok counts every call", "calls=100 ok=100 errors=0 mismatches=1 elapsed=5ms rps=20000 p50=1ms p99=2ms\n", "mismatches=1"},
		{"fewer ok than calls", "calls=100 ok=99 errors=0 mismatches=0 elapsed=5ms rps=20000 p50=1ms p99=2ms\n", "ok=99"},
		{"no calls", "calls=0 ok=0 errors=0 mismatches=0 elapsed=0s rps=0 p50=0s p99=0s\n", "calls=0"},
		{"missing line", "add(1, 2) = 3\nclient: connection refused\n", `no "calls=`},
		{"empty", "", `no "calls=`},
		{"missing field", "calls=100 ok=100 errors=0 mismatches=0 elapsed=5ms p50=1ms p99=2ms\n", "rps="},
		{"bad duration", "calls=100 ok=100 errors=0 mismatches=0 elapsed=5ms rps=1 p50=fast p99=2ms\n", "p50="},
		{"not key=value", "calls=100 ok=100 errors=0 mismatches=0 elapsed=5ms rps=1 p50=1ms p99=2ms extra\n", "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseClientOutput(tc.out)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseWrkOutput(t *testing.T) {
	r, err := parseWrkOutput(readTestdata(t, "wrk-ok.txt"))
	require.NoError(t, err)
	assert.Equal(t, wrkRun{Requests: 33779, RPS: 33443.26, LatencyAvg: 1790 * time.Microsecond}, r)
}

func TestParseWrkOutputRefusesFailedRuns(t *testing.T) {
	ok := readTestdata(t, "wrk-ok.txt")
	without := func(line string) string {
		out, found := "", false
		for l := range strings.Lines(ok) {
			if slices.Contains(strings.Fields(l), line) {
				found = true
				continue
			}
			out += l
		}
		require.True(t, found, "testdata/wrk-ok.txt has no line %q", line)
		return out
	}
	for _, tc := range []struct {
		name, out, want string
	}{
		{"non-2xx", readTestdata(t, "wrk-non2xx.txt"), "Non-2xx or 3xx responses: 40720"},
		{"socket errors", readTestdata(t, "wrk-socket-errors.txt"), "Socket errors: connect 0, read 5201"},
		{"no Requests/sec", without("Requests/sec:"), "Requests/sec:"},
		{"no latency", without("Latency"), "Latency"},
		{"no request count", without("requests"), "requests in"},
		{"connection refused", "unable to connect to 127.0.0.1:1 Connection refused\n", "Requests/sec:"},
		{"zero requests", "    Latency     0.00us    0.00us   0.00us    -nan%\n  0 requests in 1.00s, 0.00B read\nRequests/sec:      0.00\n", "no request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWrkOutput(tc.out)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
