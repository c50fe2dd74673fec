package wsgirouter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The wire, as a person reading the traffic sees it: HTTP/1.1 (RFC 9112).
//
//	GET /api/v1.0/servers/alpha HTTP/1.1     request line: method, target, version
//	Host: 127.0.0.1:8080                     header fields, one a line
//	                                         an empty line ends the head
//	HTTP/1.1 200 OK                          status line
//	Content-Type: application/json
//	Date: Wed, 25 Nov 2026 18:30:00 GMT
//	Content-Length: 82                       how many bytes of body follow
//
//	{"infos": [{"name": "alpha", ...}]}      the body: exactly 82 bytes
//
// Every line ends with CR LF. A body is framed by Content-Length, or sent
// in chunks (Transfer-Encoding: chunked), each chunk preceded by its size
// in hex and the last one empty. Framing is what lets one connection carry
// request after request: the reader always knows where a message ends.

// httpError is a request the server refuses before the application sees
// it: the status to answer with, and why. The server answers it and closes
// the connection, because after a request it could not read it cannot
// know where the next one starts.
type httpError struct {
	status int
	reason string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.reason)
}

func refuse(status int, format string, args ...any) *httpError {
	return &httpError{status: status, reason: fmt.Sprintf(format, args...)}
}

// requestReader reads requests from one connection. It keeps its buffers
// from request to request, so a kept-alive connection costs no allocation
// for them after the first; buffers that grew past keepBufferBytes are
// dropped after their request.
type requestReader struct {
	br     *bufio.Reader
	limits limits
	head   []byte       // the request line and header fields, as read
	body   bytes.Buffer // the body, as read (after chunked decoding)
	fields Header       // reused from request to request
}

// limits are the bounds a requestReader enforces; Server fills them from
// its fields.
type limits struct {
	requestLine  int // bytes in the request line, CR LF included
	header       int // bytes in the request line and header fields together
	headerFields int // header fields in one request
	body         int // bytes of body, after chunked decoding
}

// keepBufferBytes is the largest buffer a connection keeps between
// requests. An idle connection holds small buffers, however large its
// last request was.
const keepBufferBytes = 4 << 10

// release drops buffers that grew large. Call it once a request is answered.
func (r *requestReader) release() {
	if cap(r.head) > keepBufferBytes {
		r.head = nil
	}
	if r.body.Cap() > keepBufferBytes {
		r.body = bytes.Buffer{}
	}
	if cap(r.fields) > 64 {
		r.fields = nil
	}
}

// maxEmptyLines is how many empty lines skipEmptyLines drops before a
// request line.
const maxEmptyLines = 4

// skipEmptyLines drops the empty lines (CR LF) that a client may send
// before a request line: some send one after a POST body, and RFC 9112
// (2.2) says a server SHOULD ignore at least one. It drops at most
// maxEmptyLines (a request line after more is read as it comes, and
// refused), and returns once the next byte is there and is not the start
// of one, or the connection fails. It waits as Peek does: the caller sets
// the read deadline.
func (r *requestReader) skipEmptyLines() error {
	for range maxEmptyLines {
		b, err := r.br.Peek(1)
		if err != nil {
			return err
		}
		if b[0] != '\r' {
			return nil
		}
		if b, err = r.br.Peek(2); err != nil {
			return err
		}
		if b[1] != '\n' {
			return nil // a bare CR: readHead refuses it
		}
		_, _ = r.br.Discard(2)
	}
	_, err := r.br.Peek(1)
	return err
}

// requestBuffered reports whether the next request's first byte is
// buffered already, a request pipelined behind the last one. An empty
// line does not count: skipEmptyLines drops it, and the wait for the
// request goes on.
func (r *requestReader) requestBuffered() bool {
	if r.br.Buffered() == 0 {
		return false
	}
	b, _ := r.br.Peek(1)
	return b[0] != '\r'
}

