package wsgirouter

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codecLimits are small limits, so a table case can cross each one with a
// few bytes.
var codecLimits = limits{requestLine: 64 + 2, header: 512, headerFields: 8, body: 64}

// parsedRequest is what a requestReader made of some bytes.
type parsedRequest struct {
	Method, Target, Path, Query, Proto string
	Header                             Header
	Body                               string
}

// readOneRequest reads one request from in, as waitForRequest and
// serveRequest do: the empty lines before it, its head, how its body is
// framed, and its body.
func readOneRequest(in io.Reader, lim limits) (parsedRequest, error) {
	r := &requestReader{br: bufio.NewReader(in), limits: lim}
	var env Environ
	if err := r.skipEmptyLines(); err != nil {
		return parsedRequest{}, err
	}
	if err := r.readHead(&env); err != nil {
		return parsedRequest{}, err
	}
	n, chunked, err := bodyLength(&env, lim.body)
	if err != nil {
		return parsedRequest{}, err
	}
	if err := r.readBody(&env, n, chunked); err != nil {
		return parsedRequest{}, err
	}
	return parsedRequest{env.Method, env.Target, env.Path, env.Query, env.Proto,
		append(Header(nil), env.Header...), string(env.Body)}, nil
}

// refusalStatus returns the status of err if it is an *httpError, and 0 if
// it is not.
func refusalStatus(err error) int {
	var refused *httpError
	if errors.As(err, &refused) {
		return refused.status
	}
	return 0
}

