package atmostonce

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSum(t *testing.T) {
	tests := []struct {
		a, b    any
		want    any
		wantErr string
	}{
		{1, 2, 3, ""},
		{1.1, 2, 3.1, ""},
		{2, 1.1, 3.1, ""},
		{1.5, 1.5, 3.0, ""},
		{-5, 2, -3, ""},
		{math.MaxInt, 1, nil, "9223372036854775807 + 1 does not fit in an int (64 bits)"},
		{math.MaxFloat64, math.MaxFloat64, nil, "1.7976931348623157e+308 + 1.7976931348623157e+308 does not fit in a float (64 bits)"},
		{"a", "b", nil, `sum adds numbers, not str "a" and str "b"`},
		{1, "b", nil, `sum adds numbers, not int 1 and str "b"`},
	}
	for _, tt := range tests {
		got, err := Service{}.Sum(tt.a, tt.b)
		if tt.wantErr != "" {
			assert.EqualError(t, err, tt.wantErr, "sum(%v, %v)", tt.a, tt.b)
			assert.Nil(t, got)
			continue
		}
		assert.NoError(t, err)
		assert.Equal(t, tt.want, got, "sum(%#v, %#v)", tt.a, tt.b)
	}
}

func TestAddOverflow(t *testing.T) {
	for _, tt := range []struct {
		a, b int
		ok   bool
	}{
		{1, 2, true},
		{math.MaxInt, 0, true},
		{math.MaxInt, 1, false},
		{math.MinInt, -1, false},
		{math.MinInt, math.MaxInt, true},
		{-1, math.MinInt, false},
	} {
		sum, err := Service{}.Add(tt.a, tt.b)
		assert.Equal(t, tt.ok, err == nil, "add(%d, %d): %v", tt.a, tt.b, err)
		if tt.ok {
			assert.Equal(t, tt.a+tt.b, sum)
		}
	}
}

// TestGetTime checks the ctime layout, a space before a one-digit day
// included, and that a Service with no clock reads the real one.
func TestGetTime(t *testing.T) {
	at := func(tm time.Time) Service { return Service{Now: func() time.Time { return tm }} }
	assert.Equal(t, "Wed Jan 16 22:05:31 2019", at(articleTime).GetTime())
	assert.Equal(t, "Sun Jan  6 07:08:09 2019", at(time.Date(2019, 1, 6, 7, 8, 9, 0, time.UTC)).GetTime())

	before := time.Now().Truncate(time.Second)
	got, err := time.ParseInLocation(time.ANSIC, Service{}.GetTime(), time.Local)
	assert.NoError(t, err)
	assert.False(t, got.Before(before), "%v is before %v", got, before)
}

// TestSlow checks slow's bounds, and that it sleeps as long as it is asked,
// on the clock it is given.
func TestSlow(t *testing.T) {
	var slept []time.Duration
	svc := Service{Sleep: func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}}
	for _, tt := range []struct {
		ms      int
		wantErr string
	}{
		{0, ""},
		{300, ""},
		{MaxSlow, ""},
		{-1, "slow sleeps 0 to 10000 ms, not -1"},
		{MaxSlow + 1, "slow sleeps 0 to 10000 ms, not 10001"},
	} {
		got, err := svc.Slow(t.Context(), tt.ms)
		if tt.wantErr != "" {
			assert.EqualError(t, err, tt.wantErr)
			continue
		}
		assert.NoError(t, err)
		assert.Equal(t, tt.ms, got)
	}
	assert.Equal(t, []time.Duration{0, 300 * time.Millisecond, MaxSlow * time.Millisecond}, slept, "refused calls do not sleep")
}
