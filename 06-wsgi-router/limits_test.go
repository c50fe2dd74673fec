package wsgirouter

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The limits of these tests are small, so a few bytes cross each.
const (
	attackRequestLine = 64
	attackHeaderBytes = 512
	attackFields      = 8
	attackBodyBytes   = 64
)

// serveSpied runs the demo server with set applied to it, on a listener
// whose connections the test can watch.
func serveSpied(t *testing.T, set func(*Server)) (string, *spyListener) {
	t.Helper()
	srv := newDemoServer(t)
	set(srv)
	l := spy(rpctest.Listen(t))
	return serve(t, srv, l), l
}

// spyListener wraps the connections it accepts, so the test sees the
// server's side of each: its reads, its writes and its close.
type spyListener struct {
	net.Listener
	writeBuffer int // if not 0, the kernel's send buffer of each connection

	mu    sync.Mutex // protects conns
	conns []*spyConn
}

func spy(l net.Listener) *spyListener { return &spyListener{Listener: l} }

func (l *spyListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.writeBuffer != 0 {
		if err := nc.(*net.TCPConn).SetWriteBuffer(l.writeBuffer); err != nil {
			nc.Close()
			return nil, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &spyConn{Conn: nc, n: len(l.conns) + 1, closed: make(chan struct{})}
	l.conns = append(l.conns, c)
	return c, nil
}

// accepted returns the connections accepted so far.
func (l *spyListener) accepted() []*spyConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*spyConn(nil), l.conns...)
}

// spyConn is the server's side of a connection, as the test sees it.
type spyConn struct {
	net.Conn
	n                         int
	readsStarted, readsDone   atomic.Int64
	bytesRead                 atomic.Int64
	writesStarted, writesDone atomic.Int64
	closeOnce                 sync.Once
	closed                    chan struct{} // closed when the server closes the connection
}

func (c *spyConn) Read(p []byte) (int, error) {
	c.readsStarted.Add(1)
	n, err := c.Conn.Read(p)
	c.bytesRead.Add(int64(n))
	c.readsDone.Add(1)
	return n, err
}

func (c *spyConn) Write(p []byte) (int, error) {
	c.writesStarted.Add(1)
	defer c.writesDone.Add(1)
	return c.Conn.Write(p)
}

func (c *spyConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
	})
	return c.Conn.Close()
}

// CloseWrite keeps the polite close of the connection it wraps.
func (c *spyConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// waitingAfter reports whether the server has read n bytes of c and is
// blocked in a read for more.
func (c *spyConn) waitingAfter(n int64) bool {
	return c.bytesRead.Load() == n && c.readsStarted.Load() > c.readsDone.Load()
}

// waitClosed waits for the server to close c, until the backstop.
func waitClosed(t *testing.T, c *spyConn) {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(rpctest.Backstop):
		t.Fatalf("the server did not close its connection within %v", rpctest.Backstop)
	}
}

// heapAfterGC returns the bytes of heap in use after two collections, so
// that garbage the test made does not count.
func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// dialN opens n connections to addr, closed when the test ends. It uses
// no bufio.Reader, so the test's side of a connection costs little heap.
func dialN(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(rpctest.Backstop)))
		conns[i] = c
	}
	return conns
}

// readAnswers reads what the server sends on conn until it closes the
// connection, and parses it as answers.
func readUntilClosed(t *testing.T, conn io.Reader) string {
	t.Helper()
	all, err := io.ReadAll(conn)
	require.NoError(t, err, "the connection must end with EOF, not a reset or the backstop")
	return string(all)
}

