package atmostonce

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSnakeCase(t *testing.T) {
	for goName, want := range map[string]string{
		"Sum":       "sum",
		"GetTime":   "get_time",
		"Echo":      "echo",
		"HTTPGet":   "http_get",
		"ParseURL":  "parse_url",
		"Add2":      "add2",
		"Int64Max":  "int64_max",
		"A":         "a",
		"Get_time":  "get_time",
		"ÜberÄpfel": "über_äpfel",
	} {
		assert.Equal(t, want, snakeCase(goName), goName)
	}
}

// mixed has one method of each kind Register must tell apart.
type mixed struct{}

func (mixed) Sum(a, b int) int                      { return a + b }
func (mixed) Greet(name string) (string, error)     { return "hello " + name, nil }
func (mixed) Anything(v any) any                    { return v }
func (mixed) Nothing()                              {}
func (mixed) Pair() (int, int)                      { return 1, 2 }
func (mixed) Size(n uint) uint                      { return n }
func (mixed) Many(nums ...int) int                  { return len(nums) }
func (mixed) Wait(d time.Duration) error            { return nil }
func (mixed) Slice() []int                          { return nil }
func (*mixed) Reset()                               {}
func (mixed) Int64Max(a int64) int64                { return a }
func (mixed) Float32(f float32) float32             { return f }
func (mixed) Divide(a, b int) (int, error)          { return a / b, nil }
func (mixed) Fail() (string, error)                 { return "ignored", errors.New("no luck") }
func (mixed) BadResult(kind string) any             { return map[string]int{kind: 1} }
func (mixed) Join(a string, b string, c string) any { return a + b + c }

//lint:ignore ST1008 a signature Register must refuse
func (mixed) ErrFirst() (error, int) { return nil, 0 }

// TestRegisterReportsSkipped registers mixed: every exported method that
// cannot be called over the wire is reported, with the reason.
func TestRegisterReportsSkipped(t *testing.T) {
	var r registry
	skipped, err := r.register(mixed{})
	require.NoError(t, err)

	var report []string
	for _, s := range skipped {
		report = append(report, s.String())
	}
	assert.Equal(t, []string{
		"atmostonce.mixed.ErrFirst: it returns (error, int); a method returns int, float64, string or any, and may add an error",
		"atmostonce.mixed.Float32: parameter 1 is float32; the wire carries int, float64 and string, or any of them as any",
		"atmostonce.mixed.Int64Max: parameter 1 is int64; the wire carries int, float64 and string, or any of them as any",
		"atmostonce.mixed.Many: it is variadic, and a route takes a fixed number of arguments",
		"atmostonce.mixed.Nothing: it returns (); a method returns int, float64, string or any, and may add an error",
		"atmostonce.mixed.Pair: it returns (int, int); a method returns int, float64, string or any, and may add an error",
		"atmostonce.mixed.Size: parameter 1 is uint; the wire carries int, float64 and string, or any of them as any",
		"atmostonce.mixed.Slice: it returns ([]int); a method returns int, float64, string or any, and may add an error",
		"atmostonce.mixed.Wait: parameter 1 is time.Duration; the wire carries int, float64 and string, or any of them as any",
		"atmostonce.mixed.Reset: it has a pointer receiver: register a *atmostonce.mixed to offer it",
	}, report)

	names := slices.Sorted(maps.Keys(r.table()))
	assert.Equal(t, []string{"anything", "bad_result", "divide", "fail", "greet", "join", "sum"}, names)
}

// TestRegisterPointer registers a *mixed: Reset is in its method set now,
// and skipped for what it returns instead.
func TestRegisterPointer(t *testing.T) {
	var r registry
	skipped, err := r.register(&mixed{})
	require.NoError(t, err)
	assert.Len(t, skipped, 10)
	assert.Contains(t, skipped, Skipped{"atmostonce.mixed.Reset", "it returns (); a method returns int, float64, string or any, and may add an error"})
	assert.Contains(t, slices.Sorted(maps.Keys(r.table())), "sum")
}

// clash has two methods that answer to the same name.
type clash struct{}

func (clash) GetTime() string  { return "" }
func (clash) Get_time() string { return "" }

// none has no method that can be called.
type none struct{}

func (none) Size(n uint) uint { return n }

