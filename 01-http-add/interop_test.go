package httpadd

import (
	"math"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The interop tests talk to Python programs of ours written in the article's
// style (testdata/article_client.py and testdata/article_server.py). They
// skip when python3 or requests is missing, unless RPC_INTEROP=required.

var (
	articleClient = filepath.Join("testdata", "article_client.py")
	articleServer = filepath.Join("testdata", "article_server.py")
)

// startArticleServer runs the article-style Python server on a free port.
func startArticleServer(t *testing.T) string {
	py := rpctest.Python(t)
	return rpctest.StartServer(t, exec.Command(py, articleServer, "0"))
}

func TestInteropPythonClientCallsGoServer(t *testing.T) {
	py := rpctest.Python(t, "requests")
	addr := serve(t, NewServer(), rpctest.Listen(t))

	out := rpctest.RunPython(t, py, articleClient, "http://"+addr, "1", "2", "22", "3")
	assert.Equal(t, "3\n25\n", out)
}

func TestInteropGoClientCallsPythonServer(t *testing.T) {
	c := NewClient(startArticleServer(t))
	defer c.Close()

	for _, tt := range []struct{ a, b, want int }{{1, 2, 3}, {22, 3, 25}, {-4, 4, 0}} {
		got, err := c.Add(t.Context(), tt.a, tt.b)
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}

	// Python's integers do not overflow, so the Python server answers
	// 9223372036854775808. That does not fit in an int: the stub must
	// say so rather than hand back a wrapped number.
	got, err := c.Add(t.Context(), math.MaxInt, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot unmarshal number 9223372036854775808")
	assert.Zero(t, got)
}
