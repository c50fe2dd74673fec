package wsgirouter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
)

// fuzzLimits are small, so the fuzzer reaches them.
var fuzzLimits = limits{requestLine: 1024 + 2, header: 4 << 10, headerFields: 32, body: 4 << 10}

// FuzzReadRequest feeds the same bytes to our Server and to net/http's,
// each over a connection of its own, each with an application that
// answers what it read. Comparing servers, not only parsers, lets the
// oracle see the rules net/http keeps in its Server rather than in
// http.ReadRequest: a Host that is not a host, a missing Host, an Expect.
// Ours must never panic, nor hold more than its limits (fuzzOurs reads
// the bytes in-process too, to check that, and our Server must read what
// our parser does). Where both accept a request, they must read the same
// request from it: two servers that read different requests from the
// same bytes are how a request is smuggled past one of them.
//
// Two rules of ours differ from net/http's on purpose, and the oracle
// allows for them before it compares:
//   - empty lines before the request line are dropped (RFC 9112, 2.2,
//     SHOULD); net/http drops them only after a POST, so they are cut
//     from what net/http is sent;
//   - with a target in absolute form, both take the host from the
//     target; the application sees it as ours' Host field and as
//     net/http's Request.Host.
//
// Where only net/http accepts, ours is stricter, on purpose, in these ways
// and no other (see acceptedOnlyByNetHTTP):
//   - a line that ends with LF alone (net/http's textproto accepts it);
//   - obs-fold, a field line that starts with a space or tab;
//   - a field name that is not a token: net/http lets a name hold a
//     space ("T 0: v") and keeps it as sent;
//   - a target that is neither /path nor http://host/path (the
//     authority form of CONNECT, *, another scheme, userinfo, a host
//     with a %-escape);
//   - a Host that net/http's byte check lets through but that is not a
//     host and port (two colons, a bracket out of place);
//   - a version other than HTTP/1.0 and HTTP/1.1 (net/http takes any
//     HTTP/x.y);
//   - an HTTP/1.1 request without exactly one Host;
//   - Content-Length repeated with equal values (net/http keeps one);
//   - POST, PUT or PATCH with no length (net/http reads an empty body;
//     we answer 411);
//   - Transfer-Encoding in HTTP/1.0 (net/http ignores it);
//   - Transfer-Encoding with Content-Length (net/http drops the length);
//   - a chunk size of 16 hex digits, or with spaces after it and no ";";
//     a chunk extension that is not ;name=value (net/http drops it
//     unread); a chunk line over our 4 KiB (net/http's is 4 KiB without
//     its CR LF);
//   - an Expect other than 100-continue, wherever it stands in the list
//     (net/http reads the first Expect field only);
//   - a body, head or trailer over our small limits, which net/http has
//     not;
//   - a bad percent-escape in the path, or a control character in the
//     target (net/http checks these too, but in its own order).
//
// Where only ours accepts, that is a finding, and the test fails, but in
// two ways where the RFCs side with ours (see acceptedOnlyByOurs).
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
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: evil/x?\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET HTTP://h.example:80/a%2Fb?q HTTP/1.1\r\nHost: other\r\n\r\n",
		"GET http://h.example HTTP/1.0\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 100-continue\r\nExpect: 100-continue, \r\n\r\na",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 100-continue\r\nExpect: magic\r\n\r\na",
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 ; a = \"q\\\"\" ;b\r\nabc\r\n0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	servers := startFuzzServers(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		parsed, parseErr := fuzzOurs(t, in)
		ours, oursErr := fuzzExchange(servers.ours, in)
		theirs, theirsErr := fuzzExchange(servers.netHTTP, dropEmptyLines(in))
		switch {
		case (parseErr == nil) != (oursErr == nil):
			t.Fatalf("our Server (%v) and our parser (%v) disagree on %q", oursErr, parseErr, in)
		case oursErr == nil && !parsed.equal(ours):
			t.Fatalf("our Server and our parser read different requests from %q:\nparser: %+v\nServer: %+v", in, parsed, ours)
		}
		if _, sent := caseFoldKey(in, "cache-control"); !sent {
			// net/http adds Cache-Control: no-cache to a request with
			// Pragma: no-cache and no Cache-Control, for HTTP/1.0
			// caches; it is not in the bytes, so take it out again.
			delete(theirs.Fields, "Cache-Control")
		}
		switch {
		case oursErr == nil && theirsErr == nil:
			if !ours.equal(theirs) {
				t.Errorf("the servers read different requests from %q:\nours:     %+v\nnet/http: %+v", in, ours, theirs)
			}
		case oursErr == nil:
			if !acceptedOnlyByOurs(in, theirsErr) {
				t.Errorf("ours accepts what net/http refuses (%v): %q", theirsErr, in)
			}
		case theirsErr == nil:
			if !acceptedOnlyByNetHTTP(in, parseErr) {
				t.Errorf("ours refuses (%v) what net/http accepts, in no way listed: %q", parseErr, in)
			}
		}
	})
}

