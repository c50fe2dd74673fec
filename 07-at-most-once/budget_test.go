package atmostonce

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The budget: request bytes that every connection together holds, from a
// frame's length to its answer's write (MaxRequestBytesHeld), each request
// counted with callBytes for its call. These tests run in a synctest
// bubble (see pipe_test.go).

// echoStream returns what a peer sends for n calls of echo(s), from the
// first frame on.
func echoStream(t *testing.T, n int, s string) []byte {
	requests := make([]any, n)
	for i := range requests {
		requests[i] = &Request{ID: uint64(i + 1), Func: "echo", Params: []Value{{Type: typeStr, Str: s}}}
	}
	return bytes.Join(encodeFrames(t, requests...), nil)
}

// TestBudgetBoundsPeersThatNeverRead attacks a server at its default
// limits with 32 peers, each of which sends 132 echoes of nearly 128 KiB,
// more than MaxInFlight calls and MaxInFlight queued answers hold, and
// never reads an answer. Without a budget, each peer would make the server
// hold about 130 of them, 16 MiB, and 32 peers 520 MiB: 1024 such peers
// would hold 16 GiB. With it, the server stops reading every connection
// once requests hold MaxRequestBytesHeld, 64 MiB, and the heap it holds is
// that, and a little for each connection. When the peers hang up, the
// budget is whole again.
func TestBudgetBoundsPeersThatNeverRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const peers = 32
		srv := NewDemoServer(Service{}) // the default limits
		var waiting atomic.Int64
		srv.waitingForBudget = func(int) { waiting.Add(1) }
		l := newPipeListener()
		serve(t, srv, l)
		stream := echoStream(t, 2*DefaultMaxInFlight+4, strings.Repeat("x", DefaultMaxMessageBytes-256))
		before := heapInUse()

		sent := make(chan error, peers)
		conns := make([]net.Conn, peers)
		for i := range conns {
			peer := l.dial(t)
			conns[i] = peer
			go func() {
				_, err := peer.Write(stream)
				sent <- err
			}()
		}
		synctest.Wait() // the server has read all it will
		held := int64(heapInUse()) - int64(before)
		var goroutines runtime.MemStats
		runtime.ReadMemStats(&goroutines)
		t.Logf("%d peers that never read: %d readers waited for budget; heap %.1f MiB more, stacks %.1f MiB",
			peers, waiting.Load(), float64(held)/(1<<20), float64(goroutines.StackInuse)/(1<<20))

		assert.Empty(t, sent, "a peer's whole stream was read")
		assert.Positive(t, waiting.Load(), "no reader waited for budget")
		// The strings of the requests held, which are their answers too;
		// for each peer, one answer encoded in its writer's blocked write,
		// and at most one batch of 64 KiB; and 4 MiB for the rest.
		bound := int64(DefaultMaxRequestBytesHeld + peers*(DefaultMaxMessageBytes+maxKeptBuffer) + 4<<20)
		assert.Less(t, held, bound, "bytes of heap the server holds")

		for _, peer := range conns {
			peer.Close()
		}
		synctest.Wait()
		assert.True(t, srv.budget.TryAcquire(DefaultMaxRequestBytesHeld), "the budget is not whole once every connection has closed")
	})
}

// TestBudgetCountsCalls has 110 peers each start 64 calls of slow(10000),
// as many as a connection runs, and never read. A request of 25 bytes
// holds little, but its call holds a goroutine, about 10 KiB: the budget
// counts callBytes for each, so the server runs at most
// MaxRequestBytesHeld / callBytes of them at once, 6,553, not the 7,040
// sent. Without it, 1024 such peers would make the server hold 640 MiB in
// goroutines alone.
func TestBudgetCountsCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const peers = 110
		var running atomic.Int64
		srv := NewDemoServer(Service{Sleep: func(ctx context.Context, d time.Duration) error {
			running.Add(1)
			return sleepCtx(ctx, d)
		}})
		var waiting atomic.Int64
		srv.waitingForBudget = func(int) { waiting.Add(1) }
		l := newPipeListener()
		serve(t, srv, l)
		requests := make([]any, DefaultMaxInFlight)
		for i := range requests {
			requests[i] = &Request{ID: uint64(i + 1), Func: "slow", Params: []Value{{Type: typeInt, Int: MaxSlow}}}
		}
		stream := bytes.Join(encodeFrames(t, requests...), nil)
		before := memInUse()
		for range peers {
			peer := l.dial(t)
			go func() { _, _ = peer.Write(stream) }()
		}
		synctest.Wait()
		perCall := (memInUse() - before) / running.Load()
		t.Logf("%d calls sent, %d running, %d readers waiting for budget; %d bytes of heap and stacks a call",
			peers*DefaultMaxInFlight, running.Load(), waiting.Load(), perCall)
		assert.LessOrEqual(t, running.Load(), int64(DefaultMaxRequestBytesHeld/callBytes), "calls running at once")
		assert.Positive(t, waiting.Load(), "readers waiting for budget")
		assert.LessOrEqual(t, perCall, int64(callBytes), "what a call holds, its connection's share included, against what the budget counts")
	})
}

