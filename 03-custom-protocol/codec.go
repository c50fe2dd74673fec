package customproto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// The wire, as a person reading the traffic sees it. A call names a
// function and gives its arguments, each with a type code, in the shape the
// article uses:
//
//	func:sum@params:1-1,1-2       sum(1, 2)
//	func:sum@params:2-1.1,1-2     sum(1.1, 2)
//	func:get_time                 get_time()
//
// The type codes are 1 for an int, 2 for a float and 3 for a str. A call
// travels in one of two forms, and the server learns which from the first
// byte a connection sends.
//
// The article's form starts with a letter. It is the bare text, with no end
// mark and no escaping, so a message is whatever one read returns. The
// answer is "data:" and the result as Python's str() writes it:
//
//	func:sum@params:1-1,1-2         ->  data:3
//
// The framed form starts with a digit. A frame is the payload's length in
// bytes, a space, the payload and a newline. Inside the payload "%", ",",
// "@" and the control bytes are written %XX, so a value can hold any text.
// The answer carries its type code (␊ is the newline):
//
//	23 func:sum@params:1-1,1-2␊     ->  8 data:1-3␊
//
// In both forms a refusal is "error:" and a message, never "data:".

// The type codes, as the article numbers them.
const (
	typeInt   = '1'
	typeFloat = '2'
	typeStr   = '3'
)

// DefaultMaxMessageBytes is the largest message either side reads unless
// told otherwise: a request, on the server; an answer, on the client.
// 128 KiB carries a call of 64 arguments of 2 KiB each, escaped, and the
// benchmarks' 64 KiB echo, with room to spare.
const DefaultMaxMessageBytes = 1 << 17

// smallPayloadBytes is the largest payload a frameReader makes room for
// at once, from the length alone. A longer one gets room as its bytes
// arrive, so a header that claims a large payload and sends none of it
// costs the reader this much, not the claim.
const smallPayloadBytes = 4 << 10

// maxKeptBuffer is the largest buffer a reader or a form keeps from one
// message to the next. A larger one goes to largeBuffers once its message
// is done, so that a connection that sent one large message and went quiet
// holds small buffers only.
const maxKeptBuffer = 64 << 10

// largeBuffers holds the buffers past maxKeptBuffer that no message needs
// at the moment, for the next message that does, on any connection. It is
// safe for concurrent use. The garbage collector empties it within two
// cycles, so a buffer nobody takes is not held for long. It stores
// *[]byte: a slice put in as it is would be copied to the heap each time.
var largeBuffers sync.Pool

// getLarge returns an empty buffer from largeBuffers with room for n
// bytes, or nil. A buffer too small for n is let go, so that the buffers
// in the pool keep up with the messages.
func getLarge(n int) []byte {
	p, _ := largeBuffers.Get().(*[]byte)
	if p == nil || cap(*p) < n {
		return nil
	}
	return (*p)[:0]
}

// putLarge gives *buf to largeBuffers if it grew past maxKeptBuffer, and
// leaves its owner nil; a smaller buffer its owner keeps. The owner must be
// done with what *buf holds.
func putLarge(buf *[]byte) {
	if cap(*buf) > maxKeptBuffer {
		b := new([]byte) // only here: most calls have nothing to give
		*b, *buf = *buf, nil
		largeBuffers.Put(b)
	}
}

// maxArgs bounds how many arguments a call may give, so that a message of
// commas cannot make the server allocate many times the message's size.
const maxArgs = 64

// readBufferBytes is the most one read takes from a connection. In the
// article's form it is also the bound on a message, which must arrive in
// one read.
const readBufferBytes = 4096

// errTooLarge and errMalformed end a connection: after them the reader
// cannot tell where the next message starts.
var (
	errTooLarge  = errors.New("message too large")
	errMalformed = errors.New("malformed message")
)

// form is one of the two ways calls travel on a connection: it reads the
// requests, parses each into a call, and writes the answers.
type form interface {
	// next returns the next request. The slice is valid until the next
	// call. Any error it returns is final.
	next() ([]byte, error)
	// parse reads a request as a call. Its errors are answered to the
	// caller; the connection goes on.
	parse(msg []byte) (name string, args []any, err error)
	// appendAnswer appends the answer to a call that returned res, or
	// failed with callErr.
	appendAnswer(buf []byte, res any, callErr error) []byte
}

