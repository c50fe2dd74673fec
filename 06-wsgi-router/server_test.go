package wsgirouter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// exchangeCase is one HTTP exchange: the bytes a client sends, and what the
// answer must be, on our server and on net/http's.
type exchangeCase struct {
	name    string
	request string // one request, as it goes on the wire
	status  int
	ctype   string // the Content-Type the answer must have
	allow   string // the Allow field a 405 must have
	body    string // the exact body, if exact is set
	exact   bool
	// contains is what the body must hold, when it is not exact.
	contains string
	// noBody is a HEAD: no body bytes, and a Content-Length of lengthOf's
	// body.
	noBody   bool
	lengthOf string
}

const (
	jsonType = "application/json"
	htmlType = "text/html; charset=utf-8"
	textType = "text/plain; charset=utf-8"
)

// getRequest spells a GET request for target.
func getRequest(target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: test\r\n\r\n"
}

// embeddedFile returns a file of the embedded web folder.
func embeddedFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(WWW(), name)
	require.NoError(t, err)
	return string(b)
}

const (
	alphaJSON = `{"name": "alpha", "host": "10.0.0.1", "port": 8080, "status": "up"}`
	betaJSON  = `{"name": "beta", "host": "10.0.0.2", "port": 8080, "status": "up"}`
	gammaJSON = `{"name": "gamma", "host": "10.0.0.3", "port": 9090, "status": "down"}`
	// apiNotFoundJSON is the article's 404, byte for byte.
	apiNotFoundJSON = `{"data": "Not Found", "status": 404}`
)

