package jsontcp

// What goes wrong in the articles' version, each flaw a test that runs one
// check against the article's side and ours: the server of
// testdata/article_server.py, or the client of testdata/article_client.py.
// Like the interop tests, they skip when python3 is missing, unless
// RPC_INTEROP=required.

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startArticleServerProcess is startArticleServer for a test that needs to
// see the server die.
func startArticleServerProcess(t *testing.T) *rpctest.Process {
	py := rpctest.Python(t)
	return rpctest.StartProcess(t, exec.Command(py, articleServer, "0"))
}

// serverDied checks that the server process has ended.
func serverDied(t *testing.T, p *rpctest.Process) {
	t.Helper()
	rpctest.Receive(t, p.Exited, "end of the server at "+p.Addr)
}

// TestArticleFlawLargeRequest sends a request longer than the article's
// recv(1024). Our server answers it; the article's reads the first 1024
// bytes, fails to parse them, and dies.
func TestArticleFlawLargeRequest(t *testing.T) {
	big := strings.Repeat("x", 5000)

	ours := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	got, err := ours.Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)

	article := startArticleServerProcess(t)
	_, err = dial(t, article.Addr).Echo(t.Context(), big)
	require.Error(t, err, "the article's server cannot answer a 5000-byte request")
	serverDied(t, article)
}

// TestArticleFlawStickyPackets writes two requests in one write, as TCP may
// deliver them. Our server answers both, in order; the article's takes both
// for one message, fails to parse it, and dies.
func TestArticleFlawStickyPackets(t *testing.T) {
	two := `{"method_name": "add", "method_args": [1, 2], "method_kwargs": {}}` +
		`{"method_name": "echo", "method_args": ["x"], "method_kwargs": {}}`

	conn, answers := rawConn(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	write(t, conn, two)
	assert.Equal(t, `{"res":13}`, nextAnswer(t, answers))
	assert.Equal(t, `{"res":"x"}`, nextAnswer(t, answers))

	article := startArticleServerProcess(t)
	conn, answers = rawConn(t, article.Addr)
	write(t, conn, two)
	_, err := answers.next()
	assertClosed(t, err)
	serverDied(t, article)
}

// TestArticleFlawClientReadsOnce has the article's client echo 5000 bytes
// from our server: its one recv(1024) gets the first part of the answer
// only, which it returns as if it were the answer.
func TestArticleFlawClientReadsOnce(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	answers := runArticleClient(t, addr, "echo", "5000")
	require.Len(t, answers, 1)
	assert.LessOrEqual(t, len(answers[0]), 1024)
	assert.False(t, json.Valid([]byte(answers[0])), "the article's client returns a cut answer: %.60s...", answers[0])

	got, err := dial(t, addr).Echo(t.Context(), strings.Repeat("x", 5000))
	require.NoError(t, err)
	assert.Len(t, got, 5000)
}

// TestArticleFlawErrorLooksLikeData calls a method that does not exist. The
// article's server answers with a string in "res", which a client cannot
// tell from a result; ours answers with an error.
func TestArticleFlawErrorLooksLikeData(t *testing.T) {
	got, err := dial(t, startArticleServer(t)).Call(t.Context(), "sub", []any{3, 1}, nil)
	require.NoError(t, err, "to a client, the article's refusal is a successful call")
	assert.JSONEq(t, strconv.Quote("Please use the correct function"), string(got))

	_, err = dial(t, serve(t, NewDemoServer(), rpctest.Listen(t))).Call(t.Context(), "sub", []any{3, 1}, nil)
	var serverErr *ServerError
	assert.ErrorAs(t, err, &serverErr)
}

// TestArticleFlawOneClientAtATime opens a connection that sends nothing.
// The article's server waits on it, so nobody else is served; ours serves
// every connection on its own goroutine.
func TestArticleFlawOneClientAtATime(t *testing.T) {
	for _, tt := range []struct {
		name    string
		addr    string
		blocked bool
	}{
		{"ours", serve(t, NewDemoServer(), rpctest.Listen(t)), false},
		{"article's", startArticleServer(t), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rawConn(t, tt.addr) // connects, then says nothing
			c := dial(t, tt.addr)
			wait := rpctest.Backstop
			if tt.blocked {
				// For the article's server the deadline is the outcome:
				// it never answers while the silent client waits.
				wait = time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			_, err := c.Add(ctx, 1, 2, 3)
			if tt.blocked {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}