func TestRegisterRefuses(t *testing.T) {
	_, err := new(registry).register(nil)
	assert.EqualError(t, err, "register: the service is nil")

	_, err = new(registry).register(clash{})
	assert.EqualError(t, err, "register atmostonce.clash: atmostonce.clash.GetTime and atmostonce.clash.Get_time both answer to get_time")

	skipped, err := new(registry).register(none{})
	assert.EqualError(t, err, "register atmostonce.none: no exported method can be called over the wire")
	assert.Len(t, skipped, 1, "the reason is still reported")

	var r registry
	_, err = r.register(mixed{})
	require.NoError(t, err)
	_, err = r.register(Service{})
	assert.EqualError(t, err, "register atmostonce.Service: atmostonce.mixed.Sum and atmostonce.Service.Sum both answer to sum")
	assert.NotContains(t, slices.Sorted(maps.Keys(r.table())), "get_time", "a failed registration adds nothing")
}

func TestCall(t *testing.T) {
	var r registry
	_, err := r.register(mixed{})
	require.NoError(t, err)

	tests := []struct {
		name    string
		args    []any
		want    any
		wantErr string
	}{
		{"sum", []any{1, 2}, 3, ""},
		{"greet", []any{"Ada"}, "hello Ada", ""},
		{"anything", []any{1.5}, 1.5, ""},
		{"anything", []any{"x"}, "x", ""},
		{"join", []any{"a", "b", "c"}, "abc", ""},
		{"sum", []any{1}, nil, "takes 2 arguments, got 1"},
		{"greet", nil, nil, "takes 1 argument, got 0"},
		{"sum", []any{1, 2, 3}, nil, "takes 2 arguments, got 3"},
		{"sum", []any{1, "2"}, nil, `argument 2: want int, got str "2"`},
		{"sum", []any{1.0, 2}, nil, "argument 1: want int, got float 1.0"},
		{"greet", []any{7}, nil, "argument 1: want str, got int 7"},
		{"divide", []any{1, 0}, nil, "panicked: runtime error: integer divide by zero"},
		{"fail", nil, nil, "no luck"},
	}
	for _, tt := range tests {
		fn, ok := r.lookup(tt.name)
		require.True(t, ok, tt.name)
		err := fn.check(tt.args) // the server checks, then calls
		var got any
		if err == nil {
			got, err = fn.call(t.Context(), tt.args)
		}
		if tt.wantErr != "" {
			assert.EqualError(t, err, tt.wantErr, "%s%v", tt.name, tt.args)
			assert.Nil(t, got)
			continue
		}
		require.NoError(t, err, "%s%v", tt.name, tt.args)
		assert.Equal(t, tt.want, got, "%s%v", tt.name, tt.args)
	}
}

// later is a service registered while the server is serving.
type later struct{}

func (later) Later() string { return "registered late" }

// TestRegisterWhileServing registers a service while calls are answered on
// another goroutine: Register may be called at any time (run with -race).
func TestRegisterWhileServing(t *testing.T) {
	srv := NewDemoServer(Service{})
	c := dial(t, serve(t, srv, rpctest.Listen(t)))
	calls := make(chan error, 1)
	go func() {
		for i := range 200 {
			if _, err := (DemoClient{c}).Add(t.Context(), i, 1); err != nil {
				calls <- err
				return
			}
		}
		calls <- nil
	}()
	_, err := srv.Register(later{})
	require.NoError(t, err)
	require.NoError(t, <-calls)
	got, err := c.Call(t.Context(), "later")
	require.NoError(t, err)
	assert.Equal(t, "registered late", got)
}

// withContext is a service whose functions take a context first.
type withContext struct{}

type ctxKey struct{}

// Whose returns the value ctx carries, and s.
func (withContext) Whose(ctx context.Context, s string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	who, _ := ctx.Value(ctxKey{}).(string)
	return who + ": " + s, nil
}

// TestCallWithContext registers a function that takes a context first:
// the context is not one of its arguments, which check counts without it,
// and call hands it the context it is given.
func TestCallWithContext(t *testing.T) {
	var r registry
	skipped, err := r.register(withContext{})
	require.NoError(t, err)
	assert.Empty(t, skipped)
	fn, ok := r.lookup("whose")
	require.True(t, ok)
	assert.EqualError(t, fn.check(nil), "takes 1 argument, got 0")
	assert.EqualError(t, fn.check([]any{"a", "b"}), "takes 1 argument, got 2")
	require.NoError(t, fn.check([]any{"x"}))

	ctx := context.WithValue(t.Context(), ctxKey{}, "ada")
	got, err := fn.call(ctx, []any{"x"})
	require.NoError(t, err)
	assert.Equal(t, "ada: x", got)

	ctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = fn.call(ctx, []any{"x"})
	assert.ErrorIs(t, err, context.Canceled, "the function sees its context end")
}