// exchangeCases is the table both servers must answer alike.
func exchangeCases(t *testing.T) []exchangeCase {
	t.Helper()
	index := embeddedFile(t, "index.html")
	cases := []exchangeCase{
		{name: "index", request: getRequest("/"), status: 200, ctype: htmlType, body: index, exact: true},
		{name: "time on the stopped clock", request: getRequest("/time"), status: 200, ctype: textType, body: "Thu Jan 17 17:24:02 2019\n", exact: true},
		{name: "user", request: getRequest("/user"), status: 200, ctype: htmlType, contains: "<h2>Hello, I am the /user page"},
		{name: "add", request: getRequest("/add?a=1&b=2"), status: 200, ctype: jsonType, body: `{"result": 3}`, exact: true},
		{name: "add negative", request: getRequest("/add?a=-5&b=2"), status: 200, ctype: jsonType, body: `{"result": -3}`, exact: true},
		{name: "add bad value", request: getRequest("/add?a=x&b=2"), status: 400, ctype: jsonType,
			body: `{"error": "parameter a: \"x\" is not an integer"}`, exact: true},
		{name: "add overflow", request: getRequest("/add?a=9223372036854775807&b=1"), status: 400, ctype: jsonType,
			body: `{"error": "a + b overflows: 9223372036854775807 + 1 does not fit in an int (64 bits)"}`, exact: true},
		{name: "add operand too large", request: getRequest("/add?a=99999999999999999999"), status: 400, ctype: jsonType,
			body: `{"error": "parameter a: \"99999999999999999999\" does not fit in an int (64 bits)"}`, exact: true},
		{name: "add POST", request: "POST /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
			status: 405, ctype: jsonType, allow: "GET, HEAD",
			body: `{"error": "method \"POST\" is not allowed: call GET /add?a=1&b=2"}`, exact: true},
		{name: "servers", request: getRequest("/api/v1.0/servers"), status: 200, ctype: jsonType,
			body: `{"infos": [` + alphaJSON + `, ` + betaJSON + `, ` + gammaJSON + `]}`, exact: true},
		{name: "one server by GET", request: getRequest("/api/v1.0/servers/beta"), status: 200, ctype: jsonType,
			body: `{"infos": [` + betaJSON + `]}`, exact: true},
		{name: "one server by POST", request: "POST /api/v1.0/servers/gamma HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
			status: 200, ctype: jsonType, body: `{"infos": [` + gammaJSON + `]}`, exact: true},
		{name: "unknown server", request: getRequest("/api/v1.0/servers/nobody"), status: 404, ctype: jsonType, body: apiNotFoundJSON, exact: true},
		{name: "unknown API path", request: getRequest("/api/v2.0/whatever"), status: 404, ctype: jsonType, body: apiNotFoundJSON, exact: true},
		{name: "the API's root", request: getRequest("/api"), status: 404, ctype: jsonType, body: apiNotFoundJSON, exact: true},
		{name: "a server's trailing slash", request: getRequest("/api/v1.0/servers/alpha/"), status: 400, ctype: textType,
			contains: "is not the name of a file in the web folder"},
		// PUT: a method no route of the API takes, and no exercise adds
		// (exercise 2 adds DELETE, and with it DELETE to this Allow).
		{name: "PUT a server", request: "PUT /api/v1.0/servers/alpha HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
			status: 405, ctype: textType, allow: "GET, HEAD, POST", contains: "405 Method Not Allowed"},
		{name: "index.html", request: getRequest("/index.html"), status: 200, ctype: htmlType, body: index, exact: true},
		{name: "style.css", request: getRequest("/style.css"), status: 200, ctype: "text/css; charset=utf-8", body: embeddedFile(t, "style.css"), exact: true},
		{name: "servers.js", request: getRequest("/servers.js"), status: 200, ctype: "text/javascript; charset=utf-8", body: embeddedFile(t, "servers.js"), exact: true},
		{name: "missing file", request: getRequest("/missing.txt"), status: 404, ctype: textType,
			body: "404 Not Found: no file \"/missing.txt\"\n", exact: true},
		{name: "POST /time", request: "POST /time HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
			status: 405, ctype: textType, allow: "GET, HEAD",
			body: "405 Method Not Allowed: \"/time\" takes GET, HEAD, not \"POST\"\n", exact: true},
		{name: "NUL in a file name", request: getRequest("/index.html%00.txt"), status: 404, ctype: textType,
			body: "404 Not Found: no file \"/index.html\\x00.txt\"\n", exact: true},
		{name: "HEAD add", request: "HEAD /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\n\r\n",
			status: 200, ctype: jsonType, noBody: true, lengthOf: `{"result": 3}`},
		{name: "HEAD index", request: "HEAD / HTTP/1.1\r\nHost: test\r\n\r\n",
			status: 200, ctype: htmlType, noBody: true, lengthOf: index},
		{name: "HEAD unknown server", request: "HEAD /api/v1.0/servers/nobody HTTP/1.1\r\nHost: test\r\n\r\n",
			status: 404, ctype: jsonType, noBody: true, lengthOf: apiNotFoundJSON},
	}
	// Traversal: every spelling is refused (400) or finds nothing (404),
	// and no answer holds a line of /etc/passwd.
	for _, target := range []string{
		"/../../etc/passwd",
		"/%2e%2e/%2e%2e/etc/passwd",
		"/%2E%2E/%2E%2E/etc/passwd",
		"/..%2f..%2fetc/passwd",
		"//etc/passwd",
		"/static/../../etc/passwd",
		"/./index.html",
		"/.git/config",
		"/%2egit/config",
		`/..\..\etc\passwd`,
		`/www\..\index.html`,
		"/www%5c..%5cindex.html",
		"/..%5c..%5cetc%5cpasswd",
		"/www/../../../../etc/passwd",
	} {
		cases = append(cases, exchangeCase{name: "traversal " + target, request: getRequest(target), status: 400, ctype: textType,
			contains: "is not the name of a file in the web folder"})
	}
	return cases
}

// probeRequest is sent after every request of the table, in the same write: its
// answer, read next, proves that the first answer was framed right (a HEAD
// sent no body bytes; a Content-Length was the body's).
const probeRequest = "GET /add?a=20&b=22 HTTP/1.1\r\nHost: test\r\n\r\n"

// readWire reads one answer to a request with method from br.
func readWire(t *testing.T, br *bufio.Reader, method string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, body
}

// sendWire writes raw to conn in one write.
func sendWire(t *testing.T, conn net.Conn, raw string) {
	t.Helper()
	_, err := io.WriteString(conn, raw)
	require.NoError(t, err)
}

// bothServers runs the demo application on our server and on net/http's,
// and returns their addresses by name.
func bothServers(t *testing.T) map[string]string {
	return map[string]string{
		"ours":     serve(t, newDemoServer(t), rpctest.Listen(t)),
		"net/http": serveNetHTTP(t, demoApp(t), rpctest.Listen(t)),
	}
}

