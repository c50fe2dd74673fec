//go:build exercises

package atmostonce

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	go test -tags exercises -run Exercise ./07-at-most-once/
//
// `make test` compiles them (go vet -tags exercises) but does not run them.
// Each asks for a name the stage does not have yet (a field, a method)
// through reflection, so that this file compiles before you start.

import (
	"math/rand/v2"
	"net"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/faultnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawClient plays a client by hand over one connection: it writes the
// requests the test makes and reads each answer.
type rawClient struct {
	t        *testing.T
	conn     net.Conn
	requests *encoder
	answers  *decoder
}

// send writes req and returns the next answer.
func (c *rawClient) send(req Request) Response {
	c.t.Helper()
	frames, err := c.requests.encode(&req)
	require.NoError(c.t, err)
	_, err = c.conn.Write(frames)
	c.requests.release()
	require.NoError(c.t, err)
	var resp Response
	require.NoError(c.t, c.answers.decode(&resp))
	return resp
}

// Exercise 1: forget a stored answer after a time, as Stripe keeps an
// idempotency key for 24 hours. A Server field AnswerTTL (a
// time.Duration; 0 keeps answers until the client's Ack passes them, as
// today) says how long the table keeps the answer of a call after the call
// ended. At that moment exactly, the answer is gone: a later attempt of the
// call is answered Aborted, its outcome unknown, and the call does not run
// again.
func TestExerciseAnswerTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		counters := NewCounters()
		srv := NewDemoServer(Service{Counters: counters})
		ttl := reflect.ValueOf(srv).Elem().FieldByName("AnswerTTL")
		require.True(t, ttl.IsValid(), "Server has no field AnswerTTL yet")
		require.Equal(t, reflect.TypeFor[time.Duration](), ttl.Type(), "AnswerTTL is a time.Duration")
		ttl.Set(reflect.ValueOf(time.Hour))
		srv.IdleTimeout = 24 * time.Hour // the connection outlives the TTL
		l := newPipeListener()
		serve(t, srv, l)
		conn := l.dial(t)
		c := &rawClient{t: t, conn: conn, requests: newEncoder(), answers: newDecoder(conn, DefaultMaxMessageBytes)}

		const client = 7
		hello := c.send(Request{Client: client})
		require.NotZero(t, hello.Epoch)
		incr, err := newRequest("incr", []any{"k"})
		require.NoError(t, err)
		incr.ID, incr.Client, incr.Ack, incr.Epoch = 1, client, 1, hello.Epoch
		attempt := func(n uint32) Response {
			req := incr
			req.Attempt = n
			return c.send(req)
		}

		start := time.Now()
		first := attempt(1)
		require.Equal(t, Value{Type: typeInt, Int: 1}, first.Data)

		time.Sleep(time.Hour - time.Nanosecond)
		kept := attempt(2)
		assert.Equal(t, first.Data, kept.Data, "an hour less a nanosecond after the call ended, its answer is kept")

		time.Sleep(time.Nanosecond)
		require.Equal(t, time.Hour, time.Since(start))
		gone := attempt(3)
		assert.Equal(t, Value{}, gone.Data, "an hour after the call ended, its answer is gone")
		e := answerError(&gone)
		assert.Equal(t, Aborted, e.Code)
		assert.Equal(t, OutcomeUnknown, e.Outcome)
		assert.Equal(t, 1, counters.get("k"), "the call ran once")
	})
}

// Exercise 2: decorrelated jitter, the AWS article's other schedule. A
// method of Backoff, Decorrelated(rng *rand.Rand, prev time.Duration)
// time.Duration, returns the wait after a wait of prev: a random time from
// Base up to three times prev, never more than Cap. Before the first wait,
// prev is 0, and counts as Base. Every draw stays in its bounds, and over
// many seeded draws the waits fill them: some near the bottom, some near
// the top.
func TestExerciseDecorrelatedJitter(t *testing.T) {
	type decorrelated interface {
		Decorrelated(rng *rand.Rand, prev time.Duration) time.Duration
	}
	b, ok := any(Backoff{Base: 100 * time.Millisecond, Cap: 10 * time.Second}).(decorrelated)
	require.True(t, ok, "Backoff has no method Decorrelated(*rand.Rand, time.Duration) time.Duration yet")
	base, ceiling := 100*time.Millisecond, 10*time.Second
	for _, prev := range []time.Duration{0, base, 400 * time.Millisecond, 2 * time.Second, 5 * time.Second, ceiling} {
		top := min(3*max(prev, base), ceiling)
		rng := rand.New(rand.NewPCG(1, uint64(prev)))
		low, high := top, base
		for range 10_000 {
			wait := b.Decorrelated(rng, prev)
			require.GreaterOrEqual(t, wait, base, "after %v", prev)
			require.LessOrEqual(t, wait, top, "after %v", prev)
			low, high = min(low, wait), max(high, wait)
		}
		spread := top - base
		assert.Less(t, low-base, spread/100, "after %v, no wait came near Base", prev)
		assert.Less(t, top-high, spread/100, "after %v, no wait came near %v", prev, top)
	}

	// A chain of waits, each from the one before, stays within Cap.
	rng := rand.New(rand.NewPCG(2, 3))
	var prev time.Duration
	for range 1000 {
		prev = b.Decorrelated(rng, prev)
		require.LessOrEqual(t, prev, ceiling)
		require.GreaterOrEqual(t, prev, base)
	}
}

// Exercise 3: the retry budget, seen from outside. A method of Client,
// RetryTokens() float64, says how many tokens the retry budget has left,
// so that a program can log it, or hold back while it is low. A Client
// starts with MaxTokens (10); a connection lost with a call on it takes
// one; the call's success, on the next connection, gives back TokenRatio
// (0.1).
func TestExerciseRetryTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, c := faultyServer(t, faultnet.Script(loseAfterHello, faultnet.Fault{}))
		budget, ok := any(c).(interface{ RetryTokens() float64 })
		require.True(t, ok, "Client has no method RetryTokens() float64 yet")
		assert.Equal(t, 10.0, budget.RetryTokens(), "a new Client has MaxTokens")
		n, err := DemoClient{c}.Incr(t.Context(), "k")
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.InDelta(t, 10-1+0.1, budget.RetryTokens(), 1e-9, "a lost connection takes 1, a success gives back 0.1")
	})
}
