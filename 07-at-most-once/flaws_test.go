package atmostonce

import (
	"bytes"
	"context"
	"encoding/gob"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/faultnet"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The flaws of stage 05's calls, which follow the article's (基于python实现
// rpc): each test here passes on this stage and would fail on 05's
// approach, where a caller's deadline stays with the caller, a call given
// up runs on and keeps its slot, and a lost answer loses the call. Last,
// the article's server flaws that stage 05 fixed, kept here.

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

// The article's server: one call at a time, and pickle.

// TestArticleFlawOneCallAtATime holds a slow call inside the server and
// makes fast calls meanwhile, on the slow call's connection and on
// another. The article's server is one select loop: for each connection
// with bytes to read, it reads a request, runs the function and sends the
// answer before it looks at the next, so one slow call holds up every
// caller on every connection. Ours runs each call on a goroutine of its
// own: the fast calls are answered while the slow one is still held.
func TestArticleFlawOneCallAtATime(t *testing.T) {
	srv := NewDemoServer(Service{})
	slowEntered, releaseSlow := make(chan struct{}), make(chan struct{})
	srv.beforeAnswer = func(req *Request) {
		if req.Func == "echo" && req.Params[0].Str == "slow" {
			close(slowEntered)
			<-releaseSlow
		}
	}
	addr := serve(t, srv, rpctest.Listen(t))
	defer close(releaseSlow) // before the server's shutdown, which waits for it

	c := dial(t, addr)
	slow := c.Go(t.Context(), "echo", "slow")
	<-slowEntered
	ctx, cancel := context.WithTimeout(t.Context(), rpctest.Backstop) // only a broken server takes it
	defer cancel()
	for i := range 3 {
		sum, err := DemoClient{c}.Add(ctx, i, 1)
		require.NoError(t, err, "a fast call on the slow call's connection")
		assert.Equal(t, i+1, sum)
	}
	sum, err := DemoClient{dial(t, addr)}.Add(ctx, 2, 2)
	require.NoError(t, err, "a fast call on another connection")
	assert.Equal(t, 4, sum)
	select {
	case <-slow.Done:
		t.Fatal("the slow call was answered while it was held")
	default:
	}
}

// tripwire is a type whose GobDecode, code of the receiving program,
// records that it ran.
type tripwire struct{ Cmd string }

var tripped atomic.Bool

func (t tripwire) GobEncode() ([]byte, error) { return []byte(t.Cmd), nil }
func (*tripwire) GobDecode([]byte) error      { tripped.Store(true); return nil }

// hostileRequest is a Request whose Params carry a type with code of its
// own, as a sender hoping for pickle's behaviour might write it.
type hostileRequest struct {
	Func   string
	Params []*tripwire
}

// TestArticleFlawCodeOnLoad sends a call whose argument is a value of a
// type with decoding code of its own. pickle.loads would run whatever
// function the bytes name. Our decoder accepts only the type definitions
// our own encoder writes, so the call is refused before gob reads any of
// it, although the server's process has the type, registered with gob.
// gob alone would refuse it too: it fills in the types the receiver
// declares and nothing else, and Params are Values.
//
// A field of type any is where the bytes do choose: into one, gob decodes
// any type the receiving program has registered, and runs its GobDecode.
// That is why Value is a struct, not an any.
func TestArticleFlawCodeOnLoad(t *testing.T) {
	gob.Register(&tripwire{})
	tripped.Store(false) // a run before this one (-count) may have set it
	conn, answers := rawConn(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	hostile := foreignFrames(t, &hostileRequest{Func: "echo", Params: []*tripwire{{Cmd: "rm -rf /"}}})
	write(t, conn, hostile)
	refusal := nextAnswer(t, answers)
	assert.Contains(t, refusal.Error, "malformed message: a type definition that is not one of ours")
	assert.Zero(t, refusal.ID, "refused at its definitions: no call was read")
	err := gob.NewDecoder(bytes.NewReader(hostile[frameHeaderBytes:])).Decode(&Request{})
	assert.ErrorContains(t, err, "gob: wrong type ([]atmostonce.Value) for received field hostileRequest.Params")
	assert.False(t, tripped.Load(), "gob ran code the sender chose")

	var stream bytes.Buffer
	require.NoError(t, gob.NewEncoder(&stream).Encode(struct{ Params []any }{[]any{&tripwire{Cmd: "rm -rf /"}}}))
	var into struct{ Params []any }
	require.NoError(t, gob.NewDecoder(&stream).Decode(&into))
	assert.True(t, tripped.Load(), "into a field of type any, the bytes choose which registered type's code runs")
}
