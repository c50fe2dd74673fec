package atmostonce

import (
	"context"
	"math/rand/v2"
	"sync"
)

// table is the server's memory of the calls it has run, so that it runs
// each at most once: a call is known by its client's id and its ID, the
// client's sequence number for it, the same on every attempt.
//
//   - A call that is running when another attempt of it arrives is joined:
//     the attempt waits for the same answer.
//   - A call that has run gets its stored answer again.
//   - A call the table cannot vouch for is never run: its attempt is
//     answered Aborted, outcome unknown.
//
// The table vouches for a call it has no record of when it has remembered
// the client without a break since the call was first sent: each client's
// memory has an epoch, a number that every answer carries, and a request
// carries the epoch its client knew when it first sent the call. When the
// server forgets a client (to make room) and meets it again, the client
// gets a new epoch: a call sent under the old one may have run, and been
// forgotten, so it is not run. A client that knew no epoch yet (its first
// calls, sent before any answer came) may have its first attempt run, as
// the server cannot have forgotten a call that was never sent; a later
// attempt of such a call is run only if the table has its record.
//
// A client's Ack says every call below it has ended for the client: the
// table forgets their answers. A call below a client's Ack is refused, as
// the table can no longer vouch for it.
//
// What the table holds is bounded. Per client, its calls run from its Ack
// to less than Ack plus the window (MaxCallsPerClient); a call beyond is
// refused before it runs. All clients together hold at most max bytes, as
// counted: clientBytes for each client, entryBytes for each call, and the
// bytes of each stored answer's strings. To make room, the table forgets
// the clients that have gone longest without a call, among those with no
// call running; if that is not enough, it refuses the new call before it
// runs, or, for a call that has run, keeps no answer for a later attempt,
// which will be told its outcome is unknown. So a million clients that
// never ack cost what the budget allows, and no more: at the default
// MaxTableBytes, 64 MiB as counted, which holds 104,857 clients with one
// call each, or 209,714 calls of clients with many. The heap holds less
// than is counted: 523 bytes for a client with one call, 253 for each
// call more, and a stored answer's strings (TestTableBytesPerCall); a
// million clients sent to a 1 MiB table grew the heap by 0.85 MB
// (TestTableMillionClients).
type table struct {
	mu      sync.Mutex // protects everything below, and each clientCalls and entry
	clients map[uint64]*clientCalls
	recent  clientCalls // a ring of the clients: recent.next was used last, recent.prev the longest ago
	held    int64       // bytes held, as counted
	max     int64       // the budget: MaxTableBytes
	window  uint64      // MaxCallsPerClient
	epoch   uint64      // the epoch last given
	forgot  int64       // clients forgotten to make room
}

// clientBytes and entryBytes are what the budget counts for a client and
// for a call it remembers, besides the strings of an answer: their
// structs, and their places in the maps. A remembered answer costs
// entryBytes and its strings, the cost of at-most-once per call. They
// are at least what TestTableBytesPerCall measures: about 270 bytes for a
// client, 253 for a call.
const (
	clientBytes = 320
	entryBytes  = 320
)

// clientCalls is the table's memory of one client.
type clientCalls struct {
	id         uint64
	epoch      uint64
	ack        uint64            // the client's calls below this have ended: forgotten
	calls      map[uint64]*entry // by ID, from ack up
	running    int               // calls whose function has not returned: a client with one is not forgotten
	held       int64             // what the client counts in the table's budget
	prev, next *clientCalls      // in the ring of recent use
	forgotten  bool              // the table forgot the client: its calls store nothing more
}

// entry is one call the table remembers: running, until it has ended,
// then its stored answer.
type entry struct {
	ended  bool               // the call has ended: resp is set
	done   chan struct{}      // made for the first attempt that waits for the call to end; closed when it has
	resp   Response           // the answer for a later attempt, once ended
	stop   context.CancelFunc // cancels the function's context while it runs, if it takes one
	stored bool               // resp is the call's answer; if not, it was not kept (see finish)
}