// readHead reads a request line and its header fields into env. It
// returns io.EOF if the connection closed cleanly before the request's
// first byte, an *httpError if the request is not one the server accepts,
// and other errors as the connection gives them.
func (r *requestReader) readHead(env *Environ) error {
	var err error
	if r.head, err = readLine(r.br, r.head[:0], r.limits.requestLine); err != nil {
		if err == io.ErrUnexpectedEOF && len(r.head) == 0 {
			return io.EOF
		}
		return lineError(err, refuse(http.StatusRequestURITooLong, "the request line is longer than %d bytes", r.limits.requestLine))
	}
	for {
		start := len(r.head)
		if r.head, err = readLine(r.br, r.head, r.limits.header); err != nil {
			return lineError(err, refuse(http.StatusRequestHeaderFieldsTooLarge, "the request line and header fields are longer than %d bytes", r.limits.header))
		}
		if len(r.head)-start == 2 {
			break // the empty line that ends the head
		}
	}
	// One string for the whole head: the method, the target and every
	// header field are slices of it, so a request costs one allocation
	// here, however many fields it has.
	return r.parseHead(string(r.head), env)
}

// parseHead checks and splits the head read by readHead. Lines must end
// with CR LF, and a bare CR or LF anywhere else is refused: two parsers
// that disagree on where a line ends disagree on where a request ends,
// and that disagreement is how requests are smuggled past a proxy.
func (r *requestReader) parseHead(head string, env *Environ) error {
	line, rest, _ := strings.Cut(head, "\r\n")
	authority, err := parseRequestLine(line, env)
	if err != nil {
		return err
	}
	r.fields = r.fields[:0]
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		if len(r.fields) == r.limits.headerFields {
			return refuse(http.StatusRequestHeaderFieldsTooLarge, "more than %d header fields", r.limits.headerFields)
		}
		f, err := parseField(line)
		if err != nil {
			return err
		}
		r.fields = append(r.fields, f)
	}
	// RFC 9112, 3.2: a server MUST answer 400 to an HTTP/1.1 request with
	// no Host, to any with two, and to any whose Host is not a host.
	// Applications read Host (to build links, to pick a site), so a value
	// such as "evil/x?" must never reach them.
	switch hosts := r.fields.count("Host"); {
	case hosts > 1:
		return refuse(http.StatusBadRequest, "%d Host fields: which host is meant?", hosts)
	case hosts == 0 && env.Proto == "HTTP/1.1":
		return refuse(http.StatusBadRequest, "an HTTP/1.1 request needs a Host field")
	case hosts == 1 && !validHost(r.fields.Get("Host")):
		return refuse(http.StatusBadRequest, "Host %s is not a host and port", quoteShort(r.fields.Get("Host")))
	}
	if authority != "" {
		r.setHost(authority)
	}
	env.Header = r.fields
	return nil
}

// setHost makes the Host field say authority, the host of a target in
// absolute form: RFC 9112 (3.2.2) says a server MUST ignore the Host field
// it received then, and use the target's. An HTTP/1.0 request may have no
// Host field; it gets one, as net/http's Request.Host would give it.
func (r *requestReader) setHost(authority string) {
	for i := range r.fields {
		if strings.EqualFold(r.fields[i].Name, "Host") {
			r.fields[i].Value = authority
			return
		}
	}
	r.fields = append(r.fields, Field{Name: "Host", Value: authority})
}

