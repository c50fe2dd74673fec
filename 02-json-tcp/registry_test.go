package jsontcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// args turns JSON texts into the arguments of a request.
func args(raw ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(raw))
	for i, r := range raw {
		out[i] = json.RawMessage(r)
	}
	return out
}

func kwargs(pairs ...string) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for i := 0; i < len(pairs); i += 2 {
		out[pairs[i]] = json.RawMessage(pairs[i+1])
	}
	return out
}

func TestCallBindsLikePython(t *testing.T) {
	r := registry{}
	require.NoError(t, r.register("add", add, "a", "b", "c=10"))
	require.NoError(t, r.register("test", test, "*args", "**kwargs"))
	require.NoError(t, r.register("echo", echo, "x"))
	require.NoError(t, r.register("join", func(sep string, parts []string, opts map[string]int) string {
		return fmt.Sprintf("%s %v", strings.Join(parts, sep), opts)
	}, "sep", "*parts", "**opts"))

	tests := []struct {
		name    string
		method  string
		args    []json.RawMessage
		kwargs  map[string]json.RawMessage
		want    any
		wantErr string
	}{
		{"keyword c", "add", args("1", "2"), kwargs("c", "3"), 6, ""},
		{"default c", "add", args("1", "2"), nil, 13, ""},
		{"all by keyword", "add", nil, kwargs("b", "2", "a", "1", "c", "0"), 3, ""},
		{"all by position", "add", args("1", "2", "3"), nil, 6, ""},
		{"missing b", "add", args("1"), nil, nil, "missing argument 'b'"},
		{"too many", "add", args("1", "2", "3", "4"), nil, nil, "takes 3 arguments by position, got 4"},
		{"unknown keyword", "add", args("1", "2"), kwargs("d", "4"), nil, "no parameter named 'd'"},
		{"odd keyword", "add", args("1", "2"), kwargs("d'\n", "4"), nil, `no parameter named "d'\n"`},
		{"twice", "add", args("1", "2"), kwargs("a", "1"), nil, "argument 'a' given by position and by keyword"},
		{"string for int", "add", args("1", `"two"`), nil, nil, `argument 'b': want int, got "two"`},
		{"float for int", "add", args("1", "2.5"), nil, nil, "argument 'b': want int, got 2.5"},
		{"null for int", "add", args("1", "null"), nil, nil, "argument 'b': want int, got null"},
		{"too large for int", "add", args("1", "9223372036854775808"), nil, nil, "argument 'b': want int, got 9223372036854775808"},
		{"overflow", "add", args("9223372036854775807", "1", "0"), nil, nil, "9223372036854775807 + 1 + 0 does not fit in an int (64 bits)"},
		{"overflow by default", "add", args("9223372036854775800", "0"), nil, nil, "9223372036854775800 + 0 + 10 does not fit in an int (64 bits)"},
		{"star args and kwargs", "test", args(`"测试项"`), kwargs("kw1", `"1"`), "the test function has been called", ""},
		{"nothing for star args", "test", nil, nil, "the test function has been called", ""},
		{"echo object", "echo", args(`{"a": [1, "x"]}`), nil, json.RawMessage(`{"a": [1, "x"]}`), ""},
		{"echo null", "echo", args(`null`), nil, json.RawMessage(`null`), ""},
		{"rest of args", "join", args(`"-"`, `"a"`, `"b"`), kwargs("x", "1"), "a-b map[x:1]", ""},
		{"no rest", "join", args(`"-"`), nil, " map[]", ""},
		{"bad rest element", "join", args(`"-"`, `"a"`, `2`), nil, nil, "argument '*parts[1]': want string, got 2"},
		{"bad rest keyword", "join", args(`"-"`), kwargs("x", `"y"`), nil, "argument '**opts[x]': want int, got \"y\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r[tt.method].call(tt.args, tt.kwargs)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestCallRefusesUnknownFields checks that a struct parameter does not drop
// a field it does not have: a misspelt field is an error, not lost.
func TestCallRefusesUnknownFields(t *testing.T) {
	type point struct{ X, Y int }
	r := registry{}
	require.NoError(t, r.register("norm1", func(ps []point) int {
		n := 0
		for _, p := range ps {
			n += p.X + p.Y
		}
		return n
	}, "points"))

	got, err := r["norm1"].call(args(`[{"x": 1, "y": 2}, {"X": 3}]`), nil)
	require.NoError(t, err)
	assert.Equal(t, 6, got)

	_, err = r["norm1"].call(args(`[{"x": 1, "z": 2}]`), nil)
	assert.EqualError(t, err, `argument 'points': json: unknown field "z"`)
}

func TestCallRecoversPanic(t *testing.T) {
	r := registry{}
	require.NoError(t, r.register("div", func(a, b int) int { return a / b }, "a", "b"))
	got, err := r["div"].call(args("1", "0"), nil)
	assert.EqualError(t, err, "panicked: runtime error: integer divide by zero")
	assert.Nil(t, got)
}

func TestCallReturnsError(t *testing.T) {
	r := registry{}
	require.NoError(t, r.register("fail", func() (string, error) { return "ignored", errors.New("no luck") }))
	_, err := r["fail"].call(nil, nil)
	assert.EqualError(t, err, "no luck")
}

func TestRegisterRefuses(t *testing.T) {
	two := func(a, b int) int { return a + b }
	tests := []struct {
		name    string
		fn      any
		params  []string
		wantErr string
	}{
		{"not a function", 42, nil, "register f: int is not a function"},
		{"too few names", two, []string{"a"}, "register f: the function takes 2 parameters, but 1 names were given"},
		{"variadic", func(a ...int) int { return 0 }, []string{"a"}, `register f: a variadic function cannot be registered: take a slice and name it "*args"`},
		{"no result", func(a int) {}, []string{"a"}, "register f: the function must return a result, or a result and an error"},
		{"second result not error", func(a int) (int, int) { return 0, 0 }, []string{"a"}, "register f: the function must return a result, or a result and an error"},
		{"bad name", two, []string{"a", "b-c"}, `register f: parameter "b-c": a name is letters, digits and _`},
		{"same name", two, []string{"a", "a"}, `register f: parameter "a": named twice`},
		{"default does not decode", two, []string{"a", `b="x"`}, `register f: parameter "b": default "x" does not decode into int: json: cannot unmarshal string into Go value of type int`},
		{"required after default", two, []string{"a=1", "b"}, `register f: parameter "b": a parameter without a default cannot follow one with a default`},
		{"star args not a slice", two, []string{"a", "*b"}, `register f: parameter "*b": *b must be a slice, not int`},
		{"kwargs not a map", two, []string{"a", "**b"}, `register f: parameter "**b": **b must be a map[string]T, not int`},
		{"named after star", func(a []int, b int) int { return 0 }, []string{"*a", "b"}, `register f: parameter "b": named parameters come before *a`},
		{"after kwargs", func(a map[string]int, b []int) int { return 0 }, []string{"**a", "*b"}, `register f: parameter "b": nothing may follow **a`},
		{"three stars", func(a []int) int { return 0 }, []string{"***a"}, `register f: parameter "***a": one or two stars, not 3`},
		{"default on star", func(a []int) int { return 0 }, []string{"*a=[]"}, `register f: parameter "*a=[]": *args and **kwargs take no default`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.EqualError(t, registry{}.register("f", tt.fn, tt.params...), tt.wantErr)
		})
	}

	r := registry{}
	require.NoError(t, r.register("f", two, "a", "b"))
	assert.EqualError(t, r.register("f", two, "a", "b"), "register f: the name is taken")
	assert.EqualError(t, r.register("f g", two, "a", "b"), "register f g: a method name is letters, digits and _")
}

func TestAddOverflow(t *testing.T) {
	for _, tt := range []struct {
		a, b, c int
		ok      bool
	}{
		{1, 2, 3, true},
		{math.MaxInt, 0, 0, true},
		{math.MaxInt, 1, 0, false},
		{math.MaxInt, 1, -1, false}, // a + b overflows before c would bring it back
		{math.MinInt, -1, 0, false},
		{math.MinInt, math.MaxInt, 1, true},
	} {
		_, err := add(tt.a, tt.b, tt.c)
		assert.Equal(t, tt.ok, err == nil, "add(%d, %d, %d): %v", tt.a, tt.b, tt.c, err)
	}
}
