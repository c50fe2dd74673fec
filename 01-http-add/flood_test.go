package httpadd

import (
	"bufio"
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

// The tests of what Serve does at its connection cap: it evicts the
// connection idle the longest to make room (see Serve). The tests that
// need only the server's own logic run in a synctest bubble over net.Pipe,
// where they are exact; those that need the kernel (its accept queue, a
// client's FIN) run over TCP. They set HeaderTimeout and IdleTimeout to an
// hour, so that only eviction can free a slot in time.

// TestIdleFloodAtTheCap fills the server's 8 slots with connections that
// send nothing, queues 40 more behind them, and then makes a call: it is
// served at once, and 41 of the silent connections are closed cleanly
// (EOF), to make room.
func TestIdleFloodAtTheCap(t *testing.T) { testIdleFlood(t, 8, 40) }

// TestIdleFloodAtTheDefaultCap does the same at the default cap: 1,024
// idle connections served and 512 more queued.
func TestIdleFloodAtTheDefaultCap(t *testing.T) { testIdleFlood(t, DefaultMaxConns, DefaultMaxConns/2) }

func testIdleFlood(t *testing.T, maxConns, more int) {
	// The test's ends of the connections and the server's, and a margin.
	need := 2*(maxConns+more+1) + 64
	var limit syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit))
	require.GreaterOrEqual(t, limit.Cur, uint64(need), "the test needs %d file descriptors: raise ulimit -n", need)
	srv := NewServer()
	srv.MaxConns = maxConns
	srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
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
	c := NewClient(addr)
	defer c.Close()
	sum, err := c.Add(ctx, 1, 2)
	require.NoError(t, err, "a caller behind %d idle connections", len(idle))
	require.Equal(t, 3, sum)
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
	srv.conns.mu.Lock()
	served := len(srv.conns.conns)
	srv.conns.mu.Unlock()
	assert.Equal(t, maxConns, served)
	assert.Len(t, srv.conns.slots, served, "a slot is held for each connection served, and no other")
}

// TestCallerThroughAChurningFlood has 40 silent connections, each dialled
// again as soon as the server closes it, against 8 slots, while a caller
// that connected first makes 200 calls: each is answered. Its connection
// is idle between two calls, but silent ones go first, and Accept waits
// for those it has just accepted to begin waiting, rather than evict it.
func TestCallerThroughAChurningFlood(t *testing.T) {
	srv := NewServer()
	srv.MaxConns = 8
	srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
	addr := serve(t, srv, rpctest.Listen(t))
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	c, r := dialRaw(t, addr)
	require.NoError(t, addOn(c, r))

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
	deadline, _ := ctx.Deadline()
	require.NoError(t, c.SetDeadline(deadline))
	for i := range 200 {
		require.NoError(t, addOn(c, r), "call %d", i)
	}
	assert.NotZero(t, closed.Load(), "no silent connection was evicted")
}

// TestGoodbyeEndsWhenTheClientCloses fills the only slot with an
// http.Client's connection, idle after a call, and then calls from a
// second client: the first connection is evicted, and the server says
// goodbye (it closes its sending half and waits for the client to close).
// The first client closes as soon as it reads the end of the stream, so
// the second call is served at once, not after the goodbye's bound, which
// this test makes far longer than its wait. The first client's next call
// is served too, on a new connection.
func TestGoodbyeEndsWhenTheClientCloses(t *testing.T) {
	srv := NewServer()
	srv.MaxConns = 1
	srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
	srv.linger = rpctest.Backstop
	addr := serve(t, srv, rpctest.Listen(t))
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()

	first, second := NewClient(addr), NewClient(addr)
	defer first.Close()
	defer second.Close()
	for _, c := range []*Client{first, second, first} {
		sum, err := c.Add(ctx, 1, 2)
		require.NoError(t, err, "a call that needed an eviction, within %v", bound)
		assert.Equal(t, 3, sum)
	}
}

