//go:build exercises

package asyncrpc

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	go test -tags exercises -run Exercise ./05-async-callback/
//
// `make test` compiles them (go vet -tags exercises) but does not run them.

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Exercise 1: a Client.Pending method that says how many calls are in
// flight: registered, and not ended. Load mode could print it, and a
// caller could wait while it is high. It counts what the pending table
// holds, under the lock that guards the table.
func TestExercisePending(t *testing.T) {
	addr, clock := slowServer(t)
	c := dial(t, addr)
	p, ok := any(c).(interface{ Pending() int })
	require.True(t, ok, "Client has no method Pending() int yet")
	assert.Zero(t, p.Pending())

	ctx, cancel := context.WithCancel(t.Context())
	given := c.Go(ctx, "slow", 300)
	short, long := c.Go(t.Context(), "slow", 100), c.Go(t.Context(), "slow", 200)
	clock.waitAsleep(t, 3)
	assert.Equal(t, 3, p.Pending())

	clock.wake(100)
	<-short.Done
	assert.Equal(t, 2, p.Pending(), "an answered call is no longer pending")
	cancel()
	<-given.Done
	assert.Equal(t, 1, p.Pending(), "nor is a call given up")
	require.NoError(t, c.Close())
	<-long.Done
	assert.Zero(t, p.Pending(), "nor are the calls failed by Close")
}

// Exercise 2: run GoFunc's callbacks one at a time, in the order their
// calls ended, on one goroutine of the Client's. A callback may then rely
// on the ones before it having run, and a burst of answers starts one
// goroutine, not one each. Close must still not wait for the callbacks,
// and a callback that never returns holds up only the callbacks after it.
func TestExerciseCallbacksInOrder(t *testing.T) {
	clock := &testClock{asleep: make(chan time.Duration, 1024), alarms: map[time.Duration]chan struct{}{}}
	srv := NewDemoServer(Service{Sleep: clock.Sleep})
	written := make(chan uint64, 4)
	srv.answerWritten = func(id uint64) { written <- id }
	addr := serve(t, srv, rpctest.Listen(t))
	t.Cleanup(clock.wakeAll)
	c := dial(t, addr)

	var mu sync.Mutex // protects order, goroutines
	var order []any
	goroutines := map[string]bool{}
	first, ran := make(chan struct{}), make(chan struct{}, 3)
	callback := func(call *Call) {
		mu.Lock()
		order = append(order, call.Result)
		goroutines[goroutineID()] = true
		mu.Unlock()
		if call.Result == 100 {
			<-first // the later answers come while it runs
		}
		ran <- struct{}{}
	}
	for _, ms := range []int{300, 100, 200} {
		c.GoFunc(t.Context(), "slow", callback, ms)
	}
	clock.waitAsleep(t, 3)
	for _, ms := range []int{100, 200, 300} { // each answer written before the next call ends
		clock.wake(ms)
		<-written
	}
	// The callback of 100 holds up the ones after it, not the reader: a
	// call made now is answered. Its answer comes after 200's and 300's,
	// so those calls have ended, and wait behind 100's callback, by then.
	ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop)
	sum, err := DemoClient{c}.Add(ctx, 1, 2)
	cancel()
	close(first)
	require.NoError(t, err, "a callback that blocks holds up the client's reader")
	assert.Equal(t, 3, sum)
	for range 3 {
		<-ran
	}
	require.NoError(t, c.Close())
	assert.Equal(t, []any{100, 200, 300}, order, "callbacks in the order their calls ended")
	assert.Len(t, goroutines, 1, "callbacks on one goroutine")
}

// goroutineID returns the id of the goroutine that calls it, as its stack
// trace begins: "goroutine 7 [running]:". Tests only: Go does not give a
// goroutine an identity to build on.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// Exercise 3: Drain(ctx), the client's Shutdown: it refuses new calls at
// once (with an error that wraps ErrBroken), waits for the calls in flight
// to end, then closes the client and returns nil. If ctx ends first, it
// closes the client anyway, failing the calls left, and returns ctx's
// error.
func TestExerciseDrain(t *testing.T) {
	addr, clock := slowServer(t)
	c := dial(t, addr)
	d, ok := any(c).(interface{ Drain(context.Context) error })
	require.True(t, ok, "Client has no method Drain(context.Context) error yet")

	held := c.Go(t.Context(), "slow", 100)
	clock.waitAsleep(t, 1)
	drained := make(chan error, 1)
	go func() { drained <- d.Drain(t.Context()) }()
	var err error
	for i := 0; err == nil; i++ { // calls go through until Drain has begun
		require.Less(t, i, 100_000, "Drain never refused a call")
		_, err = DemoClient{c}.Add(t.Context(), 1, 2)
	}
	assert.ErrorIs(t, err, ErrBroken, "a call made while the client drains is refused")
	assert.Empty(t, drained, "Drain waits for the call in flight")

	clock.wake(100)
	<-held.Done
	require.NoError(t, held.Error, "the call in flight ends as it would have")
	assert.Equal(t, 100, held.Result)
	assert.NoError(t, <-drained)

	c = dial(t, addr)
	d = any(c).(interface{ Drain(context.Context) error })
	held = c.Go(t.Context(), "slow", 200)
	clock.waitAsleep(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, d.Drain(ctx), context.Canceled)
	<-held.Done
	assert.ErrorIs(t, held.Error, ErrBroken, "the calls left fail")
}
