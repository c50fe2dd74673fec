package atmostonce

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/rpc-from-scratch/course/internal/wiretap"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWire writes hand-made bytes to a real server and records every byte
// both ways with a Tap. The transcript is testdata/wire.golden: the exact
// answer bytes for the article's calls, for odd ways of sending them, and
// for bad input.
//
// gob's bytes are stable here, so the answers can be golden: gob numbers
// our types when the package starts, and no value holds a map. The tests
// in server_test.go check the same answers decoded.
//
// Each case has a connection of its own, so each transcript starts a gob
// stream. After its writes the test closes its sending half, so the server
// reads to the end, answers what it got, and closes.
//
// Calls run side by side, so the order of their answers is up to the
// scheduler. The transcript must not be: the server's hooks make each
// call's answer wait until the answer to the call before it has been
// written, or, in the case that shows answers crossing, make call 1 wait
// until the answer to call 2 has been written.
func TestWire(t *testing.T) {
	srv := newStoppedClockServer(t)
	srv.MaxRequestBytes = 250 // our first frame, 225 bytes, fits
	// The table's epochs start at a random number: fixed here, the first
	// client the table meets has epoch 7.
	srv.mu.Lock()
	srv.setDefaults()
	srv.init()
	srv.table.epoch = 6
	srv.mu.Unlock()
	written := newWrittenIDs(t)
	var cross atomic.Bool // the case being run makes call 1 wait for call 2
	srv.beforeAnswer = func(req *Request) {
		switch {
		case cross.Load() && req.ID == 1:
			written.wait(2)
		case cross.Load() && req.ID == 2:
		case req.ID > 1:
			written.wait(req.ID - 1)
		}
	}
	srv.answerWritten = written.done
	addr := serve(t, srv, rpctest.Listen(t))

	sumFloat := unhex(`
		00 00 00 1f 1e ff 80 01 02 01 03 73 75 6d 01 02            // a Request, ID 2, Func "sum", 2 Params:
		01 02 02 f8 9a 99 99 99 99 99 f1 3f 00                     //   Type 2, Float 1.1, end
		01 01 01 04 00 00                                          //   Type 1, Int 2, end; end
	`)
	getTime := unhex(`00 00 00 10  0f ff 80 01 03 01 08 67 65 74 5f 74 69 6d 65 00`) // ID 3, Func "get_time", no Params
	// Call 2 of a client, as its first attempt: sumAttempt's fields, and
	// the table's.
	tableCall := sumAttempt
	tableCall.ID, tableCall.Attempt = 2, 1
	again := tableCall
	again.Attempt = 2
	tableFrames := encodeFrames(t, &sumRequest, &tableCall, &again)
	tests := []struct {
		name   string
		writes [][]byte // each one conn.Write
		cross  bool     // call 1's answer waits until call 2's is written
		// between, if set, is the ID of an answer that must be written
		// before the next write is made.
		between uint64
		// waits, if set, is the ID of the answer that must be written
		// before each write after the first: one ID a write.
		waits []uint64
	}{
		{name: "sum(1, 2): the first frame defines Request, []Value and Value; the answer carries the call's ID",
			writes: [][]byte{sumFirstFrame}},
		{name: "sum(1, 2), sum(1.1, 2) and get_time() in one write, calls 1, 2 and 3",
			writes: [][]byte{join(sumFirstFrame, sumFloat, getTime)}},
		{name: "answers cross: call 1, sum(1, 2), is held until the answer to call 2, sum(1.1, 2), has been written",
			writes: [][]byte{join(sumFirstFrame, sumFloat)}, cross: true},
		{name: "one frame in three writes",
			writes: [][]byte{sumFirstFrame[:2], sumFirstFrame[2:70], sumFirstFrame[70:]}},
		{name: "refused calls are answered, each with its ID, and the connection goes on", writes: [][]byte{join(
			sumFirstFrame,
			unhex(`00 00 00 17  16 ff 80 01 02 01 03 73 75 62 01 02 01 01 01 06 00 01 01 01 02 00 00`), // 2: sub(3, 1)
			unhex(`00 00 00 12  11 ff 80 01 03 01 03 73 75 6d 01 01 01 01 01 02 00 00`),                // 3: sum(1)
			unhex(`00 00 00 17  16 ff 80 01 04 01 03 73 75 6d 01 02 01 09 01 02 00 01 01 01 04 00 00`), // 4: type code 9
			unhex(`00 00 00 13  12 ff 80 01 05 01 04 65 63 68 6f 01 01 01 03 01 02 00 00`),             // 5: echo: Type 3, Int 1
			unhex(`00 00 00 17  16 ff 80 01 06`+sumFields),                                             // 6: sum(1, 2)
		)}},
		{name: "a frame cut short: nothing to answer, then closed", writes: [][]byte{sumFirstFrame[:100]}},
		{name: "a zero length: answered with ID 0, no call's, then closed", writes: [][]byte{{0, 0, 0, 0}}},
		{name: "calls through the table, each sent once the answer before it is written: call 2 of client 0x0123456789abcdef, attempt 1, Ack 1, 1.5 s left, answered with Ran and the client's Epoch, 7; attempt 2 of call 3, which the server never saw: Aborted, with the Epoch, as the server cannot say whether attempt 1 ran; attempt 2 of call 2, answered from the table, not run again",
			writes: [][]byte{sumFirstFrame, tableFrames[1], sumAttemptFrame, tableFrames[2]},
			waits:  []uint64{1, 2, 3}},
		{name: "larger than the limit (250 bytes here): refused from the length alone, with ID 0",
			writes: [][]byte{[]byte("\x00\x00\x13\x88xxxxxxxx")}},
		{name: "a 4 GiB length", writes: [][]byte{[]byte("\xff\xff\xff\xffxxxxxxxx")}},
		{name: "stage 03's framed text, read as a length", writes: [][]byte{[]byte("23 func:sum@params:1-1,1-2\n")}},
		{name: "garbage in a well-sized frame: answered, then closed; the call after it is not read",
			writes: [][]byte{join(frame([]byte("hello, world")), sumFirstFrame)}},
		{name: "a value before its type is defined: the second frame of a stream, sent first; refused with its ID, 2",
			writes: [][]byte{sumLaterFrame}},
		{name: "a foreign client's Request, with one more field, X of type any: refused at its definition, then closed",
			writes: [][]byte{requestWithAnyFrame}},
		{name: "sum(1, 2), answered, then call 2 over the limit (250 bytes here): answered with its ID and dropped as it is read; call 3 is answered on the same connection",
			writes:  [][]byte{sumFirstFrame, join(encodeFrames(t, &sumRequest, withID(call(t, "echo", strings.Repeat("x", 260)), 2))[1], unhex(`00 00 00 17  16 ff 80 01 03`+sumFields))},
			between: 1},
		{name: "sum(1, 2), answered, then call 2 of 65 arguments: refused with its ID before gob builds them, then closed",
			writes:  [][]byte{sumFirstFrame, encodeFrames(t, &sumRequest, &Request{ID: 2, Func: "f", Params: make([]Value, maxArgs+1)})[1]},
			between: 1},
	}
	var transcript bytes.Buffer
	for _, tt := range tests {
		written.reset()
		cross.Store(tt.cross)
		fmt.Fprintf(&transcript, "### %s\n", tt.name)
		tap := wiretap.New(&transcript)
		raw, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, raw.SetDeadline(time.Now().Add(rpctest.Backstop)))
		conn := tap.Conn(raw)
		for i, w := range tt.writes {
			if i > 0 && tt.between != 0 {
				written.wait(tt.between)
			}
			if i > 0 && tt.waits != nil {
				written.wait(tt.waits[i-1])
			}
			_, err := conn.Write(w)
			require.NoError(t, err, tt.name)
		}
		require.NoError(t, raw.(*net.TCPConn).CloseWrite())
		_, err = io.ReadAll(conn)
		if err != nil {
			assertClosed(t, err) // a reset, when the server closed with bytes unread
		}
		tap.Flush()
		require.NoError(t, conn.Close())
		fmt.Fprintln(&transcript)
	}
	got := bytes.ReplaceAll(transcript.Bytes(), []byte(addr), []byte("127.0.0.1:PORT"))
	rpctest.Golden(t, filepath.Join("testdata", "wire.golden"), got)
	assert.NotContains(t, strings.ToLower(string(got)), "panic")
}

