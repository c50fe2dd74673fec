package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// When the test binary runs with BE_THE_SERVER=1, it is the server: the
// signal tests below start it that way, so they can send it a real
// SIGTERM. It serves the test pages of withTestPages as well.
func TestMain(m *testing.M) {
	if os.Getenv("BE_THE_SERVER") == "1" {
		newApp = withPages(newApp, make(chan struct{}, 16), make(chan struct{}))
		main()
		os.Exit(0)
	}
	rpctest.VerifyMain(m)
}

// runInProcess starts the server in this process with args, waits for its
// "listening on" line, and returns the address and what run returns.
// Cancelling ctx is what a stop signal does.
func runInProcess(t *testing.T, ctx context.Context, args ...string) (addr string, done <-chan error) {
	t.Helper()
	stdoutR, stdoutW := io.Pipe()
	ran := make(chan error, 1)
	go func() {
		ran <- run(ctx, args, stdoutW, io.Discard)
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	require.NoError(t, err)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	require.True(t, ok, "first line %q", line)
	go func() { _, _ = io.Copy(io.Discard, stdoutR) }()
	return addr, ran
}

// servers are the two servers run can serve the application with.
var servers = []struct {
	name   string
	args   []string
	stdlib bool
}{
	{"ours", nil, false},
	{"net/http", []string{"-stdlib"}, true},
}

// netHTTPRefusal is how net/http's server refuses a request of HTTP/1.1
// with no Host field; ours words it otherwise. It tells which server
// answered.
const netHTTPRefusal = "400 Bad Request: missing required Host header"

// TestRun starts the server in this process, waits for its "listening on"
// line, makes calls, then cancels its context, as a signal would.
func TestRun(t *testing.T) {
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			addr, done := runInProcess(t, ctx, append([]string{"-addr", "127.0.0.1:0"}, tc.args...)...)

			c := wsgirouter.NewClient(addr)
			defer c.Close()
			sum, err := c.Add(t.Context(), 1, 2)
			require.NoError(t, err)
			assert.Equal(t, 3, sum)
			infos, err := c.Servers(t.Context())
			require.NoError(t, err)
			assert.Equal(t, wsgirouter.DemoServers, infos)
			resp, err := c.Get(t.Context(), "/")
			require.NoError(t, err)
			assert.Equal(t, 200, resp.Status)
			assert.Contains(t, string(resp.Body), `<ul id="servers">`, "the embedded index page")

			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
			_, err = io.WriteString(conn, "GET / HTTP/1.1\r\n\r\n")
			require.NoError(t, err)
			refusal, err := io.ReadAll(conn)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(string(refusal), "HTTP/1.1 400 "), "%q", refusal)
			_, body, _ := strings.Cut(string(refusal), "\r\n\r\n")
			assert.Equal(t, tc.stdlib, strings.HasPrefix(body, netHTTPRefusal), "is %q net/http's refusal?", body)

			stop()
			assert.NoError(t, <-done)
			_, err = net.Dial("tcp", addr)
			assert.Error(t, err, "the server should no longer accept connections")
		})
	}
}

// TestFlagsSetLimits checks that each limit flag reaches the server.
func TestFlagsSetLimits(t *testing.T) {
	var srv *wsgirouter.Server
	saved := newServer
	t.Cleanup(func() { newServer = saved })
	newServer = func(app wsgirouter.Application) *wsgirouter.Server {
		srv = saved(app)
		return srv
	}
	ctx, stop := context.WithCancel(t.Context())
	_, done := runInProcess(t, ctx, "-addr", "127.0.0.1:0",
		"-max-conns", "5", "-max-header", "3000", "-max-body", "1000", "-idle", "7s")
	// run set the limits before it printed "listening on", which we read.
	assert.Equal(t, 5, srv.MaxConns)
	assert.Equal(t, 3000, srv.MaxHeaderBytes)
	assert.Equal(t, 1000, srv.MaxBodyBytes)
	assert.Equal(t, 7*time.Second, srv.IdleTimeout)
	stop()
	assert.NoError(t, <-done)
}

