package atmostonce

import (
	"runtime"
	"slices"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attempt returns the request of an attempt of call id of client.
func attempt(client, id uint64, n uint32, epoch, ack uint64) *Request {
	return &Request{ID: id, Func: "incr", Client: client, Attempt: n, Epoch: epoch, Ack: ack}
}

// ran is the answer of a call that ran and returned n.
func ran(n int) Response { return Response{Data: Value{Type: typeInt, Int: n}, Ran: true} }

// admitAndFinish admits req, which must run, and finishes it with resp.
// It returns the client's epoch.
func admitAndFinish(t *testing.T, tab *table, req *Request, resp Response) uint64 {
	t.Helper()
	a := tab.admit(req)
	require.Nil(t, a.refusal)
	require.True(t, a.run, "call %d of client %d should run", req.ID, req.Client)
	tab.finish(a.client, req.ID, a.e, resp)
	return a.epoch
}

// refusal returns the refusal of req, which must be refused.
func refusal(t *testing.T, tab *table, req *Request) *Error {
	t.Helper()
	a := tab.admit(req)
	require.NotNil(t, a.refusal, "call %d of client %d, attempt %d, should be refused", req.ID, req.Client, req.Attempt)
	return a.refusal
}

// TestTableJoinsAndAnswersAgain: an attempt of a call that runs waits for
// it; one of a call that ran gets its answer; neither runs it again.
func TestTableJoinsAndAnswersAgain(t *testing.T) {
	tab := newTable(1<<20, 16)
	first := tab.admit(attempt(7, 1, 1, 0, 1))
	require.True(t, first.run)
	second := tab.admit(attempt(7, 1, 2, 0, 1))
	require.False(t, second.run, "a retry of a running call joins it")
	require.Same(t, first.e, second.e)
	require.NotNil(t, second.done)
	select {
	case <-second.done:
		t.Fatal("the call has not ended")
	default:
	}
	tab.finish(first.client, 1, first.e, ran(42))
	<-second.done
	assert.Equal(t, ran(42), tab.answer(second.e))
	third := tab.admit(attempt(7, 1, 3, first.epoch, 1))
	require.False(t, third.run)
	require.NotNil(t, third.resp)
	assert.Equal(t, ran(42), *third.resp, "a later attempt gets the stored answer")
}

// TestTableVouches checks when the table runs a call it has no record of:
// only when it cannot have run before. After the client is forgotten (to
// make room), its calls sent before are never run, and it gets a new
// epoch; calls sent under the new epoch run.
func TestTableVouches(t *testing.T) {
	tab := newTable(3*(clientBytes+entryBytes), 1024)
	epoch := admitAndFinish(t, tab, attempt(7, 1, 1, 0, 1), ran(1))
	require.NotZero(t, epoch)

	// A retry that the table has no record of, from a client that knew no
	// epoch: it may have run under an epoch the server has forgotten.
	e := refusal(t, tab, attempt(7, 2, 2, 0, 1))
	assert.Equal(t, Aborted, e.Code)
	assert.Equal(t, OutcomeUnknown, e.Outcome)
	// A retry under the client's epoch, with no record: its first attempt
	// never arrived, and it runs.
	admitAndFinish(t, tab, attempt(7, 3, 2, epoch, 1), ran(3))

	// Other clients' calls make the table forget client 7.
	for client := uint64(100); client < 110; client++ {
		admitAndFinish(t, tab, attempt(client, 1, 1, 0, 1), ran(1))
	}
	require.NotContains(t, tab.clients, uint64(7), "client 7 was forgotten")
	assert.Positive(t, tab.forgot)

	// Its retry of call 1 cannot be vouched for, and is not run.
	e = refusal(t, tab, attempt(7, 1, 2, epoch, 1))
	assert.Equal(t, Aborted, e.Code)
	assert.Equal(t, OutcomeUnknown, e.Outcome)
	// Nor is a first attempt sent under the old epoch: it may be late,
	// sent before a retry of it ran and was forgotten. The refusal gives
	// the client its new epoch.
	a := tab.admit(attempt(7, 4, 1, epoch, 1))
	require.NotNil(t, a.refusal)
	assert.Equal(t, Aborted, a.refusal.Code)
	newEpoch := a.epoch
	assert.NotEqual(t, epoch, newEpoch)
	// A call sent under the new epoch runs.
	admitAndFinish(t, tab, attempt(7, 4, 2, newEpoch, 1), ran(4))
	// Below the Ack, nothing runs.
	admitAndFinish(t, tab, attempt(7, 5, 1, newEpoch, 5), ran(5))
	e = refusal(t, tab, attempt(7, 4, 3, newEpoch, 5))
	assert.Equal(t, Aborted, e.Code)
}

// TestTableKeepsNoRefusal: an answer that says the call did not run is
// not kept, so the call may run on a later attempt.
func TestTableKeepsNoRefusal(t *testing.T) {
	tab := newTable(1<<20, 16)
	a := tab.admit(attempt(7, 1, 1, 0, 1))
	require.True(t, a.run)
	tab.finish(a.client, 1, a.e, Response{Code: DeadlineExceeded, Error: "no time left"})
	assert.Equal(t, int64(clientBytes), tab.held, "the refusal holds nothing")
	admitAndFinish(t, tab, attempt(7, 1, 2, a.epoch, 1), ran(1))
}

// TestTableWindow: a client's calls run from its Ack to less than Ack
// plus the window; beyond it, a call is refused before it runs. The Ack
// moves the window and forgets what is below it.
func TestTableWindow(t *testing.T) {
	tab := newTable(1<<20, 4)
	var epoch uint64
	for id := uint64(1); id <= 4; id++ {
		epoch = admitAndFinish(t, tab, attempt(7, id, 1, epoch, 1), ran(int(id)))
	}
	e := refusal(t, tab, attempt(7, 5, 1, epoch, 1))
	assert.Equal(t, ResourceExhausted, e.Code)
	assert.Equal(t, NotRun, e.Outcome)
	admitAndFinish(t, tab, attempt(7, 5, 1, epoch, 3), ran(5))
	assert.Len(t, tab.clients[7].calls, 3, "calls 1 and 2 are forgotten")
	assert.Equal(t, int64(clientBytes+3*entryBytes), tab.held)
}

// TestTableBudget: the table never holds more than its budget, whatever
// comes; clients with a call running are kept, and when only they are
// left, a new call is refused before it runs; an answer there is no room
// for is not kept, and a later attempt hears its outcome is unknown.
func TestTableBudget(t *testing.T) {
	max := int64(2*clientBytes + 3*entryBytes)
	tab := newTable(max, 16)
	running := tab.admit(attempt(1, 1, 1, 0, 1))
	require.True(t, running.run)
	busy := tab.admit(attempt(2, 1, 1, 0, 1))
	require.True(t, busy.run)
	e := refusal(t, tab, attempt(3, 1, 1, 0, 1))
	assert.Equal(t, ResourceExhausted, e.Code)
	assert.Equal(t, NotRun, e.Outcome)
	assert.LessOrEqual(t, tab.held, max)

	big := Response{Data: Value{Type: typeStr, Str: string(make([]byte, 4*entryBytes))}, Ran: true}
	tab.finish(running.client, 1, running.e, big)
	assert.LessOrEqual(t, tab.held, max)
	again := tab.admit(attempt(1, 1, 2, running.epoch, 1))
	require.False(t, again.run)
	require.NotNil(t, again.resp)
	assert.Equal(t, Aborted, answerError(again.resp).Code)
	assert.Equal(t, OutcomeUnknown, answerError(again.resp).Outcome)
	tab.finish(busy.client, 1, busy.e, ran(1))
}

// TestTableMillionClients sends a first call from each of a million
// clients that never come back, with a budget of 1 MiB: the table
// forgets the oldest, holds no more than its budget, and the heap grows
// by about that much, not by a million clients' worth.
func TestTableMillionClients(t *testing.T) {
	const budget = 1 << 20
	clients := 1_000_000
	if testing.Short() || rpctest.RaceEnabled {
		clients = 100_000
	}
	tab := newTable(budget, 1024)
	before := heapAlloc()
	for client := range uint64(clients) {
		a := tab.admit(attempt(client+1, 1, 1, 0, 1))
		require.True(t, a.run)
		tab.finish(a.client, 1, a.e, ran(1))
		if tab.held > budget {
			t.Fatalf("after %d clients the table holds %d bytes, over its budget", client+1, tab.held)
		}
	}
	grew := int64(heapAlloc()) - int64(before)
	kept := len(tab.clients)
	t.Logf("%d clients: %d kept, %d forgotten; %d bytes counted; the heap grew %d bytes", clients, kept, tab.forgot, tab.held, grew)
	assert.Equal(t, int64(clients-kept), tab.forgot)
	assert.Equal(t, budget/(clientBytes+entryBytes), kept)
	assert.Less(t, grew, int64(2*budget), "the heap grew by more than twice the budget")
	runtime.KeepAlive(tab)
}

// TestTableBytesPerCall measures what a remembered client and call cost
// on the heap, and checks that the counts the budget uses, clientBytes and
// entryBytes, are not less.
func TestTableBytesPerCall(t *testing.T) {
	const n = 20_000
	tab := newTable(1<<40, n+1)
	before := heapAlloc()
	for client := range uint64(n) {
		admitAndFinish(t, tab, attempt(client+1, 1, 1, 0, 1), ran(1))
	}
	perClient := (int64(heapAlloc()) - int64(before)) / n
	before = heapAlloc()
	var epoch uint64
	for id := range uint64(n) {
		epoch = admitAndFinish(t, tab, attempt(n+1, id+1, 1, epoch, 1), ran(1))
	}
	perCall := (int64(heapAlloc()) - int64(before)) / n
	t.Logf("a client with one call: %d bytes (counted %d); a call more: %d bytes (counted %d)",
		perClient, clientBytes+entryBytes, perCall, entryBytes)
	assert.LessOrEqual(t, perClient, int64(clientBytes+entryBytes))
	assert.LessOrEqual(t, perCall, int64(entryBytes))
	runtime.KeepAlive(tab)
}

// heapAlloc returns the bytes of live heap, after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestServerTableAttacks sends through a server, on one connection, what
// a hostile peer would: a first call from each of 20,000 client ids that
// never come back, then 2,000 calls of one client that never acks. The
// server's table holds no more than its budget, 256 KiB: it forgets the
// oldest clients to keep the calls of the newest, and once only that
// client is left, refuses its calls before they run (its window, 1,024
// calls, is more than the budget holds). The heap grows by no more than
// the budget and the answers in flight, whatever the count of clients.
func TestServerTableAttacks(t *testing.T) {
	const budget = 256 << 10
	srv := NewDemoServer(Service{})
	srv.MaxTableBytes = budget
	conn, answers := rawConn(t, serve(t, srv, rpctest.Listen(t)))
	before := heapAlloc()
	requests := newEncoder() // one gob stream, over every batch
	codes := map[Code]int{}
	send := func(reqs []Request) {
		t.Helper()
		var frames []byte
		for i := range reqs {
			var err error
			frames, err = requests.encode(&reqs[i])
			require.NoError(t, err)
		}
		frames = slices.Clone(frames)
		requests.release()
		go func() { _, _ = conn.Write(frames) }()
		for range reqs {
			var resp Response
			require.NoError(t, answers.decode(&resp))
			codes[resp.Code]++
		}
	}
	const clients = 20_000
	for start := 0; start < clients; start += 1000 {
		var reqs []Request
		for i := start; i < start+1000; i++ {
			req := call(t, "add", i, 1)
			req.ID, req.Client, req.Attempt, req.Ack = 1, uint64(i+1), 1, 1
			reqs = append(reqs, req)
		}
		send(reqs)
	}
	var reqs []Request
	for id := range uint64(2000) {
		req := call(t, "add", 1, 2)
		req.ID, req.Client, req.Attempt, req.Ack = id+1, clients+1, 1, 1
		reqs = append(reqs, req)
	}
	codes = map[Code]int{}
	send(reqs[:1000])
	send(reqs[1000:])
	grew := int64(heapAlloc()) - int64(before)

	srv.table.mu.Lock()
	defer srv.table.mu.Unlock()
	t.Logf("table: %d clients kept, %d forgotten, %d bytes counted; heap grew %d bytes", len(srv.table.clients), srv.table.forgot, srv.table.held, grew)
	assert.LessOrEqual(t, srv.table.held, int64(budget))
	assert.Positive(t, srv.table.forgot, "the oldest clients were forgotten")
	never := srv.table.clients[clients+1]
	require.NotNil(t, never, "the client that never acks is the newest: kept")
	kept := (budget - clientBytes) / entryBytes
	assert.Equal(t, kept, len(never.calls), "the calls of the client that never acks that the budget holds")
	assert.Equal(t, map[Code]int{OK: kept, ResourceExhausted: 2000 - kept}, codes, "the rest refused, not run")
	assert.Less(t, grew, int64(4*budget), "the heap grew by more than four times the table's budget")
}
