package wsgirouter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests of what Serve does at its connection cap: it evicts an idle
// connection to make room (see Serve). The tests that need only the
// server's own logic run in a synctest bubble over net.Pipe, where they
// are exact; those that need the kernel (its accept queue, its buffers,
// its resets) run over TCP.

// bound is how long the tests over TCP wait for what should happen at
// once, such as a caller served behind a flood of idle connections. They
// set HeaderTimeout and IdleTimeout to an hour, so that only eviction can
// free a slot in time.
const bound = 10 * time.Second

// addWithin calls add(1, 2) through c within bound, and checks the sum.
func addWithin(t *testing.T, c *Client) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	sum, err := c.Add(ctx, 1, 2)
	if err == nil && sum != 3 {
		t.Errorf("add(1, 2) = %d", sum)
	}
	return err
}

// capped sets srv's cap to maxConns, and its header and idle timeouts to
// an hour, so that only an eviction ends a connection the test holds.
func capped(srv *Server, maxConns int) *Server {
	srv.MaxConns = maxConns
	srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
	return srv
}

// TestIdleFloodAtTheCap fills the server's 8 slots with connections that
// send nothing, queues 40 more behind them, and then makes a call: it is
// served at once, and 41 of the silent connections are closed cleanly
// (EOF), to make room.
func TestIdleFloodAtTheCap(t *testing.T) { testIdleFlood(t, 8, 40) }

// TestIdleFloodAtTheDefaultCap does the same at the default cap: 1,024
// idle connections served and 512 more queued.
func TestIdleFloodAtTheDefaultCap(t *testing.T) { testIdleFlood(t, DefaultMaxConns, DefaultMaxConns/2) }

func testIdleFlood(t *testing.T, maxConns, more int) {
	// The test's ends of the connections, the server's, and as many again
	// for those it is closing; about 3,600 at the default cap.
	need := maxConns + more + 1 + 2*maxConns + 64
	var limit syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit))
	require.GreaterOrEqual(t, limit.Cur, uint64(need), "the test needs %d file descriptors: raise ulimit -n", need)
	srv := capped(newDemoServer(t), maxConns)
	addr := serve(t, srv, rpctest.Listen(t))

	idle := make([]net.Conn, maxConns+more)
	for i := range idle {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		idle[i] = conn
	}
	start := time.Now()
	require.NoError(t, addWithin(t, client(t, addr)), "a caller behind %d idle connections", len(idle))
	t.Logf("served in %v behind %d idle connections", time.Since(start), len(idle))

	// Each connection accepted past the cap evicted an idle one, and its
	// client reads the end of the stream.
	evictions := more + 1
	ends := make(chan error, len(idle))
	for _, conn := range idle {
		go func() {
			_, err := conn.Read(make([]byte, 1))
			ends <- err
		}()
	}
	deadline := time.After(bound)
	for n := 0; n < evictions; n++ {
		select {
		case err := <-ends:
			require.ErrorIs(t, err, io.EOF, "an idle connection was not closed cleanly")
		case <-deadline:
			t.Fatalf("%d of the %d evicted connections read the end of the stream within %v", n, evictions, bound)
		}
	}
	for _, conn := range idle {
		require.NoError(t, conn.SetReadDeadline(time.Now())) // ends the other reads
	}
	for range len(idle) - evictions {
		assert.ErrorIs(t, <-ends, os.ErrDeadlineExceeded, "more idle connections were closed than made room")
	}
	// The others are still served: they fill the cap with the caller's.
	served := 0
	for _, c := range connsServed(srv) {
		if c.idle.Load() != evicted {
			served++
		}
	}
	assert.Equal(t, maxConns, served)
}