// requestWithAnyFrame is our client's first frame for sum(1, 2), but for
// one more field in the definition of Request: X, of gob's interface type.
// A foreign gob client whose Request has an X any writes this.
var requestWithAnyFrame = unhex(`
	00 00 00 e7                          // the frame: 231 bytes follow
	76 7f                                // a message of 118 bytes, defining type 64:
	03 01 01 07 52 65 71 75 65 73 74     //   a struct named "Request"
	01 ff 80 00                          //   with id 64
	01 0a                                //   and 10 fields:
	01 02 49 44 01 06 00                 //     "ID", of type 3 (uint)
	01 04 46 75 6e 63 01 0c 00           //     "Func", of type 6 (string)
	01 06 50 61 72 61 6d 73 01 ff 84 00  //     "Params", of type 66
	01 06 43 6c 69 65 6e 74 01 06 00     //     "Client", of type 3 (uint)
	01 07 41 74 74 65 6d 70 74 01 06 00  //     "Attempt", of type 3 (uint)
	01 03 41 63 6b 01 06 00              //     "Ack", of type 3 (uint)
	01 05 45 70 6f 63 68 01 06 00        //     "Epoch", of type 3 (uint)
	01 07 54 69 6d 65 6f 75 74 01 04 00  //     "Timeout", of type 2 (int)
	01 06 43 61 6e 63 65 6c 01 02 00     //     "Cancel", of type 1 (bool)
	01 01 58 01 10 00                    //     "X", of type 8 (interface)
	00 00
` + hex.EncodeToString(sumFirstFrame[frameHeaderBytes+requestDefBytes:]))

// writtenIDs records the IDs of the answers a server has written, through
// its answerWritten hook, so that a test can wait for one. Safe for use by
// many goroutines.
type writtenIDs struct {
	t       testing.TB
	mu      sync.Mutex               // protects written
	written map[uint64]chan struct{} // closed once the answer with that ID is written
}

func newWrittenIDs(t testing.TB) *writtenIDs {
	return &writtenIDs{t: t, written: map[uint64]chan struct{}{}}
}

// ch returns the channel of id, made on first use. w.mu is held.
func (w *writtenIDs) ch(id uint64) chan struct{} {
	c, ok := w.written[id]
	if !ok {
		c = make(chan struct{})
		w.written[id] = c
	}
	return c
}

// done records that the answer with ID id has been written: the
// server's answerWritten.
func (w *writtenIDs) done(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.ch(id):
	default:
		close(w.ch(id))
	}
}

// wait returns once the answer with ID id has been written, or fails the
// test after rpctest.Backstop, which only a broken server takes.
func (w *writtenIDs) wait(id uint64) {
	w.mu.Lock()
	c := w.ch(id)
	w.mu.Unlock()
	select {
	case <-c:
	case <-time.After(rpctest.Backstop):
		w.t.Errorf("the answer with ID %d was never written", id)
	}
}

// reset forgets every answer written: IDs start again on a new connection.
func (w *writtenIDs) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.written)
}

// join returns the byte slices one after another.
func join(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}
