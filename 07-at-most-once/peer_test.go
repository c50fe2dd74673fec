package atmostonce

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The client's side of at-most-once, against a peer the test plays: it
// reads each request and answers, or hangs up, as the test says, to put
// the client in the states a real server reaches only by chance.

// peer is the server's end of one connection a client dialled.
type peer struct {
	t        *testing.T
	conn     net.Conn
	requests *decoder
	answers  *answerWriter
}

// next reads the next request.
func (p *peer) next() Request {
	p.t.Helper()
	var req Request
	require.NoError(p.t, p.requests.decode(&req))
	return req
}

// answer writes resp.
func (p *peer) answer(resp Response) {
	p.t.Helper()
	require.NoError(p.t, p.answers.write(resp))
}

// peerClient returns a client whose every connection is handed to the test
// as a peer, and the channel that hands them over.
func peerClient(t *testing.T, opts ...Option) (*Client, <-chan *peer) {
	peers := make(chan *peer, 8)
	c := NewClient(func(ctx context.Context) (net.Conn, error) {
		near, far := net.Pipe()
		t.Cleanup(func() { far.Close() })
		peers <- &peer{t: t, conn: far, requests: newDecoder(far, DefaultMaxMessageBytes), answers: &answerWriter{conn: far, answers: newEncoder()}}
		return near, nil
	}, append([]Option{WithSeed(1)}, opts...)...)
	t.Cleanup(func() { c.Close() })
	return c, peers
}

// welcome reads a client's hello and answers it with epoch.
func (p *peer) welcome(epoch uint64) {
	p.t.Helper()
	hello := p.next()
	require.True(p.t, hello.isHello())
	p.answer(Response{Epoch: epoch})
}

const epoch1, epoch2 = 1<<62 + 1, 1<<62 + 2

// TestLostThenRefusedIsUnknown: attempt 1 of a call goes out and its
// connection breaks; attempt 2 is refused, did not run. The call ends
// with its outcome unknown, not "did not run": attempt 1 may still be
// read and run, by a server that read it late.
func TestLostThenRefusedIsUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, peers := peerClient(t, WithRetryPolicy(RetryPolicy{MaxAttempts: 2}))
		call := c.Go(t.Context(), "incr", "k")
		first := <-peers
		first.welcome(epoch1)
		assert.Equal(t, uint32(1), first.next().Attempt)
		first.conn.Close()

		second := <-peers
		req := second.next()
		assert.Equal(t, uint32(2), req.Attempt)
		second.answer(Response{ID: req.ID, Code: Unavailable, Error: "the server is shutting down"})
		<-call.Done
		assertFailure(t, call.Error, Unavailable, OutcomeUnknown)
	})
}

// TestLostCallKeepsItsEpoch: a call sent under epoch 1 is lost; before it
// goes again, the client learns epoch 2 (the server forgot it, and said
// so in another call's answer). The lost call's retry still says epoch
// 1, the epoch it may have run under, so that the server, which has no
// record of it under epoch 2, does not run it again. The other call,
// never lost, goes again under epoch 2.
func TestLostCallKeepsItsEpoch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, peers := peerClient(t)
		lost := c.Go(t.Context(), "incr", "k")
		first := <-peers
		first.welcome(epoch1)
		y := first.next()
		forgotten := c.Go(t.Context(), "incr", "k")
		z := first.next()
		assert.Equal(t, uint64(epoch1), y.Epoch)
		first.answer(Response{ID: z.ID, Code: Aborted, Error: "the server forgot this client", Epoch: epoch2})
		again := first.next()
		assert.Equal(t, z.ID, again.ID)
		assert.Equal(t, uint64(epoch2), again.Epoch, "a call not lost goes again under the new epoch")
		first.conn.Close()

		second := <-peers
		for range 2 {
			req := second.next()
			switch req.ID {
			case y.ID:
				assert.Equal(t, uint64(epoch1), req.Epoch, "the lost call goes again under its first epoch")
			case z.ID:
				assert.Equal(t, uint64(epoch2), req.Epoch, "and the other, lost under epoch 2, under that one")
			}
			second.answer(Response{ID: req.ID, Data: Value{Type: typeInt, Int: 1}, Ran: true, Epoch: epoch2})
		}
		<-lost.Done
		<-forgotten.Done
		require.NoError(t, lost.Error)
		require.NoError(t, forgotten.Error)
	})
}

// TestForgottenAfterLostIsUnknown: a call is lost, and the server that
// its retry reaches has forgotten the client. The call may have run
// under the epoch forgotten: it ends, Aborted, its outcome unknown, and
// is not sent a third time.
func TestForgottenAfterLostIsUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, peers := peerClient(t)
		call := c.Go(t.Context(), "incr", "k")
		first := <-peers
		first.welcome(epoch1)
		first.next()
		first.conn.Close()

		second := <-peers
		req := second.next()
		second.answer(Response{ID: req.ID, Code: Aborted, Error: "the server forgot this client", Epoch: epoch2})
		<-call.Done
		assertFailure(t, call.Error, Aborted, OutcomeUnknown)
		assert.Equal(t, 2, call.Attempts)
	})
}

// TestCallWaitingForHelloGoesNext: the writer has taken a call, and waits
// for the answer to its hello before it sends it; the connection breaks
// first. The call, never sent, goes out on the next connection, as
// attempt 1.
func TestCallWaitingForHelloGoesNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, peers := peerClient(t)
		call := c.Go(t.Context(), "incr", "k")
		first := <-peers
		hello := first.next()
		require.True(t, hello.isHello())
		first.conn.Close()

		second := <-peers
		second.welcome(epoch1)
		req := second.next()
		assert.Equal(t, call.ID, req.ID)
		assert.Equal(t, uint32(1), req.Attempt, "never sent before")
		second.answer(Response{ID: req.ID, Data: Value{Type: typeInt, Int: 1}, Ran: true, Epoch: epoch1})
		<-call.Done
		require.NoError(t, call.Error)
	})
}

// TestRefusedCallGoesAgainAfterBackoff: the server refuses a call,
// Unavailable, did not run. The client sends it again on the same
// connection, as attempt 2, when the backoff it drew has passed, to the
// nanosecond, and the call succeeds.
func TestRefusedCallGoesAgainAfterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var wait time.Duration
		c, peers := peerClient(t, WithEvents(func(e Event) {
			if e.Kind == Retrying {
				wait = e.Wait
			}
		}))
		call := c.Go(t.Context(), "incr", "k")
		p := <-peers
		p.welcome(epoch1)
		first := p.next()
		p.answer(Response{ID: first.ID, Code: Unavailable, Error: "the server is shutting down", Epoch: epoch1})
		refused := time.Now()
		again := p.next()
		require.Positive(t, wait, "a backoff was drawn")
		assert.Equal(t, wait, time.Since(refused), "sent again when its backoff ended")
		assert.Equal(t, first.ID, again.ID)
		assert.Equal(t, uint32(2), again.Attempt)
		p.answer(Response{ID: again.ID, Data: Value{Type: typeInt, Int: 1}, Ran: true, Epoch: epoch1})
		<-call.Done
		require.NoError(t, call.Error)
		assert.Equal(t, 2, call.Attempts)
	})
}
