package wsgirouter

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	ours := serve(t, newDemoServer(t), rpctest.Listen(t))
	std := serveNetHTTP(t, demoApp(t), rpctest.Listen(t))
	for _, addr := range []string{ours, std} {
		c := client(t, addr)
		sum, err := c.Add(t.Context(), 1, 2)
		require.NoError(t, err)
		assert.Equal(t, 3, sum)
		infos, err := c.Servers(t.Context())
		require.NoError(t, err)
		assert.Len(t, infos, 3)
		_, err = c.Server(t.Context(), "nobody")
		assert.ErrorIs(t, err, ErrNotFound)
		resp, err := c.Get(t.Context(), "/")
		require.NoError(t, err)
		assert.Contains(t, string(resp.Body), "<ul id=\"servers\">")
		resp, err = c.Get(t.Context(), "/../../etc/passwd")
		require.NoError(t, err)
		assert.Equal(t, 400, resp.Status, string(resp.Body))
		resp, err = c.Do(t.Context(), "POST", "/time", nil)
		require.NoError(t, err)
		assert.Equal(t, 405, resp.Status)
		t.Log(resp.Header, string(resp.Body))

		hr, err := http.Get("http://" + addr + "/api/v1.0/servers/zzz")
		require.NoError(t, err)
		b, _ := io.ReadAll(hr.Body)
		hr.Body.Close()
		assert.Equal(t, `{"data": "Not Found", "status": 404}`, string(b))
		assert.Equal(t, "application/json", hr.Header.Get("Content-Type"))
	}
	conn, br := rawConn(t, ours)
	_, err := io.WriteString(conn, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /time HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	all, err := io.ReadAll(br)
	require.NoError(t, err)
	t.Log(string(all))
	assert.Equal(t, 2, strings.Count(string(all), "HTTP/1.1 200 OK"))
}
