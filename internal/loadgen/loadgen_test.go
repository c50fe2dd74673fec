package loadgen

import (
	"bytes"
	"context"
	"errors"
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