// validHost reports whether s is a Host field's value, or the authority of
// a target in absolute form: uri-host [ ":" port ] (RFC 9110, 7.2), where
// uri-host is an IPv6 address in brackets, or a name or IPv4 address
// made of letters, digits, "-._~", "!$&'()*+,;=" and %-escapes (RFC 3986,
// 3.2.2), and port is decimal digits. An empty value is valid: a client
// sends one when the target names no host. net/http's server checks only
// that each byte is one of these; ours checks where each may stand.
func validHost(s string) bool {
	host, port, hasPort := s, "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		ip, err := netip.ParseAddr(s[1:end])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return false
			}
			port, hasPort = rest[1:], true
		}
		host = ""
	} else {
		host, port, hasPort = strings.Cut(s, ":")
	}
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case c == '%':
			if i+2 >= len(host) || !isHex(host[i+1]) || !isHex(host[i+2]) {
				return false
			}
			i += 2
		case !hostChar[c]:
			return false
		}
	}
	if hasPort {
		for i := 0; i < len(port); i++ {
			if !isDigit(port[i]) {
				return false
			}
		}
	}
	return true
}

// hostChar holds the bytes a host name may hold besides %-escapes: RFC
// 3986's unreserved and sub-delims.
var hostChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "-._~!$&'()*+,;=" {
		t[c] = true
	}
	return t
}()

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// parseRequestLine reads "METHOD TARGET HTTP/1.1" into env. It returns
// the authority of a target in absolute form ("http://host:port/path"),
// and "" for the origin form ("/path?query").
func parseRequestLine(line string, env *Environ) (authority string, err error) {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return "", refuse(http.StatusBadRequest, "the request line is not METHOD TARGET VERSION: %s", quoteShort(line))
	}
	if !isToken(method) {
		return "", refuse(http.StatusBadRequest, "method %s is not a token", quoteShort(method))
	}
	switch proto {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		if len(proto) == 8 && strings.HasPrefix(proto, "HTTP/") && proto[6] == '.' &&
			isDigit(proto[5]) && isDigit(proto[7]) && proto[5] != '1' {
			return "", refuse(http.StatusHTTPVersionNotSupported, "this server speaks HTTP/1.1 and HTTP/1.0, not %s", proto)
		}
		return "", refuse(http.StatusBadRequest, "version %s is not HTTP/1.1 or HTTP/1.0", quoteShort(proto))
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return "", refuse(http.StatusBadRequest, "target %s holds a control character", quoteShort(target))
		}
	}
	rawPath, query, _ := strings.Cut(target, "?")
	if !strings.HasPrefix(rawPath, "/") {
		// The origin form, "/path?query", is what clients send to a
		// server. The absolute form is what they send to a proxy, and a
		// server MUST accept it too (RFC 9112, 3.2.2). The authority
		// form (CONNECT) and the asterisk form (OPTIONS *) are for
		// proxies and server-wide options, which this server is not.
		var ok bool
		if authority, rawPath, ok = cutAbsoluteForm(rawPath); !ok {
			return "", refuse(http.StatusBadRequest, "target %s does not start with /, nor with http:// and a host", quoteShort(target))
		}
	}
	path := rawPath
	if strings.IndexByte(rawPath, '%') >= 0 {
		if path, err = url.PathUnescape(rawPath); err != nil {
			return "", refuse(http.StatusBadRequest, "path %s: %v", quoteShort(rawPath), err)
		}
	}
	env.Method, env.Target, env.RawPath, env.Path, env.Query, env.Proto = method, target, rawPath, path, query, proto
	return authority, nil
}

// cutAbsoluteForm splits an absolute-form target, up to its "?", into its
// authority and its path: "http://host:8080/a/b" into "host:8080" and
// "/a/b", and "http://host" into "host" and "/". It reports false for a
// scheme other than http and https, and for an authority that is not a
// host (validHost refuses the "@" of userinfo, "user@host", which RFC
// 9110, 4.2.4, says to treat as an error), whose host is empty (RFC 9110,
// 4.2.1, says to reject it), or that holds a %-escape (net/http decodes
// some and refuses others: two servers would read two hosts).
func cutAbsoluteForm(s string) (authority, path string, ok bool) {
	scheme, rest, found := strings.Cut(s, "://")
	if !found || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
		return "", "", false
	}
	authority, path = rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if authority == "" || authority[0] == ':' || strings.IndexByte(authority, '%') >= 0 || !validHost(authority) {
		return "", "", false
	}
	return authority, path, true
}