// TestLimitFlagsBindBothServers sends a body one byte over -max-body and a
// head over -max-header to each server: both must refuse them, with the
// statuses the flags' usage promises.
func TestLimitFlagsBindBothServers(t *testing.T) {
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			addr, done := runInProcess(t, ctx, append([]string{"-addr", "127.0.0.1:0",
				"-max-body", "100", "-max-header", "2048"}, tc.args...)...)
			c := wsgirouter.NewClient(addr)
			defer c.Close()

			resp, err := c.Do(t.Context(), "POST", "/api/v1.0/servers/alpha", make([]byte, 100))
			require.NoError(t, err)
			assert.Equal(t, 200, resp.Status, "a body of -max-body bytes")
			resp, err = c.Do(t.Context(), "POST", "/api/v1.0/servers/alpha", make([]byte, 101))
			require.NoError(t, err)
			assert.Equal(t, 413, resp.Status, "a body one byte over -max-body")

			// net/http allows 4096 bytes more than MaxHeaderBytes, and
			// answers 431 past that: a field of 7000 bytes is over both.
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
			_, err = io.WriteString(conn, "GET /time HTTP/1.1\r\nHost: test\r\nX-Pad: "+strings.Repeat("x", 7000)+"\r\n\r\n")
			require.NoError(t, err)
			status, err := bufio.NewReader(conn).ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "HTTP/1.1 431 Request Header Fields Too Large\r\n", status, "a head over -max-header")

			stop()
			assert.NoError(t, <-done)
		})
	}
}

// get sends GET target to addr on a connection of its own.
func get(t *testing.T, addr, target string) *wsgirouter.Response {
	t.Helper()
	c := wsgirouter.NewClient(addr)
	defer c.Close()
	resp, err := c.Get(t.Context(), target)
	require.NoError(t, err)
	return resp
}

// TestWWWServesAFolder serves a folder from disk with -www: its files and
// a link that stays inside it are served; a link that leads out of it is
// not, on either server, and the file it points to is never sent.
func TestWWWServesAFolder(t *testing.T) {
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("the secret\n"), 0o644))
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.html"), []byte("<h1>from disk</h1>\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("notes\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "app.js"), []byte("run();\n"), 0o644))
	require.NoError(t, os.Symlink("notes.txt", filepath.Join(dir, "inside.txt")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "escape.txt")))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "out")))

	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			addr, done := runInProcess(t, ctx, append([]string{"-addr", "127.0.0.1:0", "-www", dir}, tc.args...)...)

			for _, file := range []struct{ target, body, contentType string }{
				{"/", "<h1>from disk</h1>\n", "text/html; charset=utf-8"},
				{"/notes.txt", "notes\n", "text/plain; charset=utf-8"},
				{"/sub/app.js", "run();\n", "text/javascript; charset=utf-8"},
				{"/inside.txt", "notes\n", "text/plain; charset=utf-8"},
			} {
				resp := get(t, addr, file.target)
				assert.Equal(t, 200, resp.Status, file.target)
				assert.Equal(t, file.body, string(resp.Body), file.target)
				assert.Equal(t, file.contentType, resp.Header.Get("Content-Type"), file.target)
			}
			resp := get(t, addr, "/servers.js")
			assert.Equal(t, 404, resp.Status, "the embedded www/ is not served with -www")

			for _, target := range []string{"/escape.txt", "/out/secret.txt", "/../" + filepath.Base(outside) + "/secret.txt"} {
				resp := get(t, addr, target)
				assert.NotEqual(t, 200, resp.Status, target)
				assert.NotContains(t, string(resp.Body), "the secret", target)
			}

			stop()
			assert.NoError(t, <-done)
		})
	}
}