// detectForm waits for the first byte of a connection and returns the form
// it starts: a digit begins a frame's length, and anything else is taken
// for the article's form, whose parser refuses what is not a call.
func detectForm(r *bufio.Reader, max int) (form, error) {
	first, err := r.Peek(1)
	if err != nil {
		return nil, err
	}
	if '0' <= first[0] && first[0] <= '9' {
		return &framedForm{frames: newFrameReader(r, max)}, nil
	}
	return &legacyForm{r: r, max: max}, nil
}

// legacyForm is the article's form. Nothing marks where a message ends, so,
// like the article's recv(2048), it takes what one read returns as one
// message. That is wrong whenever TCP merges two messages into one read or
// splits one over two, as the tests show; it is kept for the article's
// clients only.
type legacyForm struct {
	r   *bufio.Reader // reads at most readBufferBytes at a time
	max int           // the largest message, in bytes
}

// next returns what the next read brings, as one message.
func (l *legacyForm) next() ([]byte, error) {
	if _, err := l.r.Peek(1); err != nil { // one read, unless bytes are waiting
		return nil, err
	}
	n := l.r.Buffered()
	switch {
	case n > l.max:
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, l.max)
	case n == l.r.Size():
		// The read filled the buffer: the message may go on past it.
		return nil, fmt.Errorf("%w: in the article's form a message must arrive in one read of fewer than %d bytes", errTooLarge, n)
	}
	msg, _ := l.r.Peek(n)
	_, _ = l.r.Discard(n) // cannot fail: the bytes are buffered
	return msg, nil
}

// parse reads msg as a call, taking its text as it is.
func (l *legacyForm) parse(msg []byte) (string, []any, error) {
	return parseCall(msg, false)
}

// appendAnswer appends "data:" and the result as Python's str() writes it,
// with no type code and nothing after it, as the article's server does; or
// "error:" and the reason.
func (l *legacyForm) appendAnswer(buf []byte, res any, callErr error) []byte {
	if callErr == nil {
		callErr = checkText(res)
	}
	if callErr == nil {
		_, text, err := valueText(res)
		if err == nil {
			return append(append(buf, "data:"...), text...)
		}
		callErr = err
	}
	return append(append(buf, "error:"...), reason(callErr)...)
}

// checkText refuses a str result that is not UTF-8: the protocol promises
// text, and the str a method returns may hold any bytes. (Our own client
// sends such a str as it is, for the server to refuse.)
func checkText(res any) error {
	if s, ok := res.(string); ok && !utf8.ValidString(s) {
		return fmt.Errorf("%s cannot be sent: a str is text, and this is not valid UTF-8", quoteShort(s))
	}
	return nil
}

// reason is the text of a refusal. An answer is text in both forms, and a
// method's error may hold any bytes, so bytes that are not UTF-8 become
// U+FFFD.
func reason(err error) string {
	return strings.ToValidUTF8(err.Error(), "\uFFFD")
}

// framedForm is our form: framed, escaped, and typed both ways.
type framedForm struct {
	frames  *frameReader
	payload []byte // the answer being written; reused from answer to answer
}

// next returns the payload of the next frame.
func (f *framedForm) next() ([]byte, error) {
	return f.frames.next()
}

// parse reads msg as a call, unescaping its name and values.
func (f *framedForm) parse(msg []byte) (string, []any, error) {
	return parseCall(msg, true)
}

// appendAnswer appends one frame: "data:" and the result with its type
// code, or "error:" and the reason, escaped.
func (f *framedForm) appendAnswer(buf []byte, res any, callErr error) []byte {
	p := f.payload[:0]
	if callErr == nil {
		callErr = checkText(res)
	}
	if callErr == nil {
		p, callErr = appendValue(append(p, "data:"...), res)
	}
	if callErr != nil {
		p = appendEscaped(append(p[:0], "error:"...), reason(callErr))
	}
	buf = appendFrame(buf, p)
	f.payload = p
	putLarge(&f.payload) // the frame holds the answer now
	return buf
}

// frameReader cuts a byte stream into the payloads of frames. It does not
// care how the bytes arrive: one frame split over many reads, several
// frames in one read, or one byte at a time.
//
// It reads a frame's length first, and refuses a frame longer than max
// before it reads any of the payload. It never trusts the length for
// memory: room for the payload grows as the payload arrives.
type frameReader struct {
	r   *bufio.Reader
	max int    // the largest payload, in bytes
	buf []byte // the payload being read; kept from frame to frame while small
}

// newFrameReader returns a frameReader of r, which it buffers unless r is a
// *bufio.Reader already.
func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReader(r), max: max}
}

