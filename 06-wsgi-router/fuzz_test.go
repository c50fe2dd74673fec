package wsgirouter

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// fuzzLimits are small, so the fuzzer reaches them.
var fuzzLimits = limits{requestLine: 1024 + 2, header: 4 << 10, headerFields: 32, body: 4 << 10}

// FuzzReadRequest feeds the same bytes to our parser and to net/http's
// http.ReadRequest. Ours must never panic, nor hold more than its limits.
// Where both accept a request, they must read the same request from it:
// two parsers that read different requests from the same bytes are how a
// request is smuggled past one of them.
//
// Where only net/http accepts, ours is stricter, on purpose, in these ways
// and no other (see acceptedOnlyByNetHTTP):
//   - a line that ends with LF alone (net/http's textproto accepts it);
//   - obs-fold, a field line that starts with a space or tab;
//   - a field name that is not a token: net/http lets a name hold a
//     space ("T 0: v") and keeps it as sent;
//   - a target that does not start with / (absolute form, *, authority);
//   - a version other than HTTP/1.0 and HTTP/1.1 (net/http takes any
//     HTTP/x.y);
//   - an HTTP/1.1 request without exactly one Host (net/http's
//     ReadRequest leaves that check to its Server);
//   - Content-Length repeated with equal values (net/http keeps one);
//   - POST, PUT or PATCH with no length (net/http reads an empty body;
//     we answer 411);
//   - Transfer-Encoding in HTTP/1.0 (net/http ignores it);
//   - Transfer-Encoding with Content-Length (net/http drops the length);
//   - a chunk size of 16 hex digits (net/http allows it; we stop at 15
//     digits, which bounds a size below 2^60); a chunk extension that is
//     not ;name=value (net/http drops it unread); a chunk line over our
//     4 KiB (net/http's is 4 KiB without its CR LF);
//   - a body or head over our small limits, which net/http has not;
//   - a bad percent-escape in the path, or a control character in the
//     target (net/http checks these too, but in its own order).
//
// Where only ours accepts, that is a finding, and the test fails.
func FuzzReadRequest(f *testing.F) {
	// The two cases of issue 17 that net/http refuses and ours took: a
	// bare CR in a chunk extension, and framing that costs far more than
	// its data (5 one-byte chunks, each with a size line of 4 KiB).
	longExt := "1;" + strings.Repeat("e", maxChunkLineBytes-len("1;\r\n")) + "\r\nx\r\n"
	f.Add([]byte("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat(longExt, 5) + "0\r\n\r\n"))
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /add?a=1&b=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"POST /api/v1.0/servers/alpha HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"name\": \"a\"}",
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n",
		"PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"GET /a%20b?q=%zz HTTP/1.1\r\nHost: x\r\nA: 1\r\na: 2\r\nX-Empty:\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\nPragma: no-cache\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n 2\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
		"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nA: \x00\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ours, oursErr := fuzzOurs(t, in)
		theirs, theirsErr := fuzzNetHTTP(in)
		switch {
		case oursErr == nil && theirsErr == nil:
			if ours.Method != theirs.Method || ours.Target != theirs.Target || ours.Proto != theirs.Proto ||
				ours.Body != theirs.Body || !maps.EqualFunc(ours.fields, theirs.fields, slices.Equal) {
				t.Errorf("the parsers read different requests from %q:\nours:     %+v\nnet/http: %+v", in, ours, theirs)
			}
		case oursErr == nil:
			t.Errorf("ours accepts what net/http refuses (%v): %q", theirsErr, in)
		case theirsErr == nil:
			if !acceptedOnlyByNetHTTP(in, oursErr) {
				t.Errorf("ours refuses (%v) what net/http accepts, in no way listed: %q", oursErr, in)
			}
		}
	})
}

// fuzzRequest is what a parser read, in a form both can fill: the fields
// as canonical name → values.
type fuzzRequest struct {
	Method, Target, Proto string
	fields                map[string][]string
	Body                  string
}

// fuzzOurs reads in with our parser and checks that it kept within its
// limits.
func fuzzOurs(t *testing.T, in []byte) (fuzzRequest, error) {
	r := &requestReader{br: bufio.NewReaderSize(bytes.NewReader(in), 4<<10), limits: fuzzLimits}
	var env Environ
	err := r.readHead(&env)
	if len(r.head) > fuzzLimits.header {
		t.Fatalf("a head of %d bytes held, over the limit of %d: %q", len(r.head), fuzzLimits.header, in)
	}
	if err != nil {
		return fuzzRequest{}, err
	}
	if len(env.Header) > fuzzLimits.headerFields {
		t.Fatalf("%d fields, over the limit of %d: %q", len(env.Header), fuzzLimits.headerFields, in)
	}
	n, chunked, err := bodyLength(&env, fuzzLimits.body)
	if err != nil {
		return fuzzRequest{}, err
	}
	err = r.readBody(&env, n, chunked)
	if r.body.Len() > fuzzLimits.body {
		t.Fatalf("a body of %d bytes held, over the limit of %d: %q", r.body.Len(), fuzzLimits.body, in)
	}
	if err != nil {
		return fuzzRequest{}, err
	}
	req := fuzzRequest{Method: env.Method, Target: env.Target, Proto: env.Proto, fields: map[string][]string{}, Body: string(env.Body)}
	for _, f := range env.Header {
		name := http.CanonicalHeaderKey(f.Name)
		req.fields[name] = append(req.fields[name], f.Value)
	}
	// net/http takes Host out of the fields and into req.Host, and takes
	// Transfer-Encoding out once it has decided on chunked; take them out
	// here too. With chunked it also drops Content-Length, but ours
	// refuses the two together, so a request both accept has no such
	// pair.
	delete(req.fields, "Host")
	delete(req.fields, "Transfer-Encoding")
	return req, nil
}

