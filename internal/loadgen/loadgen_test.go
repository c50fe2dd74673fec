package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

func TestRunCountsEveryKindOfOutcome(t *testing.T) {
	add := func(_ context.Context, a, b int) (int, error) {
		switch {
		case a == 3:
			return 0, errors.New("refused")
		case a == 5:
			return a + b + 1, nil // a wrong sum must be caught
		}
		return a + b, nil
	}
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), &stdout, &stderr, 10, 4, time.Minute, add)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2 of 10 calls")
	assert.Regexp(t, `^calls=10 ok=8 errors=1 mismatches=1 elapsed=\S+ rps=\d+ p50=\S+ p99=\S+\n$`, stdout.String())
	assert.Contains(t, stderr.String(), "call 3: refused")
	assert.Contains(t, stderr.String(), "call 5: add(5, 11) = 17, want 16")
}

func TestRunRefusesNoConcurrency(t *testing.T) {
	err := Run(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}, 1, 0, time.Second,
		func(context.Context, int, int) (int, error) { return 0, nil })
	assert.ErrorContains(t, err, "-concurrency must be at least 1")
}

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	sorted := []time.Duration{ms(1), ms(2), ms(3), ms(4), ms(100)}
	assert.Equal(t, ms(3), percentile(sorted, 50))
	assert.Equal(t, ms(100), percentile(sorted, 99))
	assert.Equal(t, time.Duration(0), percentile(nil, 50))
}

// TestExcusedFailuresAreCountedApart runs a Test whose every third call
// fails in a way it expects, and one more in a way it does not: the
// expected ones are counted apart, not reported, and are no error.
func TestExcusedFailuresAreCountedApart(t *testing.T) {
	errExpected := errors.New("expected")
	test := Test{Calls: 9, Concurrency: 3, Timeout: time.Minute,
		Call: func(_ context.Context, i int) error {
			switch {
			case i%3 == 0:
				return fmt.Errorf("call %d: %w", i, errExpected)
			case i == 4:
				return &Mismatch{"four"}
			}
			return nil
		},
		Excused: func(err error) bool { return errors.Is(err, errExpected) },
	}
	var stderr bytes.Buffer
	r, err := test.Run(context.Background(), &stderr)
	require.NoError(t, err)
	assert.Equal(t, []int{9, 5, 0, 1, 3}, []int{r.Calls, r.OK, r.Errors, r.Mismatches, r.Excused})
	assert.Equal(t, "call 4: four\n", stderr.String())
	assert.ErrorContains(t, r.Err(), "1 of 9 calls")
	assert.Regexp(t, `^calls=9 ok=5 errors=0 mismatches=1 elapsed=\S+ rps=\d+ p50=\S+ p99=\S+$`, r.String())

	test.Excused = nil
	r, err = test.Run(context.Background(), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, []int{5, 3, 1, 0}, []int{r.OK, r.Errors, r.Mismatches, r.Excused})
}
