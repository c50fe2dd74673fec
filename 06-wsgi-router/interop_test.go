package wsgirouter

import (
	"encoding/json"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The interop tests talk to Python programs of ours: keep-alive clients
// built on Python's own libraries (testdata/keepalive_client.py) against
// our server, and our Client against a WSGI application in the article's
// style served by Python's wsgiref (testdata/wsgi_app.py). They skip when
// python3 or requests is missing, unless RPC_INTEROP=required.

// pythonAnswer is one line keepalive_client.py prints: one answer.
type pythonAnswer struct {
	Method      string `json:"method"`
	Target      string `json:"target"`
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Length      int    `json:"length"`
	Body        string `json:"body"` // only for JSON and text answers
}

func TestInteropPythonKeepAliveClients(t *testing.T) {
	css, err := fs.ReadFile(WWW(), "style.css")
	require.NoError(t, err)
	want := []pythonAnswer{
		{"GET", "/add?a=1&b=2", 200, "application/json", 13, `{"result": 3}`},
		{"GET", "/api/v1.0/servers", 200, "application/json", 0, ""}, // checked below
		{"GET", "/api/v1.0/servers/alpha", 200, "application/json", 0,
			`{"infos": [{"name": "alpha", "host": "10.0.0.1", "port": 8080, "status": "up"}]}`},
		{"GET", "/api/v1.0/servers/nobody", 404, "application/json", 0, `{"data": "Not Found", "status": 404}`},
		{"POST", "/api/v1.0/servers/beta", 200, "application/json", 0,
			`{"infos": [{"name": "beta", "host": "10.0.0.2", "port": 8080, "status": "up"}]}`},
		{"POST", "/time", 405, "text/plain; charset=utf-8", 0,
			"405 Method Not Allowed: \"/time\" takes GET, HEAD, not \"POST\"\n"},
		{"HEAD", "/", 200, "text/html; charset=utf-8", 0, ""}, // a HEAD answer has no body
		{"GET", "/style.css", 200, "text/css; charset=utf-8", len(css), ""},
	}
	for i := range want {
		if want[i].Body != "" {
			want[i].Length = len(want[i].Body)
		}
	}
	for _, kind := range []string{"requests", "http.client"} {
		t.Run(kind, func(t *testing.T) {
			py := rpctest.Python(t, "requests")
			l := rpctest.Listen(t)
			addr := serve(t, newDemoServer(t), l)

			out := rpctest.RunPython(t, py, filepath.Join("testdata", "keepalive_client.py"), kind, addr)
			var got []pythonAnswer
			for line := range strings.Lines(out) {
				var a pythonAnswer
				require.NoError(t, json.Unmarshal([]byte(line), &a), "line %q", line)
				got = append(got, a)
			}
			require.Len(t, got, len(want), out)

			// The list is whatever DemoServers holds: decode it and
			// compare names, not bytes.
			var list struct {
				Infos []ServerInfo `json:"infos"`
			}
			require.NoError(t, json.Unmarshal([]byte(got[1].Body), &list))
			assert.Equal(t, DemoServers, list.Infos)
			assert.Equal(t, len(got[1].Body), got[1].Length)
			want[1].Length, want[1].Body = got[1].Length, got[1].Body

			assert.Equal(t, want, got)
			assert.Equal(t, 1, l.Accepted(), "every request on one kept-alive connection")
		})
	}
}

// startWSGIApp runs testdata/wsgi_app.py under wsgiref.simple_server.
func startWSGIApp(t *testing.T) string {
	t.Helper()
	py := rpctest.Python(t, "wsgiref.simple_server")
	return rpctest.StartServer(t, exec.Command(py, filepath.Join("testdata", "wsgi_app.py")))
}

// TestInteropGoClientCallsWSGIRef sends our Client to Python's reference
// WSGI server. wsgiref speaks HTTP/1.0 and closes the connection after
// each answer. It gives a Content-Length when the application returns its
// body in one piece, and none when it returns several: then the body ends
// where the stream does. The client must read both, and keep neither
// connection: an HTTP/1.0 answer without Connection: keep-alive is the
// last on its connection.
func TestInteropGoClientCallsWSGIRef(t *testing.T) {
	c := client(t, startWSGIApp(t))

	resp, err := c.Get(t.Context(), "/time")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.Status)
	assert.Equal(t, "HTTP/1.0", resp.Proto)
	assert.Equal(t, "24", resp.Header.Get("Content-Length"), "one piece: wsgiref frames it")
	assert.Len(t, resp.Body, 24, "ctime's form: %q", resp.Body)
	assert.Zero(t, idleConns(c), "an HTTP/1.0 answer's connection is not kept")

	resp, err = c.Get(t.Context(), "/stream")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.Status)
	assert.Empty(t, resp.Header.Get("Content-Length"), "two pieces: wsgiref sends no length")
	assert.Equal(t, "first piece, second piece\n", string(resp.Body), "read to the end of the stream")
	assert.Zero(t, idleConns(c))

	resp, err = c.Get(t.Context(), "/user")
	require.NoError(t, err)
	assert.Equal(t, "<h2>the user page</h2>", string(resp.Body))

	alpha, err := c.Server(t.Context(), "alpha")
	require.NoError(t, err)
	assert.Equal(t, DemoServers[0], alpha)

	_, err = c.Server(t.Context(), "nobody")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorContains(t, err, `404 Not Found: {"data": "Not Found", "status": 404}`)
	assert.Zero(t, idleConns(c))
}
