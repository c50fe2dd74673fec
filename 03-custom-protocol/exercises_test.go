//go:build exercises

package customproto

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	make exercise STAGE=03
//
// `make test` compiles them (go vet -tags exercises) but does not run them.
// Each has a worked solution in solutions/exercise-K.patch.

import (
	"math"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveService serves service alone and returns a client of it. Register
// must skip none of its methods.
func serveService(t *testing.T, service any) *Client {
	srv := NewServer()
	skipped, err := srv.Register(service)
	require.NoError(t, err)
	assert.Empty(t, skipped, "Register skipped methods")
	return dial(t, serve(t, srv, rpctest.Listen(t))).Client
}

// Exercise 1: mul(a, b) on the demo server, with the same care for
// overflow as add. One method is all it takes.
func TestExerciseMul(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	for _, tt := range []struct{ a, b, want int }{{6, 7, 42}, {-3, 5, -15}, {math.MinInt, 1, math.MinInt}, {0, math.MaxInt, 0}} {
		got, err := c.Call(t.Context(), "mul", tt.a, tt.b)
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}
	for _, tt := range []struct{ a, b int }{{math.MaxInt, 2}, {math.MinInt, -1}, {1 << 32, 1 << 31}} {
		_, err := c.Call(t.Context(), "mul", tt.a, tt.b)
		var serverErr *ServerError
		require.ErrorAs(t, err, &serverErr, "mul(%d, %d)", tt.a, tt.b)
		assert.Contains(t, serverErr.Message, "does not fit in an int")
	}
}

// logic has a method that takes and returns a bool.
type logic struct{}

func (logic) Not(b bool) bool { return !b }

// Exercise 2: a fourth type code, 4 for bool, written as Python writes
// bools: 4-True, 4-False.
func TestExerciseBool(t *testing.T) {
	c := serveService(t, logic{})
	got, err := c.Call(t.Context(), "not", true)
	require.NoError(t, err)
	assert.Equal(t, false, got)

	name, args, err := parseCall([]byte("func:not@params:4-False"), true)
	require.NoError(t, err)
	assert.Equal(t, "not", name)
	assert.Equal(t, []any{false}, args)
	_, _, err = parseCall([]byte("func:not@params:4-yes"), true)
	assert.ErrorContains(t, err, "not a bool")

	assert.Equal(t, "data:True", string((&legacyForm{}).appendAnswer(nil, true, nil)), "the article's form, as Python's str(True)")
}

// tally has a variadic method.
type tally struct{}

func (tally) Total(nums ...int) int {
	total := 0
	for _, n := range nums {
		total += n
	}
	return total
}

// Exercise 3: variadic methods. A call may give any number of arguments
// for the last parameter, as Python's *args; Register stops skipping them.
func TestExerciseVariadic(t *testing.T) {
	c := serveService(t, tally{})
	for _, tt := range []struct {
		args []any
		want int
	}{
		{[]any{1, 2, 3}, 6},
		{[]any{5}, 5},
		{nil, 0},
	} {
		got, err := c.Call(t.Context(), "total", tt.args...)
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}
	_, err := c.Call(t.Context(), "total", 1, "two")
	var serverErr *ServerError
	require.ErrorAs(t, err, &serverErr)
	assert.Equal(t, `total: argument 2: want int, got str "two"`, serverErr.Message)
}