// fuzzRequest is what a server's application read, in a form both can
// fill: the fields as canonical name → values, Host apart (net/http takes
// it out of the fields), and Transfer-Encoding left out (net/http takes it
// out once it has decided on chunked).
type fuzzRequest struct {
	Method, Target, Proto, Host string
	Fields                      map[string][]string
	Body                        string
}

func (r fuzzRequest) equal(o fuzzRequest) bool {
	return r.Method == o.Method && r.Target == o.Target && r.Proto == o.Proto && r.Host == o.Host &&
		r.Body == o.Body && maps.EqualFunc(r.Fields, o.Fields, slices.Equal)
}

// fuzzRequestOf is what our application reads from env.
func fuzzRequestOf(env *Environ) fuzzRequest {
	req := fuzzRequest{Method: env.Method, Target: env.Target, Proto: env.Proto, Host: env.Header.Get("Host"),
		Fields: map[string][]string{}, Body: string(env.Body)}
	for _, f := range env.Header {
		name := http.CanonicalHeaderKey(f.Name)
		req.Fields[name] = append(req.Fields[name], f.Value)
	}
	// With chunked, net/http also drops Content-Length, but ours
	// refuses the two together, so a request both accept has no such
	// pair.
	delete(req.Fields, "Host")
	delete(req.Fields, "Transfer-Encoding")
	return req
}

// fuzzOurs reads in with our parser, as our Server does, and checks that
// it kept within its limits.
func fuzzOurs(t *testing.T, in []byte) (fuzzRequest, error) {
	r := &requestReader{br: bufio.NewReaderSize(bytes.NewReader(in), 4<<10), limits: fuzzLimits}
	var env Environ
	if err := r.skipEmptyLines(); err != nil {
		return fuzzRequest{}, err
	}
	err := r.readHead(&env)
	if len(r.head) > fuzzLimits.header {
		t.Fatalf("a head of %d bytes held, over the limit of %d: %q", len(r.head), fuzzLimits.header, in)
	}
	if err != nil {
		return fuzzRequest{}, err
	}
	// At most the limit, and the Host field that a target in absolute
	// form gives an HTTP/1.0 request that sent none.
	if len(env.Header) > fuzzLimits.headerFields+1 {
		t.Fatalf("%d fields, over the limit of %d: %q", len(env.Header), fuzzLimits.headerFields, in)
	}
	n, chunked, err := bodyLength(&env, fuzzLimits.body)
	if err != nil {
		return fuzzRequest{}, err
	}
	if _, err := expectsContinue(env.Header); err != nil {
		return fuzzRequest{}, err
	}
	err = r.readBody(&env, n, chunked)
	if r.body.Len() > fuzzLimits.body {
		t.Fatalf("a body of %d bytes held, over the limit of %d: %q", r.body.Len(), fuzzLimits.body, in)
	}
	if err != nil {
		return fuzzRequest{}, err
	}
	return fuzzRequestOf(&env), nil
}

// fuzzServers are the addresses of the two servers FuzzReadRequest sends
// its bytes to.
type fuzzServers struct{ ours, netHTTP string }

// startFuzzServers runs our Server, with fuzzLimits, and net/http's, each
// with an application that puts what it read in the answer's X-Echo field
// (a field, not the body, so that the answer to a HEAD carries it too).
func startFuzzServers(f *testing.F) fuzzServers {
	ours := NewServer(AppFunc(func(env *Environ, start StartResponse) []byte {
		_ = start(http.StatusOK, Header{{"X-Echo", encodeFuzzRequest(fuzzRequestOf(env))}})
		return nil
	}))
	ours.MaxRequestLineBytes = fuzzLimits.requestLine - 2
	ours.MaxHeaderBytes = fuzzLimits.header
	ours.MaxHeaderFields = fuzzLimits.headerFields
	ours.MaxBodyBytes = fuzzLimits.body

	// net/http's, with a handler written for it: what it read is what
	// net/http's Request says, with nothing of ours between.
	hs := &http.Server{ReadHeaderTimeout: rpctest.Backstop, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(fuzzLimits.body)+1))
		if err != nil {
			http.Error(w, "the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		req := fuzzRequest{Method: r.Method, Target: r.RequestURI, Proto: r.Proto, Host: r.Host, Fields: r.Header, Body: string(body)}
		w.Header().Set("X-Echo", encodeFuzzRequest(req))
	})}
	l := rpctest.Listen(f)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		assert.NoError(f, hs.Shutdown(ctx))
		assert.ErrorIs(f, <-served, http.ErrServerClosed)
	})
	return fuzzServers{ours: serve(f, ours, rpctest.Listen(f)), netHTTP: l.Addr().String()}
}

