package customproto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAll returns every payload in stream, and the error that ended it.
func readAll(r io.Reader, max int) ([]string, error) {
	f := newFrameReader(r, max)
	var msgs []string
	for {
		msg, err := f.next()
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, string(msg))
	}
}

func TestFrameReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []string
		err    error // what ends the stream
	}{
		{"one frame", "23 func:sum@params:1-1,1-2\n", []string{"func:sum@params:1-1,1-2"}, io.EOF},
		{"two in one read: sticky packets", "8 data:1-3\n10 data:2-3.1\n", []string{"data:1-3", "data:2-3.1"}, io.EOF},
		{"the length counts bytes, not characters", "13 data:3-中文\n", []string{"data:3-中文"}, io.EOF},
		{"a raw newline inside: the length rules", "5 a\nb\nc\n", []string{"a\nb\nc"}, io.EOF},
		{"empty payload", "0 \n", []string{""}, io.EOF},
		{"empty stream", "", nil, io.EOF},
		{"cut in the length", "2", nil, io.ErrUnexpectedEOF},
		{"cut after the length", "23 ", nil, io.ErrUnexpectedEOF},
		{"cut in the payload", "8 data:1-3\n10 data:", []string{"data:1-3"}, io.ErrUnexpectedEOF},
		{"cut before the newline", "8 data:1-3", nil, io.ErrUnexpectedEOF},
		{"the article's form", "func:sum@params:1-1,1-2", nil, errMalformed},
		{"no space after the length", "8\ndata:1-3\n", nil, errMalformed},
		{"no length", " data\n", nil, errMalformed},
		{"leading zero", "08 data:1-3\n", nil, errMalformed},
		{"negative length", "-8 data:1-3\n", nil, errMalformed},
		{"length too short", "7 data:1-3\n", nil, errMalformed},
		{"length too long", "9 data:1-3\n8 data:1-3\n", nil, errMalformed},
		{"garbage after a good one", "8 data:1-3\nGET / HTTP/1.1", []string{"data:1-3"}, errMalformed},
		{"over the limit", "1025 x", nil, errTooLarge},
		{"a huge length", "99999999999999999999999999 x", nil, errTooLarge},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"one byte a read", iotest.OneByteReader},
			{"half a read", iotest.HalfReader},
		} {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				msgs, err := readAll(mode.wrap(strings.NewReader(tt.stream)), 1<<10)
				assert.Equal(t, tt.want, msgs)
				assert.ErrorIs(t, err, tt.err)
			})
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestFrameReaderLimit checks that a frame over the limit is refused from
// its length alone: nothing of the payload is read, and nothing allocated.
func TestFrameReaderLimit(t *testing.T) {
	const max = 1000
	stream := &countingReader{r: iotest.OneByteReader(strings.NewReader("1001 " + strings.Repeat("x", 1001) + "\n"))}
	f := newFrameReader(stream, max)
	_, err := f.next()
	assert.EqualError(t, err, "message too large: more than 1000 bytes")
	assert.Equal(t, 4, stream.n, "read %d bytes: it should stop at the length's last digit", stream.n)
	assert.Zero(t, cap(f.buf), "allocated room for a frame it refused")

	exact := strings.Repeat("x", max)
	msgs, err := readAll(strings.NewReader("1000 "+exact+"\n"), max)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, []string{exact}, msgs, "a frame of exactly the limit is allowed")
}

// heapInUse returns the bytes of heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestFrameReaderRoomGrowsWithData is issue 7's first attack on the frame
// reader: many connections each send a header that claims the largest
// frame allowed, one byte of it, and then nothing. A reader that made room
// for the whole claim at once would hold 128 KiB for each; ours holds
// room for what has arrived.
func TestFrameReaderRoomGrowsWithData(t *testing.T) {
	const readers = 200
	claim := fmt.Sprintf("%d ", DefaultMaxMessageBytes)
	before := heapInUse()
	var wg sync.WaitGroup
	writers := make([]*io.PipeWriter, readers)
	for i := range writers {
		pr, pw := io.Pipe()
		writers[i] = pw
		frames := newFrameReader(pr, DefaultMaxMessageBytes)
		wg.Go(func() {
			_, err := frames.next()
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		})
		// The header and a first byte of payload, then a second byte: a
		// pipe's Write returns once the reader has taken the bytes, so
		// after the second the reader is inside the payload, holding
		// whatever room it made for it.
		_, err := io.WriteString(pw, claim+"x")
		require.NoError(t, err)
		_, err = io.WriteString(pw, "y")
		require.NoError(t, err)
	}
	perReader := (heapInUse() - before) / readers
	for _, pw := range writers {
		pw.Close()
	}
	wg.Wait()
	// Each reader has a 4 KiB bufio.Reader and 4 KiB of room for the
	// payload; the pipe and the goroutine's bookkeeping add a little.
	assert.Less(t, perReader, int64(24<<10), "each reader holds %d bytes for 2 bytes of payload", perReader)
}

