package atmostonce

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/faultnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The calls of this stage survive a network that fails: the tests here
// run in synctest bubbles, over net.Pipes, through faultnet's faults, so
// that deadlines, backoffs and budgets run on the fake clock and can be
// asserted to the nanosecond.

// pipeListener is a listener of net.Pipe connections. A test may also
// queue an error for Accept to return, and see when Accept was called.
type pipeListener struct {
	conns     chan net.Conn // the server's ends, dialled and not accepted yet
	fail      chan error    // errors for Accept to return, before any connection
	accepted  atomic.Int64
	closed    chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex  // protects calls
	calls []time.Time // when Accept was called, each time
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn, 256), fail: make(chan error, 16), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	l.mu.Unlock()
	select {
	case err := <-l.fail:
		return nil, err
	default:
	}
	select {
	case c := <-l.conns:
		l.accepted.Add(1)
		return c, nil
	case err := <-l.fail:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// acceptCalls returns when Accept was called, each time.
func (l *pipeListener) acceptCalls() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client's end of a new connection, which waits to be
// accepted, as in a kernel's accept queue. The test closes it when it
// ends, before the server's shutdown.
func (l *pipeListener) dial(t testing.TB) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	select {
	case l.conns <- server:
	default:
		t.Fatal("more connections waiting to be accepted than a pipeListener queues")
	}
	t.Cleanup(func() { client.Close() })
	return client
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// dialer returns a Dialer whose every connection is a new pipe to l.
func (l *pipeListener) dialer() Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		client, server := net.Pipe()
		select {
		case l.conns <- server:
			return client, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// onlyConn returns a Dialer whose first connection is conn, and which
// then never connects again: each later dial waits until the client is
// closed. A client on it lives and dies with conn, as stage 05's did.
func onlyConn(conn net.Conn) Dialer {
	var once atomic.Bool
	return func(ctx context.Context) (net.Conn, error) {
		if once.CompareAndSwap(false, true) {
			return conn, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
}

// faultyServer serves the demo service, with counters, through faults
// on the server's side of each connection, in the bubble, until the test
// ends. It returns the service's counters, and a client that dials it.
func faultyServer(t *testing.T, faults *faultnet.Net, opts ...Option) (*Server, *Counters, *Client) {
	t.Helper()
	counters := NewCounters()
	srv := NewDemoServer(Service{Counters: counters})
	l := newPipeListener()
	serve(t, srv, faults.Listener(l))
	c := NewClient(l.dialer(), append([]Option{WithSeed(1)}, opts...)...)
	t.Cleanup(func() { c.Close() })
	return srv, counters, c
}

// lose loses a connection's first answer; loseAfterHello lets the first
// through, the answer to the client's hello on its first connection.
var (
	lose           = faultnet.Fault{Kind: faultnet.LoseAnswer}
	loseAfterHello = faultnet.Fault{Kind: faultnet.LoseAnswer, After: 1}
)

// TestRetryBudget loses every answer. Each lost connection takes a token
// from the budget of 10; once 5 or fewer are left, nothing is sent again.
// The first call makes 5 attempts (tokens 9, 8, 7, 6, then 5: throttled),
// the second one (4: throttled). Every incr ran once, and each call ends
// with its outcome unknown.
func TestRetryBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		policy := RetryPolicy{MaxAttempts: 100}
		faults := append([]faultnet.Fault{loseAfterHello}, slices.Repeat([]faultnet.Fault{lose}, 10)...)
		_, counters, c := faultyServer(t, faultnet.Script(faults...), WithRetryPolicy(policy))
		for i := range 2 {
			_, err := DemoClient{c}.Incr(t.Context(), "k")
			require.ErrorIs(t, err, ErrOutcomeUnknown, "call %d", i)
			require.ErrorIs(t, err, Unavailable)
		}
		assert.Equal(t, 2, counters.get("k"))
		assert.Zero(t, counters.ranTwice())
		assert.Equal(t, Stats{Calls: 2, Attempts: 6, Retries: 4, Throttled: 2, Unknown: 2, Connections: 6}, c.Stats())
	})
}

// stubborn is a service whose slow call ignores its context.
type stubborn struct{}

func (stubborn) Stubborn(ms int) int {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms
}

func (stubborn) Add(a, b int) int { return a + b }

// TestStubbornCallsKeepTheirSlots is the same with a function that takes
// no context: it cannot be told, so it runs on, and add waits for a slot
// until the stubborn calls end, 3 s after they began.
func TestStubbornCallsKeepTheirSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		_, err := srv.Register(stubborn{})
		require.NoError(t, err)
		l := newPipeListener()
		serve(t, srv, l)
		c := NewClient(l.dialer(), WithSeed(1))
		defer c.Close()
		start := time.Now()
		var wg sync.WaitGroup
		for range srv.MaxInFlight {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
				defer cancel()
				_, err := c.Call(ctx, "stubborn", 3000)
				assert.ErrorIs(t, err, DeadlineExceeded)
			})
		}
		wg.Wait()
		sum, err := c.Call(t.Context(), "add", 1, 2)
		require.NoError(t, err)
		assert.Equal(t, 3, sum)
		assert.Equal(t, 3*time.Second, time.Since(start))
	})
}

