package jsontcp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
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

// The tests of what Serve does at its connection cap: it evicts the
// connection idle the longest to make room (see Serve). The tests that
// need only the server's own logic run in a synctest bubble over net.Pipe,
// where they are exact; those that need the kernel (its accept queue, its
// resets) run over TCP.

// callAdd calls add(1, 2, 0) on c and checks the sum.
func callAdd(ctx context.Context, c *Client) error {
	res, err := c.Call(ctx, "add", []any{1, 2, 0}, nil)
	if err == nil && string(res) != "3" {
		err = errors.New("add(1, 2, 0) = " + string(res))
	}
	return err
}

// bound is how long the tests over TCP wait for what should happen at
// once, such as a caller served behind a flood of idle connections. They
// set FirstRequestTimeout and IdleTimeout to an hour, so that only
// eviction can free a slot in time.
const bound = 10 * time.Second

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
	srv := NewDemoServer()
	srv.MaxConns = maxConns
	srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
	addr := serve(t, srv, rpctest.Listen(t))

	idle := make([]net.Conn, maxConns+more)
	for i := range idle {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		idle[i] = conn
	}
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, callAdd(ctx, c), "a caller behind %d idle connections", len(idle))
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
	srv.mu.Lock()
	for c := range srv.conns {
		if c.idle.Load() != evicted {
			served++
		}
	}
	srv.mu.Unlock()
	assert.Equal(t, maxConns, served)
}

// TestCallerThroughAChurningFlood has 40 silent connections, each dialled
// again as soon as the server closes it, against 8 slots, while a caller
// that connected first makes 200 calls: each is answered. Its connection
// is idle between two calls, but silent ones go first, and Serve waits for
// those it has just accepted to begin waiting, rather than evict it.
func TestCallerThroughAChurningFlood(t *testing.T) {
	srv := NewDemoServer()
	srv.MaxConns = 8
	srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
	addr := serve(t, srv, rpctest.Listen(t))
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	c := dial(t, addr)
	require.NoError(t, callAdd(ctx, c.Client))

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
		require.NoError(t, callAdd(ctx, c.Client), "call %d", i)
	}
	assert.NotZero(t, closed.Load(), "no silent connection was evicted")
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
	srv := NewDemoServer()
	srv.MaxConns = 1
	srv.linger = rpctest.Backstop // a loaded machine must not end the goodbye first
	runs := make(chan struct{}, 2)
	require.NoError(t, srv.Register("big", func() string {
		runs <- struct{}{}
		return strings.Repeat("x", size)
	}))
	addr := serve(t, srv, &bufferedListener{Listener: rpctest.Listen(t), writeBuffer: 2 * size})

	slow := dialSmallWindow(t, addr)
	write(t, slow, `{"method_name": "big"}`)
	select {
	case <-runs:
	case <-time.After(bound):
		t.Fatalf("the call did not run within %v", bound)
	}

	// The next connection waits until the answer is written and slow is
	// idle, then takes its slot.
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	require.NoError(t, callAdd(ctx, dial(t, addr).Client))

	write(t, slow, `{"method_name": "big"}`) // after the eviction: never run
	answer, err := io.ReadAll(slow)
	require.NoError(t, err, "the evicted connection's answer was cut after %d bytes", len(answer))
	assert.True(t, string(answer) == `{"res":"`+strings.Repeat("x", size)+"\"}\n", "the answer is not the echo's: %d bytes", len(answer))
	assert.Empty(t, runs, "a request read after the eviction was run")
}

// bufferedListener gives each connection it accepts a large socket send
// buffer, so that an answer fits in it whole while its client reads none.
type bufferedListener struct {
	net.Listener
	writeBuffer int
}

func (l *bufferedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		err = conn.(*net.TCPConn).SetWriteBuffer(l.writeBuffer)
	}
	return conn, err
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

// TestBusyConnectionsAreNotEvicted fills both slots with busy connections:
// one sent two requests in one write and the second is running, the other
// sent half a request. A third connection is accepted but not served, and
// Serve accepts nothing more, until the call ends: then its connection is
// idle, and the third takes its place. The half request is read on.
func TestBusyConnectionsAreNotEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		entered, held := make(chan struct{}), make(chan struct{})
		require.NoError(t, srv.Register("wait", func() string {
			close(entered)
			<-held
			return "done"
		}))
		l := servePipes(t, srv)
		release := sync.OnceFunc(func() { close(held) })
		defer release() // before Shutdown, which waits for the call

		inCall := l.dialWait()
		defer inCall.Close()
		inCallAnswers := newFrameReader(inCall, DefaultMaxMessageBytes)
		write(t, inCall, `{"method_name": "echo", "method_args": ["first"]}`+"\n"+`{"method_name": "wait"}`+"\n")
		assert.Equal(t, `{"res":"first"}`, nextAnswer(t, inCallAnswers))
		<-entered
		half := l.dialWait()
		defer half.Close()
		write(t, half, `{"method_name": "echo", "meth`)
		synctest.Wait() // the server has taken in what it read

		third := NewClient(l.dialWait())
		defer third.Close()
		thirdAnswered := make(chan error, 1)
		go func() { thirdAnswered <- callAdd(t.Context(), third) }()
		synctest.Wait()
		select {
		case err := <-thirdAnswered:
			t.Fatalf("a third connection was served while both slots were busy (%v)", err)
		default:
		}
		assert.Len(t, l.acceptCalls(), 3, "Serve went on accepting with a connection waiting for a slot")

		release()
		start := time.Now()
		assert.Equal(t, `{"res":"done"}`, nextAnswer(t, inCallAnswers), "the call in flight is answered")
		require.NoError(t, <-thirdAnswered)
		assert.Zero(t, time.Since(start), "the third connection is served once the first is idle, at once")
		_, err := inCallAnswers.next()
		assert.ErrorIs(t, err, io.EOF, "the idle connection was evicted")

		halfAnswers := newFrameReader(half, DefaultMaxMessageBytes)
		write(t, half, `od_args": ["whole"]}`)
		assert.Equal(t, `{"res":"whole"}`, nextAnswer(t, halfAnswers), "the half request is read on")
	})
}