// TestLimitsRefused crosses each limit and bad framing with one request.
// Each is answered with its status and Connection: close, and then the
// server closes the connection: after a request it did not read whole, it
// cannot know where the next one would start.
func TestLimitsRefused(t *testing.T) {
	addr, _ := serveSpied(t, func(s *Server) {
		s.MaxRequestLineBytes = attackRequestLine
		s.MaxHeaderBytes = attackHeaderBytes
		s.MaxHeaderFields = attackFields
		s.MaxBodyBytes = attackBodyBytes
	})
	tests := []struct {
		name   string
		in     string
		status int
	}{
		{"request line too long", "GET /" + strings.Repeat("a", attackRequestLine) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"head too long", headOfSize(attackHeaderBytes + 1), 431},
		{"too many fields", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: 1\r\n", attackFields) + "\r\n", 431},
		// Only the head is sent: an answer proves that the server
		// refused from the claim, without waiting for the body.
		{"content-length claim too large", "POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413},
		{"chunked body too large", chunkedRequest("40\r\n" + strings.Repeat("c", 64) + "\r\n1\r\nc\r\n0\r\n\r\n"), 413},
		{"post without a length", "POST /add HTTP/1.1\r\nHost: x\r\n\r\n", 411},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"TE and CL", "POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE gzip", "POST /add HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"unknown Expect", "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, br := rawConn(t, addr)
			_, err := io.WriteString(conn, tt.in)
			require.NoError(t, err)
			all := readUntilClosed(t, br)
			ar := bufio.NewReader(strings.NewReader(all))
			resp, err := http.ReadResponse(ar, nil)
			require.NoError(t, err, "%q", all)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tt.status, resp.StatusCode, string(body))
			head, _, _ := strings.Cut(all, "\r\n\r\n")
			assert.Contains(t, head+"\r\n", "\r\nConnection: close\r\n")
			assert.True(t, strings.HasPrefix(all, "HTTP/1.1 "+resp.Status+"\r\n"), "%q", all)
			assert.Zero(t, ar.Buffered(), "one answer, then the connection closes")
		})
	}
}