// deadlines is a service that reports the deadline of each call it runs.
type deadlines struct{ got chan time.Time }

func (d deadlines) When(ctx context.Context) int {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Time{}
	}
	d.got <- deadline
	return 0
}

// TestReconnectBackoff has a server that refuses every connection, and
// checks when the client dials: each wait is drawn from 0 up to
// 100 ms·2ⁿ, capped at 10 s (full jitter), and the client dials exactly
// when each wait ends.
func TestReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var dials []time.Time
		var waits []time.Duration
		refuse := func(ctx context.Context) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			dials = append(dials, time.Now())
			return nil, &net.OpError{Op: "dial", Err: errRefused}
		}
		c := NewClient(refuse, WithSeed(3), WithEvents(func(e Event) {
			if e.Kind == Reconnecting {
				waits = append(waits, e.Wait)
			}
		}))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := c.Call(ctx, "add", 1, 2)
		require.ErrorIs(t, err, DeadlineExceeded)
		require.ErrorIs(t, err, ErrNotRun, "never sent")
		c.Close()
		mu.Lock()
		defer mu.Unlock()
		require.Greater(t, len(dials), 8)
		for i, wait := range waits[:len(dials)-1] {
			ceiling := min(100*time.Millisecond<<i, 10*time.Second)
			assert.LessOrEqual(t, wait, ceiling, "wait %d", i)
			assert.Equal(t, wait, dials[i+1].Sub(dials[i]), "dial %d came when its wait ended", i+1)
		}
		low := 0 // waits below half their ceiling: half of them, drawn at random
		for i, wait := range waits {
			if wait < min(100*time.Millisecond<<i, 10*time.Second)/2 {
				low++
			}
		}
		assert.GreaterOrEqual(t, low, 2, "the waits are jittered: %v", waits)
	})
}

var errRefused = &refusedError{}

type refusedError struct{}

func (*refusedError) Error() string { return "connection refused" }

// TestClientWindow gives the client a window of 2 calls: call 3 may not
// go while call 1 waits, even with call 2 answered and only one call in
// flight, since the server keeps a client's calls from its lowest in
// flight up to the window, and would refuse it. It goes when call 1
// ends, 1 s in.
func TestClientWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, c := faultyServer(t, faultnet.Script(), WithMaxPending(2))
		start := time.Now()
		slow := c.Go(t.Context(), "slow", 1000)
		sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
		require.NoError(t, err)
		assert.Equal(t, 3, sum)
		assert.Zero(t, time.Since(start), "call 2 goes at once")
		_, err = DemoClient{c}.Add(t.Context(), 3, 4)
		require.NoError(t, err)
		assert.Equal(t, time.Second, time.Since(start), "call 3 waits for call 1")
		<-slow.Done
		assert.Equal(t, int64(3), c.Stats().Calls)
	})
}
