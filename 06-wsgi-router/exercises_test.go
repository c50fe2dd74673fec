//go:build exercises

package wsgirouter

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	go test -tags exercises -run Exercise ./06-wsgi-router/
//
// `make test` compiles them (go vet -tags exercises) but does not run them.

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The exercises use the package's test helpers: bothServers (a new demo
// application on our server and on net/http's, for each test, so a test
// that changes its state changes nobody else's), client, rawConn and
// readHead.

// Exercise 1: a route GET /api/v1.0/servers/{name}/status that answers
// only the status of a server, {"name": "alpha", "status": "up"}, in
// JSON; a name the API does not know gets the API's JSON 404. One line in
// NewApp's table, and a page: the route table is data.
func TestExerciseStatusRoute(t *testing.T) {
	for name, addr := range bothServers(t) {
		t.Run(name, func(t *testing.T) {
			c := client(t, addr)
			for _, tc := range []struct {
				target string
				status int
				body   string
			}{
				{"/api/v1.0/servers/alpha/status", 200, `{"name": "alpha", "status": "up"}`},
				{"/api/v1.0/servers/gamma/status", 200, `{"name": "gamma", "status": "down"}`},
				{"/api/v1.0/servers/nobody/status", 404, `{"data": "Not Found", "status": 404}`},
			} {
				resp, err := c.Get(t.Context(), tc.target)
				require.NoError(t, err)
				assert.Equal(t, tc.status, resp.Status, tc.target)
				assert.Equal(t, tc.body, string(resp.Body), tc.target)
				assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), tc.target)
			}
		})
	}
}

// Exercise 2: DELETE /api/v1.0/servers/{name} removes the server from
// the list and answers {"result": true}, as Flask's REST examples do; a
// name the API does not know gets the JSON 404. The application's state
// changes now, and its pages run on many goroutines at once: guard the
// list, and make the answers that NewApp made once again when it changes.
func TestExerciseDelete(t *testing.T) {
	for name, addr := range bothServers(t) {
		t.Run(name, func(t *testing.T) {
			c := client(t, addr)
			resp, err := c.Do(t.Context(), http.MethodDelete, "/api/v1.0/servers/gamma", nil)
			require.NoError(t, err)
			require.Equal(t, 200, resp.Status, "DELETE answered %s", resp.Body)
			assert.Equal(t, `{"result": true}`, string(resp.Body))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

			_, err = c.Server(t.Context(), "gamma")
			assert.ErrorIs(t, err, ErrNotFound, "gamma is gone")
			infos, err := c.Servers(t.Context())
			require.NoError(t, err)
			assert.Equal(t, DemoServers[:2], infos, "the list is alpha and beta now")

			resp, err = c.Do(t.Context(), http.MethodDelete, "/api/v1.0/servers/gamma", nil)
			require.NoError(t, err)
			assert.Equal(t, 404, resp.Status, "gamma cannot be deleted twice")
			assert.Equal(t, `{"data": "Not Found", "status": 404}`, string(resp.Body))
		})
	}
	assert.Len(t, DemoServers, 3, "DemoServers itself is left as it was")
}

// Exercise 3: a Server field, "Server: rpc-course/06", in every answer
// our server writes: the application's, the Router's 404 and 405, and the
// refusals the server writes itself, before any application runs. An
// application that sets its own Server field keeps it.
func TestExerciseServerField(t *testing.T) {
	addr := serve(t, newDemoServer(t), rpctest.Listen(t))
	for _, tc := range []struct {
		name    string
		request string
	}{
		{"a page", "GET /time HTTP/1.1\r\nHost: test\r\n\r\n"},
		{"a file", "GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n"},
		{"the API's 404", "GET /api/v1.0/servers/nobody HTTP/1.1\r\nHost: test\r\n\r\n"},
		{"the Router's 405", "DELETE /time HTTP/1.1\r\nHost: test\r\n\r\n"},
		{"a malformed request", "GET /time HTTP/1.1\r\nHost: test\r\nno colon\r\n\r\n"},
		{"a request of HTTP/2.0", "GET /time HTTP/2.0\r\nHost: test\r\n\r\n"},
		{"a body too large", "POST /api/v1.0/servers/alpha HTTP/1.1\r\nHost: test\r\nContent-Length: 999999999\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br := rawConn(t, addr)
			_, err := io.WriteString(conn, tc.request)
			require.NoError(t, err)
			head := readHead(t, br)
			assert.Contains(t, head, "\r\nServer: rpc-course/06\r\n", "the answer's head:\n%s", head)
			assert.Equal(t, 1, strings.Count(head, "\r\nServer: "), "one Server field")
		})
	}

	own := AppFunc(func(env *Environ, start StartResponse) []byte {
		_ = start(200, Header{{"Server", "my-app/1.0"}})
		return []byte("mine\n")
	})
	addr = serve(t, NewServer(own), rpctest.Listen(t))
	conn, br := rawConn(t, addr)
	_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	head := readHead(t, br)
	assert.Contains(t, head, "\r\nServer: my-app/1.0\r\n")
	assert.Equal(t, 1, strings.Count(head, "\r\nServer: "), "the application's Server field, alone:\n%s", head)
}