func TestWireTableOnBothServers(t *testing.T) {
	for server, addr := range bothServers(t) {
		for _, tc := range exchangeCases(t) {
			t.Run(server+"/"+tc.name, func(t *testing.T) {
				conn, br := rawConn(t, addr)
				sendWire(t, conn, tc.request+probeRequest)
				method, _, _ := strings.Cut(tc.request, " ")
				resp, body := readWire(t, br, method)

				assert.Equal(t, tc.status, resp.StatusCode, "body: %q", body)
				assert.Equal(t, tc.ctype, resp.Header.Get("Content-Type"))
				assert.NotEmpty(t, resp.Header.Get("Date"))
				_, err := http.ParseTime(resp.Header.Get("Date"))
				assert.NoError(t, err, "Date")
				assert.Equal(t, tc.allow, resp.Header.Get("Allow"))
				assert.Len(t, resp.Header.Values("Content-Length"), 1)
				length := resp.Header.Get("Content-Length")
				if tc.noBody {
					assert.Empty(t, body)
					assert.Equal(t, strconv.Itoa(len(tc.lengthOf)), length)
				} else {
					assert.Equal(t, strconv.Itoa(len(body)), length)
				}
				switch {
				case tc.exact:
					assert.Equal(t, tc.body, string(body))
				case tc.contains != "":
					assert.Contains(t, string(body), tc.contains)
				}
				assert.NotContains(t, string(body), "root:", "a line of /etc/passwd")

				next, nextBody := readWire(t, br, "GET")
				assert.Equal(t, 200, next.StatusCode)
				assert.Equal(t, `{"result": 42}`, string(nextBody), "the answer after %s", tc.name)
			})
		}
	}
}

// TestOursDateIsTheServersClock checks Date on our server, whose clock the
// test stops; net/http's Date is the real time, so it is only checked to
// be there, in the table.
func TestOursDateIsTheServersClock(t *testing.T) {
	conn, br := rawConn(t, serve(t, newDemoServer(t), rpctest.Listen(t)))
	sendWire(t, conn, getRequest("/time"))
	resp, _ := readWire(t, br, "GET")
	assert.Equal(t, "Thu, 17 Jan 2019 17:24:02 GMT", resp.Header.Get("Date"))
}

// TestOursRefusesMalformedRequests is ours only: net/http's server answers
// a malformed request line itself, with its own body, before the
// application sees it, so the two answers differ in their bodies. Both
// refuse with 400; this checks ours exactly, and that it closes the
// connection, since it cannot know where the next request starts.
func TestOursRefusesMalformedRequests(t *testing.T) {
	addr := serve(t, newDemoServer(t), rpctest.Listen(t))
	for _, tc := range []struct {
		name, request string
		status        int
		contains      string
	}{
		{"target without a slash", "GET etc/passwd HTTP/1.1\r\nHost: test\r\n\r\n", 400, "does not start with /"},
		{"bad percent escape", "GET /%zz HTTP/1.1\r\nHost: test\r\n\r\n", 400, "invalid URL escape"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "Host field"},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: test\r\n\r\n", 505, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br := rawConn(t, addr)
			sendWire(t, conn, tc.request)
			resp, body := readWire(t, br, "GET")
			assert.Equal(t, tc.status, resp.StatusCode, "body: %q", body)
			assert.Contains(t, string(body), tc.contains)
			assert.NotContains(t, string(body), "root:")
			assert.True(t, resp.Close, "Connection: close")
			_, err := br.ReadByte()
			assertHungUp(t, err)
		})
	}
}

// assertHungUp checks that a read failed because the server closed
// the connection. A server that closes with bytes unread sends a reset,
// and the reader may see that instead of the end of the stream.
func assertHungUp(t *testing.T, err error) {
	t.Helper()
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "want the connection closed, got %v", err)
}

func TestKeepAliveServesTwoRequestsOnOneConnection(t *testing.T) {
	l := rpctest.Listen(t)
	conn, br := rawConn(t, serve(t, newDemoServer(t), l))
	sendWire(t, conn, getRequest("/add?a=1&b=2"))
	resp, body := readWire(t, br, "GET")
	assert.Equal(t, `{"result": 3}`, string(body))
	assert.False(t, resp.Close)
	assert.Empty(t, resp.Header.Get("Connection"), "HTTP/1.1 keeps the connection without saying so")
	sendWire(t, conn, getRequest("/add?a=3&b=4"))
	_, body = readWire(t, br, "GET")
	assert.Equal(t, `{"result": 7}`, string(body))
	assert.Equal(t, 1, l.Accepted())
}

