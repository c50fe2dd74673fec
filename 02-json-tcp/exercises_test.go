//go:build exercises

package jsontcp

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	make exercise STAGE=02
//
// `make test` compiles them (go vet -tags exercises) but does not run them.
// A worked solution of exercise K is in solutions/exercise-K.patch.

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Exercise 1: mul(a, b) on the demo server, refusing an overflow.
func TestExerciseMul(t *testing.T) {
	srv := NewDemoServer()
	res, err := srv.handle([]byte(`{"method_name": "mul", "method_args": [6, 7]}`))
	require.NoError(t, err)
	assert.Equal(t, 42, res)

	_, err = srv.handle([]byte(`{"method_name": "mul", "method_args": [4611686018427387904, 2]}`))
	assert.ErrorContains(t, err, "does not fit")
}

// Exercise 2: keyword-only parameters after *args, as Python's
// def join(*parts, sep=" ").
func TestExerciseKeywordOnly(t *testing.T) {
	r := registry{}
	require.NoError(t, r.register("join", func(parts []string, sep string) string {
		return strings.Join(parts, sep)
	}, "*parts", `sep=" "`))

	got, err := mustLookup(t, &r, "join").call(args(`"a"`, `"b"`), nil)
	require.NoError(t, err)
	assert.Equal(t, "a b", got)

	got, err = mustLookup(t, &r, "join").call(args(`"a"`, `"b"`), kwargs("sep", `"-"`))
	require.NoError(t, err)
	assert.Equal(t, "a-b", got)
}

// Exercise 3: more than 64 arguments, positional and keyword together, is
// refused before any is decoded.
func TestExerciseTooManyArguments(t *testing.T) {
	many := make([]int, 60)
	kw := map[string]int{}
	for i := range 5 {
		kw[string(rune('a'+i))] = i
	}
	msg, err := json.Marshal(map[string]any{"method_name": "test", "method_args": many, "method_kwargs": kw})
	require.NoError(t, err)
	_, err = NewDemoServer().handle(msg)
	assert.ErrorContains(t, err, "too many arguments")

	msg, err = json.Marshal(map[string]any{"method_name": "test", "method_args": many[:59], "method_kwargs": kw})
	require.NoError(t, err)
	_, err = NewDemoServer().handle(msg)
	assert.NoError(t, err, "64 arguments are allowed")
}