// TestBusyConnectionsAreNotEvicted fills both slots with busy connections:
// one has a call running, the other sent half a request. A third
// connection is accepted but not served, and Serve accepts nothing more,
// until the call ends: then its connection is idle, and the third takes
// its place, once its goodbye is over (a pipe cannot say it is done
// writing, so its client does not close, and the goodbye lasts its whole
// closeLinger). The half request is read on.
func TestBusyConnectionsAreNotEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.MaxConns = 2
		srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
		entered, held := make(chan struct{}), make(chan struct{})
		var first atomic.Bool
		srv.beforeAnswer = func() {
			if first.CompareAndSwap(false, true) {
				close(entered)
				<-held
			}
		}
		l := newFloodListener()
		serve(t, srv, l)
		release := sync.OnceFunc(func() { close(held) })
		defer release() // before Shutdown, which waits for the call

		inCall := l.dial(t)
		inCallAnswers := bufio.NewReader(inCall)
		writeString(t, inCall, addRequest)
		<-entered
		half := l.dial(t)
		writeString(t, half, addRequest[:len(addRequest)/2])
		synctest.Wait() // the server has taken in what it read

		third := l.dial(t)
		thirdAnswered := make(chan error, 1)
		go func() { thirdAnswered <- addOn(third, bufio.NewReader(third)) }()
		synctest.Wait()
		select {
		case err := <-thirdAnswered:
			t.Fatalf("a third connection was served while both slots were busy (%v)", err)
		default:
		}
		assert.Len(t, l.acceptCalls(), 3, "Serve went on accepting with a connection waiting for a slot")

		release()
		assert.Equal(t, `{"result": 3}`, readBody(t, inCallAnswers), "the call in flight is answered")
		start := time.Now()
		require.NoError(t, <-thirdAnswered)
		assert.Equal(t, closeLinger, time.Since(start), "the third connection is served when the first, idle, has said goodbye")
		_, err := inCallAnswers.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "the idle connection was evicted")

		writeString(t, half, addRequest[len(addRequest)/2:])
		assert.Equal(t, `{"result": 3}`, readBody(t, bufio.NewReader(half)), "the half request is read on")
	})
}

// TestLongestIdleIsEvicted fills both slots with connections that made a
// call, a second apart, and then connects a third: the one idle the
// longest is evicted, and its client reads the end of the stream once the
// goodbye is over. A request it sends meanwhile is dropped, not run.
func TestLongestIdleIsEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.MaxConns = 2
		srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
		var runs atomic.Int32
		srv.beforeAnswer = func() { runs.Add(1) }
		l := newFloodListener()
		serve(t, srv, l)

		older, newer := l.dial(t), l.dial(t)
		olderAnswers, newerAnswers := bufio.NewReader(older), bufio.NewReader(newer)
		// The newer connection was accepted later, but its last answer
		// was written first.
		require.NoError(t, addOn(newer, newerAnswers))
		time.Sleep(time.Second)
		require.NoError(t, addOn(older, olderAnswers))
		time.Sleep(time.Second)

		start := time.Now()
		third := l.dial(t)
		thirdAnswered := make(chan error, 1)
		go func() { thirdAnswered <- addOn(third, bufio.NewReader(third)) }()
		synctest.Wait() // the newer connection is evicted, and says goodbye
		// http.ReadResponse says "unexpected EOF" of a stream that ends
		// where an answer should begin.
		assert.ErrorIs(t, addOn(newer, newerAnswers), io.ErrUnexpectedEOF, "the connection idle the longest is closed")
		assert.Equal(t, closeLinger, time.Since(start), "its goodbye lasts closeLinger")
		require.NoError(t, <-thirdAnswered)
		assert.Equal(t, int32(3), runs.Load(), "a request sent during the goodbye was run")
		assert.NoError(t, addOn(older, olderAnswers), "the other is still served")
	})
}

