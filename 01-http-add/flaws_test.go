package httpadd

// What goes wrong in the article's version, each flaw a test that runs one
// check against the article's side and ours: the server of
// testdata/article_server.py, or the stub of testdata/article_client.py.
// Like the interop tests, they skip when python3 or requests is missing,
// unless RPC_INTEROP=required.

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkRefusesBadValue sends add("x", 1) to the server at addr and reports
// what is wrong with the way it answers, or nil if it answers as it should:
// 400, with a JSON error that names the parameter.
func checkRefusesBadValue(addr string) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/?a=x&b=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	_, err = decodeAnswer(resp.StatusCode, body)
	if want := `server answered 400 Bad Request: parameter a: "x" is not an integer`; err == nil || err.Error() != want {
		return fmt.Errorf("got %v, want %s", err, want)
	}
	return nil
}

// TestArticleFlawBadValue runs one check against both servers: the
// article's server gives no answer at all to add("x", 1) (its handler
// raises, and http.server drops the connection); ours names the parameter.
func TestArticleFlawBadValue(t *testing.T) {
	ours := serve(t, NewServer(), rpctest.Listen(t))
	assert.NoError(t, checkRefusesBadValue(ours))

	err := checkRefusesBadValue(startArticleServer(t))
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
	assert.Contains(t, err.Error(), "EOF", "the article's server closes the connection without an answer")
}

// TestArticleFlawFailureReadAsZero makes the same refused call with both
// stubs against our server. The article's stub prints 0, a wrong sum that
// looks right; ours returns the server's error.
func TestArticleFlawFailureReadAsZero(t *testing.T) {
	py := rpctest.Python(t, "requests")
	addr := serve(t, NewServer(), rpctest.Listen(t))

	out := rpctest.RunPython(t, py, articleClient, "http://"+addr, "9223372036854775807", "1")
	assert.Equal(t, "0\n", out, "the article's stub reads a refusal as 0")

	c := NewClient(addr)
	defer c.Close()
	_, err := c.Add(t.Context(), math.MaxInt, 1)
	var serverErr *ServerError
	assert.ErrorAs(t, err, &serverErr)
}

// TestArticleFlawConnectionPerCall counts the connections each stub opens
// for two calls: the article's opens one per call, ours one in all.
func TestArticleFlawConnectionPerCall(t *testing.T) {
	py := rpctest.Python(t, "requests")
	l := rpctest.Listen(t)
	addr := serve(t, NewServer(), l)

	rpctest.RunPython(t, py, articleClient, "http://"+addr, "1", "2", "22", "3")
	assert.Equal(t, 2, l.Accepted(), "requests.get opens a connection per call")

	c := NewClient(addr)
	defer c.Close()
	for range 2 {
		_, err := c.Add(t.Context(), 1, 2)
		require.NoError(t, err)
	}
	assert.Equal(t, 3, l.Accepted(), "our stub opens one connection for both calls")
}
