//go:build exercises

package httpadd

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	make exercise STAGE=01
//
// `make test` compiles them (go vet -tags exercises) but does not run them.
// A worked solution of exercise K is in solutions/exercise-K.patch.

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	NewServer().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

// Exercise 1: a second procedure, sub(a, b), at /sub.
func TestExerciseSub(t *testing.T) {
	rec := get(t, "/sub?a=5&b=3")
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, `{"result": 2}`, rec.Body.String())

	rec = get(t, "/sub?a=-9223372036854775808&b=1")
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), "overflows")

	// The client half. The method is looked up at run time, so that this
	// file compiles before Client has it.
	ts := httptest.NewServer(NewServer())
	defer ts.Close()
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"))
	defer c.Close()
	stub, ok := any(c).(interface {
		Sub(ctx context.Context, a, b int) (int, error)
	})
	require.True(t, ok, "give Client a method Sub(ctx context.Context, a, b int) (int, error)")
	diff, err := stub.Sub(t.Context(), 5, 3)
	require.NoError(t, err)
	assert.Equal(t, 2, diff)
	_, err = stub.Sub(t.Context(), math.MinInt, 1)
	var se *ServerError
	require.True(t, errors.As(err, &se), "want a *ServerError, got %v", err)
	assert.Contains(t, se.Message, "overflows")
}

// Exercise 2: a missing operand is an error that names it, not 0.
func TestExerciseMissingOperand(t *testing.T) {
	rec := get(t, "/add?a=1")
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Equal(t, `{"error": "parameter b: missing"}`, rec.Body.String())
}

// Exercise 3: a query string longer than 1 KiB gets 414 URI Too Long.
func TestExerciseLongQuery(t *testing.T) {
	rec := get(t, "/add?a=1&b=2&"+strings.Repeat("x", 1024))
	assert.Equal(t, http.StatusRequestURITooLong, rec.Code)
	assert.Contains(t, rec.Body.String(), `"error"`)

	rec = get(t, "/add?a=1&b=2")
	assert.Equal(t, http.StatusOK, rec.Code)
}