// newTable returns an empty table with a budget of max bytes, and a window
// of window calls per client.
func newTable(max int64, window uint64) *table {
	t := &table{clients: map[uint64]*clientCalls{}, max: max, window: window}
	t.recent.prev, t.recent.next = &t.recent, &t.recent
	// Epochs start at a random number, so that a server started again
	// does not give a client the epoch it had before. Its top bits are
	// fixed, so that every epoch takes as many bytes on the wire (9).
	t.epoch = rand.Uint64()>>2 | 1<<62
	return t
}

// admission is the table's verdict on an attempt: run it under e; or
// wait for e to end (on done) and answer with its answer; or answer with
// resp, the answer of a call that has ended, or with refusal, at once.
// epoch is the client's epoch, for the answer.
type admission struct {
	e       *entry
	run     bool
	done    <-chan struct{}
	resp    *Response
	refusal *Error
	epoch   uint64
	client  *clientCalls
}

// admit looks up the call req is an attempt of, and says what to do with
// it.
func (t *table) admit(req *Request) admission {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clients[req.Client]
	if c != nil {
		t.touch(c)
		t.ack(c, req.Ack)
		if e := c.calls[req.ID]; e != nil {
			a := admission{e: e, epoch: c.epoch, client: c}
			switch {
			case e.ended:
				resp := e.resp
				a.resp = &resp
			case e.done == nil:
				e.done = make(chan struct{})
				fallthrough
			default:
				a.done = e.done
			}
			return a
		}
	}
	switch {
	case c != nil && req.ID < c.ack:
		return t.refuse(c, failure(Aborted, OutcomeUnknown, "call %d ended for its client (its Ack is %d), and its answer is forgotten", req.ID, c.ack))
	case req.Epoch != 0 && (c == nil || c.epoch != req.Epoch):
		if c == nil {
			c = t.newClient(req)
		}
		return t.refuse(c, failure(Aborted, OutcomeUnknown, "the server forgot this client since call %d was first sent, and cannot say whether it ran", req.ID))
	case req.Epoch == 0 && req.Attempt > 1:
		return t.refuse(c, failure(Aborted, OutcomeUnknown, "attempt %d of call %d, which the server has no record of", req.Attempt, req.ID))
	}
	if c == nil {
		c = t.newClient(req)
		if c == nil {
			return admission{refusal: failure(ResourceExhausted, NotRun, "the server's table of calls is full")}
		}
	}
	if req.ID-c.ack >= t.window {
		return t.refuse(c, failure(ResourceExhausted, NotRun, "call %d is %d calls past its client's Ack %d; the server keeps %d calls per client", req.ID, req.ID-c.ack, c.ack, t.window))
	}
	if !t.makeRoom(entryBytes, c) {
		return t.refuse(c, failure(ResourceExhausted, NotRun, "the server's table of calls is full"))
	}
	e := &entry{}
	c.calls[req.ID] = e
	c.running++
	t.charge(c, entryBytes)
	return admission{e: e, run: true, epoch: c.epoch, client: c}
}

// refuse returns an admission that answers with err at once.
func (t *table) refuse(c *clientCalls, err *Error) admission {
	a := admission{refusal: err}
	if c != nil {
		a.epoch = c.epoch
	}
	return a
}

// newClient remembers the client of req, with a new epoch, if there is
// room, and returns it; or nil if there is not. t.mu is held.
func (t *table) newClient(req *Request) *clientCalls {
	if !t.makeRoom(clientBytes, nil) {
		return nil
	}
	t.epoch++
	if t.epoch == 0 {
		t.epoch++ // 0 means "no epoch"
	}
	c := &clientCalls{id: req.Client, epoch: t.epoch, ack: req.Ack, calls: map[uint64]*entry{}}
	t.clients[c.id] = c
	t.link(c)
	t.charge(c, clientBytes)
	return c
}

