package wsgirouter

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// idleConns returns how many connections c keeps for reuse.
func idleConns(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle)
}

// readFakeRequest reads one request's head, and its body if it has a
// Content-Length, for the hand-made servers below. It returns the request
// line.
func readFakeRequest(br *bufio.Reader) (string, error) {
	var first string
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if first == "" {
			first = line
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
			if length, err = strconv.Atoi(v); err != nil {
				return "", err
			}
		}
	}
	_, err := io.CopyN(io.Discard, br, int64(length))
	return first, err
}

// fakeServer is a hand-made server that answers each request of a
// connection with answer(request line), until it has answered perConn
// requests (0: no limit) or the client leaves; then it closes the
// connection. It counts the connections it served.
type fakeServer struct {
	addr  string
	conns atomic.Int64
}

func startFakeServer(t *testing.T, perConn int, answer func(request string) string) *fakeServer {
	t.Helper()
	fs := &fakeServer{}
	fs.addr = rpctest.ServeConns(t, func(conn net.Conn) {
		fs.conns.Add(1)
		br := bufio.NewReader(conn)
		for n := 1; ; n++ {
			request, err := readFakeRequest(br)
			if err != nil {
				return
			}
			if _, err := io.WriteString(conn, answer(request)); err != nil || n == perConn {
				return
			}
		}
	})
	return fs
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestClientReusesConnection(t *testing.T) {
	l := rpctest.Listen(t)
	c := client(t, serve(t, newDemoServer(t), l))
	for i := range 10 {
		sum, err := c.Add(t.Context(), i, 1)
		require.NoError(t, err)
		assert.Equal(t, i+1, sum)
	}
	assert.Equal(t, 1, l.Accepted(), "ten calls on one kept-alive connection")
	assert.Equal(t, 1, idleConns(c))
}

// TestClientManyGoroutines calls from many goroutines at once: each call
// takes a connection of its own, so there are never more connections than
// callers, and they are kept for the next calls.
func TestClientManyGoroutines(t *testing.T) {
	const callers, calls = 16, 25
	l := rpctest.Listen(t)
	c := client(t, serve(t, newDemoServer(t), l))
	var g errgroup.Group
	for i := range callers {
		g.Go(func() error {
			for j := range calls {
				sum, err := c.Add(t.Context(), i, j)
				if err != nil {
					return err
				}
				if sum != i+j {
					return fmt.Errorf("add(%d, %d) = %d", i, j, sum)
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	assert.LessOrEqual(t, l.Accepted(), callers)
	assert.Equal(t, l.Accepted(), idleConns(c), "every connection kept for reuse")
}

// TestClientRetriesStaleGet: the server answers one request per
// connection and closes it without saying so, as a server whose idle
// timeout fired does. The next GET fails on the kept connection before any
// byte of answer, and is sent again, once, on a new one.
func TestClientRetriesStaleGet(t *testing.T) {
	srv := startFakeServer(t, 1, func(string) string { return okAnswer })
	c := client(t, srv.addr)
	for range 2 {
		resp, err := c.Get(rpctest.BackstopContext(t), "/")
		require.NoError(t, err)
		assert.Equal(t, "ok", string(resp.Body))
	}
	assert.EqualValues(t, 2, srv.conns.Load(), "the second GET on a new connection")
}

// TestClientDoesNotRetryPost: the same stale connection, but the request
// is a POST. The server may have acted on it before the connection broke,
// so the client must not send it again.
func TestClientDoesNotRetryPost(t *testing.T) {
	srv := startFakeServer(t, 1, func(string) string { return okAnswer })
	c := client(t, srv.addr)
	_, err := c.Get(rpctest.BackstopContext(t), "/")
	require.NoError(t, err)
	_, err = c.Do(rpctest.BackstopContext(t), "POST", "/", []byte("x"))
	require.Error(t, err)
	t.Logf("POST on a stale connection: %v", err)
	assert.EqualValues(t, 1, srv.conns.Load(), "no second connection for the POST")
}

// silentServer reads requests and never answers. Each time it has read
// one it sends on heard; when the client closes the connection it sends
// on gone, also if the client gave up before its request was whole (on a
// loaded machine a 50 ms deadline can pass that early).
func silentServer(t *testing.T) (addr string, heard, gone <-chan struct{}) {
	t.Helper()
	heardc, gonec := make(chan struct{}, 16), make(chan struct{}, 16)
	addr = rpctest.ServeConns(t, func(conn net.Conn) {
		defer func() { gonec <- struct{}{} }()
		br := bufio.NewReader(conn)
		if _, err := readFakeRequest(br); err != nil {
			return
		}
		heardc <- struct{}{}
		_, _ = io.Copy(io.Discard, br) // until the client closes
	})
	return addr, heardc, gonec
}

// timerlessContext has a deadline but never ends by it: its Done and Err
// are its parent's.
type timerlessContext struct {
	context.Context
	deadline time.Time
}

func (c timerlessContext) Deadline() (time.Time, bool) { return c.deadline, true }

func TestClientContext(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		addr, _, gone := silentServer(t)
		c := client(t, addr)
		// The server never answers: the call can only end by the deadline,
		// however long the machine takes.
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Get(ctx, "/")
		rpctest.Receive(t, gone, "close of the connection")
		assert.Zero(t, idleConns(c), "a connection whose call ended early is not reused")
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("deadline before ctx's timer", func(t *testing.T) {
		// The connection's deadline may pass a moment before ctx's timer
		// marks ctx done. A ctx whose timer never fires makes that moment
		// last: the call must still end with ctx's error.
		addr, _, gone := silentServer(t)
		c := client(t, addr)
		ctx := timerlessContext{Context: t.Context(), deadline: time.Now().Add(50 * time.Millisecond)}
		_, err := c.Get(ctx, "/")
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		rpctest.Receive(t, gone, "close of the connection")
		assert.Zero(t, idleConns(c))
	})
	t.Run("cancel", func(t *testing.T) {
		addr, heard, gone := silentServer(t)
		c := client(t, addr)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, err := c.Get(ctx, "/")
			errc <- err
		}()
		rpctest.Receive(t, heard, "request")
		cancel()
		assert.ErrorIs(t, rpctest.Receive(t, errc, "end of the call"), context.Canceled)
		rpctest.Receive(t, gone, "close of the connection")
		assert.Zero(t, idleConns(c))
	})
}

func TestClientReadsAnswers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer string
		body   string
		kept   bool // the connection may carry the next request
	}{
		{"Content-Length", okAnswer, "ok", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", "hello world", true},
		{"100 Continue first", "HTTP/1.1 100 Continue\r\n\r\n" + okAnswer, "ok", true},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "ok", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The server keeps every connection open and answers every
			// request, even after it said Connection: close: only the
			// client's own rules decide whether it sends a second request
			// on the same connection.
			srv := startFakeServer(t, 0, func(string) string { return tt.answer })
			c := client(t, srv.addr)
			for range 2 {
				resp, err := c.Get(rpctest.BackstopContext(t), "/")
				require.NoError(t, err)
				assert.Equal(t, 200, resp.Status)
				assert.Equal(t, tt.body, string(resp.Body))
			}
			want := 2
			if tt.kept {
				want = 1
			}
			assert.EqualValues(t, want, srv.conns.Load(), "connections for two requests")
		})
	}
}

// TestClientRefusesMalformedAnswers: an answer the client cannot frame
// is an error that says what was wrong with it, in plain words (not a
// status, which would read as if the server had answered it).
func TestClientRefusesMalformedAnswers(t *testing.T) {
	for _, tt := range []struct{ name, answer, want string }{
		{"HTTP/2", "HTTP/2 200 OK\r\n\r\n", `status line "HTTP/2 200 OK" is not HTTP/1.x NNN`},
		{"two digits", "HTTP/1.1 20 OK\r\n\r\n", `status line "HTTP/1.1 20 OK" is not HTTP/1.x NNN`},
		{"no status", "HTTP/1.1 OK\r\n\r\n", `status line "HTTP/1.1 OK" is not HTTP/1.x NNN`},
		{"LF alone", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", "answer's head: a line ends with LF alone, not CR LF"},
		{"field without a colon", "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "answer: "},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", `answer's body: answer's Content-Length "2" is not one length`},
		{"chunk past its size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n", "answer's body: a chunk is longer than its size says"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startFakeServer(t, 0, func(string) string { return tt.answer })
			_, err := client(t, srv.addr).Get(rpctest.BackstopContext(t), "/")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestClientReadsCloseDelimitedBody: an answer with no length ends where
// the stream does, and its connection cannot be reused.
func TestClientReadsCloseDelimitedBody(t *testing.T) {
	srv := startFakeServer(t, 1, func(string) string { return "HTTP/1.1 200 OK\r\n\r\nto the end\n" })
	c := client(t, srv.addr)
	resp, err := c.Get(rpctest.BackstopContext(t), "/")
	require.NoError(t, err)
	assert.Equal(t, "to the end\n", string(resp.Body))
	assert.Zero(t, idleConns(c))
}

// TestClientLimits: a server that sends a header without end, or
// announces a body larger than the client reads. The client gives up
// with an error, and closes the connection, without reading it all.
func TestClientLimits(t *testing.T) {
	t.Run("endless header", func(t *testing.T) {
		// "Endless": far more than the client's 64 KiB, and a client
		// that reads it all sees the server stop before it gives up.
		const endless = 8 << 20
		var sent atomic.Int64
		done := make(chan struct{})
		addr := rpctest.ServeConns(t, func(conn net.Conn) {
			defer close(done)
			if _, err := readFakeRequest(bufio.NewReader(conn)); err != nil {
				return
			}
			line := []byte("X-More: " + strings.Repeat("m", 1000) + "\r\n")
			_, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\n")
			for err == nil && sent.Load() < endless {
				var n int
				n, err = conn.Write(line)
				sent.Add(int64(n))
			}
		})
		c := client(t, addr)
		_, err := c.Get(rpctest.BackstopContext(t), "/")
		require.Error(t, err)
		t.Logf("endless header: %v", err)
		rpctest.Receive(t, done, "end of the server's writing")
		assert.Less(t, sent.Load(), int64(endless), "the client closed the connection before the server was done")
		assert.Zero(t, idleConns(c))
	})
	t.Run("huge Content-Length", func(t *testing.T) {
		srv := startFakeServer(t, 0, func(string) string {
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", int64(1)<<40)
		})
		c := client(t, srv.addr)
		_, err := c.Get(rpctest.BackstopContext(t), "/")
		require.Error(t, err)
		assert.ErrorContains(t, err, "over the client's limit")
		assert.Zero(t, idleConns(c))
	})
	t.Run("endless 1xx answers", func(t *testing.T) {
		addr := rpctest.ServeConns(t, func(conn net.Conn) {
			if _, err := readFakeRequest(bufio.NewReader(conn)); err != nil {
				return
			}
			for {
				if _, err := io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
					return
				}
			}
		})
		// The Backstop only stops a broken client from hanging the test:
		// a client that bounds the 1xx answers it reads fails long before,
		// with an error of its own.
		ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop)
		defer cancel()
		_, err := client(t, addr).Get(ctx, "/")
		require.Error(t, err)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "the client read 1xx answers until ctx ended")
	})
}

func TestClientClose(t *testing.T) {
	srv := startFakeServer(t, 0, func(string) string { return okAnswer })
	c := NewClient(srv.addr)
	_, err := c.Get(rpctest.BackstopContext(t), "/")
	require.NoError(t, err)
	require.Equal(t, 1, idleConns(c))
	require.NoError(t, c.Close())
	assert.Zero(t, idleConns(c), "Close closes the kept connections")
	_, err = c.Get(rpctest.BackstopContext(t), "/")
	assert.ErrorIs(t, err, ErrClosed)
}

// TestClientStubErrors: what the stubs return when the server says no.
func TestClientStubErrors(t *testing.T) {
	c := client(t, serve(t, newDemoServer(t), rpctest.Listen(t)))

	_, err := c.Add(t.Context(), math.MaxInt, 1)
	var status *StatusError
	require.ErrorAs(t, err, &status)
	assert.Equal(t, 400, status.Status)
	assert.Equal(t, fmt.Sprintf("a + b overflows: %d + 1 does not fit in an int (64 bits)", math.MaxInt), status.Body,
		"Add hands on the server's message, not its JSON")

	_, err = c.Server(t.Context(), "nobody")
	assert.ErrorIs(t, err, ErrNotFound)
	if assert.ErrorAs(t, err, &status, "the answer stays in the chain") {
		assert.Equal(t, `{"data": "Not Found", "status": 404}`, status.Body)
	}

	info, err := c.Server(t.Context(), "gamma")
	require.NoError(t, err)
	assert.Equal(t, DemoServers[2], info)

	broken := startFakeServer(t, 0, func(string) string {
		return "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n"
	})
	_, err = client(t, broken.addr).Servers(rpctest.BackstopContext(t))
	require.ErrorAs(t, err, &status)
	assert.Equal(t, &StatusError{Status: 500, Body: "boom"}, status)
	assert.Equal(t, "server answered 500 Internal Server Error: boom", status.Error())
}

// TestClientRefusesBadRequests: a target that could break the request
// line is refused before anything is sent.
func TestClientRefusesBadRequests(t *testing.T) {
	srv := startFakeServer(t, 0, func(string) string { return okAnswer })
	c := client(t, srv.addr)
	for _, tt := range []struct{ method, target string }{
		{"GET", "no-slash"},
		{"GET", "/a b"},
		{"GET", "/a\r\nX-Injected: yes"},
		{"G T", "/"},
		{"", "/"},
	} {
		_, err := c.Do(rpctest.BackstopContext(t), tt.method, tt.target, nil)
		assert.Error(t, err, "%q %q", tt.method, tt.target)
	}
	assert.Zero(t, srv.conns.Load(), "nothing sent")
}

// TestClientHeadBound: the client reads an answer's head of
// maxAnswerHeadBytes, CR LFs and the empty line counted, and refuses one
// byte more, saying so.
func TestClientHeadBound(t *testing.T) {
	for _, tt := range []struct {
		size int
		want string // the error, or "" for the answer read
	}{
		{maxAnswerHeadBytes, ""},
		{maxAnswerHeadBytes + 1, fmt.Sprintf("answer's head is longer than %d bytes", maxAnswerHeadBytes)},
	} {
		t.Run(strconv.Itoa(tt.size), func(t *testing.T) {
			head := answerHeadOf(tt.size)
			require.Len(t, head, tt.size)
			srv := startFakeServer(t, 0, func(string) string { return head + "ok" })
			resp, err := client(t, srv.addr).Get(rpctest.BackstopContext(t), "/")
			if tt.want != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "ok", string(resp.Body))
		})
	}
}

// answerHeadOf returns the head of a 200 with a 2-byte body, padded with
// X-Pad fields of at most 1000 bytes to size bytes in all.
func answerHeadOf(size int) string {
	head := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
	rest := size - len(head) - len("\r\n")
	lines := (rest + 999) / 1000
	for i := range lines {
		n := rest / lines
		if i == 0 {
			n += rest % lines
		}
		head += "X-Pad: " + strings.Repeat("p", n-len("X-Pad: \r\n")) + "\r\n"
	}
	return head + "\r\n"
}
