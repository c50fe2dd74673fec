package jsontcp

import (
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
