package customproto

// What goes wrong in the article's version, each flaw a test. The flaws of
// the article's form run in Go: the bytes the article's client would send,
// and what the article's own code makes of the answer. Those that need the
// article's side, the server of testdata/article_server.py or the client
// of testdata/article_client.py, skip when python3 is missing, like the
// interop tests, unless RPC_INTEROP=required.

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestArticleFlawNegativeNumber sends sum(-5, 2) in the article's form. The
// article's server splits each argument on every "-", so it reads "1--5" as
// type 1, value "" and fails; ours cuts at the first "-" only.
func TestArticleFlawNegativeNumber(t *testing.T) {
	conn, _ := rawConn(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	legacyCall(t, conn, "func:sum@params:1--5,1-2", "data:-3")
}

// TestArticleFlawCommaInString echoes "a,b" in both forms. The article's
// form has no escaping, so the comma splits the string into two arguments,
// the second without a type code; the framed form escapes it as %2C.
func TestArticleFlawCommaInString(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))

	conn, _ := rawConn(t, addr)
	legacyCall(t, conn, "func:echo@params:3-a,b",
		`error:argument 2: "b" has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)`)

	got, err := dial(t, addr).Echo(t.Context(), "a,b")
	require.NoError(t, err)
	assert.Equal(t, "a,b", got)
}

// TestArticleFlawMergedMessages writes two calls in one write, as TCP may
// deliver them. In the article's form they are one message to the server,
// which cannot parse it; the second call is never answered, so the next
// answer on the connection belongs to the third. Framed, each is answered.
func TestArticleFlawMergedMessages(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))

	conn, _ := rawConn(t, addr)
	legacyCall(t, conn, "func:sum@params:1-1,1-2func:sum@params:1-3,1-4",
		`error:argument 2: "2func:sum@params:1-3" is not an int`)
	legacyCall(t, conn, "func:sum@params:1-5,1-6", "data:11")

	conn, answers := rawConn(t, addr)
	write(t, conn, "23 func:sum@params:1-1,1-2\n23 func:sum@params:1-3,1-4\n")
	assert.Equal(t, "data:1-3", nextAnswer(t, answers))
	assert.Equal(t, "data:1-7", nextAnswer(t, answers))
}

// TestArticleFlawSplitMessage writes one call in two pieces, and waits for
// the server to answer the first piece before it sends the second. In the
// article's form each piece is a message, and each is refused. Framed, the
// server waits for the whole frame.
func TestArticleFlawSplitMessage(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))

	conn, _ := rawConn(t, addr)
	legacyCall(t, conn, "func:sum@par", `error:after "@" comes "params:", not "par"`)
	legacyCall(t, conn, "ams:1-1,1-2", `error:a call starts with "func:", not "ams:1-1,1-2"`)

	conn, answers := rawConn(t, addr)
	write(t, conn, "23 func:sum@par")
	write(t, conn, "ams:1-1,1-2\n")
	assert.Equal(t, "data:1-3", nextAnswer(t, answers))
}

// TestArticleFlawTimeCutAtColon reproduces the article's own output:
// its client splits the answer "data:Wed Jan 16 22:05:31 2019" on ":" and
// keeps the second piece, "Wed Jan 16 22". Our client reads the whole time.
func TestArticleFlawTimeCutAtColon(t *testing.T) {
	addr := serve(t, newStoppedClockServer(t), rpctest.Listen(t))

	conn, _ := rawConn(t, addr)
	write(t, conn, "func:get_time")
	answer := make([]byte, 2048)
	n, err := conn.Read(answer) // the article's recv(2048)
	require.NoError(t, err)
	articleResult := strings.Split(string(answer[:n]), ":")[1] // the article's unpack
	assert.Equal(t, "Wed Jan 16 22", articleResult)

	got, err := dial(t, addr).Call(t.Context(), "get_time")
	require.NoError(t, err)
	assert.Equal(t, "Wed Jan 16 22:05:31 2019", got)
}

// TestArticleFlawClientReadsOnce echoes 3000 bytes with the article's
// client. Its one recv(2048) gets part of the answer, which it returns as if
// it were the whole.
func TestArticleFlawClientReadsOnce(t *testing.T) {
	addr := serve(t, NewDemoServer(), rpctest.Listen(t))
	big := strings.Repeat("x", 3000)
	lines := runPython(t, articleClient, addr, calls(t, []any{"echo", []any{big}}))
	require.Len(t, lines, 1)
	answer, result, ok := strings.Cut(lines[0], " -> ")
	require.True(t, ok, lines[0])
	assert.LessOrEqual(t, len(answer), 2048+2, "the answer as one recv(2048) returned it, quoted")
	assert.Less(t, len(result), len(big)+2, "the result is cut")

	got, err := dial(t, addr).Echo(t.Context(), big)
	require.NoError(t, err)
	assert.Equal(t, big, got)
}

// TestArticleFlawErrorLooksLikeData makes calls in the article's form that
// go wrong on the article's server: a function it lacks, a comma in a str,
// a negative number. To each it answers "data:" and a string, which a
// client cannot tell from a result. Ours answers "error:" and the reason,
// or, for the negative number, the sum.
func TestArticleFlawErrorLooksLikeData(t *testing.T) {
	// One connection each: the article's server serves one at a time.
	article, _ := rawConn(t, startArticleServer(t))
	srv := NewDemoServer()
	ours, _ := rawConn(t, serve(t, srv, rpctest.Listen(t)))
	for _, tt := range []struct{ call, ours string }{
		{"func:sub@params:1-3,1-1", `error:no function "sub"; there are: ` + functionList(t, srv)},
		{"func:echo@params:3-a,b", `error:argument 2: "b" has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)`},
		{"func:sum@params:1--5,1-2", "data:-3"},
	} {
		legacyCall(t, article, tt.call, "data:RPC Server Function Error")
		legacyCall(t, ours, tt.call, tt.ours)
	}
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
			conn, _ := rawConn(t, tt.addr)
			if tt.blocked {
				// For the article's server the deadline is the outcome:
				// it never answers while the silent client waits.
				require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Second)))
			}
			write(t, conn, "func:sum@params:1-1,1-2")
			answer := make([]byte, len("data:3"))
			_, err := conn.Read(answer)
			if tt.blocked {
				assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			} else {
				require.NoError(t, err)
				assert.Equal(t, "data:3", string(answer))
			}
		})
	}
}