func TestConnectionCloseEndsTheConnection(t *testing.T) {
	conn, br := rawConn(t, serve(t, newDemoServer(t), rpctest.Listen(t)))
	// The request after the one that says close is never answered.
	sendWire(t, conn, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"+probeRequest)
	resp, body := readWire(t, br, "GET")
	assert.Equal(t, `{"result": 3}`, string(body))
	assert.True(t, resp.Close, "Connection: close")
	_, err := br.ReadByte()
	assertHungUp(t, err)
}

func TestHTTP10(t *testing.T) {
	addr := serve(t, newDemoServer(t), rpctest.Listen(t))
	t.Run("closes by default", func(t *testing.T) {
		conn, br := rawConn(t, addr)
		sendWire(t, conn, "GET /add?a=1&b=2 HTTP/1.0\r\n\r\n")
		resp, body := readWire(t, br, "GET")
		assert.Equal(t, `{"result": 3}`, string(body))
		assert.True(t, resp.Close, "Connection: close")
		_, err := br.ReadByte()
		assertHungUp(t, err)
	})
	t.Run("keeps the connection when asked", func(t *testing.T) {
		conn, br := rawConn(t, addr)
		sendWire(t, conn, "GET /add?a=1&b=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"+
			"GET /add?a=2&b=2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"+
			"GET /add?a=3&b=3 HTTP/1.0\r\n\r\n")
		for _, want := range []string{`{"result": 3}`, `{"result": 4}`} {
			resp, body := readWire(t, br, "GET")
			assert.Equal(t, want, string(body))
			assert.Equal(t, "keep-alive", resp.Header.Get("Connection"))
		}
		resp, body := readWire(t, br, "GET")
		assert.Equal(t, `{"result": 6}`, string(body))
		assert.True(t, resp.Close, "Connection: close")
		_, err := br.ReadByte()
		assertHungUp(t, err)
	})
}

func TestPipelinedRequestsAreAnsweredInOrder(t *testing.T) {
	l := rpctest.Listen(t)
	conn, br := rawConn(t, serve(t, newDemoServer(t), l))
	var requests strings.Builder
	for i := range 5 {
		requests.WriteString(getRequest(fmt.Sprintf("/add?a=%d&b=%d", i, 100*i)))
	}
	sendWire(t, conn, requests.String())
	for i := range 5 {
		_, body := readWire(t, br, "GET")
		assert.Equal(t, fmt.Sprintf(`{"result": %d}`, 101*i), string(body), "answer %d", i)
	}
	assert.Equal(t, 1, l.Accepted())
}

func TestPanickingApplicationAnswers500AndTheServerGoesOn(t *testing.T) {
	app := AppFunc(func(env *Environ, start StartResponse) []byte {
		if env.Path == "/panic" {
			panic("a bug in one page")
		}
		_ = start(200, nil)
		return []byte("fine\n")
	})
	addr := serve(t, NewServer(app), rpctest.Listen(t))
	conn, br := rawConn(t, addr)
	sendWire(t, conn, getRequest("/panic")+getRequest("/ok"))
	resp, body := readWire(t, br, "GET")
	assert.Equal(t, 500, resp.StatusCode)
	assert.Equal(t, "500 Internal Server Error: the application failed\n", string(body))
	assert.NotContains(t, string(body), "a bug in one page", "a panic's value is not for the client")
	_, body = readWire(t, br, "GET")
	assert.Equal(t, "fine\n", string(body), "the same connection goes on")

	conn, br = rawConn(t, addr)
	sendWire(t, conn, getRequest("/ok"))
	resp, body = readWire(t, br, "GET")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "fine\n", string(body), "the next connection is served")
}

// bodyEchoApp answers with the request's body.
var bodyEchoApp = AppFunc(func(env *Environ, start StartResponse) []byte {
	_ = start(200, nil)
	return append([]byte(nil), env.Body...)
})

func TestExpect100Continue(t *testing.T) {
	conn, br := rawConn(t, serve(t, NewServer(bodyEchoApp), rpctest.Listen(t)))
	sendWire(t, conn, "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	// The client sends its body only once it has read the 100.
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
	line, err = br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "\r\n", line)
	sendWire(t, conn, "hello")
	resp, body := readWire(t, br, "POST")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello", string(body))
}

