package atmostonce

import (
	"context"
	"errors"
	"fmt"
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

// The tests of what Serve does at its connection cap: it evicts an idle
// connection to make room (see Serve). The tests that need only the
// server's own logic run in a synctest bubble over net.Pipe, where they
// are exact; those that need the kernel (its accept queue, its resets)
// run over TCP.

// callAdd calls add(1, 2) on c and checks the sum.
func callAdd(ctx context.Context, c *Client) error {
	res, err := c.Call(ctx, "add", 1, 2)
	if err == nil && res != 3 {
		err = fmt.Errorf("add(1, 2) = %v", res)
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
	srv := NewDemoServer(Service{})
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
	srv := NewDemoServer(Service{})
	srv.MaxConns = 8
	srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
	addr := serve(t, srv, rpctest.Listen(t))
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	c := dial(t, addr)
	require.NoError(t, callAdd(ctx, c))

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
		require.NoError(t, callAdd(ctx, c), "call %d", i)
	}
	assert.NotZero(t, closed.Load(), "no silent connection was evicted")
}

// TestEvictedConnectionKeepsItsAnswer has a connection ask for an echo of
// 256 KiB and read none of it, so that most of the answer waits in the
// server's socket buffer. A new connection evicts it, once the answer is
// written; its client then sends another request, which the server must
// read and drop: had it closed the socket, that request would make the
// kernel answer with a reset, which destroys the part of the answer not
// yet sent. The client reads its whole answer, then the server's goodbye,
// an answer with ID 0 that says why, then the end of the stream.
func TestEvictedConnectionKeepsItsAnswer(t *testing.T) {
	srv := NewDemoServer(Service{})
	srv.MaxConns = 1
	srv.MaxRequestBytes = maxBigEcho
	srv.linger = rpctest.Backstop // the client ends the hang-up, by closing its side
	ran := make(chan string, 2)
	srv.beforeAnswer = func(req *Request) { ran <- req.Params[0].Str }
	addr := serve(t, srv, bigSendBuffers{rpctest.Listen(t)})

	slow, answers := slowReader(t, addr)
	big := strings.Repeat("x", bigEcho)
	frames := encodeFrames(t, withID(call(t, "echo", big), 1), withID(call(t, "echo", "late"), 2))
	write(t, slow, frames[0])
	require.Equal(t, big, <-ran)

	// The next connection waits until the answer is written and slow is
	// idle, then takes its slot.
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	c := dial(t, addr)
	_, err := c.Call(ctx, "echo", "next")
	require.NoError(t, err)
	require.Equal(t, "next", <-ran)

	write(t, slow, frames[1]) // after the eviction: never run
	require.NoError(t, slow.(*net.TCPConn).CloseWrite())
	assert.Equal(t, answerTo(1, strAnswer(big)), nextAnswer(t, answers), "the evicted connection's answer was cut")
	goodbye := nextAnswer(t, answers)
	assert.Equal(t, uint64(0), goodbye.ID)
	assert.Equal(t, errEvicted.Error(), goodbye.Error)
	assert.ErrorIs(t, answers.decode(new(Response)), io.EOF, "then the end of the stream, not a reset")
	assert.Empty(t, ran, "a request read after the eviction was run")
}

// holdAdds makes every call of add wait, once it has run, until release is
// called, and tells entered when one does; other calls are answered at
// once.
func holdAdds(srv *Server) (entered chan struct{}, release func()) {
	entered, held := make(chan struct{}, 8), make(chan struct{})
	srv.beforeAnswer = func(req *Request) {
		if req.Func == "add" {
			entered <- struct{}{}
			<-held
		}
	}
	return entered, sync.OnceFunc(func() { close(held) })
}

// TestBusyConnectionsAreNotEvicted fills the three slots with busy
// connections, each in one of the ways a connection may be busy: one has
// a call in flight while its reader waits for the next request, one has
// an answer that its client does not read, and one has sent half a
// request. A fourth
// connection is accepted but not served, and Serve accepts nothing more,
// until the call ends and its answer is written: then that connection is
// idle, and the fourth takes its place. The unread answer is read, and
// the half request is read on.
func TestBusyConnectionsAreNotEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 3
		srv.FirstRequestTimeout, srv.IdleTimeout, srv.WriteTimeout = time.Hour, time.Hour, time.Hour
		entered, release := holdAdds(srv)
		defer release() // before Shutdown, which waits for the call
		l := newPipeListener()
		serve(t, srv, l)

		inCall := l.dial(t)
		inCallAnswers := newDecoder(inCall, DefaultMaxMessageBytes)
		write(t, inCall, calls(t, call(t, "echo", "first"), call(t, "add", 1, 2)))
		assert.Equal(t, answerTo(1, strAnswer("first")), nextAnswer(t, inCallAnswers))
		<-entered
		notReading := l.dial(t)
		write(t, notReading, calls(t, call(t, "echo", "unread")))
		half := l.dial(t)
		whole := calls(t, call(t, "echo", "whole"))
		write(t, half, whole[:len(whole)/2])
		synctest.Wait() // the server has taken in what it read

		fourth := NewClient(onlyConn(l.dial(t)))
		defer fourth.Close()
		fourthAnswered := make(chan error, 1)
		go func() {
			_, err := fourth.Call(t.Context(), "echo", "fourth")
			fourthAnswered <- err
		}()
		synctest.Wait()
		select {
		case err := <-fourthAnswered:
			t.Fatalf("a fourth connection was served while every slot was busy (%v)", err)
		default:
		}
		assert.Len(t, l.acceptCalls(), 4, "Serve went on accepting with a connection waiting for a slot")

		release()
		start := time.Now()
		assert.Equal(t, answerTo(2, intAnswer(3)), nextAnswer(t, inCallAnswers), "the call in flight is answered")
		require.NoError(t, <-fourthAnswered)
		assert.Zero(t, time.Since(start), "the fourth connection is served once the first is idle, at once")
		goodbye := nextAnswer(t, inCallAnswers)
		assert.Equal(t, Response{Error: errEvicted.Error(), Code: Unavailable}, goodbye, "the idle connection was evicted, and told why: Unavailable, and it did not run (Ran is false)")
		assert.ErrorIs(t, inCallAnswers.decode(new(Response)), io.EOF)

		assert.Equal(t, answerTo(1, strAnswer("unread")), nextAnswer(t, newDecoder(notReading, DefaultMaxMessageBytes)), "the unread answer is kept")
		halfAnswers := newDecoder(half, DefaultMaxMessageBytes)
		write(t, half, whole[len(whole)/2:])
		assert.Equal(t, answerTo(1, strAnswer("whole")), nextAnswer(t, halfAnswers), "the half request is read on")
	})
}