// TestUnansweredConnectionsGoFirst fills both slots: a caller's
// connection, idle since its call, and a second later one that has sent
// nothing. A third connection takes the silent one's place at once,
// though the caller's has been idle longer: a flood of silent connections
// makes room among its own.
func TestUnansweredConnectionsGoFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.MaxConns = 2
		srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := newFloodListener()
		serve(t, srv, l)
		caller := l.dial(t)
		callerAnswers := bufio.NewReader(caller)
		require.NoError(t, addOn(caller, callerAnswers))
		time.Sleep(time.Second)
		silent := l.dial(t)
		time.Sleep(time.Second)

		start := time.Now()
		third := l.dial(t)
		require.NoError(t, addOn(third, bufio.NewReader(third)))
		assert.Zero(t, time.Since(start), "the third connection waited")
		assert.NoError(t, addOn(caller, callerAnswers), "the caller's connection was evicted")
		_, err := silent.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF)
		assert.Zero(t, time.Since(start), "the silent connection made room")
	})
}

// TestAcceptOutOfFiles makes Accept fail with EMFILE four times, as it
// does when the process has no file descriptor left. Serve treats it as
// the cap: each time, it evicts the connection idle the longest, if there
// is one, to free a descriptor, and calls Accept again as soon as that
// connection is closed. With none idle, net/http tries again after 5,
// then 10 ms, calling Accept once each time, not in a spin, and serves the
// connection it then accepts.
func TestAcceptOutOfFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.MaxConns = 2
		srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := newFloodListener()
		serve(t, srv, l)
		older := l.dial(t)
		time.Sleep(time.Second)
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
			l.queue <- acceptResult{err: emfile}
		}
		c := l.dial(t)
		require.NoError(t, addOn(c, bufio.NewReader(c)), "served in a slot the evictions gave back")
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

// TestAcceptOutOfFilesWaitsForAStartingConnection has Accept fail with
// EMFILE just after it accepted a silent connection, twenty times. The
// connection may not yet have been read from by net/http when the error
// comes: Serve waits until it has, and evicts it, at once, rather than
// have net/http pause as if none were idle.
func TestAcceptOutOfFilesWaitsForAStartingConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		srv.HeaderTimeout, srv.IdleTimeout = time.Hour, time.Hour
		l := newFloodListener()
		serve(t, srv, l)
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		for i := range 20 {
			start := time.Now()
			silent := l.dial(t)
			l.queue <- acceptResult{err: emfile}
			_, err := silent.Read(make([]byte, 1))
			require.ErrorIs(t, err, io.EOF, "round %d: the silent connection is evicted", i)
			require.Zero(t, time.Since(start), "round %d: evicted at once", i)
		}
	})
}

// addOn calls add(1, 2) on conn, whose answers r reads, and checks the
// answer.
func addOn(conn net.Conn, r *bufio.Reader) error {
	if _, err := io.WriteString(conn, addRequest); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && string(body) != `{"result": 3}` {
		err = errors.New("add(1, 2) answered " + string(body))
	}
	return err
}

// floodListener is a listener for tests in a bubble, like pipeListener,
// that can also fail an Accept, and records when Accept was called.
type floodListener struct {
	queue  chan acceptResult // the accept queue
	closed chan struct{}     // closed by Close
	once   sync.Once

	mu    sync.Mutex // protects calls
	calls []time.Time
}

// acceptResult is what a call of Accept returns.
type acceptResult struct {
	conn net.Conn
	err  error
}

func newFloodListener() *floodListener {
	return &floodListener{queue: make(chan acceptResult, 64), closed: make(chan struct{})}
}

func (l *floodListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	l.mu.Unlock()
	select {
	case r := <-l.queue:
		return r.conn, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *floodListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *floodListener) Addr() net.Addr { return pipeAddr{} }

// acceptCalls returns when Accept was called, in order.
func (l *floodListener) acceptCalls() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.calls...)
}

// dial queues a new connection for Accept and returns the client's end,
// closed when the test ends (see newPipe).
func (l *floodListener) dial(t *testing.T) net.Conn {
	t.Helper()
	client, server := newPipe(t)
	l.queue <- acceptResult{conn: server}
	return client
}
