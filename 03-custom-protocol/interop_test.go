package customproto

import (
	"encoding/json"
	"net"
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

// startArticleServer runs the article-style Python server on a free port.
func startArticleServer(t *testing.T) string {
	py := rpctest.Python(t)
	return rpctest.StartServer(t, exec.Command(py, articleServer, "0"))
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
