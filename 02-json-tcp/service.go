package jsontcp

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// The procedures the demo server offers, as in the articles. They are plain
// Go functions: nothing in them knows about JSON or connections.

// add returns a + b + c. The article declares it add(a, b, c=10). Go's
// integers wrap around when they overflow, so add checks first.
func add(a, b, c int) (int, error) {
	sum, ok := addInts(a, b)
	if ok {
		sum, ok = addInts(sum, c)
	}
	if !ok {
		return 0, fmt.Errorf("%d + %d + %d does not fit in an int (%d bits)", a, b, c, strconv.IntSize)
	}
	return sum, nil
}

func addInts(a, b int) (int, bool) {
	if (b > 0 && a > math.MaxInt-b) || (b < 0 && a < math.MinInt-b) {
		return 0, false
	}
	return a + b, true
}

// test takes any arguments at all and returns a fixed string, as the
// article's test(*args, **kwargs) does.
func test(args []any, kwargs map[string]any) string {
	return "the test function has been called"
}

// echo returns its argument unchanged. json.RawMessage holds the argument's
// JSON as it came, so any value (a string, a number, an object) goes back
// without being decoded and encoded again.
func echo(x json.RawMessage) json.RawMessage {
	return x
}

// NewDemoServer returns a server offering the demo procedures:
//
//	add(a, b, c=10)
//	test(*args, **kwargs)
//	echo(x)
func NewDemoServer() *Server {
	s := NewServer()
	for _, err := range []error{
		s.Register("add", add, "a", "b", "c=10"),
		s.Register("test", test, "*args", "**kwargs"),
		s.Register("echo", echo, "x"),
	} {
		if err != nil {
			panic(err) // our own registrations: a mistake here is a bug
		}
	}
	return s
}

// DemoClient is a Client of the demo server, with a typed stub for each of
// its procedures. The general Client calls any procedure by name and knows
// none of them; the stubs that know one server's procedures belong beside
// that server's code, as gRPC generates a typed client from each service's
// definition, over a connection shared by all of them.
//
//	c, err := jsontcp.Dial(ctx, addr)
//	sum, err := jsontcp.DemoClient{Client: c}.Add(ctx, 1, 2, 3) // 6
type DemoClient struct{ *Client }

// Add is a typed stub for the demo server's add(a, b, c=10). Go has no
// default arguments, so the Go signature takes all three; Call can leave c
// out to get the server's default.
func (c DemoClient) Add(ctx context.Context, a, b, cc int) (int, error) {
	var sum int
	err := c.callInto(ctx, &sum, "add", a, b, cc)
	return sum, err
}

// Echo is a typed stub for the demo server's echo(x), for strings.
func (c DemoClient) Echo(ctx context.Context, s string) (string, error) {
	var out string
	err := c.callInto(ctx, &out, "echo", s)
	return out, err
}