// TestFrameReaderDropsLargeBuffer checks that a reader keeps the room of a
// small frame for the next, and drops that of a large one before it waits
// for the next header: a connection that sent one large call and went
// quiet holds small buffers only.
func TestFrameReaderDropsLargeBuffer(t *testing.T) {
	large := strings.Repeat("x", 100<<10)
	pr, pw := io.Pipe()
	frames := newFrameReader(pr, DefaultMaxMessageBytes)
	go func() {
		_, _ = pw.Write(appendFrame(nil, []byte(large)))
		_, _ = pw.Write([]byte("1")) // the next header's first byte, then silence
	}()
	msg, err := frames.next()
	require.NoError(t, err)
	require.Equal(t, large, string(msg))

	waiting := make(chan error, 1)
	go func() {
		_, err := frames.next()
		waiting <- err
	}()
	// The pipe's Write of "1" returns when the reader has taken it: by
	// then the reader is inside the header, past the point of dropping.
	_, err = pw.Write([]byte("2"))
	require.NoError(t, err)
	assert.LessOrEqual(t, cap(frames.buf), maxKeptBuffer, "a reader waiting for its next frame keeps the room of a large one")
	pw.Close()
	assert.ErrorIs(t, <-waiting, io.ErrUnexpectedEOF)

	small := strings.Repeat("y", 1000)
	var stream bytes.Buffer
	stream.Write(appendFrame(nil, []byte(small)))
	stream.Write(appendFrame(nil, []byte(small)))
	frames = newFrameReader(&stream, DefaultMaxMessageBytes)
	first, err := frames.next()
	require.NoError(t, err)
	second, err := frames.next()
	require.NoError(t, err)
	assert.Same(t, &first[0], &second[0], "a small frame's room is reused")

	answers := &framedForm{}
	answers.appendAnswer(nil, large, nil)
	assert.Zero(t, cap(answers.payload), "the room of a large answer is kept")
	answers.appendAnswer(nil, small, nil)
	assert.NotZero(t, cap(answers.payload), "the room of a small answer is dropped")
}

// TestGrowToKeepsItsBound leaves a buffer far past what growTo's caller
// allows in largeBuffers, as another connection's large message may: growTo
// must not take it, so that a reader's room stays within the bound
// readPayload gives, however large the buffers others leave. (Under the
// race detector the pool drops some buffers, so the test tries ten times.)
func TestGrowToKeepsItsBound(t *testing.T) {
	const size, most = maxKeptBuffer + 1, 2 * (maxKeptBuffer + 1)
	for range 10 {
		huge := make([]byte, 0, 8*most)
		putLarge(&huge)
		room := growTo([]byte("abc"), size, most)
		assert.Equal(t, "abc", string(room))
		require.GreaterOrEqual(t, cap(room), size)
		require.LessOrEqual(t, cap(room), most, "growTo took a buffer past its bound from largeBuffers")
	}
}

// TestFrameReaderLarge reads two 200 KB frames, far larger than the
// article's 2048-byte read, in one piece and one byte at a time.
func TestFrameReaderLarge(t *testing.T) {
	payload := "data:3-" + strings.Repeat("ab%2Cc", 200<<10/6)
	frame := string(appendFrame(nil, []byte(payload)))
	for _, r := range []io.Reader{strings.NewReader(frame + frame), iotest.OneByteReader(strings.NewReader(frame + frame))} {
		msgs, err := readAll(r, 1<<20)
		assert.ErrorIs(t, err, io.EOF)
		assert.Equal(t, []string{payload, payload}, msgs)
	}
}

