// Package loadgen is one of the course's instruments, not a lesson: the load
// mode of every stage's client (-calls, -concurrency) makes its calls through
// Run, so that the stages' figures are measured the same way. A client that
// has more to count, or other calls to make, runs a Test and prints its
// Result with fields of its own after it.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// AddFunc is the call a load test makes: a stub's Add method.
type AddFunc func(ctx context.Context, a, b int) (int, error)

// Run makes calls add calls from concurrency goroutines at once, each with
// its own arguments, and checks every result. It prints one summary line:
//
//	calls=N ok=N errors=E mismatches=M elapsed=... rps=... p50=... p99=...
//
// and returns an error if any call failed or came back with a wrong sum.
func Run(ctx context.Context, stdout, stderr io.Writer, calls, concurrency int, timeout time.Duration, add AddFunc) error {
	r, err := Test{Calls: calls, Concurrency: concurrency, Timeout: timeout, Call: Adds(add)}.Run(ctx, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, r)
	return r.Err()
}

// CallFunc makes call i of a load test, and checks its result: it returns
// nil for a right result, a *Mismatch for a wrong one, and any other error
// for a call that failed.
type CallFunc func(ctx context.Context, i int) error

// Mismatch is the error of a call whose result came back wrong.
type Mismatch struct {
	Msg string // the call, what it returned and what it should have: "add(5, 11) = 17, want 16"
}

func (m *Mismatch) Error() string { return m.Msg }

// Adds returns Run's calls: call i is add(i, 2i+1), distinct arguments so
// that a swapped answer shows, and its sum is checked.
func Adds(add AddFunc) CallFunc {
	return func(ctx context.Context, i int) error {
		a, b := i, 2*i+1
		sum, err := add(ctx, a, b)
		switch {
		case err != nil:
			return err
		case sum != a+b:
			return &Mismatch{fmt.Sprintf("add(%d, %d) = %d, want %d", a, b, sum, a+b)}
		}
		return nil
	}
}

// Test is a load test: Calls calls of Call, Concurrency at once, each with
// a deadline of Timeout.
type Test struct {
	Calls       int
	Concurrency int
	Timeout     time.Duration
	Call        CallFunc
	// Excused, if set, picks the failures that the test expects: they are
	// counted in Result.Excused, not as errors, and not reported.
	Excused func(err error) bool
}

// Result is what a Test counted. Calls is OK + Errors + Mismatches + Excused.
type Result struct {
	Calls, OK, Errors, Mismatches, Excused int
	Elapsed, P50, P99                      time.Duration
}

// String returns the summary line that Run prints, without its newline:
//
//	calls=N ok=N errors=E mismatches=M elapsed=... rps=... p50=... p99=...
//
// The excused calls are not in it: a client that excuses some says how many
// in fields of its own.
func (r Result) String() string {
	return fmt.Sprintf("calls=%d ok=%d errors=%d mismatches=%d elapsed=%v rps=%.0f p50=%v p99=%v",
		r.Calls, r.OK, r.Errors, r.Mismatches, r.Elapsed.Round(time.Millisecond), float64(r.Calls)/r.Elapsed.Seconds(),
		r.P50, r.P99)
}

// Err returns an error if any call failed or came back wrong.
func (r Result) Err() error {
	if n := r.Errors + r.Mismatches; n > 0 {
		return fmt.Errorf("%d of %d calls failed or came back wrong", n, r.Calls)
	}
	return nil
}

// Run makes the test's calls and counts how each ended. It prints the first
// few failures to stderr. It returns an error only if the test cannot run.
func (t Test) Run(ctx context.Context, stderr io.Writer) (Result, error) {
	if t.Concurrency < 1 {
		return Result{}, fmt.Errorf("-concurrency must be at least 1, not %d", t.Concurrency)
	}
	concurrency := min(t.Concurrency, t.Calls)

	var (
		next       atomic.Int64 // the next call to make
		errs       atomic.Int64
		mismatches atomic.Int64
		excused    atomic.Int64
		latencies  = make([]time.Duration, t.Calls)
		wg         sync.WaitGroup
		mu         sync.Mutex // protects reported, and stderr while reporting
		reported   int        // failures printed so far
	)
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if reported++; reported <= 5 { // the first few tell the story; the count tells the rest
			fmt.Fprintf(stderr, format+"\n", args...)
		}
	}
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= t.Calls {
					return
				}
				callCtx, cancel := context.WithTimeout(ctx, t.Timeout)
				t0 := time.Now()
				err := t.Call(callCtx, i)
				latencies[i] = time.Since(t0)
				cancel()
				var wrong *Mismatch
				switch {
				case err == nil:
				case errors.As(err, &wrong):
					mismatches.Add(1)
					report("call %d: %v", i, err)
				case t.Excused != nil && t.Excused(err):
					excused.Add(1)
				default:
					errs.Add(1)
					report("call %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	slices.Sort(latencies)
	e, m, x := int(errs.Load()), int(mismatches.Load()), int(excused.Load())
	return Result{
		Calls: t.Calls, OK: t.Calls - e - m - x, Errors: e, Mismatches: m, Excused: x,
		Elapsed: elapsed, P50: percentile(latencies, 50), P99: percentile(latencies, 99),
	}, nil
}

// percentile returns the p-th percentile of sorted latencies, rounded to the
// microsecond.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100 // the smallest i with i/len >= p%
	return sorted[max(i-1, 0)].Round(time.Microsecond)
}