func encodeFuzzRequest(req fuzzRequest) string {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(req); err != nil {
		panic(err) // strings and a map of strings always encode
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// fuzzRefusal is a server's answer that was not the application's 200, or
// no answer at all (status 0).
type fuzzRefusal struct {
	status int
	err    error
}

func (r *fuzzRefusal) Error() string {
	if r.status == 0 {
		return fmt.Sprintf("no answer: %v", r.err)
	}
	return fmt.Sprintf("answered %d", r.status)
}

// fuzzExchange sends in to addr on a new connection, says it has sent all
// (CloseWrite, so a server waiting for more sees the end at once), and
// reads the first answer that is not 1xx. It returns what the application
// read, from X-Echo, or a *fuzzRefusal.
func fuzzExchange(addr string, in []byte) (fuzzRequest, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		panic(err) // our own servers, on loopback
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		panic(err)
	}
	// A server that refuses early may close before it reads all: a
	// failed write says nothing the answer does not.
	_, _ = conn.Write(in)
	_ = conn.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			panic(fmt.Sprintf("%s neither answered nor closed: %q", addr, in))
		}
		if err != nil {
			return fuzzRequest{}, &fuzzRefusal{err: err}
		}
		if resp.StatusCode < 200 {
			continue // 100 Continue
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Echo") == "" {
			return fuzzRequest{}, &fuzzRefusal{status: resp.StatusCode}
		}
		raw, err := base64.StdEncoding.DecodeString(resp.Header.Get("X-Echo"))
		if err != nil {
			panic(err)
		}
		var req fuzzRequest
		if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&req); err != nil {
			panic(err)
		}
		if req.Fields == nil {
			req.Fields = map[string][]string{} // gob sends an empty map as none
		}
		return req, nil
	}
}

// acceptedOnlyByOurs reports whether in, which ours accepts and net/http
// refuses, is one of the requests the RFCs side with ours on:
//   - spaces or tabs between a chunk size and its ";", RFC 9112's BWS,
//     which RFC 9110 (5.6.3) says a recipient MUST accept: net/http trims
//     them only at the end of a chunk line, and refuses "3 ;a";
//   - an Expect whose list has empty members ("Expect: ,"), which RFC
//     9110 (5.6.1) says a recipient MUST ignore: net/http answers 417 when
//     its first Expect field is not empty and holds no 100-continue. Ours
//     refuses every other member, so if it accepted, there was none.
func acceptedOnlyByOurs(in []byte, theirsErr error) bool {
	var refused *fuzzRefusal
	if errors.As(theirsErr, &refused) && refused.status == http.StatusExpectationFailed {
		return true
	}
	return chunkSizeBWS.Match(in)
}

// chunkSizeBWS matches a chunk-size line with spaces or tabs before its
// ";".
var chunkSizeBWS = regexp.MustCompile("\n[0-9a-fA-F]+[ \t]+;")

// dropEmptyLines cuts from in the empty lines that our server drops before
// a request line, and net/http drops only after a POST.
func dropEmptyLines(in []byte) []byte {
	for range maxEmptyLines {
		rest, ok := bytes.CutPrefix(in, []byte("\r\n"))
		if !ok {
			break
		}
		in = rest
	}
	return in
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
		// A request cut short, where net/http saw it end: after LF
		// alone, say. (Where net/http's body is not whole either, the
		// handler's ReadAll fails, and both refuse.)
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
	case http.StatusExpectationFailed:
		return true // net/http reads the first Expect field only
	}
	// 400: one of the listed ways.
	lowerHead := strings.ToLower(head)
	switch {
	case strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\n") || strings.Count(s, "\r\n\r\n") == 0:
		return true // LF alone somewhere, or no CRLF CRLF at all
	case strings.Contains(head, "\r\n ") || strings.Contains(head, "\r\n\t"):
		return true // obs-fold
	case !strings.Contains(line, " /") || strings.Contains(refused.reason, "nor with http:// and a host"):
		return true // a target neither /path nor http://host/path
	case !strings.HasSuffix(strings.TrimRight(line, "\r"), " HTTP/1.1") && !strings.HasSuffix(strings.TrimRight(line, "\r"), " HTTP/1.0"):
		return true // a version we do not speak
	case strings.Count(lowerHead, "\nhost:") != 1:
		return true // Host missing or repeated
	case strings.HasPrefix(refused.reason, "Host ") && strings.HasSuffix(refused.reason, " is not a host and port"):
		return true // a Host net/http's byte check lets through
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