// TestBudgetWaitLetsOwnCallsFinish gives the server a budget of two
// requests, and sends three on one connection while the server holds its
// calls. The reader waits for budget before the third; the calls of its
// own connection still end, and their answers are written, which gives the
// budget back; then the third is read and answered. A connection that
// waits for budget cannot hold up its own answers.
func TestBudgetWaitLetsOwnCallsFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		frames := encodeFrames(t,
			withID(call(t, "echo", strings.Repeat("a", 1000)), 1),
			withID(call(t, "echo", strings.Repeat("b", 1000)), 2),
			withID(call(t, "echo", strings.Repeat("c", 1000)), 3))
		srv := NewDemoServer(Service{})
		// Two requests' worth: each takes its payload and callBytes. The
		// first frame is the largest, with the type definitions.
		srv.MaxRequestBytesHeld = len(frames[0]) + len(frames[1]) - 2*frameHeaderBytes + 2*callBytes
		entered, release := holdCalls(srv)
		var waiting atomic.Int64
		srv.waitingForBudget = func(int) { waiting.Add(1) }
		l := newPipeListener()
		serve(t, srv, l)
		conn := l.dial(t)
		answers := newDecoder(conn, DefaultMaxMessageBytes)
		go func() { _, _ = conn.Write(bytes.Join(frames, nil)) }()

		<-entered
		<-entered
		synctest.Wait()
		assert.Equal(t, int64(1), waiting.Load(), "readers waiting for budget")
		assert.Empty(t, entered, "a third call ran past the budget")
		release()
		got := nextAnswers(t, answers, 3)
		for id, s := range map[uint64]string{1: "a", 2: "b", 3: "c"} {
			assert.Equal(t, answerTo(id, strAnswer(strings.Repeat(s, 1000))), got[id])
		}
	})
}

// TestRequestLargerThanBudget gives the server a budget smaller than
// MaxRequestBytes. A request larger than the budget could never be
// admitted, so it is refused by its size, as one over MaxRequestBytes is:
// the stream's first closes the connection, and a later one is answered by
// its ID. Neither waits for budget that cannot come.
func TestRequestLargerThanBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewDemoServer(Service{})
		srv.MaxRequestBytesHeld = 2000
		l := newPipeListener()
		serve(t, srv, l)
		big := strings.Repeat("x", 3000)

		conn := l.dial(t)
		stream := echoStream(t, 1, big)
		go func() { _, _ = conn.Write(stream) }()
		refusal := nextAnswer(t, newDecoder(conn, DefaultMaxMessageBytes))
		// The stream's first frame defines its types too: 3225 bytes.
		// Stage 05's was 3159. The Request of this stage has six more
		// fields, each defined by its name and 5 bytes more (Client,
		// Attempt, Ack, Epoch, Timeout, Cancel: 34 bytes of names, 30 of
		// the rest), 64; and the slice of Values is named
		// []atmostonce.Value, 2 bytes longer than []asyncrpc.Value.
		assert.Equal(t, "message too large: a frame of 3225 bytes, more than 2000; closing the connection", refusal.Error)
		assert.Equal(t, Internal, refusal.Code, "a stream that breaks the rules is closed")
		assert.False(t, refusal.Ran)

		conn = l.dial(t)
		frames := encodeFrames(t, withID(call(t, "sum", 1, 2), 1), withID(call(t, "echo", big), 2), withID(call(t, "sum", 1, 2), 3))
		go func() { _, _ = conn.Write(bytes.Join(frames, nil)) }()
		assert.Equal(t, map[uint64]Response{
			1: answerTo(1, intAnswer(3)),
			2: {ID: 2, Error: fmt.Sprintf("request of %d bytes is larger than MaxRequestBytes 2000", len(frames[1])-frameHeaderBytes), Code: ResourceExhausted},
			3: answerTo(3, intAnswer(3)),
		}, nextAnswers(t, newDecoder(conn, DefaultMaxMessageBytes), 3))
	})
}