// hostOnly is the header of most cases below.
var hostOnly = Header{{"Host", "x"}}

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want parsedRequest // when status is 0
		// status is the refusal expected: 0 for none.
		status int
		// err is the plain error expected when status is 0 and want is zero.
		err error
	}{
		// The request line.
		{name: "get", in: "GET /add?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n",
			want: parsedRequest{"GET", "/add?a=1&b=2", "/add", "a=1&b=2", "HTTP/1.1", hostOnly, ""}},
		{name: "http/1.0 needs no Host", in: "GET / HTTP/1.0\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.0", nil, ""}},
		{name: "percent-decoded path, raw query", in: "GET /a%20b%2Fc?q=%41 HTTP/1.1\r\nHost: x\r\n\r\n",
			want: parsedRequest{"GET", "/a%20b%2Fc?q=%41", "/a b/c", "q=%41", "HTTP/1.1", hostOnly, ""}},
		{name: "bad escape", in: "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "short escape", in: "GET /a% HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "missing version", in: "GET /\r\nHost: x\r\n\r\n", status: 400},
		{name: "lower-case version", in: "GET / http/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "version with junk", in: "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", status: 400},
		{name: "minor version unknown", in: "GET / HTTP/1.2\r\nHost: x\r\n\r\n", status: 400},
		{name: "http/2.0", in: "GET / HTTP/2.0\r\nHost: x\r\n\r\n", status: 505},
		{name: "http/0.9", in: "GET / HTTP/0.9\r\n\r\n", status: 505},
		{name: "two spaces", in: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "method not a token", in: "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		// RFC 9112, 3.2.2: a server MUST accept the absolute form, and
		// take the host from it, not from Host.
		{name: "absolute form", in: "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
			want: parsedRequest{"GET", "http://x/", "/", "", "HTTP/1.1", hostOnly, ""}},
		{name: "absolute form names the host", in: "GET HTTP://a.example:8080/p%20q?r=1 HTTP/1.1\r\nHost: b.example\r\nA: 1\r\n\r\n",
			want: parsedRequest{"GET", "HTTP://a.example:8080/p%20q?r=1", "/p q", "r=1", "HTTP/1.1", Header{{"Host", "a.example:8080"}, {"A", "1"}}, ""}},
		{name: "absolute form without a path", in: "GET https://a.example?r=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
			want: parsedRequest{"GET", "https://a.example?r=1", "/", "r=1", "HTTP/1.1", Header{{"Host", "a.example"}}, ""}},
		{name: "absolute form gives 1.0 its Host", in: "GET http://a.example/ HTTP/1.0\r\n\r\n",
			want: parsedRequest{"GET", "http://a.example/", "/", "", "HTTP/1.0", Header{{"Host", "a.example"}}, ""}},
		{name: "absolute form still needs Host in 1.1", in: "GET http://a.example/ HTTP/1.1\r\n\r\n", status: 400},
		{name: "absolute form, its Host still checked", in: "GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400},
		{name: "absolute form, not http", in: "GET ftp://a.example/ HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "absolute form, userinfo", in: "GET http://user@a.example/ HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "absolute form, no host", in: "GET http:///etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "absolute form, a port and no host", in: "GET http://:80/ HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "absolute form, a bad host", in: "GET http://a%zz/ HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "absolute form, an escape in the host", in: "GET http://caf%C3%A9.example/ HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "asterisk form", in: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "authority form", in: "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "tab in target", in: "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "DEL in target", in: "GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "NUL in target", in: "GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "bare CR in request line", in: "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "request line at its limit", in: "GET /" + strings.Repeat("a", 64-len("GET / HTTP/1.1")) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			want: parsedRequest{"GET", "/" + strings.Repeat("a", 50), "/" + strings.Repeat("a", 50), "", "HTTP/1.1", hostOnly, ""}},
		{name: "request line past its limit", in: "GET /" + strings.Repeat("a", 65-len("GET / HTTP/1.1")) + " HTTP/1.1\r\nHost: x\r\n\r\n", status: 414},
		// RFC 9112, 2.2: a server SHOULD ignore at least one empty line
		// before a request line. Ours drops up to maxEmptyLines.
		{name: "empty line first", in: "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", hostOnly, ""}},
		{name: "empty lines first, as many as dropped", in: strings.Repeat("\r\n", maxEmptyLines) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", hostOnly, ""}},
		{name: "empty lines first, one more", in: strings.Repeat("\r\n", maxEmptyLines+1) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "LF alone first", in: "\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "CR alone first", in: "\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "empty lines only", in: "\r\n\r\n", err: io.EOF},
		{name: "nothing", in: "", err: io.EOF},
		{name: "cut in the request line", in: "GET / HT", err: io.ErrUnexpectedEOF},
		{name: "cut in the head", in: "GET / HTTP/1.1\r\nHost: x\r\n", err: io.ErrUnexpectedEOF},

		// Header fields.
		{name: "fields in order, values trimmed", in: "GET / HTTP/1.1\r\nHost: x\r\nA:1\r\nb:  two words \t\r\nA: 3\r\nEmpty:\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", Header{{"Host", "x"}, {"A", "1"}, {"b", "two words"}, {"A", "3"}, {"Empty", ""}}, ""}},
		{name: "obs-text in a value", in: "GET / HTTP/1.1\r\nHost: x\r\nName: caf\xc3\xa9\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", Header{{"Host", "x"}, {"Name", "caf\xc3\xa9"}}, ""}},
		{name: "no colon", in: "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", status: 400},
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : x\r\n\r\n", status: 400},
		{name: "empty name", in: "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", status: 400},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n 2\r\n\r\n", status: 400},
		{name: "obs-fold with a colon", in: "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\tB: 2\r\n\r\n", status: 400},
		{name: "NUL in a value", in: "GET / HTTP/1.1\r\nHost: x\r\nA: 1\x002\r\n\r\n", status: 400},
		{name: "bare CR in a value", in: "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r2\r\n\r\n", status: 400},
		{name: "DEL in a value", in: "GET / HTTP/1.1\r\nHost: x\r\nA: 1\x7f\r\n\r\n", status: 400},
		{name: "tab in a value", in: "GET / HTTP/1.1\r\nHost: x\r\nA: 1\t2\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", Header{{"Host", "x"}, {"A", "1\t2"}}, ""}},
		{name: "bare LF ends the request line", in: "GET / HTTP/1.1\nHost: x\r\n\r\n", status: 400},
		{name: "bare LF ends a field", in: "GET / HTTP/1.1\r\nHost: x\n\r\n", status: 400},
		{name: "bare LF ends the head", in: "GET / HTTP/1.1\r\nHost: x\r\n\n", status: 400},
		{name: "fields at their count limit", in: "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: 1\r\n", 7) + "\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", append(Header{{"Host", "x"}}, repeatField(Field{"A", "1"}, 7)...), ""}},
		{name: "fields past their count limit", in: "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: 1\r\n", 8) + "\r\n", status: 431},
		{name: "head at its byte limit", in: headOfSize(512), want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1",
			Header{{"Host", "x"}, {"A", strings.Repeat("a", 512-len("GET / HTTP/1.1\r\nHost: x\r\nA: \r\n\r\n"))}}, ""}},
		{name: "head past its byte limit", in: headOfSize(513), status: 431},

		// Host.
		{name: "no Host", in: "GET / HTTP/1.1\r\n\r\n", status: 400},
		{name: "two Hosts", in: "GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", status: 400},
		{name: "empty Host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", Header{{"Host", ""}}, ""}},
		// RFC 9112, 3.2: a Host that is not a host MUST be answered 400.
		{name: "Host with a space", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400},
		{name: "Host with a path", in: "GET / HTTP/1.1\r\nHost: evil/x?\r\n\r\n", status: 400},
		{name: "Host with userinfo", in: "GET / HTTP/1.1\r\nHost: user@x\r\n\r\n", status: 400},
		{name: "Host with a bad port", in: "GET / HTTP/1.1\r\nHost: x:8o\r\n\r\n", status: 400},
		{name: "Host with two ports", in: "GET / HTTP/1.1\r\nHost: x:80:80\r\n\r\n", status: 400},
		{name: "Host with a bad escape", in: "GET / HTTP/1.1\r\nHost: x%2\r\n\r\n", status: 400},
		{name: "Host, IPv6 unclosed", in: "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", status: 400},
		{name: "Host, IPv6 with a zone", in: "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", status: 400},
		{name: "Host, IPv4 in brackets", in: "GET / HTTP/1.1\r\nHost: [127.0.0.1]\r\n\r\n", status: 400},
		{name: "Host in 1.0 is checked too", in: "GET / HTTP/1.0\r\nHost: a b\r\n\r\n", status: 400},
		{name: "Host, name and port", in: "GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", Header{{"Host", "Example.COM:8080"}}, ""}},
		{name: "Host, IPv6 and port", in: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", Header{{"Host", "[::1]:8080"}}, ""}},
		{name: "Host, escapes and sub-delims", in: "GET / HTTP/1.1\r\nHost: caf%C3%A9.x_y~z!$&'()*+,;=:\r\n\r\n",
			want: parsedRequest{"GET", "/", "/", "", "HTTP/1.1", Header{{"Host", "caf%C3%A9.x_y~z!$&'()*+,;=:"}}, ""}},

		// Framing of the body: bodyLength.
		{name: "content-length", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
			want: parsedRequest{"POST", "/p", "/p", "", "HTTP/1.1", Header{{"Host", "x"}, {"Content-Length", "5"}}, "hello"}},
		{name: "content-length 0", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
			want: parsedRequest{"POST", "/p", "/p", "", "HTTP/1.1", Header{{"Host", "x"}, {"Content-Length", "0"}}, ""}},
		{name: "content-length at the body limit", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n" + strings.Repeat("b", 64),
			want: parsedRequest{"POST", "/p", "/p", "", "HTTP/1.1", Header{{"Host", "x"}, {"Content-Length", "64"}}, strings.Repeat("b", 64)}},
		{name: "content-length past the body limit", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n", status: 413},
		{name: "huge content-length", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n", status: 413},
		{name: "content-length overflowing", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\n", status: 400},
		{name: "content-length with a sign", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", status: 400},
		{name: "content-length negative", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", status: 400},
		{name: "content-length with a space", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\nhello", status: 400},
		{name: "content-length in hex", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", status: 400},
		{name: "content-length a list", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", status: 400},
		{name: "content-length empty", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", status: 400},
		{name: "content-length repeated, same value", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", status: 400},
		{name: "content-length repeated, other value", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello!", status: 400},
		{name: "body cut short", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel", err: io.ErrUnexpectedEOF},
		{name: "post without a length", in: "POST /p HTTP/1.1\r\nHost: x\r\n\r\n", status: 411},
		{name: "put without a length", in: "PUT /p HTTP/1.1\r\nHost: x\r\n\r\n", status: 411},
		{name: "patch without a length", in: "PATCH /p HTTP/1.0\r\n\r\n", status: 411},
		{name: "delete without a length", in: "DELETE /p HTTP/1.1\r\nHost: x\r\n\r\n",
			want: parsedRequest{"DELETE", "/p", "/p", "", "HTTP/1.1", hostOnly, ""}},
		{name: "TE and CL together", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "TE gzip", in: "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", status: 501},
		{name: "TE gzip, chunked", in: "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501},
		{name: "TE twice", in: "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 501},
		{name: "TE in 1.0", in: "POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "TE any case", in: "POST /p HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n",
			want: parsedRequest{"POST", "/p", "/p", "", "HTTP/1.1", Header{{"Host", "x"}, {"transfer-encoding", "Chunked"}}, ""}},

		// Chunked bodies: readChunked.
		{name: "chunked", in: chunkedRequest("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), want: chunkedWant("hello world")},
		{name: "chunked, hex sizes any case", in: chunkedRequest("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n"), want: chunkedWant(strings.Repeat("0123456789", 2))},
		{name: "chunked, extensions", in: chunkedRequest("5;name=value\r\nhello\r\n0;last\r\n\r\n"), want: chunkedWant("hello")},
		{name: "chunked, extensions with spaces and quotes", in: chunkedRequest("5 ; a = b\t;c=\"x;\\\"y\\\\ \xe9\";d\r\nhello\r\n0\r\n\r\n"), want: chunkedWant("hello")},
		// RFC 9112, 7.1.1: an extension is ;name or ;name=value, the value a
		// token or a quoted string. net/http drops whatever follows ";"
		// unread; it refuses a bare CR only.
		{name: "chunked, bare CR in an extension", in: chunkedRequest("3;a\rb\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, bare CR in a quoted extension", in: chunkedRequest("3;a=\"\r\"\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, space inside an extension", in: chunkedRequest("3;a b\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension without a name", in: chunkedRequest("3;=b\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension empty", in: chunkedRequest("3;\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension without a value", in: chunkedRequest("3;a=\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension ending in ;", in: chunkedRequest("3;a=b;\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension with a space after", in: chunkedRequest("3;a=b \r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension quote unclosed", in: chunkedRequest("3;a=\"b\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension quote with a NUL", in: chunkedRequest("3;a=\"\x00\"\r\nabc\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, extension on the last chunk checked too", in: chunkedRequest("3\r\nabc\r\n0;a b\r\n\r\n"), status: 400},
		{name: "chunked, trailer", in: chunkedRequest("5\r\nhello\r\n0\r\nChecksum: 1\r\nMore: 2\r\n\r\n"), want: chunkedWant("hello")},
		{name: "chunked, empty", in: chunkedRequest("0\r\n\r\n"), want: chunkedWant("")},
		{name: "chunked, at the body limit", in: chunkedRequest("40\r\n" + strings.Repeat("c", 64) + "\r\n0\r\n\r\n"), want: chunkedWant(strings.Repeat("c", 64))},
		{name: "chunked, past the body limit in one chunk", in: chunkedRequest("41\r\n" + strings.Repeat("c", 65) + "\r\n0\r\n\r\n"), status: 413},
		{name: "chunked, past the body limit in two", in: chunkedRequest("40\r\n" + strings.Repeat("c", 64) + "\r\n1\r\nc\r\n0\r\n\r\n"), status: 413},
		{name: "chunked, size not hex", in: chunkedRequest("g\r\n"), status: 400},
		{name: "chunked, size empty", in: chunkedRequest("\r\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, size with a sign", in: chunkedRequest("+5\r\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, size negative", in: chunkedRequest("-5\r\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, size 0x", in: chunkedRequest("0x5\r\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, size with a space", in: chunkedRequest("5 \r\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, size overflowing int64", in: chunkedRequest("10000000000000005\r\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, largest size, past the limit", in: chunkedRequest("fffffffffffffff\r\n"), status: 413},
		{name: "chunked, size line at its limit", in: chunkedRequest("5;" + strings.Repeat("e", maxChunkLineBytes-len("5;\r\n")) + "\r\nhello\r\n0\r\n\r\n"), want: chunkedWant("hello")},
		{name: "chunked, size line too long", in: chunkedRequest("5;" + strings.Repeat("e", maxChunkLineBytes-len("5;\r\n")+1) + "\r\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, framing past its bound", in: chunkedRequest(strings.Repeat("1;"+strings.Repeat("e", maxChunkLineBytes-len("1;\r\n"))+"\r\nx\r\n", 5) + "0\r\n\r\n"), status: 400},
		{name: "chunked, framing within its bound", in: chunkedRequest(strings.Repeat("1;"+strings.Repeat("e", maxChunkLineBytes-len("1;\r\n"))+"\r\nx\r\n", 4) + "0\r\n\r\n"), want: chunkedWant("xxxx")},
		{name: "chunked, data longer than its size", in: chunkedRequest("5\r\nhello!\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, no CRLF after data", in: chunkedRequest("5\r\nhello0\r\n\r\n"), status: 400},
		{name: "chunked, LF alone after data", in: chunkedRequest("5\r\nhello\n0\r\n\r\n"), status: 400},
		{name: "chunked, LF alone after size", in: chunkedRequest("5\nhello\r\n0\r\n\r\n"), status: 400},
		{name: "chunked, LF alone ends the trailer", in: chunkedRequest("5\r\nhello\r\n0\r\n\n"), status: 400},
		// The trailer: at most codecLimits.header (512) bytes, its
		// lines' CR LF and the empty line that ends it included.
		{name: "chunked, trailer at its limit", in: chunkedRequest("0\r\nT: " + strings.Repeat("t", 512-len("T: \r\n\r\n")) + "\r\n\r\n"), want: chunkedWant("")},
		{name: "chunked, trailer a byte past", in: chunkedRequest("0\r\nT: " + strings.Repeat("t", 512-len("T: \r\n\r\n")+1) + "\r\n\r\n"), status: 431},
		{name: "chunked, trailer too long", in: chunkedRequest("0\r\n" + strings.Repeat("T: 1234567890\r\n", 40) + "\r\n"), status: 431},
		{name: "chunked, cut in data", in: chunkedRequest("5\r\nhel"), err: io.ErrUnexpectedEOF},
		{name: "chunked, no last chunk", in: chunkedRequest("5\r\nhello\r\n"), err: io.ErrUnexpectedEOF},
		{name: "chunked, no end of trailer", in: chunkedRequest("0\r\n"), err: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readers := map[string]io.Reader{
				"whole":            strings.NewReader(tt.in),
				"a byte at a time": iotest.OneByteReader(strings.NewReader(tt.in)),
			}
			for how, in := range readers {
				got, err := readOneRequest(in, codecLimits)
				switch {
				case tt.status != 0:
					assert.Equal(t, tt.status, refusalStatus(err), "%s: %v", how, err)
				case tt.err != nil:
					assert.ErrorIs(t, err, tt.err, how)
					assert.Zero(t, refusalStatus(err), how)
				default:
					if assert.NoError(t, err, how) {
						assert.Equal(t, tt.want, got, how)
					}
				}
			}
		})
	}
}

func repeatField(f Field, n int) Header {
	h := make(Header, n)
	for i := range h {
		h[i] = f
	}
	return h
}

// headOfSize returns a GET request whose head is exactly n bytes.
func headOfSize(n int) string {
	const frame = "GET / HTTP/1.1\r\nHost: x\r\nA: \r\n\r\n"
	return "GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", n-len(frame)) + "\r\n\r\n"
}

// chunkedRequest is a POST whose chunked body is body.
func chunkedRequest(body string) string {
	return "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
}

func chunkedWant(body string) parsedRequest {
	return parsedRequest{"POST", "/c", "/c", "", "HTTP/1.1", Header{{"Host", "x"}, {"Transfer-Encoding", "chunked"}}, body}
}

// TestReadRequestSplit splits one realistic request at every offset, as
// two writes would deliver it, and expects the same request each time: a
// parser must not care where the reads of a stream end.
func TestReadRequestSplit(t *testing.T) {
	const in = "POST /api/v1.0/servers/alpha?x=%41 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" +
		"User-Agent: test\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3;e=1\r\nabc\r\n4\r\ndefg\r\n0\r\nT: 1\r\n\r\n"
	want, err := readOneRequest(strings.NewReader(in), limits{requestLine: 1024, header: 1024, headerFields: 10, body: 1024})
	require.NoError(t, err)
	require.Equal(t, "abcdefg", want.Body)
	require.Equal(t, "/api/v1.0/servers/alpha", want.Path)
	for i := 1; i < len(in); i++ {
		in := io.MultiReader(strings.NewReader(in[:i]), strings.NewReader(in[i:]))
		got, err := readOneRequest(in, limits{requestLine: 1024, header: 1024, headerFields: 10, body: 1024})
		if assert.NoError(t, err, "split at %d", i) {
			assert.Equal(t, want, got, "split at %d", i)
		}
	}
}

// failAfter reads what r has, then fails the test if anyone reads on.
type failAfter struct {
	t *testing.T
	r io.Reader
}

func (f failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		f.t.Error("read past the bytes given: the limit was not checked before reading")
		return 0, errors.New("read past the bytes given")
	}
	return n, err
}

// TestTooLargeRefusedBeforeReading checks that a body whose length, or
// chunk size, is over the limit is refused from the claim alone: a server
// that read first would hold, or wait for, what the peer claims.
func TestTooLargeRefusedBeforeReading(t *testing.T) {
	tests := []struct{ name, in string }{
		{"content-length", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n"},
		{"first chunk", chunkedRequest("41\r\n")},
		{"a later chunk", chunkedRequest("20\r\n" + strings.Repeat("c", 32) + "\r\n21\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readOneRequest(failAfter{t, iotest.OneByteReader(strings.NewReader(tt.in))}, codecLimits)
			assert.Equal(t, http.StatusRequestEntityTooLarge, refusalStatus(err), "%v", err)
		})
	}
}

// TestReleaseDropsLargeBuffers checks that a requestReader keeps small
// buffers from request to request and drops those a large request grew.
func TestReleaseDropsLargeBuffers(t *testing.T) {
	large := "POST /p HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 8<<10) +
		"\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("b", 10000)
	small := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	r := &requestReader{br: bufio.NewReader(strings.NewReader(small + large + small)),
		limits: limits{requestLine: 1024, header: 16 << 10, headerFields: 100, body: 64 << 10}}
	for i, name := range []string{"small", "large", "small again"} {
		var env Environ
		require.NoError(t, r.readHead(&env), name)
		n, chunked, err := bodyLength(&env, r.limits.body)
		require.NoError(t, err, name)
		require.NoError(t, r.readBody(&env, n, chunked), name)
		if i == 1 {
			require.Len(t, env.Body, 10000)
			require.Greater(t, cap(r.head), keepBufferBytes)
		}
		r.release()
		assert.LessOrEqual(t, cap(r.head), keepBufferBytes, "head kept after the %s request", name)
		assert.LessOrEqual(t, r.body.Cap(), keepBufferBytes, "body kept after the %s request", name)
	}
}

func TestAppendResponseHead(t *testing.T) {
	date := []byte("Thu, 17 Jan 2019 17:24:02 GMT")
	tests := []struct {
		name string
		head responseHead
		want string
	}{
		{"default content type", responseHead{status: 200, date: date, contentLength: 3},
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 17 Jan 2019 17:24:02 GMT\r\nContent-Length: 3\r\n\r\n"},
		{"application's fields first, in order", responseHead{status: 201, date: date, contentLength: 0,
			header: Header{{"X-B", "2"}, {"content-type", "application/json"}, {"X-A", "1"}}},
			"HTTP/1.1 201 Created\r\nX-B: 2\r\ncontent-type: application/json\r\nX-A: 1\r\nDate: Thu, 17 Jan 2019 17:24:02 GMT\r\nContent-Length: 0\r\n\r\n"},
		{"close", responseHead{status: 400, date: date, contentLength: 12, close: true},
			"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 17 Jan 2019 17:24:02 GMT\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"},
		{"keep-alive to 1.0", responseHead{status: 404, date: date, contentLength: 7, keepAlive10: true},
			"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 17 Jan 2019 17:24:02 GMT\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n"},
		{"close wins over keep-alive", responseHead{status: 200, date: date, contentLength: 0, close: true, keepAlive10: true},
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 17 Jan 2019 17:24:02 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"status without a text", responseHead{status: 599, date: date, contentLength: 0},
			"HTTP/1.1 599 \r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 17 Jan 2019 17:24:02 GMT\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("kept")
			got := appendResponseHead(prefix, &tt.head)
			assert.Equal(t, "kept"+tt.want, string(got))
		})
	}
}

func TestAppendDate(t *testing.T) {
	assert.Equal(t, "Thu, 17 Jan 2019 17:24:02 GMT", string(appendDate(nil, articleTime)))
}

func TestCheckResponseFields(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header Header
		ok     bool
	}{
		{"plain", 200, Header{{"Content-Type", "text/html"}, {"X-Tab", "a\tb"}, {"X-Empty", ""}}, true},
		{"lowest status", 200, nil, true},
		{"highest status", 999, nil, true},
		{"informational status", 199, nil, false},
		{"status 1000", 1000, nil, false},
		{"status 0", 0, nil, false},
		{"Content-Length is the server's", 200, Header{{"Content-Length", "5"}}, false},
		{"in any case", 200, Header{{"content-length", "5"}}, false},
		{"Transfer-Encoding is the server's", 200, Header{{"Transfer-Encoding", "chunked"}}, false},
		{"Connection is the server's", 200, Header{{"CONNECTION", "close"}}, false},
		{"Date is the server's", 200, Header{{"Date", "today"}}, false},
		{"CR LF in a value: response splitting", 200, Header{{"X-A", "1\r\nSet-Cookie: stolen=1"}}, false},
		{"a whole answer in a value", 200, Header{{"X-A", "1\r\n\r\nHTTP/1.1 200 OK\r\n"}}, false},
		{"LF alone in a value", 200, Header{{"X-A", "1\nX-B: 2"}}, false},
		{"CR alone in a value", 200, Header{{"X-A", "1\r2"}}, false},
		{"NUL in a value", 200, Header{{"X-A", "\x00"}}, false},
		{"DEL in a value", 200, Header{{"X-A", "\x7f"}}, false},
		{"CR LF in a name", 200, Header{{"X-A\r\nX-B", "1"}}, false},
		{"space in a name", 200, Header{{"X A", "1"}}, false},
		{"colon in a name", 200, Header{{"X-A:", "1"}}, false},
		{"empty name", 200, Header{{"", "1"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkResponseFields(tt.status, tt.header)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestHasToken(t *testing.T) {
	tests := []struct {
		value, token string
		want         bool
	}{
		{"close", "close", true},
		{"Close", "close", true},
		{"keep-alive, Upgrade", "upgrade", true},
		{"  upgrade ,close  ", "close", true},
		{"a,,close", "close", true},
		{"closed", "close", false},
		{"enclose", "close", false},
		{"", "close", false},
		{",", "close", false},
		{"keep-alive", "close", false},
	}
	for _, tt := range tests {
		t.Run(tt.value+"/"+tt.token, func(t *testing.T) {
			assert.Equal(t, tt.want, hasToken(tt.value, tt.token))
		})
	}
}

func TestIsToken(t *testing.T) {
	for _, s := range []string{"GET", "X-Custom_1", "!#$%&'*+-.^_`|~"} {
		assert.True(t, isToken(s), s)
	}
	for _, s := range []string{"", "a b", "a:b", "a\tb", "(x)", "é", "a/b", "{}"} {
		assert.False(t, isToken(s), s)
	}
}

func TestQuoteShort(t *testing.T) {
	assert.Equal(t, `"a\r\n"`, quoteShort("a\r\n"))
	long := quoteShort(strings.Repeat("x", 1<<20))
	assert.Equal(t, `"`+strings.Repeat("x", 40)+`"...`, long)
}

// rfcApp answers what it read, as environApp does, but for two pages that
// show what a server writes for a HEAD: /no-body gives no body, as an
// application that skips the work for a HEAD does, and /five gives five
// bytes.
var rfcApp = AppFunc(func(env *Environ, start StartResponse) []byte {
	switch env.Path {
	case "/no-body":
		_ = start(http.StatusOK, nil)
		if env.Method == http.MethodHead {
			return nil
		}
		return []byte("a body only a GET gets")
	case "/five":
		_ = start(http.StatusOK, nil)
		return []byte("12345")
	}
	return environApp.ServeWSGI(env, start)
})

// wireAnswer is one answer read by allAnswers.
type wireAnswer struct {
	status int
	header http.Header
	body   string
}

// allAnswers sends request on a new connection to addr, says it has sent
// all (CloseWrite), and reads every answer until the server closes the
// connection. An answer to a request pipelined behind one that asked to
// close would show up here: a server that closes as asked gives none.
func allAnswers(t *testing.T, addr, request string) []wireAnswer {
	t.Helper()
	conn, br := rawConn(t, addr)
	sendWire(t, conn, request)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	method, _, _ := strings.Cut(request, " ")
	var answers []wireAnswer
	for {
		if _, err := br.Peek(1); err != nil {
			assertHungUp(t, err)
			return answers
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		answers = append(answers, wireAnswer{resp.StatusCode, resp.Header, string(body)})
	}
}

// rfcAnswer is what an answer of TestRFC9112OnBothServers must be.
type rfcAnswer struct {
	status   int
	contains []string // in the body
	noLength bool     // no Content-Length field
}

// TestRFC9112OnBothServers sends, to our server and to net/http's with the
// same application, requests that test what RFC 9112 and RFC 9110 say a
// server MUST or SHOULD do, and that real clients rely on. Both servers
// do the same, except where the table says what net/http does instead.
func TestRFC9112OnBothServers(t *testing.T) {
	post := func(path, body string, fields ...string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\n" + strings.Join(fields, "") +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	ok := func(contains ...string) rfcAnswer { return rfcAnswer{status: 200, contains: contains} }
	for _, tc := range []struct {
		name, request string
		ours          []rfcAnswer
		netHTTP       []rfcAnswer // nil: the same as ours
	}{
		// RFC 9112, 3.2: "A server MUST respond with a 400 (Bad Request)
		// status code to any HTTP/1.1 request message that lacks a Host
		// header field and to any request message that contains more
		// than one Host header field line or a Host header field with an
		// invalid field value."
		{name: "Host with a space", request: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ours: []rfcAnswer{{status: 400}}},
		{name: "Host with a path and a query", request: "GET / HTTP/1.1\r\nHost: evil/x?\r\n\r\n", ours: []rfcAnswer{{status: 400}}},
		{name: "Host with a port", request: "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
			ours: []rfcAnswer{ok(`{"Name":"Host","Value":"a.example:8080"}`)}},

		// RFC 9110, 5.3 and 7.6.1: Connection is a list, and may come as
		// several fields. The second request, pipelined behind the
		// first, must not be answered.
		{name: "Connection: keep-alive, then Connection: close",
			request: "GET /first HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n" + getRequest("/second"),
			ours:    []rfcAnswer{ok(`"Path":"/first"`)}},
		// For HTTP/1.0, net/http reads keep-alive in the first
		// Connection field only.
		{name: "HTTP/1.0 Connection: keep-alive, then Connection: close",
			request: "GET /first HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\nGET /second HTTP/1.0\r\n\r\n",
			ours:    []rfcAnswer{ok(`"Path":"/first"`)},
			netHTTP: []rfcAnswer{ok(`"Path":"/first"`), ok(`"Path":"/second"`)}},
		{name: "HTTP/1.0 Connection: upgrade, then Connection: keep-alive",
			request: "GET /first HTTP/1.0\r\nConnection: upgrade\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.0\r\n\r\n",
			ours:    []rfcAnswer{ok(`"Path":"/first"`), ok(`"Path":"/second"`)},
			netHTTP: []rfcAnswer{ok(`"Path":"/first"`)}},

		// RFC 9110, 10.1.1: Expect is a list too. net/http reads the
		// first Expect field only, and sends 100 Continue for a list
		// that holds something else as well; ours refuses what it
		// cannot meet (RFC 9110 allows 417 for it).
		{name: "Expect: 100-continue, twice",
			request: post("/p", "a", "Expect: 100-continue\r\n", "Expect: 100-continue\r\n"),
			ours:    []rfcAnswer{{status: 100}, ok(`"Body":"a"`)}},
		{name: "Expect: 100-continue, then an unknown one",
			request: post("/p", "a", "Expect: 100-continue\r\n", "Expect: magic\r\n"),
			ours:    []rfcAnswer{{status: 417, contains: []string{`Expect "magic": this server knows only 100-continue`}}},
			netHTTP: []rfcAnswer{{status: 100}, ok(`"Body":"a"`)}},

		// RFC 9112, 3.2.2: "A server MUST accept the absolute-form in
		// requests", and "MUST ignore the received Host header field"
		// then, taking the host from the target.
		{name: "absolute form", request: "GET http://a.example:8080/p%20q?r=1 HTTP/1.1\r\nHost: other\r\n\r\n",
			ours: []rfcAnswer{ok(`"Target":"http://a.example:8080/p%20q?r=1"`, `"Path":"/p q"`, `"Query":"r=1"`,
				`{"Name":"Host","Value":"a.example:8080"}`)}},
		{name: "absolute form without a path", request: "GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n",
			ours: []rfcAnswer{ok(`"Path":"/"`, `{"Name":"Host","Value":"a.example"}`)}},

		// RFC 9112, 2.2: "a server that is expecting to receive and
		// parse a request-line SHOULD ignore at least one empty line
		// (CRLF) received prior to the request-line." Some clients send
		// one after a POST body. net/http drops it after a POST only.
		{name: "an empty line after a POST body", request: post("/first", "a") + "\r\n" + getRequest("/second"),
			ours: []rfcAnswer{ok(`"Path":"/first"`), ok(`"Path":"/second"`)}},
		{name: "an empty line before the first request", request: "\r\n" + getRequest("/first"),
			ours:    []rfcAnswer{ok(`"Path":"/first"`)},
			netHTTP: []rfcAnswer{{status: 400}}},

		// RFC 9110, 9.3.2: a server SHOULD send the fields a GET would
		// get, but "MAY omit header fields for which a value is
		// determined only while generating the content". When the
		// application gives no body for a HEAD, Content-Length: 0 would
		// be false: none is sent.
		{name: "HEAD, and the application gives no body", request: "HEAD /no-body HTTP/1.1\r\nHost: x\r\n\r\n",
			ours: []rfcAnswer{{status: 200, noLength: true}}},
		{name: "HEAD, and the application gives the body", request: "HEAD /five HTTP/1.1\r\nHost: x\r\n\r\n",
			ours: []rfcAnswer{{status: 200}}},
	} {
		for server, addr := range bothServersOf(t, rfcApp) {
			t.Run(server+"/"+tc.name, func(t *testing.T) {
				want := tc.ours
				if server == "net/http" && tc.netHTTP != nil {
					want = tc.netHTTP
				}
				got := allAnswers(t, addr, tc.request)
				require.Len(t, got, len(want), "answers: %+v", got)
				for i, w := range want {
					assert.Equal(t, w.status, got[i].status, "answer %d: %q", i, got[i].body)
					for _, s := range w.contains {
						assert.Contains(t, got[i].body, s, "answer %d", i)
					}
					switch {
					case w.status != 200: // net/http writes its refusals with no length
					case w.noLength:
						assert.Empty(t, got[i].header.Values("Content-Length"), "answer %d", i)
					case strings.HasPrefix(tc.request, "HEAD "):
						assert.Equal(t, []string{"5"}, got[i].header.Values("Content-Length"), "answer %d", i)
					default:
						assert.Equal(t, []string{strconv.Itoa(len(got[i].body))}, got[i].header.Values("Content-Length"), "answer %d", i)
					}
				}
			})
		}
	}
}

// TestChunkedRefusalsSayWhy: each bound on a chunked body names itself,
// and its number, in the refusal the client reads.
func TestChunkedRefusalsSayWhy(t *testing.T) {
	longExt := "1;" + strings.Repeat("e", maxChunkLineBytes-len("1;\r\n")) + "\r\nx\r\n"
	for _, tc := range []struct {
		name, body string
		status     int
		reason     string
	}{
		{"size line", "5;" + strings.Repeat("e", maxChunkLineBytes) + "\r\nhello\r\n0\r\n\r\n", 400,
			"a chunk-size line is longer than 4096 bytes"},
		{"framing", strings.Repeat(longExt, 5) + "0\r\n\r\n", 400,
			"a chunked body with more than 16384 bytes of framing beyond its data"},
		{"extension", "3;a\rb\r\nabc\r\n0\r\n\r\n", 400,
			`chunk extension "a\rb" is not ;name or ;name=value`},
		{"trailer, one long field", "0\r\nT: " + strings.Repeat("t", 600) + "\r\n\r\n", 431,
			"the trailer is longer than 512 bytes"},
		{"trailer, many fields", "0\r\n" + strings.Repeat("T: 1\r\n", 200) + "\r\n", 431,
			"the trailer is longer than 512 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readOneRequest(strings.NewReader(chunkedRequest(tc.body)), codecLimits)
			var refused *httpError
			require.ErrorAs(t, err, &refused)
			assert.Equal(t, tc.status, refused.status)
			assert.Equal(t, tc.reason, refused.reason)
		})
	}
}

// TestChunkedFramingBound: the bound on framing beyond data is net/http's
// (CVE-2023-39326): 16 bytes a chunk, and twice its data, are free, and
// 16 KiB more is allowed. A body of one-byte chunks, the cheapest a
// streaming client sends, is never refused by it.
func TestChunkedFramingBound(t *testing.T) {
	big := limits{requestLine: 1024, header: 16 << 10, headerFields: 100, body: 1 << 20}
	oneByte := strings.Repeat("1\r\nx\r\n", 100000)
	got, err := readOneRequest(strings.NewReader(chunkedRequest(oneByte+"0\r\n\r\n")), big)
	require.NoError(t, err)
	assert.Len(t, got.Body, 100000)

	// A chunk of n bytes pays for 16 + 2n bytes of framing. These pay
	// for none of theirs: 6,000 one-byte chunks, each with an extension
	// of 100 bytes, as the attack with smaller lines.
	ext := "1;" + strings.Repeat("e", 100) + "\r\nx\r\n"
	_, err = readOneRequest(strings.NewReader(chunkedRequest(strings.Repeat(ext, 6000)+"0\r\n\r\n")), big)
	var refused *httpError
	require.ErrorAs(t, err, &refused)
	assert.Contains(t, refused.reason, "bytes of framing beyond its data")

	// The attack, 6,000 one-byte chunks each with an extension
	// of 16,000 bytes, made the server read 96 MB for 6,000 bytes of
	// body, then answer 200. Now the first size line is too long, and a
	// size line at our limit can be sent 4 times: the fifth is refused.
	for _, tc := range []struct {
		name    string
		extSize int
		atMost  int64 // bytes read from the connection before the refusal
	}{
		{"the issue's 16,000-byte extensions", 16000, maxChunkLineBytes + 8<<10},
		{"extensions as long as a line may be", maxChunkLineBytes - len("1;\r\n"), 5*maxChunkLineBytes + 8<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attack := &countingReader{r: io.MultiReader(strings.NewReader(chunkedRequest("")),
				&repeatReader{unit: "1;" + strings.Repeat("e", tc.extSize) + "\r\nx\r\n", times: 6000})}
			_, err := readOneRequest(attack, big)
			assert.Equal(t, 400, refusalStatus(err), "%v", err)
			t.Logf("refused after reading %d bytes of %d", attack.n, 6000*(tc.extSize+7))
			assert.LessOrEqual(t, attack.n, tc.atMost)
		})
	}

	// Data earns no credit for later framing: after a chunk of 100,000
	// bytes, size lines of 4 KiB are refused at the fifth, as they are
	// with no chunk before them. (net/http's rule, once more: without
	// the floor at 0, the big chunk would buy some 50 such lines.)
	long := "1;" + strings.Repeat("e", maxChunkLineBytes-len("1;\r\n")) + "\r\nx\r\n"
	banked := chunkedRequest(fmt.Sprintf("%x\r\n%s\r\n", 100000, strings.Repeat("d", 100000)) +
		strings.Repeat(long, 5) + "0\r\n\r\n")
	_, err = readOneRequest(strings.NewReader(banked), big)
	require.ErrorAs(t, err, &refused)
	assert.Contains(t, refused.reason, "bytes of framing beyond its data")

	// Where it stops: each such chunk adds 102 + 2 - 16 - 2 = 86 bytes.
	perChunk := len("1;") + 100 + 2 - 16 - 2
	fits := maxChunkOverhead / perChunk
	_, err = readOneRequest(strings.NewReader(chunkedRequest(strings.Repeat(ext, fits)+"0\r\n\r\n")), big)
	assert.NoError(t, err, "%d chunks", fits)
	_, err = readOneRequest(strings.NewReader(chunkedRequest(strings.Repeat(ext, fits+1)+"0\r\n\r\n")), big)
	assert.Error(t, err, "%d chunks", fits+1)
}

// TestListFields: Connection and Expect are lists, and a client may send
// a list as several fields (RFC 9110, 5.3).
func TestListFields(t *testing.T) {
	h := Header{{"Host", "x"}, {"Connection", "keep-alive"}, {"connection", "Upgrade, CLOSE"}}
	assert.True(t, h.hasToken("Connection", "close"))
	assert.True(t, h.hasToken("CONNECTION", "keep-alive"))
	assert.True(t, h.hasToken("Connection", "upgrade"))
	assert.False(t, h.hasToken("Connection", "x"))
	assert.False(t, h.hasToken("Host", "close"))

	for _, tc := range []struct {
		name   string
		header Header
		waits  bool
		refuse string
	}{
		{"none", Header{{"Host", "x"}}, false, ""},
		{"empty", Header{{"Expect", ""}}, false, ""},
		{"100-continue", Header{{"Expect", "100-Continue"}}, true, ""},
		{"twice, and empty members", Header{{"Expect", "100-continue, ,"}, {"expect", " 100-continue"}}, true, ""},
		{"unknown in a list", Header{{"Expect", "100-continue, magic"}}, false, "magic"},
		{"unknown in a second field", Header{{"Expect", "100-continue"}, {"Expect", "magic"}}, false, "magic"},
		{"unknown first", Header{{"Expect", "magic"}, {"Expect", "100-continue"}}, false, "magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waits, err := expectsContinue(tc.header)
			if tc.refuse != "" {
				assert.Equal(t, http.StatusExpectationFailed, refusalStatus(err))
				assert.ErrorContains(t, err, tc.refuse)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.waits, waits)
		})
	}
}

// codecPipeListener is a net.Listener whose connections are net.Pipe
// ends, for tests that run a Server inside a testing/synctest bubble,
// where deadlines run on the bubble's fake clock.
type codecPipeListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newCodecPipeListener() *codecPipeListener {
	return &codecPipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// dial makes a connection and hands its other end to Accept.
func (l *codecPipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

func (l *codecPipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *codecPipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *codecPipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "pipe"} }

// TestEmptyLineAfterABodyWaitsAsIdle: the empty line a client sends after
// a POST body is dropped while the connection waits for its next request,
// within IdleTimeout (60 s), not within HeaderTimeout (5 s), which starts
// at a request's first byte. A kept-alive client that then says nothing
// for 30 s gets its next request answered, and the connection closes 60 s
// after its last answer, as any idle one does. The clock is
// testing/synctest's, so the test asserts those moments exactly.
func TestEmptyLineAfterABodyWaitsAsIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newCodecPipeListener()
		srv := NewServer(rfcApp)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		conn := l.dial()
		br := bufio.NewReader(conn)

		_, err := io.WriteString(conn, "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na\r\n")
		require.NoError(t, err)
		resp, body := readWire(t, br, "POST")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Contains(t, string(body), `"Path":"/first"`)

		time.Sleep(30 * time.Second) // past HeaderTimeout, within IdleTimeout
		_, err = io.WriteString(conn, getRequest("/second"))
		require.NoError(t, err, "the connection outlived HeaderTimeout after the empty line")
		resp, body = readWire(t, br, "GET")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Contains(t, string(body), `"Path":"/second"`)

		start := time.Now()
		_, err = br.ReadByte()
		assert.ErrorIs(t, err, io.EOF)
		assert.Equal(t, DefaultIdleTimeout, time.Since(start), "closed when idle for IdleTimeout")

		require.NoError(t, conn.Close())
		require.NoError(t, srv.Shutdown(t.Context()))
		<-served
	})
}

// repeatReader reads unit, times times, without holding more than one.
type repeatReader struct {
	unit  string
	times int
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.times > 0 {
		c := copy(p[n:], r.unit[r.off:])
		n += c
		if r.off += c; r.off == len(r.unit) {
			r.off, r.times = 0, r.times-1
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
