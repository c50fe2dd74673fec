package asyncrpc

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
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
func TestWire(t *testing.T) {
	srv := newStoppedClockServer(t)
	srv.MaxRequestBytes = 200
	addr := serve(t, srv, rpctest.Listen(t))

	sumFloat := unhex(`
		00 00 00 1d 1c ff 80 01 03 73 75 6d 01 02                  // a Request, Func "sum", 2 Params:
		01 02 02 f8 9a 99 99 99 99 99 f1 3f 00                     //   Type 2, Float 1.1, end
		01 01 01 04 00 00                                          //   Type 1, Int 2, end; end
	`)
	getTime := unhex(`00 00 00 0e  0d ff 80 01 08 67 65 74 5f 74 69 6d 65 00`) // Func "get_time", no Params
	tests := []struct {
		name   string
		writes [][]byte // each one conn.Write
	}{
		{"sum(1, 2): the first frame defines Request, []Value and Value", [][]byte{sumFirstFrame}},
		{"sum(1, 2), sum(1.1, 2) and get_time() in one write", [][]byte{join(sumFirstFrame, sumFloat, getTime)}},
		{"one frame in three writes", [][]byte{sumFirstFrame[:2], sumFirstFrame[2:70], sumFirstFrame[70:]}},
		{"refused calls are answered, and the connection goes on", [][]byte{join(
			sumFirstFrame,
			unhex(`00 00 00 15  14 ff 80 01 03 73 75 62 01 02 01 01 01 06 00 01 01 01 02 00 00`), // sub(3, 1)
			unhex(`00 00 00 10  0f ff 80 01 03 73 75 6d 01 01 01 01 01 02 00 00`),                // sum(1)
			unhex(`00 00 00 15  14 ff 80 01 03 73 75 6d 01 02 01 09 01 02 00 01 01 01 04 00 00`), // type code 9
			unhex(`00 00 00 11  10 ff 80 01 04 65 63 68 6f 01 01 01 03 01 02 00 00`),             // echo: Type 3, Int 1
			sumLaterFrame,
		)}},
		{"a frame cut short: nothing to answer, then closed", [][]byte{sumFirstFrame[:100]}},
		{"a zero length: answered, then closed", [][]byte{{0, 0, 0, 0}}},
		{"larger than the limit (200 bytes here): refused from the length alone", [][]byte{[]byte("\x00\x00\x13\x88xxxxxxxx")}},
		{"a 4 GiB length", [][]byte{[]byte("\xff\xff\xff\xffxxxxxxxx")}},
		{"stage 03's framed text, read as a length", [][]byte{[]byte("23 func:sum@params:1-1,1-2\n")}},
		{"garbage in a well-sized frame: answered, then closed; the call after it is not read",
			[][]byte{join(frame([]byte("hello, world")), sumFirstFrame)}},
		{"a value before its type is defined: the second frame of a stream, sent first", [][]byte{sumLaterFrame}},
		{"a foreign client's Request, with one more field, X of type any: refused at its definition, then closed",
			[][]byte{requestWithAnyFrame}},
		{"sum(1, 2), then a call of 65 arguments: refused before gob builds them, then closed", [][]byte{join(
			sumFirstFrame,
			encodeFrames(t, &sumRequest, &Request{Func: "f", Params: make([]Value, maxArgs+1)})[1],
		)}},
	}
	var transcript bytes.Buffer
	for _, tt := range tests {
		fmt.Fprintf(&transcript, "### %s\n", tt.name)
		tap := wiretap.New(&transcript)
		raw, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, raw.SetDeadline(time.Now().Add(rpctest.Backstop)))
		conn := tap.Conn(raw)
		for _, w := range tt.writes {
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
	00 00 00 9a                          // the frame: 154 bytes follow
	2f 7f                                // a message of 47 bytes, defining type 64:
	03 01 01 07 52 65 71 75 65 73 74     //   a struct named "Request"
	01 ff 80 00                          //   with id 64
	01 03                                //   and 3 fields:
	01 04 46 75 6e 63 01 0c 00           //     "Func", of type 6 (string)
	01 06 50 61 72 61 6d 73 01 ff 84 00  //     "Params", of type 66
	01 01 58 01 10 00                    //     "X", of type 8 (interface)
	00 00
` + hex.EncodeToString(sumFirstFrame[frameHeaderBytes+42:]))

// join returns the byte slices one after another.
func join(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}