// TestLongestIdleIsEvicted fills both slots with connections that made a
// call, and then connects a third: the one idle the longest, whose last
// answer was written first, is evicted, and its client learns why; the
// other is still served.
func TestLongestIdleIsEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := newPipeListener()
		serve(t, srv, l)

		older, newer := NewClient(onlyConn(l.dial(t))), NewClient(onlyConn(l.dial(t)), noRetries()...)
		defer older.Close()
		defer newer.Close()
		// The newer connection was accepted later, but its last answer
		// was written first. (The client reads an answer a moment before
		// the server's writer counts it written: synctest.Wait lets it.)
		require.NoError(t, callAdd(t.Context(), newer))
		synctest.Wait()
		require.NoError(t, callAdd(t.Context(), older))
		synctest.Wait()

		third := NewClient(onlyConn(l.dial(t)))
		defer third.Close()
		require.NoError(t, callAdd(t.Context(), third))
		synctest.Wait() // newer's client has read the goodbye, and the end of the stream
		err := callAdd(t.Context(), newer)
		// The client closed the connection at the goodbye, and this call
		// waits for another (noRetries: it fails at once), never sent.
		assertFailure(t, err, Unavailable, NotRun, "the connection idle the longest is closed")
		if goodbye, ok := serverCause(err); assert.True(t, ok, "the goodbye is the cause: %v", err) {
			assert.Equal(t, evictedAnswer, goodbye, "and its client learns why: Unavailable, NotRun")
		}
		assert.NoError(t, callAdd(t.Context(), older), "the other is still served")
	})
}

// TestIdleFromTheLastAnswer fills both slots: one connection's call is
// held in flight, its reader waiting for the next request all the while,
// and then the other makes a call and is answered; then the held call is
// answered. The second connection has been idle longer, counted from the
// last answer, not from when the reader began to wait: a third connection
// evicts it.
func TestIdleFromTheLastAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		entered, release := holdAdds(srv)
		defer release()
		l := newPipeListener()
		serve(t, srv, l)

		held := NewClient(onlyConn(l.dial(t)))
		defer held.Close()
		call := held.Go(t.Context(), "add", 1, 2)
		<-entered
		synctest.Wait() // its reader waits for the next request
		quick := NewClient(onlyConn(l.dial(t)), noRetries()...)
		defer quick.Close()
		_, err := quick.Call(t.Context(), "echo", "quick")
		require.NoError(t, err)
		synctest.Wait()
		release()
		<-call.Done
		require.NoError(t, call.Error)
		synctest.Wait() // the server's writer counts the answer written

		third := NewClient(onlyConn(l.dial(t)))
		defer third.Close()
		_, err = third.Call(t.Context(), "echo", "third")
		require.NoError(t, err)
		synctest.Wait() // quick's client has read the goodbye
		_, err = quick.Call(t.Context(), "echo", "again")
		assertFailure(t, err, Unavailable, NotRun, "the connection whose last answer came first is evicted")
		_, err = held.Call(t.Context(), "echo", "again")
		assert.NoError(t, err, "the one answered last is still served")
	})
}

