package customproto

import (
	"bytes"
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
// answer bytes for the article's requests, in both forms, for odd ways of
// sending them, and for bad input.
//
// Each case has a connection of its own. After its writes the test closes
// its sending half, so the server reads to the end, answers what it got,
// and closes; the transcript then holds every answer, however many.
func TestWire(t *testing.T) {
	srv := newStoppedClockServer(t)
	srv.MaxRequestBytes = 200
	addr := serve(t, srv, rpctest.Listen(t))

	tests := []struct {
		name   string
		writes []string // each one conn.Write
	}{
		{"the article's sum(1, 2), in the article's form", []string{"func:sum@params:1-1,1-2"}},
		{"the article's sum(1.1, 2)", []string{"func:sum@params:2-1.1,1-2"}},
		{"the article's get_time()", []string{"func:get_time"}},
		{"a negative number, which the article's server cannot read", []string{"func:sum@params:1--5,1-2"}},
		{"a comma in a str, in the article's form", []string{"func:echo@params:3-a,b"}},
		{"two calls in one read, in the article's form", []string{"func:get_timefunc:get_time"}},
		{"an unknown function, in the article's form", []string{"func:sub@params:1-3,1-1"}},
		{"larger than the limit (200 bytes here), in the article's form: answered, then closed",
			[]string{"func:echo@params:3-" + strings.Repeat("x", 300)}},
		{"sum(1, 2), framed", []string{"23 func:sum@params:1-1,1-2\n"}},
		{"get_time(), framed: the time keeps its colons", []string{"13 func:get_time\n"}},
		{"a comma and the other awkward bytes in a str, framed",
			[]string{"49 func:echo@params:3-a%2Cb-c:d%40e%25f%0A中文 ✓\n"}},
		{"three calls in one write", []string{"23 func:sum@params:1-1,1-2\n25 func:sum@params:2-1.1,1-2\n13 func:get_time\n"}},
		{"one call in three writes", []string{"2", "3 func:sum@par", "ams:1-1,1-2\n"}},
		{"unknown function", []string{"23 func:sub@params:1-3,1-1\n"}},
		{"unknown type code", []string{"23 func:sum@params:9-1,1-2\n"}},
		{"a value that does not parse", []string{"23 func:sum@params:1-x,1-2\n"}},
		{"wrong argument count", []string{"19 func:sum@params:1-1\n"}},
		{"a bad escape: answered, the connection goes on",
			[]string{"22 func:echo@params:3-%zz\n", "23 func:sum@params:1-1,1-2\n"}},
		{"a frame whose length is wrong: answered, then closed", []string{"22 func:sum@params:1-1,1-2\n"}},
		{"larger than the limit, framed: refused from the length alone", []string{"5000 func:echo@params:3-xxx"}},
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
			_, err := io.WriteString(conn, w)
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
	assert.NotContains(t, string(got), "panic")
}