// TestLongestIdleIsEvicted fills both slots with connections that made a
// call, a second apart, and then connects a third: the one idle the
// longest is evicted, and its client reads the end of the stream. Each
// request ends with a newline, as the client's do: white space after a
// request does not make a connection busy.
func TestLongestIdleIsEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := servePipes(t, srv)

		older, newer := l.dialWait(), l.dialWait()
		defer older.Close()
		defer newer.Close()
		olderAnswers := newFrameReader(older, DefaultMaxMessageBytes)
		newerAnswers := newFrameReader(newer, DefaultMaxMessageBytes)
		// The newer connection was accepted later, but its last answer
		// was written first.
		write(t, newer, `{"method_name": "echo", "method_args": ["newer"]}`+"\n")
		assert.Equal(t, `{"res":"newer"}`, nextAnswer(t, newerAnswers))
		time.Sleep(time.Second)
		write(t, older, `{"method_name": "echo", "method_args": ["older"]}`+"\n")
		assert.Equal(t, `{"res":"older"}`, nextAnswer(t, olderAnswers))
		time.Sleep(time.Second)

		third := NewClient(l.dialWait())
		defer third.Close()
		require.NoError(t, callAdd(t.Context(), third))
		_, err := newerAnswers.next()
		assert.ErrorIs(t, err, io.EOF, "the connection idle the longest is closed")
		write(t, older, `{"method_name": "echo", "method_args": ["still"]}`+"\n")
		assert.Equal(t, `{"res":"still"}`, nextAnswer(t, olderAnswers), "the other is still served")
	})
}

// TestUnansweredConnectionsGoFirst fills both slots: a caller's
// connection, idle since its call, and a second later one that has sent
// nothing. A third connection takes the silent one's place, though the
// caller's has been idle longer: a flood of silent connections makes room
// among its own.
func TestUnansweredConnectionsGoFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := servePipes(t, srv)
		caller := NewClient(l.dialWait())
		defer caller.Close()
		require.NoError(t, callAdd(t.Context(), caller))
		time.Sleep(time.Second)
		silent := l.dialWait()
		defer silent.Close()
		time.Sleep(time.Second)

		third := NewClient(l.dialWait())
		defer third.Close()
		require.NoError(t, callAdd(t.Context(), third))
		assert.NoError(t, callAdd(t.Context(), caller), "the caller's connection was evicted")
		start := time.Now()
		_, err := silent.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF)
		assert.Zero(t, time.Since(start), "the silent connection made room")
	})
}

// TestGoodbyesAreBounded has each connection make a call, so that an
// evicted one says goodbye for closeLinger: its client neither sends nor
// closes. With MaxConns 1 only one may say goodbye at a time, so the third
// connection waits for the first's goodbye to end, 500 ms, before it can
// evict the second; and it is served then, not later.
func TestGoodbyesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxConns = 1
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := servePipes(t, srv)
		first := NewClient(l.dialWait())
		defer first.Close()
		require.NoError(t, callAdd(t.Context(), first))

		start := time.Now()
		second := NewClient(l.dialWait())
		defer second.Close()
		require.NoError(t, callAdd(t.Context(), second))
		assert.Zero(t, time.Since(start), "the second connection evicts the first at once")
		third := NewClient(l.dialWait())
		defer third.Close()
		require.NoError(t, callAdd(t.Context(), third))
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
	c := &servedConn{conn: server}
	go func() { _, _ = io.WriteString(client, "{}{}") }()

	c.idle.Store(1)
	buf := make([]byte, 2)
	n, err := c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "{}", string(buf[:n]))
	assert.False(t, c.idle.CompareAndSwap(1, evicted), "a connection that has read a byte is still idle")

	c.idle.Store(1)
	require.True(t, c.idle.CompareAndSwap(1, evicted))
	n, err = c.Read(buf)
	assert.ErrorIs(t, err, errEvicted)
	assert.Zero(t, n, "bytes read after the eviction are passed on")
}