// next returns the next frame's payload. The slice is valid until the next
// call. At the end of the stream between frames it returns io.EOF; in the
// middle of one, io.ErrUnexpectedEOF. Any error it returns is final.
func (f *frameReader) next() ([]byte, error) {
	f.release() // the caller is done with the last payload
	n, err := f.length()
	if err != nil {
		return nil, err
	}
	if f.buf, err = readPayload(f.r, f.buf[:0], n, f.max); err != nil {
		return nil, unexpectedEOF(err)
	}
	end, err := f.r.ReadByte()
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	if end != '\n' {
		return nil, fmt.Errorf("%w: the %d bytes a frame announced are followed by %s, not a newline", errMalformed, n, quoteByte(end))
	}
	return f.buf, nil
}

// release gives the last payload's buffer to largeBuffers if it is large,
// so that a reader waiting for its next frame holds small buffers only.
// The payload next returned is then invalid.
func (f *frameReader) release() {
	putLarge(&f.buf)
}

// readPayload appends the next n bytes of r to buf. It makes room for
// them as they arrive, not from n: when buf is full it grows it to at most
// twice what has arrived (or smallPayloadBytes), and fills the new room
// before it grows again. This is what the standard library's internal
// saferio.ReadData does for file formats whose headers claim sizes. Room
// past maxKeptBuffer is first sought in largeBuffers, in a buffer no larger
// than limit and no more than smallPayloadBytes over twice what has
// arrived, so that a borrowed buffer keeps the same bound.
func readPayload(r io.Reader, buf []byte, n, limit int) ([]byte, error) {
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = growTo(buf, nextRoom(cap(buf), n), min(2*len(buf)+smallPayloadBytes, limit))
		}
		m, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// nextRoom returns the room for a payload of n bytes whose room of full
// bytes has filled: n halved until it is at most twice full, or
// smallPayloadBytes. The rooms are then n/8, n/4, n/2, n: they end at n
// exactly, and all of them together come to less than twice n.
func nextRoom(full, n int) int {
	room := n
	for limit := max(2*full, smallPayloadBytes); room > limit; {
		room = (room + 1) / 2
	}
	return room
}

// length reads a frame's header, the payload's length in decimal and a
// space, and checks the length against the limit digit by digit.
func (f *frameReader) length() (int, error) {
	n, digits := 0, 0
	for {
		b, err := f.r.ReadByte()
		switch {
		case err == io.EOF && digits == 0:
			return 0, io.EOF
		case err != nil:
			return 0, unexpectedEOF(err)
		case b == ' ' && digits > 0:
			return n, nil
		case b < '0' || b > '9':
			return 0, fmt.Errorf("%w: a frame starts with its length in digits and a space, not %s", errMalformed, quoteByte(b))
		case digits > 0 && n == 0:
			return 0, fmt.Errorf("%w: a frame's length has no leading zeros", errMalformed)
		}
		n = 10*n + int(b-'0')
		digits++
		if n > f.max {
			return 0, fmt.Errorf("%w: more than %d bytes", errTooLarge, f.max)
		}
	}
}

// quoteByte quotes one byte of a stream for an error message.
func quoteByte(b byte) string {
	return strconv.Quote(string([]byte{b}))
}

// unexpectedEOF turns the end of the stream in the middle of a frame into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends payload as one frame: its length, a space, the
// payload and a newline.
func appendFrame(buf, payload []byte) []byte {
	buf = grow(buf, len(payload)+22) // 20 digits at most, a space, a newline
	buf = strconv.AppendInt(buf, int64(len(payload)), 10)
	buf = append(buf, ' ')
	buf = append(buf, payload...)
	return append(buf, '\n')
}

// grow makes room in buf for n more bytes when there is not: in a buffer
// from largeBuffers of up to twice the size needed, if the size is past
// maxKeptBuffer and the pool has one, else with one allocation of the size
// needed. (slices.Grow makes its room with a temporary slice of n bytes
// when built with -race, which doubles what the tests of a request's cost
// measure.)
func grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf
	}
	return growTo(buf, len(buf)+n, 2*(len(buf)+n))
}

// growTo returns buf's bytes in a buffer of size bytes or more: one of at
// most most bytes from largeBuffers, if size is past maxKeptBuffer and the
// pool has one, else a new one of size bytes. A larger one from the pool
// goes back for another owner, and so does a large buf.
func growTo(buf []byte, size, most int) []byte {
	var room []byte
	if size > maxKeptBuffer {
		if room = getLarge(size); cap(room) > most {
			putLarge(&room) // and room is nil again
		}
	}
	if room == nil {
		room = make([]byte, 0, size)
	}
	room = append(room, buf...)
	putLarge(&buf)
	return room
}

