// Package loadgen is one of the course's instruments, not a lesson: the load
// mode of every stage's client (-calls, -concurrency) makes its calls through
// Run, so that the stages' figures are measured the same way.
package loadgen

import (
	"context"
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
	if concurrency < 1 {
		return fmt.Errorf("-concurrency must be at least 1, not %d", concurrency)
	}
	concurrency = min(concurrency, calls)

	var (
		next       atomic.Int64 // the next call to make
		errs       atomic.Int64
		mismatches atomic.Int64
		latencies  = make([]time.Duration, calls)
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
				if i >= calls {
					return
				}
				a, b := i, 2*i+1 // distinct arguments, so a swapped answer shows
				callCtx, cancel := context.WithTimeout(ctx, timeout)
				t0 := time.Now()
				sum, err := add(callCtx, a, b)
				latencies[i] = time.Since(t0)
				cancel()
				switch {
				case err != nil:
					errs.Add(1)
					report("call %d: %v", i, err)
				case sum != a+b:
					mismatches.Add(1)
					report("call %d: add(%d, %d) = %d, want %d", i, a, b, sum, a+b)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	slices.Sort(latencies)
	e, m := int(errs.Load()), int(mismatches.Load())
	fmt.Fprintf(stdout, "calls=%d ok=%d errors=%d mismatches=%d elapsed=%v rps=%.0f p50=%v p99=%v\n",
		calls, calls-e-m, e, m, elapsed.Round(time.Millisecond), float64(calls)/elapsed.Seconds(),
		percentile(latencies, 50), percentile(latencies, 99))
	if e+m > 0 {
		return fmt.Errorf("%d of %d calls failed or came back wrong", e+m, calls)
	}
	return nil
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
