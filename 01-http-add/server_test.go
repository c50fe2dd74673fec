package httpadd

import (
	"bufio"
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServeHTTP(t *testing.T) {
	tests := []struct {
		name   string
		method string
		target string
		status int
		body   string
	}{
		{"article form", "GET", "/?a=1&b=2", 200, `{"result": 3}`},
		{"add path", "GET", "/add?a=22&b=3", 200, `{"result": 25}`},
		{"negative", "GET", "/add?a=-7&b=3", 200, `{"result": -4}`},
		{"missing b counts as 0", "GET", "/add?a=5", 200, `{"result": 5}`},
		{"both missing", "GET", "/add", 200, `{"result": 0}`},
		{"head", "HEAD", "/add?a=1&b=2", 200, `{"result": 3}`}, // net/http drops the body; the recorder keeps it
		{"largest sum", "GET", "/add?a=9223372036854775806&b=1", 200, `{"result": 9223372036854775807}`},
		{"smallest sum", "GET", "/add?a=-9223372036854775807&b=-1", 200, `{"result": -9223372036854775808}`},

		{"not an integer", "GET", "/add?a=1&b=x", 400, `{"error": "parameter b: \"x\" is not an integer"}`},
		{"float", "GET", "/add?a=1.5&b=2", 400, `{"error": "parameter a: \"1.5\" is not an integer"}`},
		{"empty value", "GET", "/add?a=&b=2", 400, `{"error": "parameter a: \"\" is not an integer"}`},
		{"spaces", "GET", "/add?a=+1+&b=2", 400, `{"error": "parameter a: \" 1 \" is not an integer"}`},
		{"out of range", "GET", "/add?a=9223372036854775808", 400, `{"error": "parameter a: \"9223372036854775808\" does not fit in an int (64 bits)"}`},
		{"overflow", "GET", "/add?a=9223372036854775807&b=1", 400, `{"error": "a + b overflows: 9223372036854775807 + 1 does not fit in an int (64 bits)"}`},
		{"underflow", "GET", "/add?a=-9223372036854775808&b=-1", 400, `{"error": "a + b overflows: -9223372036854775808 + -1 does not fit in an int (64 bits)"}`},
		{"given twice", "GET", "/add?a=1&a=2", 400, `{"error": "parameter a: given 2 times, give it once"}`},
		{"unknown parameter", "GET", "/add?a=1&b=2&c=3", 400, `{"error": "parameter \"c\": add takes only a and b"}`},
		{"bad escape", "GET", "/add?a=%zz", 400, `{"error": "query string: invalid URL escape \"%zz\""}`},
		{"long value is cut", "GET", "/add?a=" + strings.Repeat("9", 100), 400, `{"error": "parameter a: \"9999999999999999999999999999999999999999\"... does not fit in an int (64 bits)"}`},
		{"quote in value", "GET", `/add?a=%22`, 400, `{"error": "parameter a: \"\\\"\" is not an integer"}`},

		{"post", "POST", "/add?a=1&b=2", 405, `{"error": "method \"POST\" is not allowed: call GET /add?a=1&b=2"}`},
		{"delete", "DELETE", "/", 405, `{"error": "method \"DELETE\" is not allowed: call GET /add?a=1&b=2"}`},
		{"unknown path", "GET", "/sub?a=1&b=2", 404, `{"error": "no procedure at \"/sub\": call GET /add?a=1&b=2"}`},
	}
	srv := NewServer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			assert.Equal(t, tt.status, rec.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			assert.Equal(t, tt.body, rec.Body.String())
			if tt.status == http.StatusMethodNotAllowed {
				assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
			}
		})
	}
}