// parseCall reads a call, func:NAME or func:NAME@params:T-V,T-V,..., into
// the function's name and its arguments: ints, float64s and strings. In
// the framed form (escaped) the name and the values are unescaped.
//
// It cuts the call at the first "@", which ends the name, and the list at
// each ",", which ends a value: those two separators end free text, so the
// framed form escapes them. The others end parts that are never free text
// ("func", "params", a type code), so ":" and "-" can stand in a name or a
// value as they are.
func parseCall(msg []byte, escaped bool) (name string, args []any, err error) {
	rest, ok := bytes.CutPrefix(msg, []byte("func:"))
	if !ok {
		return "", nil, fmt.Errorf("a call starts with \"func:\", not %s", quoteShort(string(msg)))
	}
	rawName, params, hasParams := bytes.Cut(rest, []byte("@"))
	if name, err = text(rawName, escaped); err != nil {
		return "", nil, fmt.Errorf("function name: %w", err)
	}
	if !hasParams {
		return name, nil, nil
	}
	list, ok := bytes.CutPrefix(params, []byte("params:"))
	switch {
	case !ok:
		return "", nil, fmt.Errorf("after \"@\" comes \"params:\", not %s", quoteShort(string(params)))
	case len(list) == 0:
		return "", nil, errors.New("\"@params:\" with no arguments: to call with none, leave it out")
	case bytes.Count(list, []byte(",")) >= maxArgs:
		return "", nil, fmt.Errorf("more than %d arguments", maxArgs)
	}
	for i := 1; list != nil; i++ {
		var item []byte
		item, list, _ = bytes.Cut(list, []byte(","))
		v, err := parseValue(item, escaped)
		if err != nil {
			return "", nil, fmt.Errorf("argument %d: %w", i, err)
		}
		args = append(args, v)
	}
	return name, args, nil
}

// parseValue reads one typed value, T-V, as a call's argument or an
// answer's result.
func parseValue(item []byte, escaped bool) (any, error) {
	code, raw, ok := bytes.Cut(item, []byte("-"))
	if !ok {
		return nil, fmt.Errorf("%s has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)", quoteShort(string(item)))
	}
	if len(code) != 1 || code[0] < typeInt || code[0] > typeStr {
		return nil, fmt.Errorf("unknown type code %s: 1 is int, 2 float, 3 str", quoteShort(string(code)))
	}
	s, err := text(raw, escaped)
	if err != nil {
		return nil, err
	}
	return typedValue(code[0], s)
}

// typedValue reads s as a value of the type code says: an int, a float64,
// or the string itself.
func typedValue(code byte, s string) (any, error) {
	switch code {
	case typeInt:
		n, err := strconv.Atoi(s)
		if errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("%s does not fit in an int (%d bits)", quoteShort(s), strconv.IntSize)
		}
		if err != nil {
			return nil, fmt.Errorf("%s is not an int", quoteShort(s))
		}
		return n, nil
	case typeFloat:
		if !isFloatText(s) {
			return nil, fmt.Errorf("%s is not a float", quoteShort(s))
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s does not fit in a float (64 bits)", quoteShort(s))
		}
		return f, nil
	}
	return s, nil
}

// isFloatText reports whether s looks as a float may on the wire: a sign,
// decimal digits with or without a point, and an exponent, as the regular
// expression ^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$ says. It is stricter
// than strconv.ParseFloat, which would also take "inf", "0x1p-2" and
// "1_000"; and, unlike a regexp, it allocates nothing.
func isFloatText(s string) bool {
	digitsFrom := func(i int) int {
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i
	}
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	end := digitsFrom(i)
	digits := end - i
	if i = end; i < len(s) && s[i] == '.' {
		end = digitsFrom(i + 1)
		digits += end - i - 1
		i = end
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if end = digitsFrom(i); end == i {
			return false
		}
		i = end
	}
	return i == len(s)
}

// text returns raw as a string, unescaped in the framed form, and checks
// that it is valid UTF-8: a str is text, in Go as in Python.
func text(raw []byte, escaped bool) (s string, err error) {
	if escaped {
		s, err = unescape(raw)
	} else {
		s = string(raw)
	}
	if err == nil && !utf8.ValidString(s) {
		err = fmt.Errorf("%s is not valid UTF-8", quoteShort(s))
	}
	return s, err
}

// needsEscape reports whether the framed form writes b as %XX: the escape
// sign itself, the "@" that ends a name and the "," that ends a value, and
// the control bytes, which would break a frame's line in a transcript.
func needsEscape(b byte) bool {
	return b == '%' || b == ',' || b == '@' || b < 0x20 || b == 0x7f
}