// TestTrailerTooLongSaysSo sends a chunked body whose trailer has more
// fields than MaxHeaderBytes holds: 431, as for a head too long, and the
// message names the limit (it once said "longer than -2 bytes", the budget
// left for the line).
func TestTrailerTooLongSaysSo(t *testing.T) {
	addr, _ := serveSpied(t, func(s *Server) { s.MaxHeaderBytes = attackHeaderBytes })
	for _, field := range []string{"a: b", "ab: c"} { // the budget ends on a line's end, or inside one
		conn, br := rawConn(t, addr)
		_, err := io.WriteString(conn, chunkedRequest("1\r\nx\r\n0\r\n"+strings.Repeat(field+"\r\n", attackHeaderBytes)+"\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, 431, resp.StatusCode)
		assert.Equal(t, fmt.Sprintf("431 Request Header Fields Too Large: the trailer is longer than %d bytes\n", attackHeaderBytes), string(body), field)
	}
}

// stalledBody is a request whose head claims a body of 60000 bytes, within
// the limit, followed by the 10 bytes of it the peer ever sends.
const stalledBody = "POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n0123456789"

// TestStalledBodyHoldsOnlyWhatArrived sends 200 heads that each claim a
// body of 60000 bytes and then send 10 bytes of it. A server that made
// room for the claim would hold 200 × 60000 bytes, 11 MiB, for 2 KiB of
// attack; ours holds what arrived.
func TestStalledBodyHoldsOnlyWhatArrived(t *testing.T) {
	const conns = 200
	addr, l := serveSpied(t, func(s *Server) { s.ReadTimeout = time.Hour }) // the attack must not end by itself
	_, err := client(t, addr).Add(rpctest.BackstopContext(t), 1, 2)         // warm up
	require.NoError(t, err)
	before := heapAfterGC()
	for _, c := range dialN(t, addr, conns) {
		_, err := io.WriteString(c, stalledBody)
		require.NoError(t, err)
	}
	rpctest.WaitUntil(t, "every connection to wait for the rest of its body", func() bool {
		stalled := 0
		for _, c := range l.accepted() {
			if c.waitingAfter(int64(len(stalledBody))) {
				stalled++
			}
		}
		return stalled == conns
	})
	grew := heapAfterGC() - before
	t.Logf("%d connections stalled in a body of 60000 bytes claimed, 10 sent: heap grew %d KiB, %d B a connection", conns, grew>>10, grew/conns)
	// A connection holds its 4 KiB bufio.Reader, its head, a body
	// buffer of the bytes that arrived (bytes.Buffer reads 512 at least),
	// and the sockets of both ends: under 16 KiB. Room for the claim
	// would be 60000.
	assert.Less(t, grew/conns, int64(16<<10))
}

// TestReadTimeoutClosesStalledBodies sends the same stalled requests to a
// server with a short ReadTimeout: each connection is closed, without an
// answer, for there is nobody who is reading one. Over TCP, each wait is
// bounded by 20 times the timeout; TestReadTimeoutExactly checks the
// moment, in fake time.
func TestReadTimeoutClosesStalledBodies(t *testing.T) {
	const conns, timeout = 200, 200 * time.Millisecond
	addr, l := serveSpied(t, func(s *Server) { s.ReadTimeout = timeout })
	cs := dialN(t, addr, conns)
	for _, c := range cs {
		require.NoError(t, c.SetDeadline(time.Now().Add(20*timeout)))
		_, err := io.WriteString(c, stalledBody) // all of it, before the timer can fire
		require.NoError(t, err)
	}
	for _, c := range cs {
		assert.Empty(t, readUntilClosed(t, c))
	}
	for _, c := range l.accepted() {
		waitClosed(t, c)
		assert.Equal(t, int64(len(stalledBody)), c.bytesRead.Load())
	}
}

// TestIdleConnectionsHoldLittle opens 2000 connections that send nothing,
// and measures the heap the server holds for them.
func TestIdleConnectionsHoldLittle(t *testing.T) {
	const conns = 2000 // 4000 descriptors, both ends; ulimit -n is 20000 where this was written
	addr, l := serveSpied(t, func(s *Server) {
		s.MaxConns = 2 * conns
		s.HeaderTimeout = time.Hour // the attack must not end by itself
	})
	_, err := client(t, addr).Add(rpctest.BackstopContext(t), 1, 2) // warm up
	require.NoError(t, err)
	before := heapAfterGC()
	var stackBefore runtime.MemStats
	runtime.ReadMemStats(&stackBefore)
	dialN(t, addr, conns)
	rpctest.WaitUntil(t, "every connection to wait for its first byte", func() bool {
		waiting := 0
		for _, c := range l.accepted() {
			if c.waitingAfter(0) {
				waiting++
			}
		}
		return waiting == conns
	})
	grew := heapAfterGC() - before
	var stackAfter runtime.MemStats
	runtime.ReadMemStats(&stackAfter)
	t.Logf("%d idle connections: heap grew %d KiB, %d B a connection; goroutine stacks grew %d KiB", conns, grew>>10, grew/conns,
		(int64(stackAfter.StackInuse)-int64(stackBefore.StackInuse))>>10)
	// The server's conn (its Environ, response and requestReader), the
	// 4 KiB bufio.Reader it makes at accept, its entry in the server's
	// map, and a socket at each end, of a few hundred bytes each: 6.5 KiB
	// measured. A server that also made a 4 KiB head or body buffer at
	// accept, or read through a larger bufio.Reader, would not fit in
	// 10 KiB. (Goroutine stacks are not heap; the log shows them.)
	assert.Less(t, grew/conns, int64(10<<10))
}

// TestHeaderTimeoutClosesSilentConnections opens connections that send
// nothing, and connections that send half a head; HeaderTimeout closes
// them all. Over TCP, each wait is bounded by 20 times the timeout;
// TestHeaderTimeoutExactly checks the moment, in fake time.
func TestHeaderTimeoutClosesSilentConnections(t *testing.T) {
	const conns, timeout = 100, 200 * time.Millisecond
	addr, _ := serveSpied(t, func(s *Server) { s.HeaderTimeout = timeout })
	silent := dialN(t, addr, conns)
	half := dialN(t, addr, conns)
	for _, c := range append(silent, half...) {
		require.NoError(t, c.SetDeadline(time.Now().Add(20*timeout)))
	}
	for _, c := range half {
		_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // all of it, before the timer can fire
		require.NoError(t, err)
	}
	for _, c := range append(silent, half...) {
		assert.Empty(t, readUntilClosed(t, c))
	}
}

// TestMaxConnsHoldsTheNext fills MaxConns with connections that are each
// half-way through a request: none is idle, so none may be evicted. The
// next one is accepted, but not read; it is answered once one of the
// four is answered, and so idle: it takes that one's place, and that one
// is closed. (That Serve then accepts no other, TestBusyConnectionsAreNotEvicted
// shows exactly: here a third connection would take the next one's place
// if it came while the next one's request, already in its socket, was not
// yet read.)
func TestMaxConnsHoldsTheNext(t *testing.T) {
	const maxConns = 4
	addr, l := serveSpied(t, func(s *Server) { s.MaxConns = maxConns; s.HeaderTimeout = time.Hour })
	const add = "GET /add?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n"
	const half = len(add) / 2
	type rc struct {
		conn net.Conn
		br   *bufio.Reader
	}
	var served []rc
	for i := range maxConns {
		conn, br := rawConn(t, addr)
		served = append(served, rc{conn, br})
		_, err := io.WriteString(conn, add[:half])
		require.NoError(t, err)
		rpctest.WaitUntil(t, "the server to read the half request", func() bool {
			cs := l.accepted()
			return len(cs) == i+1 && cs[i].waitingAfter(int64(half))
		})
	}
	next, nextBr := rawConn(t, addr)
	_, err := io.WriteString(next, add)
	require.NoError(t, err)
	rpctest.WaitUntil(t, "the server to accept the next", func() bool { return len(l.accepted()) == maxConns+1 })
	assert.Zero(t, l.accepted()[maxConns].readsStarted.Load(), "the next was read with every slot busy")

	_, err = io.WriteString(served[0].conn, add[half:])
	require.NoError(t, err)
	for _, br := range []*bufio.Reader{served[0].br, nextBr} {
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, "the first half request, and then the next")
		assert.Equal(t, 200, resp.StatusCode)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
	}
	assert.Empty(t, readUntilClosed(t, served[0].br), "the answered connection made room")
}

// TestPeerThatNeverReads pipelines GETs of the largest file the
// application serves (MaxFileBytes) and never reads
// an answer. The server's write blocks; WriteTimeout ends it, and the
// connection's goroutine with it. Meanwhile the server holds one answer
// for it, and serves another connection.
func TestPeerThatNeverReads(t *testing.T) {
	const size, requests = MaxFileBytes, 64
	big := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	app := NewApp(Service{Files: fstest.MapFS{"big.bin": {Data: big}}})
	srv := NewServer(app)
	srv.WriteTimeout = 500 * time.Millisecond
	l := spy(rpctest.Listen(t))
	l.writeBuffer = 16 << 10 // so the writes block after KiB, not MiB
	addr := serve(t, srv, l)

	get := "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
	whole := func() {
		conn, br := rawConn(t, addr)
		_, err := io.WriteString(conn, strings.Replace(get, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.True(t, bytes.Equal(big, body), "the file, whole")
		require.NoError(t, conn.Close())
	}
	whole() // warm up
	goroutines := runtime.NumGoroutine()
	before := heapAfterGC()

	peer, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	require.NoError(t, peer.(*net.TCPConn).SetReadBuffer(4<<10))
	_, err = io.WriteString(peer, strings.Repeat(get, requests)) // all of it, before the timer can fire
	require.NoError(t, err)
	var server *spyConn
	rpctest.WaitUntil(t, "the server's write to block", func() bool {
		cs := l.accepted()
		server = cs[len(cs)-1]
		return server.writesStarted.Load() > server.writesDone.Load()
	})
	held := heapAfterGC() - before
	t.Logf("a peer that pipelined %d GETs of %d KiB and reads nothing: heap grew %d KiB while the server's write blocks", requests, size>>10, held>>10)
	// The answer being written, and the file the application read to
	// make it: 2 × size, and not the 64 × size of every answer.
	assert.Less(t, held, int64(3*size))
	select {
	case <-server.closed:
		t.Log("WriteTimeout fired before the other connection was served")
	default:
		whole() // another connection is served meanwhile
	}

	waitClosed(t, server)
	rpctest.WaitUntil(t, "the connection's goroutine to end", func() bool { return runtime.NumGoroutine() <= goroutines })
	assert.Less(t, server.writesDone.Load(), int64(requests), "the answers were not all written")
}

// TestSlowClientBlocksNobody sends a request a byte at a time, and waits
// for the server to read each byte before it sends the next. Meanwhile
// another client is served.
func TestSlowClientBlocksNobody(t *testing.T) {
	addr, l := serveSpied(t, func(s *Server) { s.HeaderTimeout = time.Hour })
	slow, slowBr := rawConn(t, addr)
	const req = "GET /add?a=40&b=2 HTTP/1.1\r\nHost: x\r\n\r\n"
	var server *spyConn
	for i := range len(req) - 1 {
		_, err := io.WriteString(slow, req[i:i+1])
		require.NoError(t, err)
		rpctest.WaitUntil(t, "the server to read the byte", func() bool {
			cs := l.accepted()
			if len(cs) == 0 {
				return false
			}
			server = cs[0]
			return server.waitingAfter(int64(i + 1))
		})
	}
	sum, err := client(t, addr).Add(rpctest.BackstopContext(t), 1, 2)
	require.NoError(t, err, "another client is served while the slow one holds")
	assert.Equal(t, 3, sum)

	_, err = io.WriteString(slow, req[len(req)-1:])
	require.NoError(t, err)
	resp, err := http.ReadResponse(slowBr, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, `{"result": 42}`, strings.TrimSpace(string(body)))
}

// allocated returns the bytes allocated by f, all of them, freed or not.
func allocated(f func()) int64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// TestDecoderWorstCase feeds the requestReader the largest work its
// limits allow for little data, and bounds what it allocates.
func TestDecoderWorstCase(t *testing.T) {
	lim := limits{requestLine: DefaultMaxRequestLineBytes + 2, header: DefaultMaxHeaderBytes,
		headerFields: DefaultMaxHeaderFields, body: DefaultMaxBodyBytes}
	var oneByteChunks, longSizeLines strings.Builder
	for range lim.body {
		oneByteChunks.WriteString("1\r\nx\r\n")
	}
	// Each size line as long as the limit allows: 1, ";", and an
	// extension that fills the line; as many of them as the bound on
	// framing beyond data allows.
	ext := strings.Repeat("e", maxChunkLineBytes-len("1;\r\n"))
	longLines := maxChunkOverhead / (maxChunkLineBytes - 16 - 2)
	for range longLines {
		longSizeLines.WriteString("1;" + ext + "\r\nx\r\n")
	}
	tests := []struct {
		name     string
		in       string
		body     int
		maxAlloc int64 // bytes allocated, at most
	}{
		// The head is one string, and the fields are slices of it; the
		// slice of fields doubles as it grows, to 128 fields of 32 bytes.
		{"100 tiny fields", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("a:\r\n", lim.headerFields-1) + "\r\n", 0, 16 << 10},
		// The head, as it grows and as a string.
		{"a head of exactly the limit", headOfSize(lim.header), 0, 4 * int64(lim.header)},
		// The body buffer doubles as it fills: its allocations add up
		// to about 4 × the body (the last one is 2 ×). readN copies
		// from the bufio.Reader's buffer with no allocation of its
		// own, however many chunks there are (with io.CopyN it was
		// 28 × the body); 4 KiB more covers the size line.
		{"one-byte chunks up to the limit", chunkedRequest(oneByteChunks.String() + "0\r\n\r\n"), lim.body, 4*int64(lim.body) + 4<<10},
		// One size line is held at a time, and it is reused.
		{"size lines of the longest", chunkedRequest(longSizeLines.String() + "0\r\n\r\n"), longLines, 4 * int64(lim.header)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &requestReader{br: bufio.NewReaderSize(strings.NewReader(tt.in), 4<<10), limits: lim}
			var env Environ
			var err error
			grew := allocated(func() {
				if err = r.readHead(&env); err != nil {
					return
				}
				var n int
				var chunked bool
				if n, chunked, err = bodyLength(&env, lim.body); err != nil {
					return
				}
				err = r.readBody(&env, n, chunked)
			})
			require.NoError(t, err)
			assert.Len(t, env.Body, tt.body)
			t.Logf("%d bytes in, %d of body: %d bytes allocated", len(tt.in), len(env.Body), grew)
			assert.LessOrEqual(t, grew, tt.maxAlloc)
			assert.LessOrEqual(t, r.body.Cap(), 2*lim.body, "the body buffer holds the body, and less than as much again")
		})
	}
}