// closeSignalListener is a listener that says when it is closed: Shutdown closes
// the listener once it has begun, so a test knows Shutdown has begun.
type closeSignalListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeSignalListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func newCloseSignalListener(t *testing.T) *closeSignalListener {
	return &closeSignalListener{Listener: rpctest.Listen(t), closed: make(chan struct{})}
}

// heldApp is an application whose requests to /block wait until the
// test closes release; entered receives once per such request.
type heldApp struct {
	entered  chan struct{}
	release  chan struct{}
	finished atomic.Int32 // requests to /block answered
}

func newHeldApp(t *testing.T) *heldApp {
	return &heldApp{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (a *heldApp) ServeWSGI(env *Environ, start StartResponse) []byte {
	if env.Path == "/block" {
		a.entered <- struct{}{}
		<-a.release
		defer a.finished.Add(1)
	}
	_ = start(200, nil)
	return []byte("done\n")
}

func TestShutdownClosesIdleConnections(t *testing.T) {
	srv := newDemoServer(t)
	conn, br := rawConn(t, serve(t, srv, rpctest.Listen(t)))
	sendWire(t, conn, getRequest("/add?a=1&b=2"))
	_, body := readWire(t, br, "GET")
	assert.Equal(t, `{"result": 3}`, string(body))

	ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	_, err := br.ReadByte()
	assertHungUp(t, err)
}

func TestShutdownLetsARequestInFlightFinish(t *testing.T) {
	app := newHeldApp(t)
	srv := NewServer(app)
	// The connection closes when its client closes, or when the server
	// has waited linger for that. This client closes only once Shutdown
	// has returned, so a Shutdown that does not wait for the connection
	// returns with it still served, for linger at least.
	srv.linger = 100 * time.Millisecond
	l := newCloseSignalListener(t)
	conn, br := rawConn(t, serve(t, srv, l))
	sendWire(t, conn, getRequest("/block"))
	<-app.entered

	shutdown := make(chan error, 1)
	// What Shutdown left when it returned: requests answered, and
	// connections still served.
	type left struct {
		answered int32
		conns    int
	}
	shutdownLeft := make(chan left, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		err := srv.Shutdown(ctx)
		srv.mu.Lock()
		shutdownLeft <- left{answered: app.finished.Load(), conns: len(srv.conns)}
		srv.mu.Unlock()
		shutdown <- err
	}()
	<-l.closed // Shutdown has begun
	close(app.release)

	resp, body := readWire(t, br, "GET")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "done\n", string(body))
	assert.True(t, resp.Close, "Connection: close")
	_, err := br.ReadByte()
	assertHungUp(t, err)
	assert.Equal(t, left{answered: 1, conns: 0}, <-shutdownLeft, "Shutdown returned before the request in flight was answered")
	assert.NoError(t, <-shutdown)
}

func TestShutdownsContextEndingClosesConnections(t *testing.T) {
	app := newHeldApp(t)
	srv := NewServer(app)
	conn, br := rawConn(t, serve(t, srv, rpctest.Listen(t)))
	// Runs before serve's clean-up: the request must end for its
	// connection's goroutine to end.
	t.Cleanup(func() { close(app.release) })
	sendWire(t, conn, getRequest("/block"))
	<-app.entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, srv.Shutdown(ctx), context.Canceled)
	_, err := br.ReadByte()
	assertHungUp(t, err)
}

// TestHangUpKeepsALargeAnswer is about what only the kernel does, so it
// runs over TCP. A client asks for a file of 64 KiB with Connection:
// close, sends 16 KiB more after its request, and reads nothing until the
// server has closed its end. Its receive buffer is 4 KiB, so most of the
// answer is still in the server's send buffer when the server closes.
// Closing a socket with unread input makes the kernel send a reset and
// throw that away; hangUp reads the input first, so the close sends a FIN
// after the whole answer, and the client reads it all.
func TestHangUpKeepsALargeAnswer(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", (64<<10)/16)
	app := NewApp(Service{Files: fstest.MapFS{"big.bin": {Data: []byte(big)}}})
	l := spy(rpctest.Listen(t))
	l.writeBuffer = 1 << 20 // the whole answer fits: the server's write returns at once
	addr := serve(t, NewServer(app), l)

	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		return errors.Join(err, serr)
	}}
	conn, err := dialer.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	sendWire(t, conn, "GET /big.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"+strings.Repeat("x", 16<<10))
	rpctest.WaitUntil(t, "the server to accept the connection", func() bool { return len(l.accepted()) == 1 })
	waitClosed(t, l.accepted()[0])

	resp, body := readWire(t, bufio.NewReader(conn), "GET")
	assert.Equal(t, 200, resp.StatusCode)
	assert.True(t, big == string(body), "the whole file: %d bytes of %d", len(body), len(big))
}

