//go:build exercises

package httpadd

// The lesson's exercises, as tests that fail until the exercise is done:
//
//	go test -tags exercises -run Exercise ./01-http-add/
//
// `make test` compiles them (go vet -tags exercises) but does not run them.

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
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
