package customproto

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The interop tests talk to Python programs of ours: article_client.py and
// article_server.py, written in the article's style, and framed_client.py,
// which speaks our framed form. They skip when python3 is missing, unless
// RPC_INTEROP=required.

var (
	articleClient = filepath.Join("testdata", "article_client.py")
	articleServer = filepath.Join("testdata", "article_server.py")
	framedClient  = filepath.Join("testdata", "framed_client.py")
)

// runPython runs one of the Python clients against addr and returns the
// lines it printed.
func runPython(t *testing.T, client, addr string, args ...string) []string {
	py := rpctest.Python(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	out := rpctest.RunPython(t, py, append([]string{client, host, port}, args...)...)
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// calls writes calls as the JSON the Python clients take.
func calls(t *testing.T, calls ...[]any) string {
	b, err := json.Marshal(calls)
	require.NoError(t, err)
	return string(b)
}

// TestInteropArticleClient runs the article's three calls with a client in
// the article's style. Our server answers them as the article's server
// would, byte for byte, and the client's unpack then cuts the time at its
// first ":", as the article's own output shows: "Wed Jan 16 22".
func TestInteropArticleClient(t *testing.T) {
	addr := serve(t, newStoppedClockServer(t), rpctest.Listen(t))
	assert.Equal(t, []string{
		`'data:3' -> '3'`,
		`'data:3.1' -> '3.1'`,
		`'data:Wed Jan 16 22:05:31 2019' -> 'Wed Jan 16 22'`,
	}, runPython(t, articleClient, addr, "demo"))
}

// TestInteropFramedClient runs the article's calls, and echoes every
// awkward string, with the Python client of the framed form: the results
// keep their types, and the strings come back whole.
func TestInteropFramedClient(t *testing.T) {
	addr := serve(t, newStoppedClockServer(t), rpctest.Listen(t))
	list := [][]any{{"sum", []any{1, 2}}, {"sum", []any{1.1, 2}}, {"get_time", []any{}}, {"sum", []any{1}}}
	for _, s := range awkward {
		list = append(list, []any{"echo", []any{s}})
	}
	lines := runPython(t, framedClient, addr, calls(t, list...))
	require.Len(t, lines, len(list))
	assert.Equal(t, []string{"3", "3.1", `"Wed Jan 16 22:05:31 2019"`, `{"error": "sum: takes 2 arguments, got 1"}`}, lines[:4])
	for i, s := range awkward {
		var got string
		require.NoError(t, json.Unmarshal([]byte(lines[4+i]), &got), lines[4+i])
		assert.Equal(t, s, got)
	}
}

// TestInteropCommaInString echoes "a,b" with both Python clients. The
// article's form cannot carry the comma: the server sees two arguments,
// the second without a type code, and says so; the article's client then
// cuts that error at its first ":" and returns "argument 2", which a caller
// would take for the result. The framed form escapes the comma.
func TestInteropCommaInString(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	echo := calls(t, []any{"echo", []any{"a,b"}})
	assert.Equal(t, []string{
		`'error:argument 2: "b" has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)' -> 'argument 2'`,
	}, runPython(t, articleClient, addr, echo))
	assert.Equal(t, []string{`"a,b"`}, runPython(t, framedClient, addr, echo))
}

// TestArticleFlawClientReadsOnce echoes 3000 bytes with the article's
// client. Its one recv(2048) gets part of the answer, which it returns as if
// it were the whole.
func TestArticleFlawClientReadsOnce(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	big := strings.Repeat("x", 3000)
	lines := runPython(t, articleClient, addr, calls(t, []any{"echo", []any{big}}))
	require.Len(t, lines, 1)
	answer, result, ok := strings.Cut(lines[0], " -> ")
	require.True(t, ok, lines[0])
	assert.LessOrEqual(t, len(answer), 2048+2, "the answer as one recv(2048) returned it, quoted")
	assert.Less(t, len(result), len(big)+2, "the result is cut")

	got, err := dial(t, addr).Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)
}

// startArticleServer runs the article-style Python server on a free port.
func startArticleServer(t *testing.T) string {
	py := rpctest.Python(t)
	return rpctest.StartServer(t, exec.Command(py, articleServer, "0"))
}

// TestArticleFlawErrorLooksLikeData makes calls in the article's form that
// go wrong on the article's server: a function it lacks, a comma in a str,
// a negative number. To each it answers "data:" and a string, which a
// client cannot tell from a result. Ours answers "error:" and the reason,
// or, for the negative number, the sum.
func TestArticleFlawErrorLooksLikeData(t *testing.T) {
	// One connection each: the article's server serves one at a time.
	article, _ := rawConn(t, startArticleServer(t))
	srv := NewDemoServer()
	ours, _ := rawConn(t, serve(t, srv, rpctest.Listen(t)))
	for _, tt := range []struct{ call, ours string }{
		{"func:sub@params:1-3,1-1", `error:no function "sub"; there are: ` + functionList(t, srv)},
		{"func:echo@params:3-a,b", `error:argument 2: "b" has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)`},
		{"func:sum@params:1--5,1-2", "data:-3"},
	} {
		legacyCall(t, article, tt.call, "data:RPC Server Function Error")
		legacyCall(t, ours, tt.call, tt.ours)
	}
}

// TestArticleFlawOneClientAtATime opens a connection that sends nothing.
// The article's server waits on it, so nobody else is served; ours serves
// every connection on its own goroutine.
func TestArticleFlawOneClientAtATime(t *testing.T) {
	for _, tt := range []struct {
		name    string
		addr    string
		blocked bool
	}{
		{"ours", serve(t, NewDemoServer(), rpctest.Listen(t)), false},
		{"article's", startArticleServer(t), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rawConn(t, tt.addr) // connects, then says nothing
			conn, _ := rawConn(t, tt.addr)
			if tt.blocked {
				// For the article's server the deadline is the outcome:
				// it never answers while the silent client waits.
				require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Second)))
			}
			write(t, conn, "func:sum@params:1-1,1-2")
			answer := make([]byte, len("data:3"))
			_, err := conn.Read(answer)
			if tt.blocked {
				assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			} else {
				require.NoError(t, err)
				assert.Equal(t, "data:3", string(answer))
			}
		})
	}
}

// TestInteropGoClientAndArticleServer points our client at the article's
// server, which does not speak the framed form. The server misreads the
// frame and answers bare "data:3"; the client refuses that, rather than
// guess, and says why.
func TestInteropGoClientAndArticleServer(t *testing.T) {
	c := dial(t, startArticleServer(t))
	_, err := c.Add(t.Context(), 1, 2)
	assert.EqualError(t, err, "add: malformed message: a frame starts with its length in digits and a space, not \"d\"")
}

// TestInteropCtime checks get_time's layout against Python's own: for a few
// moments, Python's time.asctime (the layout of time.ctime) and our
// GetTime must write the same text.
func TestInteropCtime(t *testing.T) {
	py := rpctest.Python(t)
	moments := []int64{0, 1547676331, 1546758489, 4102444799}
	var args []string
	for _, m := range moments {
		args = append(args, strconv.FormatInt(m, 10))
	}
	program := "import sys, time\nfor a in sys.argv[1:]: print(time.asctime(time.gmtime(int(a))))"
	out := rpctest.RunPython(t, py, append([]string{"-c", program}, args...)...)
	var ours []string
	for _, m := range moments {
		ours = append(ours, Service{now: func() time.Time { return time.Unix(m, 0).UTC() }}.GetTime())
	}
	assert.Equal(t, strings.Join(ours, "\n")+"\n", out)
}
