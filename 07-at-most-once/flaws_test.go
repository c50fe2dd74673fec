package atmostonce

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/faultnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The flaws of stage 05's calls, which follow the article's (基于python实现
// rpc): each test here passes on this stage and would fail on 05's
// approach, where a caller's deadline stays with the caller, a call given
// up runs on and keeps its slot, and a lost answer loses the call.

// TestArticleFlawGivenUpCallsRunOn makes 64 slow(3000) calls, each given
// up after 20 ms (cancelled: no deadline goes with them), on a server that
// runs 64 calls at once. Each is cancelled on the server by a cancel
// frame, and slow returns: add(1, 2) is answered at once, 20 ms in. In
// stage 05 the slow calls ran on, and add waited 3 s.
func TestArticleFlawGivenUpCallsRunOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _, c := faultyServer(t, faultnet.Script())
		var wg sync.WaitGroup
		for range srv.MaxInFlight {
			wg.Go(func() {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(20*time.Millisecond, cancel)
				_, err := c.Call(ctx, "slow", 3000)
				assert.ErrorIs(t, err, Canceled)
				assert.ErrorIs(t, err, context.Canceled)
			})
		}
		wg.Wait()
		start := time.Now()
		synctest.Wait()
		sum, err := DemoClient{c}.Add(t.Context(), 1, 2)
		require.NoError(t, err)
		assert.Equal(t, 3, sum)
		assert.Equal(t, time.Duration(0), time.Since(start), "add waited for slow calls given up")
	})
}

// TestArticleFlawLostAnswerLosesTheCall loses the answer of the first
// connection: incr ran, and its answer never came. The client dials
// again, sends the call again with the same ID, and the server answers
// from its table, without running incr again.
func TestArticleFlawLostAnswerLosesTheCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, counters, c := faultyServer(t, faultnet.Script(loseAfterHello, faultnet.Fault{}))
		n, err := DemoClient{c}.Incr(t.Context(), "k")
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Equal(t, 1, counters.get("k"), "incr ran once")
		assert.Zero(t, counters.ranTwice())
		st := c.Stats()
		assert.Equal(t, Stats{Calls: 1, Attempts: 2, Retries: 1, Connections: 2}, st)
	})
}

// TestArticleFlawExpiredCallsRun gives the server one slot, and holds it
// with slow(1000). incr(k), with a deadline of 100 ms, is read and waits
// for the slot; when it gets it, at 1 s, its deadline has passed, and it
// is not run.
func TestArticleFlawExpiredCallsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		counters := NewCounters()
		srv := NewDemoServer(Service{Counters: counters})
		srv.MaxInFlight = 1
		l := newPipeListener()
		serve(t, srv, l)
		c := NewClient(l.dialer(), WithSeed(1))
		defer c.Close()
		slow := c.Go(t.Context(), "slow", 1000)
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Call(ctx, "incr", "k")
		require.ErrorIs(t, err, DeadlineExceeded)
		require.ErrorIs(t, err, ErrOutcomeUnknown, "the client cannot know; the server knows")
		<-slow.Done
		require.NoError(t, slow.Error)
		synctest.Wait()
		assert.Zero(t, counters.get("k"), "incr ran after its deadline")
	})
}

// TestArticleFlawDeadlineStaysWithTheCaller: the request carries the
// time its caller has left, and the server counts it from when it read
// the request. In a bubble no time passes on the way, so the function's
// deadline is its caller's, to the nanosecond; a call with no deadline
// gives none.
func TestArticleFlawDeadlineStaysWithTheCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewServer()
		svc := deadlines{got: make(chan time.Time, 2)}
		_, err := srv.Register(svc)
		require.NoError(t, err)
		l := newPipeListener()
		serve(t, srv, l)
		c := NewClient(l.dialer(), WithSeed(1))
		defer c.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		want, _ := ctx.Deadline()
		_, err = c.Call(ctx, "when")
		require.NoError(t, err)
		assert.Equal(t, want, <-svc.got)
		_, err = c.Call(t.Context(), "when")
		require.NoError(t, err)
		assert.True(t, (<-svc.got).IsZero())
	})
}