// memInUse returns the bytes of heap and of goroutine stacks in use, after
// two collections.
func memInUse() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// heldBudget is a server whose budget has room for total bytes, and a
// connection to it whose one call, echo("held"), is held in the server:
// it holds its share of the budget until release is called.
type heldBudget struct {
	srv     *Server
	l       *pipeListener
	release func()
}

func newHeldBudget(t *testing.T, total int) heldBudget {
	srv := NewDemoServer(Service{})
	srv.MaxRequestBytesHeld = total
	entered, held := make(chan struct{}), make(chan struct{})
	srv.beforeAnswer = func(req *Request) {
		if req.Params[0].Str == "held" {
			close(entered)
			<-held
		}
	}
	release := sync.OnceFunc(func() { close(held) })
	l := newPipeListener()
	serve(t, srv, l)
	t.Cleanup(release) // before the server's shutdown, which waits for the call
	holder := l.dial(t)
	stream := echoStream(t, 1, "held")
	go func() { _, _ = holder.Write(stream) }()
	<-entered
	return heldBudget{srv, l, release}
}

// served returns how many connections the server is serving.
func served(srv *Server) int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.conns)
}

// TestBudgetWaitIsTheServers has a request wait for budget for longer
// than FirstRequestTimeout, its frame's length read and its payload not
// (a pipe's Write returns only once every byte is read, so the write is
// still blocked): the time it waited was the server's, not the client's,
// so the server gives the client its time again, reads the payload, and
// answers.
func TestBudgetWaitIsTheServers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newHeldBudget(t, 12<<10) // the held call takes it all
		conn := b.l.dial(t)
		// More than the reader takes at once: the rest is read after the wait.
		stream := echoStream(t, 1, strings.Repeat("x", 8<<10))
		written := make(chan struct{})
		go func() {
			_, _ = conn.Write(stream)
			close(written)
		}()
		synctest.Wait()
		select {
		case <-written:
			t.Fatal("the server read a whole request while it waited for budget: it must wait with the length read and the payload not")
		default:
		}
		time.Sleep(2 * DefaultFirstRequestTimeout)
		b.release()
		assert.Equal(t, answerTo(1, strAnswer(strings.Repeat("x", 8<<10))), nextAnswer(t, newDecoder(conn, DefaultMaxMessageBytes)))
	})
}

// TestShutdownGivingUpStopsBudgetWait has a connection wait for budget
// that a held call holds, and Shutdown give up at once. Shutdown closes
// every connection, and the one waiting for budget stops waiting: only
// the held call's connection is left, until its call returns.
func TestShutdownGivingUpStopsBudgetWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newHeldBudget(t, 12<<10)
		conn := b.l.dial(t)
		stream := echoStream(t, 1, strings.Repeat("x", 8<<10))
		go func() { _, _ = conn.Write(stream) }()
		synctest.Wait()
		require.Equal(t, 2, served(b.srv))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		assert.ErrorIs(t, b.srv.Shutdown(ctx), context.Canceled, "the held call was cut off")
		synctest.Wait()
		assert.Equal(t, 1, served(b.srv), "connections still served")
		b.release()
		assert.NoError(t, b.srv.Shutdown(t.Context()))
	})
}

// TestWriteFailureStopsBudgetWait has a client that never reads send two
// calls: the answer to the first waits to be written, and the second waits
// for budget, more than that answer holds, since a held call on another
// connection holds the rest. When the write fails, at WriteTimeout, the
// connection is closed, and its reader stops waiting for budget: the
// connection is no longer served, though the held call still holds the
// budget.
func TestWriteFailureStopsBudgetWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newHeldBudget(t, 30<<10)
		conn := b.l.dial(t)
		frames := encodeFrames(t, withID(call(t, "echo", strings.Repeat("a", 2<<10)), 1), withID(call(t, "echo", strings.Repeat("b", 16<<10)), 2))
		go func() { _, _ = conn.Write(bytes.Join(frames, nil)) }()
		synctest.Wait()
		require.Equal(t, 2, served(b.srv))
		time.Sleep(DefaultWriteTimeout)
		synctest.Wait()
		assert.Equal(t, 1, served(b.srv), "connections still served")
	})
}