// TestCallerThroughAChurningFlood has 40 silent connections, each dialled
// again as soon as the server closes it, against 8 slots, while a caller
// that connected first makes 200 calls: each is answered. Its connection
// is idle between two calls, but silent ones go first, and Serve waits for
// those it has just accepted to begin waiting, rather than evict it.
func TestCallerThroughAChurningFlood(t *testing.T) {
	srv := capped(newDemoServer(t), 8)
	addr := serve(t, srv, rpctest.Listen(t))
	c := client(t, addr)
	require.NoError(t, addWithin(t, c))

	stop := make(chan struct{})
	var closed atomic.Int64 // silent connections the server closed
	var silent sync.WaitGroup
	for range 40 {
		silent.Go(func() {
			for {
				conn, err := net.DialTimeout("tcp", addr, bound)
				if err != nil {
					return // the server has shut down, or is stuck
				}
				for err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					select {
					case <-stop:
						conn.Close()
						return
					default:
					}
					_ = conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
					_, err = conn.Read(make([]byte, 1))
				}
				conn.Close()
				closed.Add(1)
			}
		})
	}
	defer silent.Wait()
	defer close(stop)
	for i := range 200 {
		require.NoError(t, addWithin(t, c), "call %d", i)
	}
	assert.NotZero(t, closed.Load(), "no silent connection was evicted")
}

// largeApp answers GET /large with size bytes, and tells each run on
// runs; it passes every other request to the demo application.
type largeApp struct {
	demo Application
	size int
	runs chan struct{}
}

func (a largeApp) ServeWSGI(env *Environ, start StartResponse) []byte {
	if env.Path != "/large" {
		return a.demo.ServeWSGI(env, start)
	}
	a.runs <- struct{}{}
	_ = start(http.StatusOK, nil)
	return bytes.Repeat([]byte("x"), a.size)
}

// TestEvictedConnectionKeepsItsAnswer has a connection ask for a large
// answer and read none of it, so that most of the answer waits in the
// server's socket buffer. A new connection evicts it; its client then
// sends another request, which the server must read and drop: had it
// closed the socket, that request would make the kernel answer with a
// reset, which destroys the part of the answer not yet sent. The client
// reads its whole answer, then the end of the stream.
func TestEvictedConnectionKeepsItsAnswer(t *testing.T) {
	const size = 64 << 10
	runs := make(chan struct{}, 2)
	srv := capped(NewServer(largeApp{demoApp(t), size, runs}), 1)
	srv.linger = rpctest.Backstop // a loaded machine must not end the goodbye first
	l := spy(rpctest.Listen(t))
	l.writeBuffer = 2 * size
	addr := serve(t, srv, l)

	slow := dialSmallWindow(t, addr)
	const large = "GET /large HTTP/1.1\r\nHost: test\r\n\r\n"
	_, err := io.WriteString(slow, large)
	require.NoError(t, err)
	select {
	case <-runs:
	case <-time.After(bound):
		t.Fatalf("the request did not run within %v", bound)
	}

	// The next connection waits until the answer is written and slow is
	// idle, then takes its slot.
	require.NoError(t, addWithin(t, client(t, addr)))

	_, err = io.WriteString(slow, large) // after the eviction: never run
	require.NoError(t, err)
	br := bufio.NewReader(slow)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the evicted connection's answer was cut")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Len(t, body, size)
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF)
	assert.Empty(t, runs, "a request read after the eviction was run")
}

// dialSmallWindow dials addr with a receive buffer of 4 KiB, so that the
// server can send little before the client reads. Its segments are 1 KiB
// (on loopback they would be 64 KiB, more than the window, and the sender
// would wait for its persist timer instead).
func dialSmallWindow(t *testing.T, addr string) net.Conn {
	d := net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
		var err error
		if cerr := raw.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			if err == nil {
				err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1024)
			}
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	conn, err := d.DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	return conn
}

// dialWait queues a new connection for Accept, waiting for room in the
// queue, and returns the client's end with a reader. Unlike dial, it
// closes nothing when the test ends: a flood queues more connections than
// the queue holds.
func (l *pipeListener) dialWait() (net.Conn, *bufio.Reader) {
	server, client := net.Pipe()
	l.queue <- acceptResult{conn: server}
	return client, bufio.NewReader(client)
}

// addInBubble sends GET /add?a=1&b=2 on conn and reads its answer.
func addInBubble(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	writeAll(t, conn, addRequest)
	resp, body := readAnswer(t, br)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, `{"result": 3}`, body)
}

