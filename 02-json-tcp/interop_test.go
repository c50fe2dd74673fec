package jsontcp

import (
	"context"
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

// The interop tests talk to Python programs of ours written in the
// articles' style (testdata/article_client.py and article_server.py). They
// skip when python3 is missing, unless RPC_INTEROP=required.

var (
	articleClient = filepath.Join("testdata", "article_client.py")
	articleServer = filepath.Join("testdata", "article_server.py")
)

// startArticleServer runs the article-style Python server on a free port.
func startArticleServer(t *testing.T) string {
	py := rpctest.Python(t)
	return rpctest.StartServer(t, exec.Command(py, articleServer, "0"))
}

// runArticleClient runs the article-style Python client against addr.
func runArticleClient(t *testing.T, addr string, args ...string) []string {
	py := rpctest.Python(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	out := rpctest.RunPython(t, py, append([]string{articleClient, host, port}, args...)...)
	var answers []string
	for line := range strings.Lines(out) {
		// Our answers end with a newline, and print adds another.
		if line = strings.TrimSuffix(line, "\n"); line != "" {
			answers = append(answers, line)
		}
	}
	return answers
}

// res decodes an answer's "res" as the Python client printed it.
func res(t *testing.T, answer string) any {
	var r struct{ Res any }
	require.NoError(t, json.Unmarshal([]byte(answer), &r), "answer %q", answer)
	return r.Res
}

func TestInteropPythonClientCallsGoServer(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	answers := runArticleClient(t, addr, "demo")
	require.Len(t, answers, 3)
	assert.Equal(t, 6.0, res(t, answers[0]), "add(1, 2, c=3)")
	assert.Equal(t, 13.0, res(t, answers[1]), "add(1, 2)")
	assert.Equal(t, "the test function has been called", res(t, answers[2]), `test("测试项", kw1="1")`)
}

// TestInteropGoClientCallsPythonServer calls the article-style server,
// which answers one request per connection and then closes it. The second
// call on a connection must fail with a clear error, not hang.
func TestInteropGoClientCallsPythonServer(t *testing.T) {
	addr := startArticleServer(t)

	c := dial(t, addr)
	got, err := c.Call(t.Context(), "add", []any{1, 2}, map[string]any{"c": 3})
	require.NoError(t, err)
	assert.JSONEq(t, "6", string(got))

	_, err = c.Call(t.Context(), "add", []any{1, 2}, nil)
	require.Error(t, err)
	t.Logf("second call on the same connection: %v", err)
	_, err = c.Call(t.Context(), "add", []any{1, 2}, nil)
	assert.ErrorIs(t, err, ErrBroken)

	for _, tt := range []struct {
		method string
		args   []any
		kwargs map[string]any
		want   string
	}{
		{"add", []any{1, 2}, nil, "13"},
		{"test", []any{"测试项"}, map[string]any{"kw1": "1"}, `"the test function has been called"`},
		{"echo", []any{"a, b: {c}"}, nil, `"a, b: {c}"`},
	} {
		c := dial(t, addr) // a new connection for every call
		got, err := c.Call(t.Context(), tt.method, tt.args, tt.kwargs)
		require.NoError(t, err)
		assert.JSONEq(t, tt.want, string(got))
	}
}

// startArticleServerProcess is startArticleServer for a test that needs to
// see the server die.
func startArticleServerProcess(t *testing.T) *rpctest.Process {
	py := rpctest.Python(t)
	return rpctest.StartProcess(t, exec.Command(py, articleServer, "0"))
}

// serverDied checks that the server process has ended.
func serverDied(t *testing.T, p *rpctest.Process) {
	t.Helper()
	select {
	case <-p.Exited:
	case <-time.After(rpctest.Backstop):
		t.Fatalf("the server at %s is still running", p.Addr)
	}
}

// TestArticleFlawLargeRequest sends a request longer than the article's
// recv(1024). Our server answers it; the article's reads the first 1024
// bytes, fails to parse them, and dies.
func TestArticleFlawLargeRequest(t *testing.T) {
	big := strings.Repeat("x", 5000)

	ours := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	got, err := ours.Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)

	article := startArticleServerProcess(t)
	_, err = dial(t, article.Addr).Echo(t.Context(), big)
	require.Error(t, err, "the article's server cannot answer a 5000-byte request")
	serverDied(t, article)
}

// TestArticleFlawStickyPackets writes two requests in one write, as TCP may
// deliver them. Our server answers both, in order; the article's takes both
// for one message, fails to parse it, and dies.
func TestArticleFlawStickyPackets(t *testing.T) {
	two := `{"method_name": "add", "method_args": [1, 2], "method_kwargs": {}}` +
		`{"method_name": "echo", "method_args": ["x"], "method_kwargs": {}}`

	conn, answers := rawConn(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	write(t, conn, two)
	assert.Equal(t, `{"res":13}`, nextAnswer(t, answers))
	assert.Equal(t, `{"res":"x"}`, nextAnswer(t, answers))

	article := startArticleServerProcess(t)
	conn, answers = rawConn(t, article.Addr)
	write(t, conn, two)
	_, err := answers.next()
	assertClosed(t, err)
	serverDied(t, article)
}

// TestArticleFlawClientReadsOnce has the article's client echo 5000 bytes
// from our server: its one recv(1024) gets the first part of the answer
// only, which it returns as if it were the answer.
func TestArticleFlawClientReadsOnce(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	answers := runArticleClient(t, addr, "echo", "5000")
	require.Len(t, answers, 1)
	assert.LessOrEqual(t, len(answers[0]), 1024)
	assert.False(t, json.Valid([]byte(answers[0])), "the article's client returns a cut answer: %.60s...", answers[0])

	got, err := dial(t, addr).Echo(t.Context(), strings.Repeat("x", 5000))
	require.NoError(t, err)
	assert.Len(t, got, 5000)
}

// TestArticleFlawErrorLooksLikeData calls a method that does not exist. The
// article's server answers with a string in "res", which a client cannot
// tell from a result; ours answers with an error.
func TestArticleFlawErrorLooksLikeData(t *testing.T) {
	got, err := dial(t, startArticleServer(t)).Call(t.Context(), "sub", []any{3, 1}, nil)
	require.NoError(t, err, "to a client, the article's refusal is a successful call")
	assert.JSONEq(t, strconv.Quote("Please use the correct function"), string(got))

	_, err = dial(t, serve(t, NewDemoServer(), rpctest.Listen(t))).Call(t.Context(), "sub", []any{3, 1}, nil)
	var serverErr *ServerError
	assert.ErrorAs(t, err, &serverErr)
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
			c := dial(t, tt.addr)
			wait := rpctest.Backstop
			if tt.blocked {
				// For the article's server the deadline is the outcome:
				// it never answers while the silent client waits.
				wait = time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			_, err := c.Add(ctx, 1, 2, 3)
			if tt.blocked {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}