// TestBadValueKeepsServing is the article's first flaw, fixed: there, a value
// that is not an integer raises inside the handler and the client gets no
// answer. Here the client gets a 400 that names the parameter, on a
// connection that stays open for the next call.
func TestBadValueKeepsServing(t *testing.T) {
	addr := serve(t, NewServer(), rpctest.Listen(t))
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	r := bufio.NewReader(conn)

	for _, tc := range []struct{ query, status, body string }{
		{"a=x&b=1", "400 Bad Request", `{"error": "parameter a: \"x\" is not an integer"}`},
		{"a=1&b=2", "200 OK", `{"result": 3}`},
	} {
		_, err = io.WriteString(conn, "GET /?"+tc.query+" HTTP/1.1\r\nHost: test\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(r, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, tc.status, resp.Status)
		assert.Equal(t, tc.body, string(body))
	}
}

// TestSlowClientBlocksNobody opens a connection that sends half a request and
// then goes quiet. Other callers are answered at once, and the server hangs
// up on the silent one when its header timeout runs out.
func TestSlowClientBlocksNobody(t *testing.T) {
	srv := NewServer()
	srv.HeaderTimeout = 200 * time.Millisecond
	addr := serve(t, srv, rpctest.Listen(t))

	silent, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer silent.Close()
	_, err = io.WriteString(silent, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: te")
	require.NoError(t, err)

	c := NewClient(addr)
	defer c.Close()
	for i := range 5 {
		sum, err := c.Add(t.Context(), i, i)
		require.NoError(t, err)
		assert.Equal(t, 2*i, sum)
	}

	// The server closes the silent connection: a read ends instead of
	// blocking. The deadline is only a backstop.
	require.NoError(t, silent.SetReadDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = io.ReadAll(silent)
	assert.NoError(t, err, "the server should close the connection, not leave it to our deadline")
}

func TestHeaderTooLarge(t *testing.T) {
	addr := serve(t, NewServer(), rpctest.Listen(t))
	req, err := http.NewRequest("GET", "http://"+addr+"/add?a=1&b=2", nil)
	require.NoError(t, err)
	req.Header.Set("X-Padding", strings.Repeat("x", 2*DefaultMaxHeaderBytes))
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	resp, err := transport.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// TestIdleConnectionClosed checks that a kept-alive connection that sends
// nothing more is closed once the idle timeout passes.
func TestIdleConnectionClosed(t *testing.T) {
	srv := NewServer()
	srv.IdleTimeout = 100 * time.Millisecond
	addr := serve(t, srv, rpctest.Listen(t))

	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = r.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the server should close an idle connection")
}

// TestShutdownFinishesCallsInFlight holds a call inside the server, asks the
// server to shut down, and checks that the call still gets its answer and
// that Shutdown waited for it.
func TestShutdownFinishesCallsInFlight(t *testing.T) {
	srv := NewServer()
	entered, release := make(chan struct{}), make(chan struct{})
	srv.beforeAnswer = func() {
		close(entered)
		<-release
	}
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	c := NewClient(l.Addr().String())
	defer c.Close()
	type result struct {
		sum int
		err error
	}
	answered := make(chan result, 1)
	go func() {
		sum, err := c.Add(context.Background(), 40, 2)
		answered <- result{sum, err}
	}()
	<-entered

	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a call was in flight", err)
	case <-served: // Serve returns as soon as the listener closes
	}
	close(release)

	got := <-answered
	require.NoError(t, got.err)
	assert.Equal(t, 42, got.sum)
	assert.NoError(t, <-shutdown)
	_, err := net.Dial("tcp", l.Addr().String())
	assert.Error(t, err, "a server that has shut down accepts no connection")
}

func TestAddOverflow(t *testing.T) {
	tests := []struct {
		a, b    int
		want    int
		wantErr bool
	}{
		{1, 2, 3, false},
		{math.MaxInt, 0, math.MaxInt, false},
		{math.MaxInt, 1, 0, true},
		{math.MinInt, -1, 0, true},
		{math.MinInt, math.MaxInt, -1, false},
		{math.MaxInt, math.MaxInt, 0, true},
		{math.MinInt, math.MinInt, 0, true},
	}
	for _, tt := range tests {
		got, err := add(tt.a, tt.b)
		if tt.wantErr {
			assert.Error(t, err, "add(%d, %d)", tt.a, tt.b)
			continue
		}
		assert.NoError(t, err, "add(%d, %d)", tt.a, tt.b)
		assert.Equal(t, tt.want, got, "add(%d, %d)", tt.a, tt.b)
	}
}