// TestLegacyFormReads shows the article's idea of a message: what one read
// returns. Two messages that arrive together are one message to it.
func TestLegacyFormReads(t *testing.T) {
	for _, tt := range []struct {
		name   string
		reads  []string // what each read returns
		max    int
		want   []string
		errMsg string // the error after them
	}{
		{"one read, one message", []string{"func:get_time", "func:sum@params:1-1,1-2"}, 1000,
			[]string{"func:get_time", "func:sum@params:1-1,1-2"}, "EOF"},
		{"two messages in one read are one", []string{"func:get_timefunc:get_time"}, 1000,
			[]string{"func:get_timefunc:get_time"}, "EOF"},
		{"one message in two reads is two", []string{"func:sum@par", "ams:1-1,1-2"}, 1000,
			[]string{"func:sum@par", "ams:1-1,1-2"}, "EOF"},
		{"over the limit", []string{strings.Repeat("x", 101)}, 100,
			nil, "message too large: more than 100 bytes"},
		{"a read that fills the buffer may have been cut", []string{strings.Repeat("x", readBufferBytes)}, 1 << 20,
			nil, "message too large: in the article's form a message must arrive in one read of fewer than 4096 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := &legacyForm{r: bufio.NewReaderSize(&readsReader{reads: tt.reads}, readBufferBytes), max: tt.max}
			var msgs []string
			for {
				msg, err := l.next()
				if err != nil {
					assert.EqualError(t, err, tt.errMsg)
					break
				}
				msgs = append(msgs, string(msg))
			}
			assert.Equal(t, tt.want, msgs)
		})
	}
}

// readsReader returns its reads one per Read, as a socket returns what has
// arrived.
type readsReader struct{ reads []string }

func (r *readsReader) Read(p []byte) (int, error) {
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.reads[0])
	r.reads[0] = r.reads[0][n:]
	if r.reads[0] == "" {
		r.reads = r.reads[1:]
	}
	return n, nil
}

func TestDetectForm(t *testing.T) {
	for stream, framed := range map[string]bool{
		"23 func:sum@params:1-1,1-2\n": true,
		"0 \n":                         true,
		"func:sum@params:1-1,1-2":      false,
		"GET / HTTP/1.1\r\n":           false,
	} {
		f, err := detectForm(bufio.NewReader(strings.NewReader(stream)), 1000)
		require.NoError(t, err)
		_, isFramed := f.(*framedForm)
		assert.Equal(t, framed, isFramed, "%q", stream)
		msg, err := f.next()
		require.NoError(t, err)
		assert.Contains(t, stream, string(msg), "the first byte is still there to read")
	}
	_, err := detectForm(bufio.NewReader(strings.NewReader("")), 1000)
	assert.ErrorIs(t, err, io.EOF)
}

// awkward are strings that the article's form cannot carry.
var awkward = []string{
	"a,b", "a-b", "a:b", "a@b", "100%", "%2C", "line\nbreak\r\n", "tab\tand\x00nul\x7f",
	"func:x@params:3-y", "中文, ✓", "", " ", "-", ",,,",
}

func TestEscape(t *testing.T) {
	assert.Equal(t, "a%2Cb-c:d%40e%25f%0A%00%7F中文 ✓", string(appendEscaped(nil, "a,b-c:d@e%f\n\x00\x7f中文 ✓")))
	for _, s := range awkward {
		escaped := appendEscaped(nil, s)
		assert.NotContains(t, string(escaped), ",", "%q", s)
		assert.NotContains(t, string(escaped), "\n", "%q", s)
		got, err := unescape(escaped)
		require.NoError(t, err)
		assert.Equal(t, s, got)
	}
	for _, bad := range []string{"%", "%2", "%zz", "%%", "abc%G0"} {
		_, err := unescape([]byte(bad))
		assert.ErrorContains(t, err, "bad escape", "%q", bad)
	}
	got, err := unescape([]byte("%2c%2C%41"))
	require.NoError(t, err, "either case, and escapes that were not needed, are understood")
	assert.Equal(t, ",,A", got)
}