// parseField reads "Name: value". The name must be a token with no space
// before the colon, and a line that starts with a space (the obsolete
// folding of a long value) is refused: both are ways to make two parsers
// read different fields from the same bytes.
func parseField(line string) (Field, error) {
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return Field{}, refuse(http.StatusBadRequest, "header line %s has no colon", quoteShort(line))
	}
	if !isToken(name) {
		return Field{}, refuse(http.StatusBadRequest, "header name %s is not a token", quoteShort(name))
	}
	value = strings.Trim(value, " \t")
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return Field{}, refuse(http.StatusBadRequest, "header %s holds a control character", name)
		}
	}
	return Field{Name: name, Value: value}, nil
}

// bodyLength says how the body of env's request is framed: its length, or
// chunked, or none. It refuses what it cannot frame safely.
func bodyLength(env *Environ, maxBody int) (n int, chunked bool, err error) {
	te := env.Header.count("Transfer-Encoding")
	cl := env.Header.count("Content-Length")
	switch {
	case te > 0 && cl > 0:
		// Which one frames the body? A proxy and a server that answer
		// differently see different requests: refuse (RFC 9112, 6.3).
		return 0, false, refuse(http.StatusBadRequest, "Transfer-Encoding and Content-Length together")
	case te > 0:
		if env.Proto == "HTTP/1.0" {
			return 0, false, refuse(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if te > 1 || !strings.EqualFold(env.Header.Get("Transfer-Encoding"), "chunked") {
			return 0, false, refuse(http.StatusNotImplemented, "Transfer-Encoding %s: this server decodes only chunked", quoteShort(env.Header.Get("Transfer-Encoding")))
		}
		return 0, true, nil
	case cl > 1:
		return 0, false, refuse(http.StatusBadRequest, "Content-Length given %d times", cl)
	case cl == 1:
		v := env.Header.Get("Content-Length")
		n, ok := parseLength(v)
		if !ok {
			return 0, false, refuse(http.StatusBadRequest, "Content-Length %s is not a length", quoteShort(v))
		}
		if n > int64(maxBody) {
			return 0, false, refuse(http.StatusRequestEntityTooLarge, "a body of %d bytes is over the limit of %d", n, maxBody)
		}
		return int(n), false, nil
	case needsBody(env.Method):
		return 0, false, refuse(http.StatusLengthRequired, "a %s request needs a Content-Length", env.Method)
	}
	return 0, false, nil
}

// needsBody reports whether a request with this method carries a body, so
// that one without a length cannot be read.
func needsBody(method string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}

// parseLength reads a Content-Length: decimal digits only, no sign, no
// spaces, and not so many that they overflow.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// readBody reads the body bytes bodyLength framed into r.body, and points
// env.Body at them.
func (r *requestReader) readBody(env *Environ, n int, chunked bool) error {
	r.body.Reset()
	var err error
	if chunked {
		err = readChunked(r.br, &r.body, r.limits.body, r.limits.header)
	} else {
		err = readN(r.br, &r.body, n)
	}
	env.Body = r.body.Bytes()
	return err
}

// readN appends exactly n bytes from br to dst. dst grows as the bytes
// arrive, never by what a peer claims it will send.
func readN(br *bufio.Reader, dst *bytes.Buffer, n int) error {
	for n > 0 {
		// What is buffered, or, when nothing is, one read's worth: a
		// body of many small chunks costs no allocation per chunk.
		p, err := br.Peek(min(n, max(br.Buffered(), 1)))
		dst.Write(p)
		_, _ = br.Discard(len(p))
		n -= len(p)
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readChunked decodes a chunked body from br into dst:
//
//	5␍␊hello␍␊   a chunk: its size in hex, CR LF, the bytes, CR LF
//	0␍␊␍␊        the last chunk, then trailer fields (dropped), then an empty line
//
// It refuses a body of more than maxBody bytes with 413 as soon as a
// chunk's size says so. A size line may carry extensions (";name=value"),
// which are checked and dropped; it is at most maxChunkLineBytes long, and
// the framing of the whole body at most maxChunkOverhead bytes more than
// its data pays for. The trailer is at most maxTrailer bytes.
func readChunked(br *bufio.Reader, dst *bytes.Buffer, maxBody, maxTrailer int) error {
	var line []byte
	overhead := int64(0) // framing bytes not paid for by data, as net/http counts them
	for {
		var err error
		if line, err = readLine(br, line[:0], maxChunkLineBytes); err != nil {
			return lineError(err, refuse(http.StatusBadRequest, "a chunk-size line is longer than %d bytes", maxChunkLineBytes))
		}
		line = line[:len(line)-2] // its CR LF
		sizeText, ext, hasExt := bytes.Cut(line, []byte(";"))
		if hasExt {
			sizeText = bytes.TrimRight(sizeText, " \t") // RFC 9112 allows spaces before ";"
			if !validChunkExt(ext) {
				return refuse(http.StatusBadRequest, "chunk extension %s is not ;name or ;name=value", quoteShort(string(ext)))
			}
		}
		size, ok := parseHexSize(sizeText)
		if !ok {
			return refuse(http.StatusBadRequest, "chunk size %s is not a size in hex", quoteShort(string(line)))
		}
		// A chunk of one byte costs at least 5 bytes of framing
		// ("1␍␊x␍␊"), and extensions can make it cost 4 KiB, to make
		// the server read a megabyte for every kilobyte of data. So each
		// chunk may carry 16 bytes of framing, and twice its size, for
		// free; past that, framing counts, and more than
		// maxChunkOverhead of it is refused. This is net/http's rule
		// since CVE-2023-39326, to the byte.
		overhead = max(0, overhead+int64(len(line))+2-16-2*size)
		if overhead > maxChunkOverhead {
			return refuse(http.StatusBadRequest, "a chunked body with more than %d bytes of framing beyond its data", maxChunkOverhead)
		}
		if size == 0 {
			break
		}
		if int64(dst.Len())+size > int64(maxBody) {
			return refuse(http.StatusRequestEntityTooLarge, "a chunked body of more than %d bytes", maxBody)
		}
		if err := readN(br, dst, int(size)); err != nil {
			return err
		}
		if _, err = readLine(br, line[:0], 2); err != nil { // CR LF, and nothing before it
			return lineError(err, refuse(http.StatusBadRequest, "a chunk is longer than its size says"))
		}
	}
	// The trailer: fields we drop, up to an empty line, within
	// maxTrailer bytes in all, each line's CR LF included.
	for used := 0; ; {
		var err error
		if line, err = readLine(br, line[:0], maxTrailer-used); err != nil {
			return lineError(err, refuse(http.StatusRequestHeaderFieldsTooLarge, "the trailer is longer than %d bytes", maxTrailer))
		}
		used += len(line)
		line = line[:len(line)-2] // its CR LF
		if len(line) == 0 {
			return nil
		}
		// Dropped, but read as fields are: a parser that let a bad
		// line through here would see a different request from one
		// that refuses it.
		if _, err := parseField(string(line)); err != nil {
			return err
		}
	}
}

// maxChunkLineBytes bounds a chunk-size line, its extensions and CR LF
// included. net/http's bound is 4,096 bytes without the CR LF.
const maxChunkLineBytes = 4 << 10

// maxChunkOverhead bounds the framing of a chunked body beyond what its
// data pays for: see readChunked. It is net/http's bound.
const maxChunkOverhead = 16 << 10

// validChunkExt reports whether ext, what follows the first ";" of a
// chunk-size line, is a list of extensions as RFC 9112 (7.1.1) spells
// them: name or name=value, joined by ";", where a name is a token and a
// value a token or a quoted string, with spaces or tabs allowed around
// ";" and "=". Anything else, a bare CR above all, is refused: parsers
// that disagree on where a chunk line ends disagree on where the body
// does, and that is a way to smuggle a request.
func validChunkExt(ext []byte) bool {
	i := 0
	for {
		i = skipBWS(ext, i)
		if i = skipToken(ext, i); i < 0 {
			return false
		}
		if j := skipBWS(ext, i); j < len(ext) && ext[j] == '=' {
			j = skipBWS(ext, j+1)
			if j < len(ext) && ext[j] == '"' {
				i = skipQuoted(ext, j)
			} else {
				i = skipToken(ext, j)
			}
			if i < 0 {
				return false
			}
		}
		if i == len(ext) {
			return true
		}
		if i = skipBWS(ext, i); i == len(ext) || ext[i] != ';' {
			return false
		}
		i++
	}
}

// skipBWS returns the index of the first byte of b at or after i that is
// not a space or a tab.
func skipBWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// skipToken returns the index just past the token that starts b[i:], or
// -1 if none does.
func skipToken(b []byte, i int) int {
	j := i
	for j < len(b) && tokenChar[b[j]] {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// skipQuoted returns the index just past the quoted string that starts at
// b[i], a '"', or -1 if it does not end: RFC 9110's quoted-string, whose
// bytes are a tab, a space, visible ASCII but '"' and '\', or bytes from
// 0x80 up, and whose '\' quotes any of these or '"' or '\'.
func skipQuoted(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i++; i == len(b) || !quotedChar(b[i]) && b[i] != '"' && b[i] != '\\' {
				return -1
			}
		case !quotedChar(c):
			return -1
		}
	}
	return -1
}

// quotedChar reports whether c may stand in a quoted string as it is.
func quotedChar(c byte) bool {
	return c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e && c != '"' && c != '\\') || c >= 0x80
}

// readLine appends one line, CR LF included, to dst, and returns dst. A
// line that would take dst past max bytes is refused with errLineTooLong
// as soon as the bytes past the bound arrive, before they are kept, so dst
// never holds more than max bytes; its caller says what the bound was, and
// what status breaking it earns. A line that ends with LF alone is refused
// with errBareLF. On a read error dst holds what was read of the line, so
// that a caller can tell that bytes came.
func readLine(br *bufio.Reader, dst []byte, max int) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		if len(dst)+len(frag) > max {
			return dst, errLineTooLong
		}
		dst = append(dst, frag...)
		switch {
		case err == nil:
			if !bytes.HasSuffix(dst, []byte("\r\n")) {
				return dst, errBareLF
			}
			return dst, nil
		case err == bufio.ErrBufferFull:
		case err == io.EOF:
			return dst, io.ErrUnexpectedEOF // a line cut short
		default:
			return dst, err
		}
	}
}

// readLine's refusals; each caller turns them into its own answer.
var (
	errLineTooLong = errors.New("line too long")
	errBareLF      = errors.New("a line ends with LF alone, not CR LF")
)

// lineError is the answer to a line that readLine refused: tooLong, which
// its caller makes to say which bound the line broke and what that earns,
// or 400 for a line that ends with LF alone. Other errors are the
// connection's, and pass through.
func lineError(err error, tooLong *httpError) error {
	switch err {
	case errLineTooLong:
		return tooLong
	case errBareLF:
		return refuse(http.StatusBadRequest, "%v", errBareLF)
	}
	return err
}

// parseHexSize reads a chunk size: hex digits, no more than fit in 60 bits.
func parseHexSize(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 16, 64)
	return n, err == nil && n >= 0 && b[0] != '+' && b[0] != '-'
}