// TestGoodbyeToAClientThatDoesNotRead has a connection make a call, read
// its answer and then stop reading. Evicted, it is told why, but its
// client reads nothing: the goodbye's write gives up at closeLinger, not
// at WriteTimeout, an hour, and only then may another connection be
// evicted, with MaxConns 1.
func TestGoodbyeToAClientThatDoesNotRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 1
		srv.FirstRequestTimeout, srv.IdleTimeout, srv.WriteTimeout = time.Hour, time.Hour, time.Hour
		l := newPipeListener()
		serve(t, srv, l)
		deaf := l.dial(t)
		write(t, deaf, calls(t, call(t, "add", 1, 2)))
		assert.Equal(t, answerTo(1, intAnswer(3)), nextAnswer(t, newDecoder(deaf, DefaultMaxMessageBytes)))
		synctest.Wait() // the server's writer counts the answer written

		start := time.Now()
		second := NewClient(onlyConn(l.dial(t)))
		defer second.Close()
		require.NoError(t, callAdd(t.Context(), second))
		third := NewClient(onlyConn(l.dial(t)))
		defer third.Close()
		require.NoError(t, callAdd(t.Context(), third))
		assert.Equal(t, closeLinger, time.Since(start), "the third is served when the goodbye nobody reads gives up")
	})
}

// TestUnansweredConnectionsGoFirst fills both slots: a caller's
// connection, idle since its call, and a later one that has sent nothing.
// A third connection takes the silent one's place, though the caller's
// has been idle longer: a flood of silent connections makes room among
// its own. The silent one, never answered, is closed at once, with no
// goodbye.
func TestUnansweredConnectionsGoFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := newPipeListener()
		serve(t, srv, l)
		caller := NewClient(onlyConn(l.dial(t)))
		defer caller.Close()
		require.NoError(t, callAdd(t.Context(), caller))
		synctest.Wait() // the server's writer counts the answer written
		silent := l.dial(t)
		synctest.Wait() // its reader waits

		third := NewClient(onlyConn(l.dial(t)))
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
// evicted one says goodbye for closeLinger: its client reads, but neither
// sends nor closes (a raw connection: a Client closes its connection at
// the goodbye). With MaxConns 1 only one may say goodbye at a time, so the
// third connection waits for the first's goodbye to end, 500 ms, before
// it can evict the second; and it is served then, not later.
func TestGoodbyesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxConns = 1
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := newPipeListener()
		serve(t, srv, l)
		// callThenRead makes one call on a new connection, then reads
		// on until the server closes it.
		callThenRead := func() {
			conn := l.dial(t)
			write(t, conn, calls(t, call(t, "add", 1, 2)))
			assert.Equal(t, answerTo(1, intAnswer(3)), nextAnswer(t, newDecoder(conn, DefaultMaxMessageBytes)))
			go func() { _, _ = io.Copy(io.Discard, conn) }()
		}
		callThenRead()
		start := time.Now()
		callThenRead()
		assert.Zero(t, time.Since(start), "the second connection evicts the first at once")
		callThenRead()
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
	c := &serverConn{Conn: server}
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

// TestAcceptOutOfFilesWaitsForAStartingConnection has Accept fail with
// EMFILE just after it accepted a silent connection, twenty times (see
// emfileAfterAccept). The connection may not yet have begun to wait for
// its request when the error comes: Serve waits until it has, and evicts
// it, at once, rather than pause as if none were idle.
func TestAcceptOutOfFilesWaitsForAStartingConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := &emfileAfterAccept{pipeListener: newPipeListener()}
		serve(t, srv, l)
		for i := range 20 {
			start := time.Now()
			silent := l.dial(t) // no deadline: it may be closed already, and a Read that waits for ever is a deadlock the bubble reports
			_, err := silent.Read(make([]byte, 1))
			require.ErrorIs(t, err, io.EOF, "round %d: the silent connection is evicted", i)
			require.Zero(t, time.Since(start), "round %d: evicted at once", i)
		}
	})
}

// emfileAfterAccept is a pipeListener whose Accept fails with EMFILE once
// after each connection it accepts: the error comes as Serve's next call,
// before the connection's reader may have begun to wait.
type emfileAfterAccept struct {
	*pipeListener
	fail atomic.Bool
}

func (l *emfileAfterAccept) Accept() (net.Conn, error) {
	if l.fail.Swap(false) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	conn, err := l.pipeListener.Accept()
	l.fail.Store(err == nil)
	return conn, err
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
		srv := NewDemoServer(Service{})
		srv.MaxConns = 2
		srv.FirstRequestTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := newPipeListener()
		serve(t, srv, l)
		older := l.dial(t)
		synctest.Wait() // its reader waits
		newer := l.dial(t)
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
			l.fail <- emfile
		}
		c := NewClient(onlyConn(l.dial(t)))
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
			"the calls of Accept from the first EMFILE: one after each pause, and one waiting")
		assert.Equal(t, time.Duration(0), <-olderClosed, "the connection idle the longest is evicted at the first EMFILE")
		assert.Equal(t, time.Duration(0), <-newerClosed, "the other is evicted at the second, as soon as the first is closed")
	})
}