// TestWWWServesThroughRootFS checks that -www gives the application the
// folder through wsgirouter.RootFS, whose Open never blocks and opens
// only the regular file it looked at (TestRootFSOpensWhatItLookedAt
// swaps the file between the two, which no request can time).
func TestWWWServesThroughRootFS(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	var files fs.FS
	saved := newApp
	t.Cleanup(func() { newApp = saved })
	newApp = func(svc wsgirouter.Service) wsgirouter.Application {
		files = svc.Files
		return saved(svc)
	}
	ctx, stop := context.WithCancel(t.Context())
	_, done := runInProcess(t, ctx, "-addr", "127.0.0.1:0", "-www", dir)
	stop()
	assert.NoError(t, <-done)
	assert.Equal(t, reflect.TypeOf(wsgirouter.RootFS(root)), reflect.TypeOf(files))
}

// TestWWWMustBeAFolder runs the server with -www naming a file, and a
// folder that is not there: it must refuse to start, and say why.
func TestWWWMustBeAFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "index.html")
	require.NoError(t, os.WriteFile(file, []byte("hi"), 0o644))
	for _, tc := range []struct{ dir, want string }{
		{file, "not a directory"},
		{filepath.Join(t.TempDir(), "missing"), "no such file or directory"},
	} {
		err := run(t.Context(), []string{"-addr", "127.0.0.1:0", "-www", tc.dir}, io.Discard, io.Discard)
		assert.ErrorContains(t, err, "-www", tc.dir)
		assert.ErrorContains(t, err, tc.want, tc.dir)
	}
}

// keptAlive makes a request on a raw connection and reads its whole
// answer, so the connection is kept alive and waits for the next request.
// It returns the reader of the connection.
func keptAlive(t *testing.T, addr string) *bufio.Reader {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = io.WriteString(conn, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	var head strings.Builder
	for !strings.HasSuffix(head.String(), "\r\n\r\n") {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		head.WriteString(line)
	}
	require.Contains(t, head.String(), "HTTP/1.1 200 OK\r\n")
	require.NotContains(t, head.String(), "Connection: close")
	body := make([]byte, len(`{"result": 3}`))
	_, err = io.ReadFull(br, body)
	require.NoError(t, err)
	return br
}

// TestStopClosesIdleConnections stops each server while a client keeps a
// connection alive, idle: run must return nil at once (the idle timeout
// is a minute, the grace a second), and the client must see its
// connection closed, not reset, with nothing sent on it.
func TestStopClosesIdleConnections(t *testing.T) {
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			addr, done := runInProcess(t, ctx, append([]string{"-addr", "127.0.0.1:0", "-grace", "1s"}, tc.args...)...)
			idle := keptAlive(t, addr)
			stop()
			assert.NoError(t, <-done)
			rest, err := io.ReadAll(idle)
			assert.NoError(t, err, "EOF, not a reset")
			assert.Empty(t, rest)
		})
	}
}

// hugeAnswer is the size of the answer to GET /huge: far more than the
// kernel buffers between a server and a client that does not read (a 4
// KiB receive buffer here; on Linux, a send buffer of at most
// net.ipv4.tcp_wmem's last figure, 4 MiB by default).
const hugeAnswer = 32 << 20

// withTestPages adds two pages to the application run serves, until the
// test ends: GET /huge, an answer of hugeAnswer bytes, and GET /hold,
// which waits until release is called, or the test ends. held receives
// once for each request to /hold, when it begins.
func withTestPages(t *testing.T) (held <-chan struct{}, release func()) {
	saved := newApp
	entered, released := make(chan struct{}, 16), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	t.Cleanup(func() {
		release()
		newApp = saved
	})
	newApp = withPages(saved, entered, released)
	return entered, release
}