func TestParseCall(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		escaped bool
		want    []any // the name, then the arguments
		wantErr string
	}{
		{"the article's sum", "func:sum@params:1-1,1-2", false, []any{"sum", 1, 2}, ""},
		{"the article's float sum", "func:sum@params:2-1.1,1-2", false, []any{"sum", 1.1, 2}, ""},
		{"the article's get_time", "func:get_time", false, []any{"get_time"}, ""},
		{"a str", "func:echo@params:3-hi", false, []any{"echo", "hi"}, ""},
		{"an empty str", "func:echo@params:3-", false, []any{"echo", ""}, ""},
		{"negative numbers", "func:sum@params:1--5,2--1e-05", false, []any{"sum", -5, -1e-05}, ""},
		{"'-', ':' and '@' in a str", "func:echo@params:3-a-b:c@d", true, []any{"echo", "a-b:c@d"}, ""},
		{"escapes", "func:echo@params:3-a%2Cb%25%0A", true, []any{"echo", "a,b%\n"}, ""},
		{"escapes are text in the article's form", "func:echo@params:3-a%2Cb", false, []any{"echo", "a%2Cb"}, ""},
		{"a comma in the article's form", "func:echo@params:3-a,b", false, nil, `argument 2: "b" has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)`},
		{"not a call", "GET / HTTP/1.1", false, nil, `a call starts with "func:", not "GET / HTTP/1.1"`},
		{"no params: after @", "func:sum@1-1", true, nil, `after "@" comes "params:", not "1-1"`},
		{"empty params", "func:get_time@params:", true, nil, `"@params:" with no arguments: to call with none, leave it out`},
		{"trailing comma", "func:sum@params:1-1,", true, nil, `argument 2: "" has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)`},
		{"unknown type code", "func:sum@params:9-1", true, nil, `argument 1: unknown type code "9": 1 is int, 2 float, 3 str`},
		{"long type code", "func:sum@params:11-1", true, nil, `argument 1: unknown type code "11": 1 is int, 2 float, 3 str`},
		{"not an int", "func:sum@params:1-1.5", true, nil, `argument 1: "1.5" is not an int`},
		{"int too large", "func:sum@params:1-9223372036854775808", true, nil, `argument 1: "9223372036854775808" does not fit in an int (64 bits)`},
		{"not a float", "func:sum@params:2-inf", true, nil, `argument 1: "inf" is not a float`},
		{"hex float", "func:sum@params:2-0x1p3", true, nil, `argument 1: "0x1p3" is not a float`},
		{"float too large", "func:sum@params:2-1e400", true, nil, `argument 1: "1e400" does not fit in a float (64 bits)`},
		{"bad escape", "func:echo@params:3-100%", true, nil, `argument 1: bad escape "%": % is followed by two hex digits`},
		{"bad UTF-8", "func:echo@params:3-%FF", true, nil, `argument 1: "\xff" is not valid UTF-8`},
		{"bad UTF-8 in the article's form", "func:echo@params:3-\xff", false, nil, `argument 1: "\xff" is not valid UTF-8`},
		{"bad name escape", "func:%zz", true, nil, `function name: bad escape "%zz": % is followed by two hex digits`},
		{"too many arguments", "func:sum@params:" + strings.Repeat("1-1,", maxArgs) + "1-1", true, nil, "more than 64 arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, args, err := parseCall([]byte(tt.msg), tt.escaped)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, append([]any{name}, args...))
		})
	}
}

// allocated returns the bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxAllocated is the most the server may allocate to read, call and
// answer a request of n bytes: a few times its size, and a small constant.
// The largest request then costs about half a MiB, and a request cannot
// be shaped to cost many times its size, as issue 7's million empty
// arguments did in stage 04 (160 times). TotalAlloc counts the whole
// process, so the constant also covers what other goroutines (the fuzzing
// engine's, the runtime's) allocate while a request is measured.
func maxAllocated(n int) uint64 {
	return 4*uint64(n) + 32<<10
}