// TestAcceptOutOfFiles makes Accept fail with EMFILE four times, as it
// does when the process has no file descriptor left. Serve treats it as
// the cap: each time, it evicts the connection idle the longest, if there
// is one, to free a descriptor, gives its slot back, and calls Accept
// again as soon as that connection is closed. With none idle, it tries
// again after 5, then 10 ms, calling Accept once each time, not in a spin,
// and serves the connection it then accepts.
func TestAcceptOutOfFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := servePipes(t, srv)
		older := l.dialWait()
		defer older.Close()
		time.Sleep(time.Second)
		newer := l.dialWait()
		defer newer.Close()
		synctest.Wait() // both are served, and Serve waits in Accept again

		start := time.Now()
		// closedAt reads conn in a goroutine of its own, and tells the
		// moment the server closes it (-1 if the read fails otherwise).
		closedAt := func(conn net.Conn) <-chan time.Duration {
			at := make(chan time.Duration, 1)
			go func() {
				_, err := conn.Read(make([]byte, 1))
				if !errors.Is(err, io.EOF) {
					at <- -1
					return
				}
				at <- time.Since(start)
			}()
			return at
		}
		olderClosed, newerClosed := closedAt(older), closedAt(newer)
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		for range 4 {
			l.queue <- acceptResult{err: emfile}
		}
		c := NewClient(l.dialWait())
		defer c.Close()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		require.NoError(t, callAdd(ctx, c), "served in a slot the evictions gave back")
		synctest.Wait() // Serve waits in Accept again

		var since []time.Duration
		for _, at := range l.acceptCalls()[2:] {
			since = append(since, at.Sub(start))
		}
		assert.Equal(t, []time.Duration{0, 0, 0, 5 * time.Millisecond, 15 * time.Millisecond, 15 * time.Millisecond}, since,
			"the calls of Accept from the first EMFILE: one after each eviction, once its connection is closed, then one after each pause, and one waiting")
		assert.Equal(t, time.Duration(0), <-olderClosed, "the connection idle the longest is evicted at the first EMFILE")
		assert.Equal(t, time.Duration(0), <-newerClosed, "the other is evicted at the second, as soon as the first is closed")
	})
}

// TestServeTwice serves two listeners at once: each serves calls, and
// Shutdown ends both Serve calls with ErrServerClosed. Serve called after
// Shutdown returns ErrServerClosed at once, and closes its listener.
func TestServeTwice(t *testing.T) {
	srv := NewDemoServer()
	first, second := rpctest.Listen(t), rpctest.Listen(t)
	served := make(chan error, 2)
	go func() { served <- srv.Serve(first) }()
	go func() { served <- srv.Serve(second) }()
	for _, l := range []net.Listener{first, second} {
		require.NoError(t, callAdd(t.Context(), dial(t, l.Addr().String()).Client))
	}

	require.NoError(t, srv.Shutdown(t.Context()))
	for range 2 {
		select {
		case err := <-served:
			assert.ErrorIs(t, err, ErrServerClosed)
		case <-time.After(bound):
			t.Fatalf("a Serve call did not return within %v of Shutdown", bound)
		}
	}
	for _, l := range []net.Listener{first, second} {
		_, err := net.Dial("tcp", l.Addr().String())
		assert.Error(t, err, "Shutdown closes every listener")
	}

	late := rpctest.Listen(t)
	go func() { served <- srv.Serve(late) }()
	select {
	case err := <-served:
		assert.ErrorIs(t, err, ErrServerClosed)
	case <-time.After(bound):
		late.Close() // ends the Serve that would otherwise outlive the test
		t.Fatalf("Serve called after Shutdown did not return within %v", bound)
	}
	_, err := net.Dial("tcp", late.Addr().String())
	assert.Error(t, err, "Serve after Shutdown closes its listener")
}

// TestAcceptOutOfFilesWaitsForAStartingConnection has Accept fail with
// EMFILE just after it accepted a silent connection, twenty times. The
// connection may not yet have begun to wait for its request when the
// error comes: Serve waits until it has, and evicts it, at once, rather
// than pause as if none were idle.
func TestAcceptOutOfFilesWaitsForAStartingConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer()
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := servePipes(t, srv)
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		for i := range 20 {
			start := time.Now()
			silent := l.dialWait()
			defer silent.Close()
			require.NoError(t, silent.SetReadDeadline(start.Add(time.Second)))
			l.queue <- acceptResult{err: emfile}
			_, err := silent.Read(make([]byte, 1))
			require.ErrorIs(t, err, io.EOF, "round %d: the silent connection is evicted", i)
			require.Zero(t, time.Since(start), "round %d: evicted at once", i)
		}
	})
}

// servePipes serves srv on a pipeListener until the test ends, then shuts
// it down and checks that Serve returned ErrServerClosed.
func servePipes(t *testing.T, srv *Server) *pipeListener {
	l := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Shutdown(context.Background()))
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
	return l
}

// dialWait queues a new connection for Accept, waiting for room in the
// queue, and returns the client's end. Unlike dial, it sets no deadline
// and watches nothing: a flood queues more connections than the queue holds.
func (l *pipeListener) dialWait() net.Conn {
	client, server := net.Pipe()
	l.queue <- acceptResult{conn: server}
	return client
}