// TestNoGoroutineOutlivesShutdown serves many connections, some kept
// alive, some cut mid-request, then shuts down and checks that every
// goroutine the server started is gone. goleak runs in TestMain as well;
// this names the test that leaks, if one does.
func TestNoGoroutineOutlivesShutdown(t *testing.T) {
	before := goleak.IgnoreCurrent()
	srv := newDemoServer(t)
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	addr := l.Addr().String()
	var conns []net.Conn
	for i := range 10 {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, conn)
		require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
		br := bufio.NewReader(conn)
		sendWire(t, conn, getRequest(fmt.Sprintf("/add?a=%d", i)))
		_, body := readWire(t, br, "GET")
		assert.Equal(t, fmt.Sprintf(`{"result": %d}`, i), string(body))
		if i%2 == 0 {
			sendWire(t, conn, "GET /time HTTP/1.1\r\nHo") // cut mid-head
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
	defer cancel()
	// The connections cut mid-request hold a request in flight: Shutdown
	// waits for them until their clients close.
	for i, conn := range conns {
		if i%2 == 0 {
			conn.Close()
		}
	}
	require.NoError(t, srv.Shutdown(ctx))
	require.ErrorIs(t, <-served, ErrServerClosed)
	for _, conn := range conns {
		conn.Close()
	}
	goleak.VerifyNone(t, before)
}

// statusApp answers the status its path names (/204, /304), with a body
// that such answers must not carry.
var statusApp = AppFunc(func(env *Environ, start StartResponse) []byte {
	status, err := strconv.Atoi(strings.TrimPrefix(env.Path, "/"))
	if err != nil {
		status = 200
	}
	_ = start(status, nil)
	return []byte("a body")
})

// TestAnswersWithoutBody: 204 and 304 answers have no body, whatever the
// application returns, on both servers. The probe after each proves no
// body byte was sent.
func TestAnswersWithoutBody(t *testing.T) {
	for server, addr := range bothServersOf(t, statusApp) {
		for _, status := range []int{204, 304} {
			t.Run(fmt.Sprintf("%s/%d", server, status), func(t *testing.T) {
				conn, br := rawConn(t, addr)
				sendWire(t, conn, fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: test\r\n\r\nGET /200 HTTP/1.1\r\nHost: test\r\n\r\n", status))
				resp, body := readWire(t, br, "GET")
				assert.Equal(t, status, resp.StatusCode)
				assert.Empty(t, body)
				assert.Empty(t, resp.Header.Values("Content-Length"), "no length for an answer that has no body")
				next, body := readWire(t, br, "GET")
				assert.Equal(t, 200, next.StatusCode)
				assert.Equal(t, "a body", string(body))
			})
		}
	}
}

// TestLargeAnswers: an answer larger than a connection's buffers is
// written after its head, not copied into it. Pipelined with a HEAD and a
// small answer, on both servers.
func TestLargeAnswers(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", MaxFileBytes/16)
	app := NewApp(Service{Files: fstest.MapFS{"big.txt": {Data: []byte(big)}, "small.txt": {Data: []byte("small")}}})
	for server, addr := range bothServersOf(t, app) {
		t.Run(server, func(t *testing.T) {
			conn, br := rawConn(t, addr)
			sendWire(t, conn, getRequest("/big.txt")+"HEAD /big.txt HTTP/1.1\r\nHost: test\r\n\r\n"+
				getRequest("/big.txt")+getRequest("/small.txt"))
			for _, want := range []struct {
				method, body string
			}{{"GET", big}, {"HEAD", ""}, {"GET", big}, {"GET", "small"}} {
				resp, body := readWire(t, br, want.method)
				assert.Equal(t, 200, resp.StatusCode)
				length := len(want.body)
				if want.method == "HEAD" {
					length = len(big)
				}
				assert.Equal(t, strconv.Itoa(length), resp.Header.Get("Content-Length"))
				assert.True(t, want.body == string(body), "%s: %d bytes, want %d", want.method, len(body), len(want.body))
			}
		})
	}
}