// TestRequestCost sends the demo server's request handling the largest
// requests allowed, shaped to cost the most: many arguments, long values,
// escapes, a long name. None may cost more than maxAllocated. The count of
// arguments is checked before any argument is built: a request of ten
// thousand ints is refused for its count, at the cost of counting commas.
func TestRequestCost(t *testing.T) {
	n := DefaultMaxMessageBytes
	long := func(prefix, unit string, sep string) string {
		return prefix + strings.Repeat(unit+sep, (n-len(prefix))/len(unit+sep))
	}
	tests := []struct {
		name string
		msg  string
		max  uint64 // what it may allocate, if less than maxAllocated
	}{
		{"many ints", long("func:sum@params:", "1-1000", ","), 8 << 10},
		{"many empty strs", long("func:sum@params:", "3-", ","), 8 << 10},
		{"only commas", long("func:sum@params:", "", ","), 8 << 10},
		{"64 long strs", "func:echo@params:" + strings.Repeat("3-"+strings.Repeat("x", n/64-20)+",", 63) + "3-x", 0},
		{"64 long floats", "func:sum@params:" + strings.Repeat("2-"+strings.Repeat("1", n/64-20)+",", 63) + "2-1", 0},
		{"one str of escapes", long("func:echo@params:3-", "%41", ""), 0},
		{"one str of escaped commas", long("func:echo@params:3-", "%2C", ""), 0},
		{"a long name", long("func:", "a", ""), 0},
	}
	srv := NewDemoServer()
	for _, tt := range tests {
		for _, fm := range []form{&legacyForm{}, &framedForm{}} {
			t.Run(fmt.Sprintf("%s/%T", tt.name, fm), func(t *testing.T) {
				msg := []byte(tt.msg)
				require.LessOrEqual(t, len(msg), n)
				bound := maxAllocated(len(msg))
				if tt.max != 0 {
					bound = tt.max
				}
				var answer []byte
				cost := allocated(func() {
					res, err := srv.handle(fm, msg)
					answer = fm.appendAnswer(nil, res, err)
				})
				t.Logf("%d bytes: %d allocated (%.1f a byte)", len(msg), cost, float64(cost)/float64(len(msg)))
				assert.LessOrEqual(t, cost, bound, "a %d-byte request cost %d bytes (%.1f a byte); answer %q",
					len(msg), cost, float64(cost)/float64(len(msg)), quoteShort(string(answer)))
			})
		}
	}
}

// TestIsFloatText checks the float syntax against the regular expression
// it stands for.
func TestIsFloatText(t *testing.T) {
	floatRE := regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)
	for _, s := range []string{
		"1", "1.", ".5", "1.5", "-1.5", "+1.5", "1e5", "1E-5", "1.5e+10", ".5e1", "1.e2", "007",
		"", ".", "-", "+", "e5", ".e5", "1e", "1e+", "1.5.5", "1e5e5", "inf", "nan", "0x1p3", "1_000", " 1", "1 ", "--1", "1e5.5",
	} {
		assert.Equal(t, floatRE.MatchString(s), isFloatText(s), "%q", s)
	}
}

func TestEncodeRequest(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []any
		want string
	}{
		{"sum", []any{1, 2}, "func:sum@params:1-1,1-2"},
		{"sum", []any{1.1, 2}, "func:sum@params:2-1.1,1-2"},
		{"sum", []any{3.0, -1e-05}, "func:sum@params:2-3.0,2--1e-05"},
		{"get_time", nil, "func:get_time"},
		{"echo", []any{"a,b\n"}, "func:echo@params:3-a%2Cb%0A"},
	} {
		got, err := encodeRequest(nil, tt.name, tt.args)
		require.NoError(t, err)
		assert.Equal(t, tt.want, string(got))

		name, args, err := parseCall(got, true)
		require.NoError(t, err, "what we send, we read back")
		assert.Equal(t, tt.name, name)
		assert.Equal(t, tt.args, args)
	}
	_, err := encodeRequest(nil, "f", []any{1, uint(2)})
	assert.EqualError(t, err, "argument 2: a uint cannot be sent: the wire carries int, float64 and string")
	_, err = encodeRequest(nil, "f", []any{math.NaN()})
	assert.EqualError(t, err, "argument 1: NaN cannot be sent: the wire carries finite floats only")
}

