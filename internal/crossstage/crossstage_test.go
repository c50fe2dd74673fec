package crossstage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	httpadd "github.com/rpc-from-scratch/course/01-http-add"
	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
	customproto "github.com/rpc-from-scratch/course/03-custom-protocol"
	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
	asyncrpc "github.com/rpc-from-scratch/course/05-async-callback"
	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// serveStage06 runs stage 06's server of its demo application until the
// test ends. It returns the address to dial.
func serveStage06(t *testing.T) string {
	t.Helper()
	return serve(t, wsgirouter.NewServer(wsgirouter.NewApp(wsgirouter.Service{})))
}

// serveStage01 runs stage 01's server until the test ends.
func serveStage01(t *testing.T) string {
	t.Helper()
	return serve(t, httpadd.NewServer())
}

// server is what every stage's server offers.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// serve runs srv on a free loopback port until the test ends, then shuts
// it down and checks that Serve returned its stage's ErrServerClosed. It
// returns the address.
func serve(t *testing.T, srv server) string {
	t.Helper()
	l := rpctest.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assertServerClosed(t, <-served)
	})
	return l.Addr().String()
}

// assertServerClosed checks that a Serve returned its stage's
// ErrServerClosed after Shutdown (stage 01's is net/http's).
func assertServerClosed(t *testing.T, err error) {
	t.Helper()
	for _, closed := range []error{httpadd.ErrServerClosed, jsontcp.ErrServerClosed, customproto.ErrServerClosed,
		gobrpc.ErrServerClosed, asyncrpc.ErrServerClosed, wsgirouter.ErrServerClosed} {
		if errors.Is(err, closed) {
			return
		}
	}
	t.Errorf("Serve returned %v, not its stage's ErrServerClosed", err)
}

// TestStage01StubCallsStage06 calls stage 06's /add with stage 01's Go
// stub, unchanged: the answers are stage 01's, so the stub reads them.
func TestStage01StubCallsStage06(t *testing.T) {
	c := httpadd.NewClient(serveStage06(t))
	defer c.Close()

	sum, err := c.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)

	_, err = c.Add(t.Context(), math.MaxInt, 1)
	var serverErr *httpadd.ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.Equal(t, http.StatusBadRequest, serverErr.Status)
	assert.Equal(t, fmt.Sprintf("a + b overflows: %d + 1 does not fit in an int (64 bits)", math.MaxInt), serverErr.Message)
}

// TestStage01ErrorTextFromStage06 sends what stage 01's stub cannot send,
// a value that is not an integer, and reads the error as stage 01 spells it.
func TestStage01ErrorTextFromStage06(t *testing.T) {
	status, _, body := rawExchange(t, serveStage06(t), "GET /add?a=x&b=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, `{"error": "parameter a: \"x\" is not an integer"}`, body)
}

// TestStage01PythonClientCallsStage06 runs stage 01's Python client, the
// article's stub, against stage 06's server.
func TestStage01PythonClientCallsStage06(t *testing.T) {
	py := rpctest.Python(t, "requests")
	addr := serveStage06(t)
	script := filepath.Join("..", "..", "01-http-add", "testdata", "article_client.py")
	out := rpctest.RunPython(t, py, script, "http://"+addr+"/add", "1", "2", "22", "3")
	assert.Equal(t, "3\n25\n", out)
}

// rawExchange sends request on a new connection and returns the status,
// the head as it came and the body.
func rawExchange(t *testing.T, addr, request string) (status int, head, body string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	raw, err := io.ReadAll(conn) // every request asks to close
	require.NoError(t, err)
	head, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	require.True(t, ok, "no end of head in %q", raw)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head+"\r\n\r\n")), nil)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode, head, body
}

// dateField is the one field whose value differs from answer to answer.
var dateField = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// TestStage06AnswersAddAsStage01 sends the same /add requests to both
// servers and compares the answers byte for byte, the Date field masked.
func TestStage06AnswersAddAsStage01(t *testing.T) {
	stage01, stage06 := serveStage01(t), serveStage06(t)
	for _, tt := range []struct{ name, method, target string }{
		{"good", "GET", "/add?a=1&b=2"},
		{"negative", "GET", "/add?a=-4&b=4"},
		{"bad value", "GET", "/add?a=x&b=1"},
		{"overflow", "GET", fmt.Sprintf("/add?a=%d&b=1", math.MaxInt)},
		{"operand out of range", "GET", "/add?a=99999999999999999999"},
		{"missing operands", "GET", "/add"},
		{"operand twice", "GET", "/add?a=1&a=2"},
		{"unknown parameter", "GET", "/add?a=1&c=2"},
		{"bad query", "GET", "/add?a=%zz"},
		{"POST", "POST", "/add?a=1&b=2"},
		{"HEAD", "HEAD", "/add?a=1&b=2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			request := tt.method + " " + tt.target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			if tt.method == "POST" {
				request += "Content-Length: 0\r\n"
			}
			request += "\r\n"
			s1, h1, b1 := rawExchange(t, stage01, request)
			s6, h6, b6 := rawExchange(t, stage06, request)
			assert.Equal(t, s1, s6)
			mask := func(head string) string { return dateField.ReplaceAllString(head+"\r\n", "Date: (masked)\r") }
			assert.Equal(t, mask(h1), mask(h6), "the heads")
			assert.Equal(t, b1, b6, "the bodies")
			if t.Failed() || testing.Verbose() {
				t.Logf("stage 01:\n%s\r\n\r\n%s\nstage 06:\n%s\r\n\r\n%s", h1, b1, h6, b6)
			}
		})
	}
}