// TestBusyConnectionsAreNotEvicted fills the three slots with busy
// connections: one whose request is in the application, one whose answer
// is being written to a client that does not read it yet, and one that
// sent half a request. A fourth connection is accepted but not read, and
// Serve accepts nothing more, until the answer is read: then that
// connection is idle, and the fourth takes its place. The others are
// answered.
func TestBusyConnectionsAreNotEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		app := newHeldApp(t)
		srv := capped(NewServer(app), 3)
		l := serveInBubble(t, srv)
		release := sync.OnceFunc(func() { close(app.release) })
		defer release() // before Shutdown, which waits for the request

		inApp, inAppBr := l.dialWait()
		defer inApp.Close()
		writeAll(t, inApp, "GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
		<-app.entered
		writing, writingBr := l.dialWait()
		defer writing.Close()
		writeAll(t, writing, "GET /write HTTP/1.1\r\nHost: test\r\n\r\n") // its answer waits for a read
		half, halfBr := l.dialWait()
		defer half.Close()
		writeAll(t, half, addRequest[:10])
		synctest.Wait() // the server has taken in what it read

		fourth, fourthBr := l.dialWait()
		defer fourth.Close()
		sent := make(chan error, 1)
		go func() {
			_, err := io.WriteString(fourth, addRequest)
			sent <- err
		}()
		synctest.Wait()
		select {
		case err := <-sent:
			t.Fatalf("a fourth connection was read (%v) while every slot was busy", err)
		default:
		}
		assert.Len(t, l.acceptCalls(), 4, "Serve went on accepting with a connection waiting for a slot")

		start := time.Now()
		resp, body := readAnswer(t, writingBr)
		require.Equal(t, "done\n", body)
		require.False(t, resp.Close)
		require.NoError(t, <-sent)
		_, body = readAnswer(t, fourthBr)
		assert.Equal(t, "done\n", body, "the fourth connection, once the answer was read")
		assert.Zero(t, time.Since(start), "the fourth connection is served once the answer is read, at once")
		assert.Equal(t, closeLinger, waitForClose(t, writingBr, start), "the idle connection was evicted, politely")

		release()
		_, body = readAnswer(t, inAppBr)
		assert.Equal(t, "done\n", body, "the request in the application is answered")
		writeAll(t, half, addRequest[10:])
		_, body = readAnswer(t, halfBr)
		assert.Equal(t, "done\n", body, "the half request is read on")
	})
}

// TestPipelinedRequestIsBusy sends two requests in one write, with an
// empty line between them, which a client may send after a body: the
// second is read with the first, and no read of the connection tells
// that it has begun. It is in the application when a second connection
// comes, with one slot: the second waits, and is served once the request
// is answered.
func TestPipelinedRequestIsBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		app := newHeldApp(t)
		srv := capped(NewServer(app), 1)
		l := serveInBubble(t, srv)
		release := sync.OnceFunc(func() { close(app.release) })
		defer release()

		first, firstBr := l.dialWait()
		defer first.Close()
		writeAll(t, first, addRequest+"\r\nGET /block HTTP/1.1\r\nHost: test\r\n\r\n")
		_, body := readAnswer(t, firstBr)
		require.Equal(t, "done\n", body)
		<-app.entered

		second, secondBr := l.dialWait()
		defer second.Close()
		answered := make(chan string, 1)
		go func() {
			defer close(answered)
			if _, err := io.WriteString(second, addRequest); err != nil {
				return
			}
			if resp, err := http.ReadResponse(secondBr, nil); err == nil {
				body, _ := io.ReadAll(resp.Body)
				answered <- string(body)
			}
		}()
		synctest.Wait()
		select {
		case <-answered:
			t.Fatal("the second connection was served while the request in the application held the only slot")
		default:
		}
		release()
		_, body = readAnswer(t, firstBr)
		assert.Equal(t, "done\n", body, "the pipelined request is answered")
		assert.Equal(t, "done\n", <-answered)
	})
}

// TestEmptyLinesLeaveAConnectionIdle: a kept-alive connection that sends
// empty lines, which the server drops while it waits for a request (RFC
// 9112, 2.2), is still idle, and a new connection takes its place. Were it
// busy, it would hold its slot for what is left of IdleTimeout.
func TestEmptyLinesLeaveAConnectionIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDemoServer(t)
		srv.MaxConns = 1
		l := serveInBubble(t, srv)
		first, firstBr := l.dialWait()
		defer first.Close()
		addInBubble(t, first, firstBr)
		writeAll(t, first, "\r\n\r\n")
		synctest.Wait()

		second, secondBr := l.dialWait()
		defer second.Close()
		start := time.Now()
		addInBubble(t, second, secondBr)
		assert.Zero(t, time.Since(start), "the second connection is served at once")
		assert.Equal(t, closeLinger, waitForClose(t, firstBr, start), "the first made room")
	})
}

