package jsontcp

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

// exactLimit is a call of exactly TestWire's limit, 200 bytes.
var exactLimit = func() string {
	const start, end = `{"method_name": "echo", "method_args": ["`, `"]}`
	return start + strings.Repeat("x", 200-len(start)-len(end)) + end
}()

// TestWire writes hand-made bytes to a real server and records every byte
// both ways with a Tap. The transcript is testdata/wire.golden: the exact
// answer bytes for the article's requests, for odd ways of sending them,
// and for bad input.
func TestWire(t *testing.T) {
	srv := NewDemoServer()
	srv.MaxRequestBytes = 200
	addr := serve(t, srv, rpctest.Listen(t))

	tests := []struct {
		name    string
		writes  []string // each one conn.Write
		answers int      // how many answers to read
		closes  bool     // the server then hangs up
	}{
		{"the request of the JSON-RPC article, byte for byte",
			[]string{`{"method_name": "add", "method_args": [1, 2], "method_kwargs": {"c": 3}}`}, 1, false},
		{"add(1, 2), c by default",
			[]string{`{"method_name": "add", "method_args": [1, 2], "method_kwargs": {}}`}, 1, false},
		{"the other article's test(\"测试项\", kw1=\"1\"), as Python's json.dumps writes it",
			[]string{`{"method_name": "test", "method_args": ["\u6d4b\u8bd5\u9879"], "method_kwargs": {"kw1": "1"}}`}, 1, false},
		{"two requests in one write",
			[]string{`{"method_name": "echo", "method_args": [1]}{"method_name": "echo", "method_args": [2]}`}, 2, false},
		{"one request in three writes",
			[]string{`{"method_name": "ec`, `ho", "method_args": [{"nested": [`, `"}]"]}]}`}, 1, false},
		{"no method_name", []string{`{"method_args": [3, 1]}`}, 1, false},
		{"misspelt field", []string{`{"method_name": "add", "method_arg": [3, 1]}`}, 1, false},
		{"wrong type", []string{`{"method_name": "add", "method_args": [1, "2"]}`}, 1, false},
		{"bad JSON, brackets balanced: answered, connection goes on",
			[]string{`{"method_name": add}`, `{"method_name": "add", "method_args": [1, 2, 3]}`}, 2, false},
		{"a call of exactly the limit (200 bytes here), twice, each with a newline",
			[]string{exactLimit + "\n" + exactLimit + "\n"}, 2, false},
		{"invalid UTF-8: answered, connection goes on",
			[]string{"{\"method_name\": \"echo\", \"method_args\": [\"\xff\"]}", `{"method_name": "echo", "method_args": ["\u00ff"]}`}, 2, false},
		{"half of a surrogate pair: answered, connection goes on",
			[]string{`{"method_name": "echo", "method_args": ["\ud800"]}`}, 1, false},
		{"not a JSON object: answered, then closed", []string{"add(1, 2)\n"}, 1, true},
		{"larger than the limit (200 bytes here): answered, then closed",
			[]string{`{"method_name": "echo", "method_args": ["` + strings.Repeat("x", 300) + `"]}`}, 1, true},
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
		answers := newFrameReader(conn, DefaultMaxMessageBytes)
		for range tt.answers {
			_, err := answers.next()
			require.NoError(t, err, tt.name)
		}
		if tt.closes {
			_, err := answers.next()
			assertClosed(t, err)
			tap.Flush()
			fmt.Fprintln(&transcript, "=== the server closed the connection")
		}
		require.NoError(t, conn.Close())
		fmt.Fprintln(&transcript)
	}
	got := bytes.ReplaceAll(transcript.Bytes(), []byte(addr), []byte("127.0.0.1:PORT"))
	rpctest.Golden(t, filepath.Join("testdata", "wire.golden"), got)
	assert.NotContains(t, string(got), "panic")
}

// TestWireUnknownMethod checks the answer to a call that names no method,
// byte for byte. The answer lists the server's methods, so it is not in
// wire.golden: the list comes from the registry, and a method added to the
// demo server (lesson 02's exercise 1) keeps the test true.
func TestWireUnknownMethod(t *testing.T) {
	srv := NewDemoServer()
	conn, _ := rawConn(t, serve(t, srv, rpctest.Listen(t)))
	write(t, conn, `{"method_name": "sub", "method_args": [3, 1]}`)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite()) // the server answers, then hangs up
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	assert.Equal(t, `{"res":null,"error":"no method 'sub'; there are: `+methodList(t, srv)+`"}`+"\n", string(got))
}

// TestServerRefusesManyValues sends a 1 MiB call of 349,000 empty objects
// to a server configured to take 1 MiB requests. The server used to decode
// all of them, 145 MiB of maps, and answer, and the connection stayed open
// for the next one. Now it refuses the call at its 257th value, says why,
// and closes the connection.
func TestServerRefusesManyValues(t *testing.T) {
	srv := NewDemoServer()
	srv.MaxRequestBytes = 1 << 20
	addr := serve(t, srv, rpctest.Listen(t))
	msg := `{"method_name": "test", "method_args": [` +
		strings.TrimSuffix(strings.Repeat("{},", (1<<20-60)/3), ",") + `]}`
	require.LessOrEqual(t, len(msg), 1<<20)

	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	var answer []byte
	bytes := allocated(func() {
		_, err = io.WriteString(conn, msg)
		require.NoError(t, err)
		answer, err = newFrameReader(conn, DefaultMaxMessageBytes).next()
		require.NoError(t, err)
		_, err = conn.Read(make([]byte, 1))
		assertClosed(t, err)
	})
	assert.Equal(t, `{"res":null,"error":"message too large: more than 256 values; closing the connection"}`, string(answer))
	assert.Less(t, bytes, uint64(8<<20), "client and server together allocated %d bytes", bytes)
}
