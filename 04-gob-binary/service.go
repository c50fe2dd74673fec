package gobrpc

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Service is the demo service: the article's MyCode, whose sum and
// get_time it offers, with echo, and the add that every stage's benchmarks
// and load test call. The server's route table is built from its exported
// methods: Sum answers to sum, GetTime to get_time. Nothing in them knows
// about the wire.
type Service struct {
	now func() time.Time // the clock GetTime reads; nil means time.Now
}

// Sum returns a + b, as the article's sum does in Python: two ints give an
// int, and a float with an int or a float gives a float. (Python's + would
// also join two strings; this Sum adds numbers only.) Its parameters are
// any because the caller, not the method, picks the types.
func (s Service) Sum(a, b any) (any, error) {
	x, xInt := a.(int)
	y, yInt := b.(int)
	if xInt && yInt {
		sum, err := s.Add(x, y)
		if err != nil {
			return nil, err
		}
		return sum, nil
	}
	fx, xOK := toFloat(a)
	fy, yOK := toFloat(b)
	if !xOK || !yOK {
		return nil, fmt.Errorf("sum adds numbers, not %s and %s", describe(a), describe(b))
	}
	if sum := fx + fy; !math.IsInf(sum, 0) {
		return sum, nil
	}
	return nil, fmt.Errorf("%s + %s does not fit in a float (64 bits)", formatFloat(fx), formatFloat(fy))
}

// toFloat returns v as a float64 if it is a number.
func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// Add returns a + b. Go's integers wrap around when they overflow, and
// Python's do not, so Add checks first: an overflow is an error, never a
// wrong sum.
func (Service) Add(a, b int) (int, error) {
	if (b > 0 && a > math.MaxInt-b) || (b < 0 && a < math.MinInt-b) {
		return 0, fmt.Errorf("%d + %d does not fit in an int (%d bits)", a, b, strconv.IntSize)
	}
	return a + b, nil
}

// GetTime returns the time in the form of Python's time.ctime(), as the
// article's get_time does: "Wed Jan 16 22:05:31 2019", with a space
// before a one-digit day. Go calls that layout time.ANSIC.
func (s Service) GetTime() string {
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	return now().Format(time.ANSIC)
}

// Echo returns s unchanged: a string's round trip, and with a large s
// the test of a large message.
func (Service) Echo(s string) string {
	return s
}

// NewDemoServer returns a server offering the demo service:
//
//	sum(a, b)
//	get_time()
//	echo(s)
//	add(a, b)
func NewDemoServer() *Server {
	s := NewServer()
	skipped, err := s.Register(Service{})
	if err != nil || len(skipped) > 0 {
		// Our own service: a mistake here is a bug.
		panic(fmt.Sprintf("register the demo service: %v, skipped %v", err, skipped))
	}
	return s
}

// DemoClient is a Client of the demo server, with a typed stub for each of
// its procedures. The general Client calls any procedure by name and knows
// none of them; the stubs that know one server's procedures belong beside
// that server's code, as gRPC generates a typed client from each service's
// definition, over a connection shared by all of them.
//
//	c, err := gobrpc.Dial(ctx, addr)
//	sum, err := gobrpc.DemoClient{Client: c}.Add(ctx, 1, 2) // 3
type DemoClient struct{ *Client }

// Add is a typed stub for the demo server's add(a, b).
func (c DemoClient) Add(ctx context.Context, a, b int) (int, error) {
	return callAs[int](ctx, c.Client, "add", a, b)
}

// Echo is a typed stub for the demo server's echo(s).
func (c DemoClient) Echo(ctx context.Context, s string) (string, error) {
	return callAs[string](ctx, c.Client, "echo", s)
}