// TestStartingConnectionsAreWaitedFor has a caller's connection, idle
// between requests, share two slots with silent connections that come two
// at a time, twenty times. The first of each pair takes the slot of the
// silent one before it, and the second comes while the first has not yet
// begun to wait for its request: Serve waits until it has, and evicts
// it, rather than the caller's connection, the only one idle at that
// moment. The caller is served every time, on the same connection.
func TestStartingConnectionsAreWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := capped(newDemoServer(t), 2)
		l := serveInBubble(t, srv)
		caller, callerBr := l.dialWait()
		defer caller.Close()
		addInBubble(t, caller, callerBr)
		for range 20 {
			for range 2 {
				silent, _ := l.dialWait()
				defer silent.Close()
			}
			synctest.Wait()
			addInBubble(t, caller, callerBr)
		}
	})
}

// TestLongestIdleIsEvicted fills both slots with connections that made a
// request, a second apart, and then connects a third: the one idle the
// longest is evicted, and its client reads the end of the stream.
func TestLongestIdleIsEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := capped(newDemoServer(t), 2)
		l := serveInBubble(t, srv)

		older, olderBr := l.dialWait()
		defer older.Close()
		newer, newerBr := l.dialWait()
		defer newer.Close()
		// The newer connection was accepted later, but its last answer
		// was written first.
		addInBubble(t, newer, newerBr)
		time.Sleep(time.Second)
		addInBubble(t, older, olderBr)
		time.Sleep(time.Second)

		third, thirdBr := l.dialWait()
		defer third.Close()
		start := time.Now()
		addInBubble(t, third, thirdBr)
		assert.Equal(t, closeLinger, waitForClose(t, newerBr, start), "the connection idle the longest is closed, politely")
		addInBubble(t, older, olderBr) // the other is still served
	})
}

// TestUnansweredConnectionsGoFirst fills both slots: a caller's
// connection, idle since its answer, and a second later one that has sent
// nothing. A third connection takes the silent one's place, though the
// caller's has been idle longer: a flood of silent connections makes room
// among its own. The silent one is closed at once: it has no answer on
// its way.
func TestUnansweredConnectionsGoFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := capped(newDemoServer(t), 2)
		l := serveInBubble(t, srv)
		caller, callerBr := l.dialWait()
		defer caller.Close()
		addInBubble(t, caller, callerBr)
		time.Sleep(time.Second)
		silent, silentBr := l.dialWait()
		defer silent.Close()
		time.Sleep(time.Second)

		third, thirdBr := l.dialWait()
		defer third.Close()
		start := time.Now()
		addInBubble(t, third, thirdBr)
		assert.Zero(t, waitForClose(t, silentBr, start), "the silent connection made room, at once")
		addInBubble(t, caller, callerBr) // the caller's connection was not evicted
	})
}

// TestGoodbyesAreBounded has each connection make a request, so that an
// evicted one says goodbye for closeLinger: its client neither sends nor
// closes. With MaxConns 1 only one may say goodbye at a time, so the third
// connection waits for the first's goodbye to end, 500 ms, before it can
// evict the second; and it is served then, not later.
func TestGoodbyesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := capped(newDemoServer(t), 1)
		l := serveInBubble(t, srv)
		first, firstBr := l.dialWait()
		defer first.Close()
		addInBubble(t, first, firstBr)

		start := time.Now()
		second, secondBr := l.dialWait()
		defer second.Close()
		addInBubble(t, second, secondBr)
		assert.Zero(t, time.Since(start), "the second connection evicts the first at once")
		third, thirdBr := l.dialWait()
		defer third.Close()
		addInBubble(t, third, thirdBr)
		assert.Equal(t, closeLinger, time.Since(start), "the third is served when the first's goodbye ends")
	})
}

