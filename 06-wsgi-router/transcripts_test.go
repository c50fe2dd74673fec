package wsgirouter

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/rpc-from-scratch/course/internal/wiretap"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTranscripts makes the exchanges the lesson shows after the demo's,
// on connections tapped as -trace taps them, against the demo application
// on a stopped clock, and compares the transcript with
// testdata/transcripts.golden (the lesson quotes it; -update rewrites it):
//
//   - two pipelined requests in one write, the second asking to close:
//     two answers, in order, then the server closes;
//   - an HTTP/1.0 request: one answer, then the server closes;
//   - a chunked POST, then a GET that promises a body and sends none: one
//     answer, and the test hangs up while the server waits for the body.
func TestTranscripts(t *testing.T) {
	addr := serve(t, newDemoServer(t), rpctest.Listen(t))
	var out bytes.Buffer
	tap := wiretap.New(&out)
	exchange := func(request string, answers int, untilEOF bool) {
		t.Helper()
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conn := tap.Conn(nc)
		defer conn.Close()
		require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
		_, err = io.WriteString(conn, request)
		require.NoError(t, err)
		r := bufio.NewReader(conn)
		for range answers {
			resp, err := http.ReadResponse(r, nil)
			require.NoError(t, err)
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
			resp.Body.Close()
		}
		if untilEOF {
			rest, err := io.ReadAll(r)
			require.NoError(t, err, "the server closes the connection")
			assert.Empty(t, rest, "bytes after the last answer")
		}
	}
	exchange("GET /add?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /api/v1.0/servers/zzz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2, true)
	exchange("GET /time HTTP/1.0\r\n\r\n", 1, true)
	exchange("POST /api/v1.0/servers/beta HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n0\r\n\r\n"+
		"GET /api/v1.0/servers HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", 1, false)
	tap.Flush()
	got := regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(out.Bytes(), []byte("127.0.0.1:PORT"))
	rpctest.Golden(t, filepath.Join("testdata", "transcripts.golden"), got)
}
