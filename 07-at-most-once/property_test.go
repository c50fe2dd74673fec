package atmostonce

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/faultnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var seeds = flag.Int("seeds", 200, "TestNoCallRunsTwice: how many fault schedules to try, seeds 1 to N")

// TestNoCallRunsTwice runs incr calls through a network that fails at
// random, one schedule of faults per seed: on the server's side, answers
// lost after their request arrived, connections cut or reset after a
// random count of bytes (mid-frame), writes delayed; on the client's
// side, cuts and resets too. Four callers make eight calls each. Then,
// once the client is closed and the server has shut down, every call
// must have ended with a result or an *Error that says whether it ran,
// and the server's log of the calls it applied must agree:
//
//   - no call was applied twice;
//   - every call that succeeded was applied, and no call that did not
//     run was;
//   - the counter is the calls that succeeded plus the calls whose
//     outcome is unknown and that the log shows ran.
//
// A failing seed replays exactly: go test -run 'TestNoCallRunsTwice/seed=17$'.
func TestNoCallRunsTwice(t *testing.T) {
	total := map[string]int{}
	for seed := 1; seed <= *seeds; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				for k, n := range checkSchedule(t, uint64(seed)) {
					total[k] += n
				}
			})
		})
	}
	t.Logf("%d schedules: %v", *seeds, total)
}

// checkSchedule runs the calls of one seed, checks them, and returns how
// many calls ended each way, and how many faults fired.
func checkSchedule(t *testing.T, seed uint64) map[string]int {
	serverSide := faultnet.New(faultnet.Spec{Seed: seed, LoseAnswer: 0.3, Cut: 0.2, Reset: 0.1, Delay: 0.1, MaxAfter: 400})
	clientSide := faultnet.New(faultnet.Spec{Seed: seed + 1<<32, Cut: 0.2, Reset: 0.1, MaxAfter: 400})
	counters := NewCounters()
	srv := NewDemoServer(Service{Counters: counters})
	l := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serverSide.Listener(l)) }()
	dial := l.dialer()
	c := NewClient(func(ctx context.Context) (net.Conn, error) { return clientSide.Dial(ctx, dial) }, WithSeed(seed))

	const callers, each = 4, 8
	var mu sync.Mutex
	var calls []*Call
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				call := c.Go(ctx, "incr", "k")
				<-call.Done
				cancel()
				mu.Lock()
				calls = append(calls, call)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NoError(t, c.Close())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	require.ErrorIs(t, <-served, ErrServerClosed)

	counters.mu.Lock()
	defer counters.mu.Unlock()
	applied := func(call *Call) bool {
		_, ok := counters.applied[CallInfo{Client: c.ID(), ID: call.ID}]
		return ok
	}
	var ok, unknownRan int
	outcomes := map[string]int{}
	for _, call := range calls {
		if call.Error == nil {
			ok++
			outcomes["ok"]++
			assert.True(t, applied(call), "call %d succeeded and was not applied", call.ID)
			continue
		}
		e, isError := asCallError(call.Error)
		require.True(t, isError, "call %d: %v is not an *Error", call.ID, call.Error)
		outcomes[e.Outcome.String()]++
		switch e.Outcome {
		case NotRun:
			assert.False(t, applied(call), "call %d did not run, and was applied: %v", call.ID, call.Error)
		case Ran:
			t.Errorf("call %d ran and failed: incr does not fail: %v", call.ID, call.Error)
		case OutcomeUnknown:
			if applied(call) {
				unknownRan++
			}
		default:
			t.Errorf("call %d: outcome %v", call.ID, e.Outcome)
		}
	}
	assert.Len(t, calls, callers*each)
	assert.Zero(t, counters.twice, "calls applied twice")
	assert.Equal(t, ok+unknownRan, counters.values["k"], "the counter is the calls that succeeded, and those of unknown outcome that ran")
	assert.Equal(t, len(counters.applied), counters.values["k"], "every increment is logged")
	st := c.Stats()
	t.Logf("seed %d: %v; %d attempts, %d retries, %d throttled, %d connections; faults fired: server %v, client %v",
		seed, outcomes, st.Attempts, st.Retries, st.Throttled, st.Connections, serverSide.Fired(), clientSide.Fired())
	outcomes["retries"], outcomes["throttled"] = int(st.Retries), int(st.Throttled)
	for kind, n := range serverSide.Fired() {
		outcomes["fault "+kind.String()] += n
	}
	for kind, n := range clientSide.Fired() {
		outcomes["fault "+kind.String()] += n
	}
	return outcomes
}

// asCallError returns err's *Error, if it has one.
func asCallError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