// TestEvictedRequestIsDropped checks the rule that settles the race
// between a request and an eviction: whichever comes first wins. Bytes
// read after the eviction are dropped, and those read before make the
// connection busy, so that it cannot be evicted.
func TestEvictedRequestIsDropped(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	c := &conn{nc: server}
	go func() { _, _ = io.WriteString(client, "GETGET") }()

	c.idle.Store(1)
	buf := make([]byte, 3)
	n, err := c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "GET", string(buf[:n]))
	assert.False(t, c.idle.CompareAndSwap(1, evicted), "a connection that has read a byte is still idle")

	c.idle.Store(1)
	require.True(t, c.idle.CompareAndSwap(1, evicted))
	n, err = c.Read(buf)
	assert.ErrorIs(t, err, errEvicted)
	assert.Zero(t, n, "bytes read after the eviction are passed on")
}

// TestAcceptOutOfFiles makes Accept fail with EMFILE four times, as it
// does when the process has no file descriptor left. Serve treats it as
// the cap: it evicts an idle connection to free a descriptor, gives its
// slot back, and calls Accept again once the connection is closed; twice,
// at once. With none idle left, it tries again after 5 ms, then 10 ms,
// calling Accept once each time, not in a spin, and serves the connection
// it then accepts.
func TestAcceptOutOfFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := capped(newDemoServer(t), 2)
		l := serveInBubble(t, srv)
		older, olderBr := l.dialWait()
		defer older.Close()
		time.Sleep(time.Second)
		newer, newerBr := l.dialWait()
		defer newer.Close()
		synctest.Wait() // both are served, and Serve waits in Accept again

		start := time.Now()
		// closedAt reads br in a goroutine of its own, and tells the
		// moment the server closes its connection (-1 if the read fails
		// otherwise).
		closedAt := func(br *bufio.Reader) <-chan time.Duration {
			at := make(chan time.Duration, 1)
			go func() {
				_, err := br.ReadByte()
				if !errors.Is(err, io.EOF) {
					at <- -1
					return
				}
				at <- time.Since(start)
			}()
			return at
		}
		olderClosed, newerClosed := closedAt(olderBr), closedAt(newerBr)
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		for range 4 {
			l.queue <- acceptResult{err: emfile}
		}
		c, br := l.dialWait()
		defer c.Close()
		addInBubble(t, c, br) // served in a slot the evictions gave back
		synctest.Wait()       // Serve waits in Accept again

		var since []time.Duration
		for _, at := range l.acceptCalls()[2:] {
			since = append(since, at.Sub(start))
		}
		assert.Equal(t, []time.Duration{0, 0, 0, 5 * time.Millisecond, 15 * time.Millisecond, 15 * time.Millisecond}, since,
			"the calls of Accept from the first EMFILE: two after the evictions, one after each pause, and one waiting")
		assert.Equal(t, time.Duration(0), <-olderClosed, "the connection idle the longest is evicted at the first EMFILE")
		assert.Equal(t, time.Duration(0), <-newerClosed, "the other is evicted at the second")
	})
}

// TestAcceptOutOfFilesWaitsForAStartingConnection has Accept fail with
// EMFILE just after it accepted a silent connection, twenty times. The
// connection may not yet have begun to wait for its request when the
// error comes: Serve waits until it has, and evicts it, at once, rather
// than pause as if none were idle.
func TestAcceptOutOfFilesWaitsForAStartingConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDemoServer(t)
		srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := serveInBubble(t, srv)
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		for i := range 20 {
			start := time.Now()
			silent, br := l.dialWait()
			defer silent.Close()
			require.NoError(t, silent.SetReadDeadline(start.Add(time.Second)))
			l.queue <- acceptResult{err: emfile}
			_, err := br.ReadByte()
			require.ErrorIs(t, err, io.EOF, "round %d: the silent connection is evicted", i)
			require.Zero(t, time.Since(start), "round %d: evicted at once", i)
		}
	})
}

// TestMaxConnsCountsEveryListener serves two listeners with MaxConns 1:
// a connection kept alive on the first is evicted when one comes on the
// second, since the cap is the server's, not each listener's.
func TestMaxConnsCountsEveryListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := capped(newDemoServer(t), 1)
		first, second := serveInBubble(t, srv), newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(second) }()
		firstConn, firstBr := first.dialWait()
		defer firstConn.Close()
		addInBubble(t, firstConn, firstBr)
		secondConn, secondBr := second.dialWait()
		defer secondConn.Close()
		start := time.Now()
		addInBubble(t, secondConn, secondBr)
		assert.Equal(t, closeLinger, waitForClose(t, firstBr, start), "the first listener's connection made room")

		require.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
}
