package httpadd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// The wire, as a person reading the traffic sees it:
//
//	GET /add?a=1&b=2 HTTP/1.1            the call: procedure in the path,
//	                                     arguments in the query string
//	HTTP/1.1 200 OK
//	Content-Type: application/json
//
//	{"result": 3}                        the answer
//
//	HTTP/1.1 400 Bad Request
//	Content-Type: application/json
//
//	{"error": "parameter b: \"x\" is not an integer"}
//
// The answer bodies are spelled the way Python's json.dumps spells them, with
// a space after the colon, so the bytes match the article's server exactly.

// parseOperands reads the operands a and b from a raw query string. A missing
// operand counts as 0, as in the article. Anything else that is not exactly
// one integer per operand is an error that names the parameter: a value that
// is not an integer, a value out of range, a parameter given twice, or a
// parameter add does not take.
func parseOperands(rawQuery string) (a, b int, err error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, 0, fmt.Errorf("query string: %v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if name != "a" && name != "b" {
			return 0, 0, fmt.Errorf("parameter %s: add takes only a and b", quoteShort(name))
		}
	}
	if a, err = operand(q, "a"); err != nil {
		return 0, 0, err
	}
	if b, err = operand(q, "b"); err != nil {
		return 0, 0, err
	}
	return a, b, nil
}

func operand(q url.Values, name string) (int, error) {
	values, ok := q[name]
	switch {
	case !ok:
		return 0, nil
	case len(values) > 1:
		return 0, fmt.Errorf("parameter %s: given %d times, give it once", name, len(values))
	}
	n, err := strconv.Atoi(values[0])
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("parameter %s: %s does not fit in an int (%d bits)", name, quoteShort(values[0]), strconv.IntSize)
	}
	if err != nil {
		return 0, fmt.Errorf("parameter %s: %s is not an integer", name, quoteShort(values[0]))
	}
	return n, nil
}

// quoteShort quotes s for an error message, cut to a readable length: an
// error must name the bad value, not echo a megabyte of it back.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// writeResult writes the answer to a call that worked.
func writeResult(w http.ResponseWriter, sum int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, `{"result": %d}`, sum)
}

// writeError writes the answer to a call that failed. The message is encoded
// with encoding/json, so quotes and control characters in it are escaped.
func writeError(w http.ResponseWriter, status int, message string) {
	var msg bytes.Buffer
	enc := json.NewEncoder(&msg)
	enc.SetEscapeHTML(false) // keep "&" as it is: this is not going into HTML
	_ = enc.Encode(message)  // a string always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error": %s}`, bytes.TrimSuffix(msg.Bytes(), []byte("\n")))
}

// maxAnswerBytes bounds how much of an answer the client reads. An honest
// answer is a few dozen bytes.
const maxAnswerBytes = 4 << 10

// decodeAnswer turns an HTTP status and body into add's result or an error.
// It never turns a failure into a number: an answer without a result, or with
// a result that is not an integer that fits an int, is an error.
func decodeAnswer(status int, body []byte) (int, error) {
	if status != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = "no JSON error in the answer: " + quoteShort(string(body))
		}
		return 0, &ServerError{Status: status, Message: e.Error}
	}
	var r struct {
		Result *int `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("answer %s: %w", quoteShort(string(body)), err)
	}
	if r.Result == nil {
		return 0, fmt.Errorf("answer %s has no \"result\"", quoteShort(string(body)))
	}
	return *r.Result, nil
}