// responseHead is what the server writes before a body.
type responseHead struct {
	status        int
	header        Header // the application's fields, checked by start
	contentLength int    // -1 for none: 204 and 304, and a HEAD whose application gave no body
	date          []byte
	close         bool // Connection: close, the last answer on this connection
	keepAlive10   bool // Connection: keep-alive, to an HTTP/1.0 client that asked for it
}

// appendResponseHead appends a status line and header fields to b. The
// application's fields come first, in its order, with a Content-Type
// added if it gave none; then the fields the server owns.
func appendResponseHead(b []byte, h *responseHead) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(h.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(h.status)...)
	b = append(b, "\r\n"...)
	for _, f := range h.header {
		b = appendField(b, f.Name, f.Value)
	}
	if h.header.count("Content-Type") == 0 {
		b = appendField(b, "Content-Type", defaultContentType)
	}
	b = append(b, "Date: "...)
	b = append(b, h.date...)
	b = append(b, "\r\n"...)
	if h.contentLength >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(h.contentLength), 10)
		b = append(b, "\r\n"...)
	}
	switch {
	case h.close:
		b = append(b, "Connection: close\r\n"...)
	case h.keepAlive10:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return append(b, "\r\n"...)
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// defaultContentType is the Content-Type of an answer whose application
// gave none.
const defaultContentType = "text/plain; charset=utf-8"

// appendDate appends t in the form HTTP uses for Date (RFC 9110, 5.6.7).
func appendDate(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, http.TimeFormat)
}