// withPages returns newApp with the test pages added: /hold sends on
// entered when it begins, and returns when release is closed. Like
// NewApp, it panics if its own route table is wrong.
func withPages(newApp func(wsgirouter.Service) wsgirouter.Application, entered chan<- struct{}, release <-chan struct{}) func(wsgirouter.Service) wsgirouter.Application {
	return func(svc wsgirouter.Service) wsgirouter.Application {
		app := newApp(svc)
		huge := wsgirouter.AppFunc(func(env *wsgirouter.Environ, start wsgirouter.StartResponse) []byte {
			_ = start(200, nil)
			return make([]byte, hugeAnswer)
		})
		hold := wsgirouter.AppFunc(func(env *wsgirouter.Environ, start wsgirouter.StartResponse) []byte {
			entered <- struct{}{}
			<-release
			_ = start(200, nil)
			return []byte("released\n")
		})
		router, err := wsgirouter.NewRouter(app,
			wsgirouter.Route{Method: "GET", Pattern: "/huge", App: huge},
			wsgirouter.Route{Method: "GET", Pattern: "/hold", App: hold})
		if err != nil {
			panic(err)
		}
		return router
	}
}

// notReading asks for /huge, reads the first bytes of the answer, and then
// reads no more: the server is left in the middle of a write it cannot
// finish, and would wait for its WriteTimeout (10 s). It returns the
// connection.
func notReading(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4096))
	_, err = io.WriteString(conn, "GET /huge HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	status := make([]byte, len("HTTP/1.1 200 OK\r\n"))
	_, err = io.ReadFull(conn, status)
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 200 OK\r\n", string(status), "the server has begun to write the answer")
	return conn
}

// linger is what each server gives a connection once a stop signal came
// (the Server's closeLinger). A test that checks it waits 20 times as
// long before it calls the server stuck.
const linger = 500 * time.Millisecond

// TestStopCutsOffClientsNotReading stops each server while a client that
// does not read holds a write of it, and a client waits, idle. The write
// could wait for the WriteTimeout (10 s); the server gives it 500 ms once
// stopping, as stages 02 to 05 do, and then closes the connection. No
// application is still running, so run returns nil, and the command
// exits 0, long before the grace ends: 8 × 500 ms, less than the
// WriteTimeout, so that a server that let the write wait for its
// WriteTimeout would reach the end of the grace and exit 1.
func TestStopCutsOffClientsNotReading(t *testing.T) {
	withTestPages(t)
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			addr, done := runInProcess(t, ctx, append([]string{"-addr", "127.0.0.1:0", "-grace", (8 * linger).String()}, tc.args...)...)
			idle := keptAlive(t, addr)
			busy := notReading(t, addr)
			stop()
			assert.NoError(t, <-done, "exit 0: no application was cut off")
			_, err := io.ReadAll(idle)
			assert.NoError(t, err, "the idle connection was closed politely")
			// The busy connection was closed too. The kernel may still be
			// sending what the server wrote, slowly, to a receive buffer of
			// 4 KiB; but a request sent now reaches a closed socket, which
			// answers at once with a reset. An open one would queue it, and
			// the read would wait until the server's write timed out: the
			// deadline, half the WriteTimeout, tells the two apart.
			_, err = io.WriteString(busy, "GET /time HTTP/1.1\r\nHost: test\r\n\r\n")
			require.NoError(t, err)
			require.NoError(t, busy.SetReadDeadline(time.Now().Add(wsgirouter.DefaultWriteTimeout/2)))
			_, err = io.Copy(io.Discard, busy)
			assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the connection was left open")
		})
	}
}

// TestGraceCutsOffAnApplicationStillRunning stops each server while an
// application runs and does not return: the grace (1 s) ends it. run
// must say so and return an error, which makes the command exit 1, and
// the client sees its connection closed.
func TestGraceCutsOffAnApplicationStillRunning(t *testing.T) {
	held, _ := withTestPages(t)
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			_, conn, done := runHolding(t, ctx, held, append([]string{"-grace", "1s"}, tc.args...)...)
			stop()
			assert.ErrorContains(t, <-done, "requests still running after 1s, cut off")
			// run closed the connection before it returned.
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*linger)))
			rest, err := io.ReadAll(conn)
			assertHungUp(t, err)
			assert.Empty(t, rest, "no answer: the application never returned")
		})
	}
}