// appendEscaped appends s with every byte that needs it escaped as %XX.
// It makes room for the result once, so that a long value costs its
// escaped size and not the doublings of append on the way there.
func appendEscaped(buf []byte, s string) []byte {
	const hexDigits = "0123456789ABCDEF"
	escapes := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			escapes++
		}
	}
	buf = grow(buf, len(s)+2*escapes)
	start := 0
	for i := 0; i < len(s); i++ {
		if b := s[i]; needsEscape(b) {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '%', hexDigits[b>>4], hexDigits[b&0xf])
			start = i + 1
		}
	}
	return append(buf, s[start:]...)
}

// unescape turns each %XX in raw back into the byte it stands for.
func unescape(raw []byte) (string, error) {
	if bytes.IndexByte(raw, '%') < 0 {
		return string(raw), nil
	}
	out := make([]byte, 0, len(raw))
	for {
		i := bytes.IndexByte(raw, '%')
		if i < 0 {
			return string(append(out, raw...)), nil
		}
		out = append(out, raw[:i]...)
		var b [1]byte
		if _, err := hex.Decode(b[:], raw[i+1:min(i+3, len(raw))]); err != nil || i+3 > len(raw) {
			return "", fmt.Errorf("bad escape %s: %% is followed by two hex digits", quoteShort(string(raw[i:min(i+3, len(raw))])))
		}
		out = append(out, b[0])
		raw = raw[i+3:]
	}
}

// valueText returns v's type code and its text, written as Python's str()
// would write it, so that our answers in the article's form are the bytes
// the article's server sends.
func valueText(v any) (code byte, text string, err error) {
	switch v := v.(type) {
	case int:
		return typeInt, strconv.Itoa(v), nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, "", fmt.Errorf("%v cannot be sent: the wire carries finite floats only", v)
		}
		return typeFloat, formatFloat(v), nil
	case string:
		return typeStr, v, nil
	}
	return 0, "", fmt.Errorf("a %T cannot be sent: the wire carries int, float64 and string", v)
}

// appendValue appends v as the framed form writes it: its type code, "-",
// and its text, escaped.
func appendValue(buf []byte, v any) ([]byte, error) {
	code, s, err := valueText(v)
	if err != nil {
		return buf, err
	}
	return appendEscaped(append(buf, code, '-'), s), nil
}

// formatFloat writes f as Python's str() does: the shortest digits that
// read back as f, always with a point or an exponent. Go's shortest form
// writes 3 for three and 1e+06 for a million; Python writes 3.0 and
// 1000000.0, and switches to an exponent only below 1e-4 or from 1e16 up.
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(s[strings.IndexByte(s, 'e')+1:]) // cannot fail: FormatFloat wrote it
	if exp < -4 || exp >= 16 {
		return s // 1e+16, 1.5e-05: the same in both languages
	}
	s = strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// describe names a value's wire type and shows the value, for an error
// message: int 42, float 1.5, str "x".
func describe(v any) string {
	switch v := v.(type) {
	case int:
		return "int " + strconv.Itoa(v)
	case float64:
		return "float " + formatFloat(v)
	case string:
		return "str " + quoteShort(v)
	}
	return fmt.Sprintf("%T", v)
}

// encodeRequest appends the payload of a call to name with args, each an
// int, a float64 or a string.
func encodeRequest(buf []byte, name string, args []any) ([]byte, error) {
	buf = appendEscaped(append(buf, "func:"...), name)
	for i, arg := range args {
		sep := ","
		if i == 0 {
			sep = "@params:"
		}
		var err error
		if buf, err = appendValue(append(buf, sep...), arg); err != nil {
			return buf, fmt.Errorf("argument %d: %w", i+1, err)
		}
	}
	return buf, nil
}

// decodeAnswer reads the payload of a framed answer: the result, or the
// error the server reported.
func decodeAnswer(msg []byte) (any, error) {
	if rest, ok := bytes.CutPrefix(msg, []byte("error:")); ok {
		message, err := text(rest, true)
		if err != nil {
			return nil, fmt.Errorf("error answer: %w", err)
		}
		return nil, &ServerError{Message: message}
	}
	rest, ok := bytes.CutPrefix(msg, []byte("data:"))
	if !ok {
		return nil, fmt.Errorf("answer %s starts with neither \"data:\" nor \"error:\"", quoteShort(string(msg)))
	}
	res, err := parseValue(rest, true)
	if err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	return res, nil
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