// TestFormatFloat checks floats against what Python 3's str() prints.
func TestFormatFloat(t *testing.T) {
	for f, python := range map[float64]string{
		3:                           "3.0",
		3.1:                         "3.1",
		0.30000000000000004:         "0.30000000000000004", // 0.1 + 0.2
		-0.5:                        "-0.5",
		math.Copysign(0, -1):        "-0.0",
		1e6:                         "1000000.0",
		1e15:                        "1000000000000000.0",
		1e16:                        "1e+16",
		1.5e16:                      "1.5e+16",
		123456789012345678:          "1.2345678901234568e+17",
		0.0001:                      "0.0001",
		0.00001:                     "1e-05",
		1.5e-7:                      "1.5e-07",
		1e100:                       "1e+100",
		math.MaxFloat64:             "1.7976931348623157e+308",
		math.SmallestNonzeroFloat64: "5e-324",
	} {
		assert.Equal(t, python, formatFloat(f))
	}
}

func TestAnswers(t *testing.T) {
	errNo := errors.New("no, b: c")
	tests := []struct {
		res            any
		callErr        error
		legacy, framed string
	}{
		{3, nil, "data:3", "8 data:1-3\n"},
		{3.1, nil, "data:3.1", "10 data:2-3.1\n"},
		{3.0, nil, "data:3.0", "10 data:2-3.0\n"},
		{"Wed Jan 16 22:05:31 2019", nil, "data:Wed Jan 16 22:05:31 2019", "31 data:3-Wed Jan 16 22:05:31 2019\n"},
		{"a,b\n", nil, "data:a,b\n", "15 data:3-a%2Cb%0A\n"},
		{"", nil, "data:", "7 data:3-\n"},
		{nil, errNo, "error:no, b: c", "16 error:no%2C b: c\n"},
		{uint(7), nil, "error:a uint cannot be sent: the wire carries int, float64 and string",
			"71 error:a uint cannot be sent: the wire carries int%2C float64 and string\n"},
		{math.Inf(1), nil, "error:+Inf cannot be sent: the wire carries finite floats only",
			"62 error:+Inf cannot be sent: the wire carries finite floats only\n"},
		// An answer is text: a str that is not UTF-8 is not sent, and
		// bytes that are not UTF-8 in a reason become U+FFFD.
		{"\xff", nil, `error:"\xff" cannot be sent: a str is text, and this is not valid UTF-8`,
			"73 error:\"\\xff\" cannot be sent: a str is text%2C and this is not valid UTF-8\n"},
		{nil, errors.New("bad \xff byte"), "error:bad \uFFFD byte", "18 error:bad \uFFFD byte\n"},
	}
	for _, tt := range tests {
		legacy := (&legacyForm{}).appendAnswer(nil, tt.res, tt.callErr)
		assert.Equal(t, tt.legacy, string(legacy))
		assert.True(t, utf8.Valid(legacy), "%q is not text", legacy)
		assert.Equal(t, tt.framed, string((&framedForm{}).appendAnswer(nil, tt.res, tt.callErr)))

		// What the server writes, the client reads back.
		msgs, err := readAll(strings.NewReader(tt.framed), 1000)
		require.ErrorIs(t, err, io.EOF)
		require.Len(t, msgs, 1)
		res, err := decodeAnswer([]byte(msgs[0]))
		var serverErr *ServerError
		if errors.As(err, &serverErr) {
			assert.Equal(t, msgs[0], "error:"+string(appendEscaped(nil, serverErr.Message)))
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.res, res)
	}
}

// TestDecodeAnswer checks that nothing but "data:" with a good value is
// taken for a result.
func TestDecodeAnswer(t *testing.T) {
	for answer, wantErr := range map[string]string{
		"data:3":                         `answer: "3" has no type code: write T-V, with T 1 (int), 2 (float) or 3 (str)`,
		"data:1-x":                       `answer: "x" is not an int`,
		"data:9-1":                       `answer: unknown type code "9": 1 is int, 2 float, 3 str`,
		"data:3-%zz":                     `answer: bad escape "%zz": % is followed by two hex digits`,
		"RPC Server Function Error":      `answer "RPC Server Function Error" starts with neither "data:" nor "error:"`,
		"error:%":                        `error answer: bad escape "%": % is followed by two hex digits`,
		"":                               `answer "" starts with neither "data:" nor "error:"`,
		"Data:1-3":                       `answer "Data:1-3" starts with neither "data:" nor "error:"`,
		"error:no function %22f%22%2C x": `server answered: no function "f", x`,
	} {
		res, err := decodeAnswer([]byte(answer))
		assert.EqualError(t, err, wantErr, "%q", answer)
		assert.Nil(t, res)
	}
}