// TestGraceLetsAnApplicationFinish stops each server while an
// application runs, and lets it return 1.5 s later, well past the 500 ms
// each connection gets to finish its reads and writes, and within the
// grace (10 s): its answer is written whole, with Connection: close, and
// run returns nil.
func TestGraceLetsAnApplicationFinish(t *testing.T) {
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			held, release := withTestPages(t)
			ctx, stop := context.WithCancel(t.Context())
			addr, conn, done := runHolding(t, ctx, held, append([]string{"-grace", (20 * linger).String()}, tc.args...)...)
			stop()
			// The listener closes as Shutdown begins; then the application
			// goes on running, for longer than the connection's 500 ms.
			rpctest.WaitUntil(t, "the server to stop accepting", func() bool {
				c, err := net.Dial("tcp", addr)
				if err == nil {
					c.Close()
				}
				return err != nil
			})
			time.Sleep(3 * linger) // the application's work
			release()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "released\n", string(body))
			assert.True(t, resp.Close, "Connection: close")
			assert.NoError(t, <-done)
		})
	}
}

// runHolding runs the command with args on a free port, asks for /hold
// on a connection of its own, and returns once the application holds the
// request: the address, that connection, and what run returns.
func runHolding(t *testing.T, ctx context.Context, held <-chan struct{}, args ...string) (string, net.Conn, <-chan error) {
	t.Helper()
	addr, done := runInProcess(t, ctx, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = io.WriteString(conn, "GET /hold HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	<-held
	return addr, conn, done
}

// assertHungUp checks that a read failed because the server closed the
// connection: an EOF, or a reset if the server closed with bytes unread.
func assertHungUp(t *testing.T, err error) {
	t.Helper()
	assert.True(t, err == nil || errors.Is(err, syscall.ECONNRESET), "want the connection closed, got %v", err)
}

// trickling sends a request with Connection: close on a connection of its
// own, reads the answer, and then sends a byte every 300 ms until the
// test ends: a client that holds its connection after its last answer, if
// the server lets every byte renew its wait.
func trickling(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = io.WriteString(conn, "GET /add?a=1&b=2 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, 200, resp.StatusCode)
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-ended
		conn.Close()
	})
}

// TestTricklingClientHoldsNothing is what a review saw: a client that
// sends a byte every 300 ms after its last answer kept the one
// connection of -max-conns 1, so that another client got no answer, and
// made a stop with -grace 2s fail with "connections still busy". The
// server now reads what comes after the last answer for 500 ms in all:
// the other client is answered, and the stop returns nil.
func TestTricklingClientHoldsNothing(t *testing.T) {
	ctx, stop := context.WithCancel(t.Context())
	addr, done := runInProcess(t, ctx, "-addr", "127.0.0.1:0", "-max-conns", "1", "-grace", "2s")
	trickling(t, addr)
	c := wsgirouter.NewClient(addr)
	defer c.Close()
	callCtx, cancel := context.WithTimeout(t.Context(), 20*linger)
	defer cancel()
	sum, err := c.Add(callCtx, 20, 22)
	require.NoError(t, err, "the connection slot the trickling client held is free within 500 ms")
	assert.Equal(t, 42, sum)
	require.NoError(t, c.Close()) // its kept-alive connection holds the slot

	trickling(t, addr)
	stop()
	assert.NoError(t, <-done, "exit 0 with a client trickling")
}

// TestWWWRefusesAFIFO serves a folder with a FIFO in it. Opening a FIFO
// to read waits for a writer: a server that opened it would hold the
// request, its connection and a thread for good, and with -max-conns 2
// serve nothing once two such requests came. Each server answers 404 at
// once, as many times as it is asked, and goes on serving the folder.
func TestWWWRefusesAFIFO(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.txt"), []byte("ok\n"), 0o644))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			addr, done := runInProcess(t, ctx, append([]string{"-addr", "127.0.0.1:0", "-www", dir, "-max-conns", "2"}, tc.args...)...)
			defer func() {
				stop()
				// A server stuck in open would never return: free it.
				for {
					select {
					case err := <-done:
						assert.NoError(t, err)
						return
					case <-time.After(10 * time.Millisecond):
						if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
							f.Close()
						}
					}
				}
			}()
			// Each answer comes at once; 5 s is a backstop for a server
			// stuck in open.
			reqCtx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			for range 5 {
				c := wsgirouter.NewClient(addr)
				resp, err := c.Get(reqCtx, "/fifo")
				c.Close()
				require.NoError(t, err, "GET /fifo")
				assert.Equal(t, 404, resp.Status)
			}
			resp := get(t, addr, "/ok.txt")
			assert.Equal(t, 200, resp.Status)
			assert.Equal(t, "ok\n", string(resp.Body))
		})
	}
}