// fuzzNetHTTP reads in with net/http's parser, and its body up to a bound.
func fuzzNetHTTP(in []byte) (fuzzRequest, error) {
	hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
	if err != nil {
		return fuzzRequest{}, err
	}
	body, err := io.ReadAll(io.LimitReader(hr.Body, int64(fuzzLimits.body)+1))
	if err != nil {
		return fuzzRequest{}, err
	}
	req := fuzzRequest{Method: hr.Method, Target: hr.RequestURI, Proto: hr.Proto, fields: map[string][]string(hr.Header), Body: string(body)}
	// net/http adds Cache-Control: no-cache to a request with Pragma:
	// no-cache and no Cache-Control, for HTTP/1.0 caches; it is not in
	// the bytes, so take it out again.
	if _, sent := caseFoldKey(in, "cache-control"); !sent {
		delete(req.fields, "Cache-Control")
	}
	return req, nil
}

// caseFoldKey reports whether in has a line that starts with name and a
// colon, in any case.
func caseFoldKey(in []byte, name string) (int, bool) {
	lower := strings.ToLower(string(in))
	i := strings.Index(lower, "\n"+name+":")
	return i, i >= 0
}

// acceptedOnlyByNetHTTP reports whether in is refused by ours in one of
// the ways FuzzReadRequest lists as ours being stricter.
func acceptedOnlyByNetHTTP(in []byte, oursErr error) bool {
	var refused *httpError
	if !errors.As(oursErr, &refused) {
		// A request cut short: net/http, whose body reader is lazy, may
		// accept its head and read a shorter body. Allowed only if
		// net/http's body is not whole (its ReadAll above then fails,
		// so both refuse), or if ours needed bytes that net/http did
		// not: the request was refused by ours for being cut short where
		// net/http saw it end, after LF alone, say.
		return errors.Is(oursErr, io.ErrUnexpectedEOF)
	}
	s := string(in)
	head, _, _ := strings.Cut(s, "\r\n\r\n")
	line, _, _ := strings.Cut(head, "\n")
	switch refused.status {
	case http.StatusRequestURITooLong, http.StatusRequestHeaderFieldsTooLarge, http.StatusRequestEntityTooLarge:
		return true // our limits; net/http has larger ones
	case http.StatusLengthRequired:
		return true // net/http reads no body
	case http.StatusHTTPVersionNotSupported:
		return true // net/http takes any HTTP/x.y
	case http.StatusNotImplemented:
		return strings.Contains(strings.ToLower(head), "transfer-encoding") // net/http: 1.0 ignores it
	}
	// 400: one of the listed ways.
	lowerHead := strings.ToLower(head)
	switch {
	case strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\n") || strings.Count(s, "\r\n\r\n") == 0:
		return true // LF alone somewhere, or no CRLF CRLF at all
	case strings.Contains(head, "\r\n ") || strings.Contains(head, "\r\n\t"):
		return true // obs-fold
	case !strings.Contains(line, " /"):
		return true // a target that does not start with /
	case !strings.HasSuffix(strings.TrimRight(line, "\r"), " HTTP/1.1") && !strings.HasSuffix(strings.TrimRight(line, "\r"), " HTTP/1.0"):
		return true // a version we do not speak
	case strings.Count(lowerHead, "\nhost:") != 1:
		return true // Host missing or repeated
	case strings.Contains(lowerHead, "\ncontent-length:") && strings.Contains(lowerHead, "\ntransfer-encoding:"):
		return true // TE with CL
	case strings.Count(lowerHead, "\ncontent-length:") > 1:
		return true // CL repeated
	case strings.Contains(lowerHead, "\ntransfer-encoding:") && strings.Contains(line, "HTTP/1.0"):
		return true // TE in 1.0
	case strings.Contains(lowerHead, "\ntransfer-encoding:") && strings.Contains(refused.reason, "chunk"):
		return true // a chunk size net/http allows and we do not
	case strings.Contains(refused.reason, "is not a token") && strings.HasPrefix(refused.reason, "header name"):
		return true // a field name net/http allows
	case strings.Contains(refused.reason, "control character") || strings.Contains(refused.reason, "path"):
		return true // net/http checks these too, in another order or place
	}
	return false
}