// serverOwned are the fields the server writes itself. An application
// that gives one is told so by start: two Content-Lengths, or a length
// that is not the body's, would break the framing of every later answer
// on the connection.
var serverOwned = []string{"Content-Length", "Transfer-Encoding", "Connection", "Date"}

// checkResponseFields checks the fields an application gives to start.
func checkResponseFields(status int, header Header) error {
	if status < 200 || status > 999 {
		return fmt.Errorf("status %d: the application may answer 200 to 999", status)
	}
	for _, f := range header {
		if !isToken(f.Name) {
			return fmt.Errorf("field name %s is not a token", quoteShort(f.Name))
		}
		for i := 0; i < len(f.Value); i++ {
			// A CR or LF in a value would end the field early and let
			// the rest of the value write fields, or a whole answer, of
			// its own: response splitting.
			if c := f.Value[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return fmt.Errorf("field %s holds a control character", f.Name)
			}
		}
		for _, owned := range serverOwned {
			if strings.EqualFold(f.Name, owned) {
				return fmt.Errorf("field %s is the server's to write", f.Name)
			}
		}
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110, 5.6.2): one or
// more of the letters, digits and !#$%&'*+-.^_`|~.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// hasToken reports whether any field named name holds token in its
// comma-separated list, in any case. Connection is such a list, and a
// client may send it as several fields: "Connection: keep-alive" then
// "Connection: close" is one list that holds close (RFC 9110, 5.3).
func (h Header) hasToken(name, token string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) && hasToken(f.Value, token) {
			return true
		}
	}
	return false
}

// expectsContinue reads the Expect fields of a request, all of them, as
// one list (RFC 9110, 10.1.1). It reports whether the client waits for
// "100 Continue" before it sends its body, and refuses with 417 any
// expectation but 100-continue: the server cannot meet one it does not
// know, and must not act as if it had.
func expectsContinue(h Header) (bool, error) {
	waits := false
	for _, f := range h {
		if !strings.EqualFold(f.Name, "Expect") {
			continue
		}
		for member := range strings.SplitSeq(f.Value, ",") {
			switch member = strings.Trim(member, " \t"); {
			case member == "": // an empty member of a list is ignored (RFC 9110, 5.6.1)
			case strings.EqualFold(member, "100-continue"):
				waits = true
			default:
				return false, refuse(http.StatusExpectationFailed, "Expect %s: this server knows only 100-continue", quoteShort(member))
			}
		}
	}
	return waits, nil
}

// hasToken reports whether a comma-separated field value, such as
// Connection's, holds token, in any case.
func hasToken(value, token string) bool {
	for value != "" {
		var t string
		t, value, _ = strings.Cut(value, ",")
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
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
