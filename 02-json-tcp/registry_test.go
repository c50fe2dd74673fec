package jsontcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"

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

// mustLookup returns the function registered under name.
func mustLookup(t *testing.T, r *registry, name string) *function {
	t.Helper()
	f, ok := r.lookup(name)
	require.True(t, ok, "no function %s", name)
	return f
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
			got, err := mustLookup(t, &r, tt.method).call(tt.args, tt.kwargs)
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

	got, err := mustLookup(t, &r, "norm1").call(args(`[{"x": 1, "y": 2}, {"X": 3}]`), nil)
	require.NoError(t, err)
	assert.Equal(t, 6, got)

	_, err = mustLookup(t, &r, "norm1").call(args(`[{"x": 1, "z": 2}]`), nil)
	assert.EqualError(t, err, `argument 'points': json: unknown field "z"`)
}

func TestCallRecoversPanic(t *testing.T) {
	r := registry{}
	require.NoError(t, r.register("div", func(a, b int) int { return a / b }, "a", "b"))
	got, err := mustLookup(t, &r, "div").call(args("1", "0"), nil)
	assert.EqualError(t, err, "panicked: runtime error: integer divide by zero")
	assert.Nil(t, got)
}

func TestCallReturnsError(t *testing.T) {
	r := registry{}
	require.NoError(t, r.register("fail", func() (string, error) { return "ignored", errors.New("no luck") }))
	_, err := mustLookup(t, &r, "fail").call(nil, nil)
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
		{"two star args", func(a, b []int) int { return 0 }, []string{"*a", "*b"}, `register f: parameter "*b": only one *args, and *a came first`},
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
			assert.EqualError(t, new(registry).register("f", tt.fn, tt.params...), tt.wantErr)
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

// TestCallDefaultIsFresh checks that each call gets its own copy of a
// default. The default used to be decoded once, at register, and handed to
// every call: a function that changed its default map changed it for every
// later call (Python's mutable-default trap), and two calls at once on two
// connections wrote the same map (a data race; the runtime ended the
// process with "concurrent map writes").
func TestCallDefaultIsFresh(t *testing.T) {
	var r registry
	require.NoError(t, r.register("count", func(key string, seen map[string]int) int {
		seen[key]++
		return len(seen)
	}, "key", `seen={"first": 1}`))
	f := mustLookup(t, &r, "count")

	for _, key := range []string{"a", "b", "c"} {
		got, err := f.call(nil, kwargs("key", `"`+key+`"`))
		require.NoError(t, err)
		assert.Equal(t, 2, got, "key %s: the default must hold only its own key and the caller's", key)
	}

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				got, err := f.call(nil, kwargs("key", fmt.Sprintf(`"%d-%d"`, g, i)))
				assert.NoError(t, err)
				assert.Equal(t, 2, got)
			}
		})
	}
	wg.Wait()
}

// panicOnDecode is a parameter type whose UnmarshalJSON panics.
type panicOnDecode struct{}

func (*panicOnDecode) UnmarshalJSON([]byte) error { panic("UnmarshalJSON of panicOnDecode") }

// TestCallRecoversDecodePanic checks that a panic while decoding an
// argument comes back as an error, as a panic in the function does. It
// used to escape call and end the server.
func TestCallRecoversDecodePanic(t *testing.T) {
	var r registry
	require.NoError(t, r.register("f", func(x panicOnDecode) int { return 1 }, "x"))
	require.NoError(t, r.register("g", func(x []panicOnDecode) int { return 1 }, "*x"))
	for _, name := range []string{"f", "g"} {
		got, err := mustLookup(t, &r, name).call(args(`{}`), nil)
		assert.EqualError(t, err, "panicked: UnmarshalJSON of panicOnDecode", name)
		assert.Nil(t, got)
	}
}

// tree contains itself, through a map.
type tree map[string]tree

// node holds a struct inside itself.
type node struct {
	Name string
	Kids []node
}

// TestRegisterRecursiveTypes checks that types which contain themselves
// can be registered and called. hasStruct used to walk such a type for
// ever, at every call; the stack overflow ended the process, and recover
// cannot catch that.
func TestRegisterRecursiveTypes(t *testing.T) {
	var r registry
	require.NoError(t, r.register("size", func(t tree) int { return len(t) }, "t"))
	require.NoError(t, r.register("kids", func(n node) int { return len(n.Kids) }, "n"))
	require.NoError(t, r.register("forest", func(ts map[string][]tree) int { return len(ts) }, "**ts"))

	got, err := mustLookup(t, &r, "size").call(args(`{"a": {"b": {}}, "c": {}}`), nil)
	require.NoError(t, err)
	assert.Equal(t, 2, got)

	got, err = mustLookup(t, &r, "forest").call(nil, kwargs("x", `[{"a": {}}]`))
	require.NoError(t, err)
	assert.Equal(t, 1, got)

	got, err = mustLookup(t, &r, "kids").call(args(`{"name": "a", "kids": [{"name": "b"}]}`), nil)
	require.NoError(t, err)
	assert.Equal(t, 1, got)
	_, err = mustLookup(t, &r, "kids").call(args(`{"name": "a", "kids": [{"nmae": "b"}]}`), nil)
	assert.EqualError(t, err, `argument 'n': json: unknown field "nmae"`, "a struct inside a recursive type is still strict")
}

// TestRegisterWhileServing registers functions while calls are being
// answered, as net/rpc allows. The route table used to be a plain map,
// read by every connection and written by Register: a data race.
func TestRegisterWhileServing(t *testing.T) {
	srv := NewDemoServer()
	addr := serve(t, srv, rpctest.Listen(t))
	var wg sync.WaitGroup
	for range 2 {
		c := dial(t, addr)
		wg.Go(func() {
			for i := range 100 {
				sum, err := c.Add(t.Context(), i, 1, 0)
				assert.NoError(t, err)
				assert.Equal(t, i+1, sum)
			}
		})
	}
	c := dial(t, addr)
	for i := range 50 {
		name := fmt.Sprintf("f%d", i)
		require.NoError(t, srv.Register(name, func() int { return i }))
		got, err := c.Call(t.Context(), name, nil, nil)
		require.NoError(t, err)
		assert.JSONEq(t, fmt.Sprint(i), string(got))
	}
	wg.Wait()
}

// TestZeroServer checks that the zero Server takes functions and serves
// them: the zero registry is ready to use.
func TestZeroServer(t *testing.T) {
	var srv Server
	require.NoError(t, srv.Register("add", add, "a", "b", "c=10"))
	sum, err := dial(t, serve(t, &srv, rpctest.Listen(t))).Add(t.Context(), 1, 2, 3)
	require.NoError(t, err)
	assert.Equal(t, 6, sum)
}