// TestSIGTERM runs the server as a real process with a client that keeps
// its connection alive and idle, one that does not read its answer, and
// one that trickles bytes after its answer, and stops it with SIGTERM: no
// application is running, so it must exit 0, and the idle client see its
// connection end.
func TestSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0", "-grace", "2s")
	cmd.Env = append(os.Environ(), "BE_THE_SERVER=1")
	addr := rpctest.StartServer(t, cmd)

	c := wsgirouter.NewClient(addr)
	defer c.Close()
	sum, err := c.Add(t.Context(), 20, 22)
	require.NoError(t, err)
	assert.Equal(t, 42, sum)
	idle := keptAlive(t, addr)
	notReading(t, addr)
	trickling(t, addr)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.NoError(t, cmd.Wait(), "exit status after SIGTERM")
	rest, err := io.ReadAll(idle)
	assert.NoError(t, err)
	assert.Empty(t, rest)
}

// TestDefaultAddressIsLoopback reads the default of -addr from the usage
// text: the article binds every interface, we bind loopback only, on the
// article's port.
func TestDefaultAddressIsLoopback(t *testing.T) {
	var usage strings.Builder
	err := run(t.Context(), []string{"-h"}, io.Discard, &usage)
	require.ErrorIs(t, err, flag.ErrHelp)
	m := regexp.MustCompile(`-addr host:port\n[^\n]*\(default "([^"]*)"\)`).FindStringSubmatch(usage.String())
	require.NotNil(t, m, "no default for -addr in the usage:\n%s", usage.String())
	host, port, err := net.SplitHostPort(m[1])
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.Equal(t, "8080", port)
}

// TestUsage checks that the usage says what -stdlib and -www do.
func TestUsage(t *testing.T) {
	var usage strings.Builder
	require.ErrorIs(t, run(t.Context(), []string{"-h"}, io.Discard, &usage), flag.ErrHelp)
	assert.Regexp(t, `-stdlib\n[^\n]*net/http's server[^\n]*wrk`, usage.String())
	assert.Regexp(t, `-www DIR\n[^\n]*from disk`, usage.String())
}

// TestBadFlags runs the server with each bad flag. Its context has ended
// already, so that a bad flag taken for a good one makes run serve and
// return nil at once, and the test fail, instead of serving forever.
func TestBadFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, args := range [][]string{
		{"-addr"},
		{"-addr", "127.0.0.1:-1"},
		{"-max-conns", "0"},
		{"-max-header", "0"},
		{"-max-body", "-1"},
		{"-idle", "0s"},
		{"-www"},
		{"-nosuchflag"},
		{"stray"},
	} {
		args = append([]string{"-addr", "127.0.0.1:0"}, args...) // a later -addr wins
		assert.Error(t, run(ctx, args, io.Discard, io.Discard), "%q", args)
	}
}
