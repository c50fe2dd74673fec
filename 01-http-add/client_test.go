package httpadd

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientAdd(t *testing.T) {
	c := NewClient(serve(t, NewServer(), rpctest.Listen(t)))
	defer c.Close()

	for _, tt := range []struct{ a, b, want int }{
		{1, 2, 3},
		{22, 3, 25},
		{-5, 5, 0},
		{math.MaxInt - 1, 1, math.MaxInt},
		{math.MinInt + 1, -1, math.MinInt},
	} {
		got, err := c.Add(t.Context(), tt.a, tt.b)
		require.NoError(t, err, "add(%d, %d)", tt.a, tt.b)
		assert.Equal(t, tt.want, got, "add(%d, %d)", tt.a, tt.b)
	}
}

// TestClientReportsServerError is the article's second flaw, fixed: its stub
// reads the answer with .get("result", 0), so a refused call looks like a
// sum of 0. Ours returns the server's message as an error.
func TestClientReportsServerError(t *testing.T) {
	c := NewClient(serve(t, NewServer(), rpctest.Listen(t)))
	defer c.Close()

	sum, err := c.Add(t.Context(), math.MaxInt, 1)
	var serverErr *ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.Equal(t, http.StatusBadRequest, serverErr.Status)
	assert.Equal(t, "a + b overflows: 9223372036854775807 + 1 does not fit in an int (64 bits)", serverErr.Message)
	assert.Zero(t, sum)
	assert.EqualError(t, err, "add(9223372036854775807, 1): server answered 400 Bad Request: a + b overflows: 9223372036854775807 + 1 does not fit in an int (64 bits)")
}

// TestClientRejectsOddAnswers points the stub at servers that answer
// something other than what it asked for. Each answer must become an error,
// never a number.
func TestClientRejectsOddAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"no result field", 200, `{"res": 3}`, `add(1, 2): answer "{\"res\": 3}" has no "result"`},
		{"result is null", 200, `{"result": null}`, `add(1, 2): answer "{\"result\": null}" has no "result"`},
		{"result too large", 200, `{"result": 9223372036854775808}`, "json: cannot unmarshal number 9223372036854775808"},
		{"result not an integer", 200, `{"result": 3.5}`, "json: cannot unmarshal number 3.5"},
		{"not JSON", 200, `<html>3</html>`, `add(1, 2): answer "<html>3</html>": invalid character '<'`},
		{"error page", 500, `Internal Server Error`, `add(1, 2): server answered 500 Internal Server Error: no JSON error in the answer: "Internal Server Error"`},
		{"answer too long", 200, fmt.Sprintf(`{"result": 3, "pad": "%0*d"}`, maxAnswerBytes, 0), "answer is longer than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			odd := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			})}
			l := rpctest.Listen(t)
			served := make(chan error, 1)
			go func() { served <- odd.Serve(l) }()
			defer func() {
				require.NoError(t, odd.Shutdown(context.Background()))
				<-served
			}()

			c := NewClient(l.Addr().String())
			defer c.Close()
			sum, err := c.Add(t.Context(), 1, 2)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Zero(t, sum)
		})
	}
}

// TestClientHonoursContext holds a call inside the server and cancels, then
// times out, the caller's context: Add must return at once with the
// context's error rather than wait for the answer.
func TestClientHonoursContext(t *testing.T) {
	srv := NewServer()
	entered, release := make(chan struct{}, 2), make(chan struct{})
	srv.beforeAnswer = func() {
		entered <- struct{}{}
		<-release
	}
	c := NewClient(serve(t, srv, rpctest.Listen(t)))
	defer c.Close()
	defer close(release) // before the server's shutdown, which waits for held calls

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-entered
			cancel()
		}()
		_, err := c.Add(ctx, 1, 2)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // the call is held past it
		defer cancel()
		_, err := c.Add(ctx, 1, 2)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

// TestClientReusesConnection is the article's third flaw, fixed: its stub
// calls requests.get, which opens a new TCP connection for every call. Ours
// keeps the connection open and sends every call down it.
func TestClientReusesConnection(t *testing.T) {
	l := rpctest.Listen(t)
	c := NewClient(serve(t, NewServer(), l))
	defer c.Close()
	for i := range 20 {
		_, err := c.Add(t.Context(), i, 1)
		require.NoError(t, err)
	}
	assert.Equal(t, 1, l.Accepted(), "20 calls in a row should share one connection")
}

func TestClientServerGone(t *testing.T) {
	l := rpctest.Listen(t)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	c := NewClient(addr)
	defer c.Close()
	_, err := c.Add(t.Context(), 1, 2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
}
