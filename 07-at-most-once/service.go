package atmostonce

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Service is the demo service: the article's MyCode, whose sum and
// get_time it offers, with echo, the add that every stage's benchmarks and
// load test call, slow, a call that takes as long as its caller asks or
// until its caller gives up, and counters, whose incr must not run twice.
// The server's route table is built from its exported methods: Sum answers
// to sum, GetTime to get_time. Nothing in them knows about the wire.
type Service struct {
	Now func() time.Time // the clock GetTime reads; nil means time.Now

	// Sleep is how Slow waits; nil means a timer. It returns ctx's error
	// if ctx ends first. A test gives it a clock of its own, to make slow
	// calls end in the order it wants.
	Sleep func(ctx context.Context, d time.Duration) error

	// Counters holds incr's counters; NewDemoServer makes it if it is nil.
	Counters *Counters
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
	if s.Now != nil {
		now = s.Now
	}
	return now().Format(time.ANSIC)
}

// Echo returns s unchanged: a string's round trip, and with a large s
// the test of a large message.
func (Service) Echo(s string) string {
	return s
}

// MaxSlow is the longest slow(ms) sleeps, in milliseconds.
const MaxSlow = 10_000

// Slow waits ms milliseconds, then returns ms: a call that takes as long
// as its caller asks, up to MaxSlow. It stops when ctx ends, and returns
// ctx's error: a caller that gives up frees the server at once.
func (s Service) Slow(ctx context.Context, ms int) (int, error) {
	if ms < 0 || ms > MaxSlow {
		return 0, fmt.Errorf("slow sleeps 0 to %d ms, not %d", MaxSlow, ms)
	}
	sleep := sleepCtx
	if s.Sleep != nil {
		sleep = s.Sleep
	}
	if err := sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
		return 0, err
	}
	return ms, nil
}

// sleepCtx waits d, or until ctx ends, and then returns ctx's error.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Incr adds 1 to the counter key and returns its new value. It must run at
// most once per call: it reads the call's client and ID from ctx, and
// counts in its Counters any call it has applied before (RanTwice).
func (s Service) Incr(ctx context.Context, key string) (int, error) {
	if s.Counters == nil {
		return 0, fmt.Errorf("this service has no counters")
	}
	return s.Counters.incr(ctx, key)
}

// Get returns the counter key, 0 if it was never incremented.
func (s Service) Get(key string) (int, error) {
	if s.Counters == nil {
		return 0, fmt.Errorf("this service has no counters")
	}
	return s.Counters.get(key), nil
}

// RanTwice returns how many incr calls were applied more than once, as
// far as the Counters' log of applied calls can tell (see Counters).
func (s Service) RanTwice() (int, error) {
	if s.Counters == nil {
		return 0, fmt.Errorf("this service has no counters")
	}
	return s.Counters.ranTwice(), nil
}

// Counters are the demo's counters, and its log of the incr calls applied,
// by client and ID: an incr applied twice is counted, not hidden. Both are
// bounded: at most MaxCounters keys, of at most 64 bytes, and a log of
// maxApplied calls (about 12 MiB), after which calls are applied and no
// longer logged.
type Counters struct {
	mu      sync.Mutex // protects values, applied, twice
	values  map[string]int
	applied map[CallInfo]struct{} // by Client and ID; Attempt is 0
	twice   int
}

// MaxCounters is how many counters incr keeps.
const MaxCounters = 10_000

// maxApplied bounds the log of applied calls.
const maxApplied = 1 << 18

// NewCounters returns counters all at 0.
func NewCounters() *Counters {
	return &Counters{values: map[string]int{}, applied: map[CallInfo]struct{}{}}
}

func (c *Counters) incr(ctx context.Context, key string) (int, error) {
	if len(key) > 64 || !utf8.ValidString(key) {
		return 0, fmt.Errorf("a counter's key is at most 64 bytes of UTF-8, not %s", quoteShort(key))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.values[key]; !ok && len(c.values) >= MaxCounters {
		return 0, fmt.Errorf("there are %d counters already", MaxCounters)
	}
	if info, ok := CallFrom(ctx); ok && info.Client != 0 {
		k := CallInfo{Client: info.Client, ID: info.ID}
		if _, dup := c.applied[k]; dup {
			c.twice++
		} else if len(c.applied) < maxApplied {
			c.applied[k] = struct{}{}
		}
	}
	c.values[key]++
	return c.values[key], nil
}

func (c *Counters) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[key]
}

func (c *Counters) ranTwice() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.twice
}

// NewDemoServer returns a server offering the demo service, svc:
//
//	sum(a, b)
//	get_time()
//	echo(s)
//	add(a, b)
//	slow(ms)
//	incr(key)
//	get(key)
//	ran_twice()
//
// If svc has no Counters, it gets new ones.
func NewDemoServer(svc Service) *Server {
	if svc.Counters == nil {
		svc.Counters = NewCounters()
	}
	s := NewServer()
	skipped, err := s.Register(svc)
	if err != nil || len(skipped) > 0 {
		// Our own service: a mistake here is a bug.
		panic(fmt.Sprintf("register the demo service: %v, skipped %v", err, skipped))
	}
	return s
}

// DemoClient is the demo service's typed client: a stub for each of its
// functions that takes and returns Go types, over a general Client, which
// calls any function by name. It is used as DemoClient{c}.Add(ctx, 1, 2).
// The stubs live beside the service they call, not on Client, as gRPC
// generates a typed client for each service over one general connection.
type DemoClient struct{ *Client }

// Add is a typed stub for the demo server's add(a, b).
func (d DemoClient) Add(ctx context.Context, a, b int) (int, error) {
	return callAs[int](ctx, d.Client, "add", a, b)
}

// Echo is a typed stub for the demo server's echo(s).
func (d DemoClient) Echo(ctx context.Context, s string) (string, error) {
	return callAs[string](ctx, d.Client, "echo", s)
}

// Slow is a typed stub for the demo server's slow(ms).
func (d DemoClient) Slow(ctx context.Context, ms int) (int, error) {
	return callAs[int](ctx, d.Client, "slow", ms)
}

// Incr is a typed stub for the demo server's incr(key).
func (d DemoClient) Incr(ctx context.Context, key string) (int, error) {
	return callAs[int](ctx, d.Client, "incr", key)
}

// Get is a typed stub for the demo server's get(key).
func (d DemoClient) Get(ctx context.Context, key string) (int, error) {
	return callAs[int](ctx, d.Client, "get", key)
}

// RanTwice is a typed stub for the demo server's ran_twice().
func (d DemoClient) RanTwice(ctx context.Context) (int, error) {
	return callAs[int](ctx, d.Client, "ran_twice")
}