// ack forgets the calls of c below ack, if it is later than c's. A call
// still running is forgotten too: its client has given it up. t.mu is
// held.
func (t *table) ack(c *clientCalls, ack uint64) {
	if ack <= c.ack {
		return
	}
	c.ack = ack
	for id, e := range c.calls {
		if id < ack {
			delete(c.calls, id)
			t.charge(c, -t.cost(e))
		}
	}
}

// cost is what e counts in the budget: entryBytes, and its answer's
// strings once stored. t.mu is held.
func (t *table) cost(e *entry) int64 {
	n := int64(entryBytes)
	if e.stored {
		n += int64(len(e.resp.Error) + len(e.resp.Data.Str))
	}
	return n
}

// finish stores resp as the answer of the call e, run for client c, and
// ends it: the attempts waiting for it are answered. An answer that says
// the call did not run is not kept: the call may be sent again. An answer
// that there is no room for is not kept either: a later attempt will hear
// that its outcome is unknown.
func (t *table) finish(c *clientCalls, id uint64, e *entry, resp Response) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.running--
	e.stop = nil
	e.ended = true
	e.resp = resp
	if c.calls[id] == e && !c.forgotten {
		size := int64(len(resp.Error) + len(resp.Data.Str))
		switch {
		case !resp.Ran:
			delete(c.calls, id)
			t.charge(c, -entryBytes)
		case t.makeRoom(size, c):
			e.stored = true
			t.charge(c, size)
		default:
			e.resp = Response{Code: Aborted, Error: "the call ran, and the server had no room to keep its answer"}
		}
	}
	if e.done != nil {
		close(e.done)
	}
}

// hello returns the answer to a hello from client: its epoch, remembering
// the client if it is new; or a refusal, with ID 0, if there is no room.
func (t *table) hello(client uint64) Response {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clients[client]
	if c == nil {
		if c = t.newClient(&Request{Client: client}); c == nil {
			return newResponse(nil, failure(ResourceExhausted, NotRun, "the server's table of calls is full; closing the connection"))
		}
	}
	t.touch(c)
	return Response{Epoch: c.epoch}
}

// running records stop as the way to cancel the call e while it runs.
func (t *table) running(e *entry, stop context.CancelFunc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.stop = stop
}

// answer returns the answer of e, which has ended.
func (t *table) answer(e *entry) Response {
	t.mu.Lock()
	defer t.mu.Unlock()
	return e.resp
}

// cancel cancels the function's context of call id of client, if it is
// running.
func (t *table) cancel(client, id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.clients[client]; c != nil {
		if e := c.calls[id]; e != nil && e.stop != nil {
			e.stop()
		}
	}
}

// makeRoom forgets clients, the longest unused first, until n more bytes
// fit in the budget, and reports whether they do. It never forgets keep,
// or a client with a call running. t.mu is held.
func (t *table) makeRoom(n int64, keep *clientCalls) bool {
	for c := t.recent.prev; t.held+n > t.max && c != &t.recent; {
		prev := c.prev
		if c != keep && c.running == 0 {
			t.forget(c)
		}
		c = prev
	}
	return t.held+n <= t.max
}

// forget drops c and every call it remembers. t.mu is held.
func (t *table) forget(c *clientCalls) {
	delete(t.clients, c.id)
	c.prev.next, c.next.prev = c.next, c.prev
	t.held -= c.held
	c.held = 0
	c.calls = nil
	c.forgotten = true
	t.forgot++
}

// charge adds n bytes to what c and the table hold. t.mu is held.
func (t *table) charge(c *clientCalls, n int64) {
	c.held += n
	t.held += n
}

// link puts c at the front of the ring of recent use. t.mu is held.
func (t *table) link(c *clientCalls) {
	c.prev, c.next = &t.recent, t.recent.next
	c.prev.next, c.next.prev = c, c
}

// touch moves c to the front of the ring of recent use. t.mu is held.
func (t *table) touch(c *clientCalls) {
	c.prev.next, c.next.prev = c.next, c.prev
	t.link(c)
}
