package asyncrpc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// The wire, as a person reading the traffic sees it. A frame is the length
// of its payload, 4 bytes big-endian, and then the payload:
//
//	00 00 00 15  14 ff 80 01 03 73 75 6d 01 02 ...     sum(1, 2): 21 bytes of gob
//
// The payload is what one gob Encode call wrote. A connection carries one
// gob stream each way, so the first frame each side sends also defines the
// types it sends (Request, or Response, and Value), field by field, before
// the first value; later frames carry the value alone. sum(1, 2) is 148
// bytes in the first frame of a connection and 21 bytes in any later one.
//
// The values are the article's, in Go structs: a Request names a function
// and gives its Params; a Response carries the result in Data, or the
// reason the call failed in Error. Each argument and result is a Value,
// tagged with the article's type code.
//
// Many calls share a connection, and answers come back in the order the
// calls finish, not the order they were made. So each Request carries an
// ID that its client chose, and the Response to it carries the same ID.

// Request is a call: its id, the function's name and its arguments.
type Request struct {
	ID     uint64  // chosen by the client, never 0 (the server refuses it); the answer carries it back
	Func   string  // the function's name: sum
	Params []Value // its arguments, in order
}

// Response is the answer to a Request: the result, or the reason the call
// failed. A result always has a type code, so an error cannot pass for one.
// An ID of 0 answers no call: the server refused the connection's stream,
// and Error says why.
type Response struct {
	ID    uint64 // the ID of the Request this answers
	Data  Value  // the result; the zero Value when the call failed
	Error string // why the call failed
}

// Value is one argument or result. Type is the article's type code, and
// only the field it names is set: Value{Type: 1, Int: 3} is the int 3.
type Value struct {
	Type  uint8 // 1 for an int, 2 for a float, 3 for a str
	Int   int
	Float float64
	Str   string
}

// The type codes, as the article numbers them.
const (
	typeInt   = 1
	typeFloat = 2
	typeStr   = 3
)

// init shows gob our wire types, in a fixed order, as the package starts.
// gob numbers a type when the process first meets it, and the numbers are
// in the bytes: fixed here, they keep the transcripts the same whatever a
// program or a test encodes first. They are this process's numbers only:
// a program that links a package whose init defines gob types before ours
// numbers ours after them, and so may a peer. So what a decoder accepts
// from a peer is what our encoder's definitions say, names, fields and
// types, whatever numbers the peer gave them (see wireStreams).
func init() {
	for _, v := range []any{&Request{}, &Response{}} {
		stream, err := newWireStream(v)
		if err != nil {
			panic(err) // our own types: a failure here is a bug
		}
		wireStreams[reflect.TypeOf(v)] = stream
	}
	wireStreams[reflect.TypeFor[*Request]()].checkValue = checkParams
}

// DefaultMaxMessageBytes is the largest frame payload either side reads
// unless told otherwise: a request, on the server; an answer, on the client.
// 128 KiB holds 64 arguments of 2 KiB each, or a string of 128 KiB less a
// few bytes.
const DefaultMaxMessageBytes = 1 << 17

// maxArgs bounds how many arguments a call may give.
const maxArgs = 64

// readBufferBytes is the most one read takes from a connection, and the
// room a frame's payload starts with.
const readBufferBytes = 4096

// maxKeptBuffer is the largest buffer a connection keeps after the
// message it was grown for: an idle connection holds only small buffers.
const maxKeptBuffer = 64 << 10

// fits reports whether a write that holds n messages in size bytes may
// take one more: at most max messages, and no more once it reaches
// maxKeptBuffer bytes, the most a connection keeps between messages. (One
// message may be larger alone.)
func fits(n, size, max int) bool {
	return n < max && size < maxKeptBuffer
}

// frameHeaderBytes is the size of a frame's length.
const frameHeaderBytes = 4

// errTooLarge and errMalformed end a connection: after them the reader
// cannot tell where the next message starts, or what the gob stream's
// types are.
var (
	errTooLarge  = errors.New("message too large")
	errMalformed = errors.New("malformed message")
)

// frameReader cuts a byte stream into the payloads of frames. It does not
// care how the bytes arrive: one frame split over many reads, several
// frames in one read, or one byte at a time.
//
// It reads a frame's length first, and refuses a frame longer than max
// before it reads any of the payload. It never makes room for what a
// length claims: the payload's buffer grows as its bytes arrive, so a
// sender that claims 128 KiB and sends nothing costs 4 KiB.
type frameReader struct {
	r      *bufio.Reader
	max    int                    // the largest payload, in bytes
	header [frameHeaderBytes]byte // the length being read
	inside bool                   // a byte of the frame being read has arrived
	buf    []byte                 // the payload being read; reused from frame to frame while small
	// admit, if set, is called with a frame's length once it is read and
	// within max, before any of the payload is, and before the frame
	// takes a buffer from largeBuffers or grows one: the server takes its
	// budget there. If admit fails, next returns its error.
	admit func(size int) error
}

// frameTooLarge is the error of a frame whose length is over the limit.
// next returns it having read the length alone; skipped says whether the
// decoder then read the payload and dropped it, so that the stream goes on.
type frameTooLarge struct {
	size    uint32 // the frame's length
	max     int    // the limit
	skipped bool
}

func (e *frameTooLarge) Error() string {
	return fmt.Sprintf("%v: a frame of %d bytes, more than %d", errTooLarge, e.size, e.max)
}

func (e *frameTooLarge) Unwrap() error { return errTooLarge }

// newFrameReader returns a frameReader of r, which it buffers.
func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, readBufferBytes), max: max}
}

// next returns the next frame's payload. The slice is valid until the next
// call, or release. At the end of the stream between frames it returns
// io.EOF; in the middle of one, io.ErrUnexpectedEOF. Any error it returns
// is final, unless no byte of the frame had arrived (inside is false).
func (f *frameReader) next() ([]byte, error) {
	got, err := io.ReadFull(f.r, f.header[:])
	f.inside = got > 0
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(f.header[:])
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: a frame of 0 bytes; a frame holds at least one gob message", errMalformed)
	case uint64(n) > uint64(f.max):
		return nil, &frameTooLarge{size: n, max: f.max}
	}
	if f.admit != nil {
		if err := f.admit(int(n)); err != nil {
			return nil, err
		}
	}
	size := int(n)
	f.buf = f.buf[:0]
	if size > maxKeptBuffer {
		// A buffer another large frame let go costs no new memory, so
		// it may have room for the whole frame at once.
		if large := getLarge(size); large != nil {
			f.buf = large
		}
	}
	for len(f.buf) < size {
		if len(f.buf) == cap(f.buf) {
			f.grow(size)
		}
		got, err := f.r.Read(f.buf[len(f.buf):min(cap(f.buf), size)])
		f.buf = f.buf[:len(f.buf)+got]
		if err != nil && len(f.buf) < size {
			return nil, unexpectedEOF(err)
		}
	}
	f.inside = false
	return f.buf, nil
}

// grow makes room in f.buf for more of a frame of size bytes: as much
// again as has arrived, at least readBufferBytes, and never past the
// frame, so the buffer is at most twice what the sender has sent. Past
// maxKeptBuffer the room is rounded up to a power of two, if that keeps
// within twice what has arrived and within the limit, so that after its
// frame the buffer can serve any frame up to that size (see largeBuffers).
func (f *frameReader) grow(size int) {
	n := min(size, max(2*len(f.buf), readBufferBytes))
	if large := largeSize(n); n > maxKeptBuffer && large <= 2*len(f.buf) {
		n = min(large, f.max)
	}
	// Exactly n: slices.Grow would round up to the allocator's next
	// size class, past the frame and even past the limit.
	grown := make([]byte, len(f.buf), n)
	copy(grown, f.buf)
	f.buf = grown
}

// release hands the payload's buffer to largeBuffers if a large frame
// grew it: between frames, the reader keeps only a small one.
func (f *frameReader) release() {
	if cap(f.buf) > maxKeptBuffer {
		putLarge(f.buf)
		f.buf = nil
	}
}

// largeBuffers holds the buffers that grew past maxKeptBuffer for one
// message, between that message and the next large one, on any
// connection, either way: frames read and frames written. A connection
// that waits for its next message holds none of them, and the garbage
// collector empties the pools within two cycles.
//
// There is a pool for each power of two, and a buffer goes to the pool of
// the largest power of two it holds, so that any buffer the pool of the
// next power of two up from n hands out has room for n bytes. With a
// single pool, a buffer grown to the exact size of one frame was often a
// few bytes short of the next, was put back, and the frame made a new
// one: one lookup in ten missed so in an echo of 64 KiB, which then took
// longer than net/rpc's.
var largeBuffers [64]sync.Pool // of *[]byte

// largeSize returns the least power of two that is n or more: the size a
// large buffer is made in, so that largeBuffers can give it to any frame
// of up to that size.
func largeSize(n int) int {
	return 1 << bits.Len(uint(n-1))
}

// getLarge returns an empty buffer with room for n bytes from
// largeBuffers, or nil if it has none that big. It never allocates: a
// caller that gets nil grows its buffer as bytes arrive.
func getLarge(n int) []byte {
	p, ok := largeBuffers[bits.Len(uint(n-1))].Get().(*[]byte)
	if !ok {
		return nil
	}
	return (*p)[:0]
}

// putLarge hands b, which grew past maxKeptBuffer, to largeBuffers. The
// caller must not use b after.
func putLarge(b []byte) {
	largeBuffers[bits.Len(uint(cap(b)))-1].Put(&b)
}

// unexpectedEOF turns the end of the stream in the middle of a frame into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wireStream is what a gob stream of one of our wire types may carry: the
// type definitions our own encoder writes for it, and values of it.
//
// gob is not hardened against hostile input, and its type definitions
// are where a peer can make it work: define a type with an interface
// field and gob accepts definitions inside the values it skips; define
// a field of recursive slices and gob recurses once per level to skip it;
// define a struct of 90,000 fields and gob compiles, and keeps, a decoder
// for it. Our types are fixed, so the definitions a peer needs are known,
// field by field: a decoder accepts those and no others, before gob reads
// any of them. It compares what a definition says (describeDefinition),
// not its bytes: the bytes hold the type ids of the process that sent it,
// and those depend on what else that process links and encodes.
type wireStream struct {
	typ   reflect.Type    // what decode and encode take: *Request, *Response
	name  string          // the type's name, as gob writes it: Request, Response
	defs  map[string]bool // what each definition says, as describeDefinition writes it
	first []byte          // the definition messages, lengths first, as a stream's first frame starts
	// zero is the message of the type's zero value, after its type id:
	// handed to gob after a large message, so that gob drops the large one.
	zero []byte
	// checkValue, if set, reads a value's message before gob does.
	checkValue func(value []byte) error
	// started holds *startedGob: gob encoders that have defined the
	// stream's types, for any connection to write its next value with.
	started sync.Pool
}

// wireStreams holds the stream of each type a decoder reads, by the type
// of the pointer decode is given: *Request, *Response.
var wireStreams = map[reflect.Type]*wireStream{}

// newWireStream encodes the zero value that v points to on a fresh
// stream, and notes the messages our encoder wrote: the definitions of its
// type and of every type inside it, and the value. gob defines a struct's
// field types whatever their values, so the definitions of the first
// message of a stream are the same for every Request, or every Response.
// It reads its own definitions as a decoder reads a peer's, so a
// definition our encoder writes and a decoder refuses stops the package
// from starting.
func newWireStream(v any) (*wireStream, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	stream := &wireStream{typ: reflect.TypeOf(v), defs: map[string]bool{}}
	var types peerTypes // ours, as a peer's are read
	for payload := buf.Bytes(); len(payload) > 0; {
		n, size := gobUint(payload)
		msg := payload[size : size+int(n)]
		if id, idSize := gobUint(msg); id&1 == 1 {
			if err := types.add(msg); err != nil {
				return nil, err
			}
			stream.first = append(stream.first, payload[:size+int(n)]...)
		} else {
			stream.name, _ = types.nameOf(toInt(id))
			stream.zero = bytes.Clone(msg[idSize:])
		}
		payload = payload[size+int(n):]
	}
	for _, t := range types.types {
		stream.defs[string(types.describe(nil, t))] = true
	}
	return stream, nil
}

// scanMessages checks that payload is what one gob Encode call of stream's
// type writes: whole gob messages, each its length and then that many
// bytes, all of them definitions of stream's types but the last, which
// carries a value of the stream's type. peer holds what the peer's stream
// has defined before this frame, and gets what this one defines.
//
// A gob message starts with a type id: negative for a definition of the
// type, positive for a value of it. Reading only these headers, and
// comparing definitions with ours, before gob reads anything, keeps a
// frame from holding half a message, two values, or a type we did not
// write. (A definition of an id the stream has defined before is gob's to
// refuse: it does, before it reads the definition. So is a value of a type
// the stream never defined.)
//
// It returns the value's message, after its type id, as far as it found
// one, so that a caller can read the ID of a request it refused.
func scanMessages(payload []byte, stream *wireStream, peer *peerTypes) (value []byte, err error) {
	for len(payload) > 0 {
		n, size := gobUint(payload)
		if size == 0 || n == 0 || n > uint64(len(payload)-size) {
			return nil, fmt.Errorf("%w: a gob message whose length does not fit in its frame", errMalformed)
		}
		msg := payload[size : size+int(n)]
		payload = payload[size+int(n):]
		id, size := gobUint(msg)
		switch {
		case size == 0:
			return nil, fmt.Errorf("%w: a gob message with no type id", errMalformed)
		case id&1 == 1: // gob writes a negative int with its lowest bit set
			if err := peer.add(msg); err != nil {
				return nil, err
			}
		case len(payload) > 0:
			return msg[size:], fmt.Errorf("%w: more after the value that ends a frame", errMalformed)
		default:
			if err := peer.check(stream); err != nil {
				return nil, err
			}
			switch name, _ := peer.nameOf(toInt(id)); {
			case name == "":
				return msg[size:], nil // gob's to refuse
			case name != stream.name:
				return nil, fmt.Errorf("%w: a value of type %d (%s), where %s was wanted", errMalformed, toInt(id), name, stream.name)
			case stream.checkValue != nil:
				return msg[size:], stream.checkValue(msg[size:])
			}
			return msg[size:], nil
		}
	}
	return nil, fmt.Errorf("%w: a frame that defines types and carries no value", errMalformed)
}

// errNotOurs refuses a type definition: the frame defines a type that our
// encoder does not, and the connection is closed.
var errNotOurs = fmt.Errorf("%w: a type definition that is not one of ours", errMalformed)

// firstUserID is the first type id gob gives a type of a program's own.
// Below it are gob's own types, numbered the same in every process.
const firstUserID = 64

// gobTypeNames names gob's own types that a definition may refer to, by
// the ids every process gives them.
var gobTypeNames = [...]string{1: "bool", 2: "int", 3: "uint", 4: "float", 5: "bytes", 6: "string", 7: "complex", 8: "interface"}

// maxDefinitionBytes bounds a definition message, after its length. Ours
// are under 60 bytes; a peer's say the same, with ids of its own, of up
// to 5 bytes each where ours take 2.
const maxDefinitionBytes = 256

// maxStreamTypes bounds the types a stream may define: more than any
// stream of ours has.
const maxStreamTypes = 8

// peerTypes is what a peer's gob stream has defined: our types, each by
// its name and the id the peer gave it. gob numbers types per process, so
// the ids are the peer's own. Each name and each id is defined once.
//
// A frame's definitions may refer to each other in any order (gob defines
// Request before the []Value it holds), so add takes them as they come,
// and check reads them all once the frame's value arrives. A frame whose
// definitions are not ours ends the stream, so what add took is never
// needed again.
type peerTypes struct {
	types   []peerType
	checked int // types[checked:] are the frame's, not checked yet
}

type peerType struct {
	name string // as gob writes it: Request, []asyncrpc.Value, Value
	id   int64  // the type id the peer gave it
	body []byte // the definition after its id, in the frame, until checked
}

// add reads msg, a definition message, and adds the type it defines for
// check. It refuses a definition that cannot be one of ours: too long, of
// an id below firstUserID or past gob's, not of the form
// describeDefinition reads, or a second definition of a name. A
// definition of an id defined before it skips: gob refuses it, before it
// reads it.
func (p *peerTypes) add(msg []byte) error {
	u, size := gobUint(msg)
	id := -toInt(u)
	if _, ok := p.nameOf(id); ok {
		return nil
	}
	if len(msg) > maxDefinitionBytes || id < firstUserID || id > math.MaxInt32 || len(p.types) == maxStreamTypes {
		return errNotOurs
	}
	_, name, defined, ok := describeDefinition(nil, msg[size:], appendID)
	if !ok || defined != id {
		return errNotOurs
	}
	if _, ok := p.idOf(string(name)); ok {
		return fmt.Errorf("%w: two definitions of %s", errMalformed, name)
	}
	p.types = append(p.types, peerType{name: string(name), id: id, body: msg[size:]})
	return nil
}

// check checks the types added since the last check against stream's
// definitions: each must say what one of them says, its types named as
// the peer's definitions name them. Then the types the peer has defined
// are ours, each under an id of the peer's choosing.
func (p *peerTypes) check(stream *wireStream) error {
	var desc []byte
	for _, t := range p.types[p.checked:] {
		if desc = p.describe(desc[:0], t); !stream.defs[string(desc)] {
			if len(desc) > maxDefinitionBytes {
				desc = append(desc[:maxDefinitionBytes], "..."...)
			}
			return fmt.Errorf("%w: %s", errNotOurs, desc)
		}
	}
	for i := range p.types[p.checked:] {
		p.types[p.checked+i].body = nil // the frame's buffer is not ours to keep
	}
	p.checked = len(p.types)
	return nil
}

// nameOf returns the name of the type the peer gave id to.
func (p *peerTypes) nameOf(id int64) (string, bool) {
	for _, t := range p.types {
		if t.id == id {
			return t.name, true
		}
	}
	return "", false
}

// idOf returns the id the peer gave the type of that name.
func (p *peerTypes) idOf(name string) (int64, bool) {
	for _, t := range p.types {
		if t.name == name {
			return t.id, true
		}
	}
	return 0, false
}

// describe appends what the definition of t says to dst, naming each type
// it refers to as gob or the peer's definitions name it.
func (p *peerTypes) describe(dst []byte, t peerType) []byte {
	desc, _, _, _ := describeDefinition(dst, t.body, func(dst []byte, id int64) []byte {
		if id > 0 && id < int64(len(gobTypeNames)) && gobTypeNames[id] != "" {
			return append(dst, gobTypeNames[id]...)
		}
		if name, ok := p.nameOf(id); ok {
			return append(dst, name...)
		}
		return appendID(dst, id)
	})
	return desc
}

// appendID names a type by its id alone: type 99.
func appendID(dst []byte, id int64) []byte {
	return strconv.AppendInt(append(dst, "type "...), id, 10)
}

// describeDefinition appends to dst what a gob type definition says, and
// returns it, with the type's name and the id the definition gives it.
// body is the definition message after its type id; typeName appends the
// name of a type the definition refers to by id. What it writes names
// each type and field as gob does, and the kinds as Go would:
//
//	struct Request {ID uint; Func string; Params []asyncrpc.Value}
//	slice []asyncrpc.Value of Value
//
// gob writes a type as a wireType, a struct with a field for each kind
// of type, of which one is set: SliceT, its second field, or StructT, its
// third, for the two kinds our wire is made of. Each starts with a
// CommonType: the Name and the Id. A slice then has the id of its
// elements, Elem; a struct has Field, a slice of fields, each a Name and
// an Id. A struct is written as the fields that are set, each as the step
// from the field before it and then its value, and a 0 at the end. It
// reads exactly that, as gob's encoder writes it, and reports anything
// else as not ok. A name may hold only letters, digits and _.[], so that
// what it writes cannot be read two ways.
func describeDefinition(dst, body []byte, typeName func(dst []byte, id int64) []byte) (desc, name []byte, id int64, ok bool) {
	r := definitionReader{rest: body, ok: true}
	kind := r.uint() // the step to the field of wireType that is set
	r.expect(1)      // CommonType
	r.expect(1)      //   Name
	name = r.name()
	r.expect(1) //   Id
	id = r.int()
	r.expect(0) // end of CommonType
	switch kind {
	case 2: // SliceT
		dst = append(append(append(dst, "slice "...), name...), " of "...)
		r.expect(1) // Elem
		dst = typeName(dst, r.int())
		r.expect(0) // end of SliceT
	case 3: // StructT
		dst = append(append(append(dst, "struct "...), name...), " {"...)
		r.expect(1) // Field
		for i := range r.uint() {
			if !r.ok {
				break
			}
			if i > 0 {
				dst = append(dst, "; "...)
			}
			r.expect(1) // Name
			dst = append(append(dst, r.name()...), ' ')
			r.expect(1) // Id
			dst = typeName(dst, r.int())
			r.expect(0) // end of the field
		}
		dst = append(dst, '}')
		r.expect(0) // end of StructT
	default:
		r.ok = false
	}
	r.expect(0) // end of wireType
	return dst, name, id, r.ok && len(r.rest) == 0
}

// definitionReader reads the integers and names of a definition, in
// order. After the first thing it cannot read, or that is not what was
// expected, ok is false and every read returns nothing.
type definitionReader struct {
	rest []byte
	ok   bool
}

func (r *definitionReader) uint() uint64 {
	u, size := gobUint(r.rest)
	if !r.ok || size == 0 {
		r.ok = false
		return 0
	}
	r.rest = r.rest[size:]
	return u
}

func (r *definitionReader) int() int64 {
	return toInt(r.uint())
}

// expect reads an unsigned integer, which must be u.
func (r *definitionReader) expect(u uint64) {
	if r.uint() != u {
		r.ok = false
	}
}

// name reads a string, which must be a name: not empty, and only letters,
// digits and _.[] in it.
func (r *definitionReader) name() []byte {
	n := r.uint()
	if !r.ok || n == 0 || n > uint64(len(r.rest)) {
		r.ok = false
		return nil
	}
	name := r.rest[:n]
	r.rest = r.rest[n:]
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.[]", c) >= 0) {
			r.ok = false
			return nil
		}
	}
	return name
}

// toInt reads a signed integer from the unsigned one gob writes for it:
// the sign in the lowest bit, the rest shifted up.
func toInt(u uint64) int64 {
	if u&1 == 1 {
		return ^int64(u >> 1)
	}
	return int64(u >> 1)
}

// checkParams reads a Request's value as far as the count of its Params,
// and refuses more than maxArgs before gob makes room for them: gob
// believes a slice's count up to 10 MiB of memory before it sees one
// element. gob writes a struct as its fields that are not zero, each as
// the step from the field before it and then its value, and a 0 at the
// end; a Request's fields are ID, an unsigned integer, Func, a string (its
// length, then its bytes), and Params, a slice (its count, then its
// elements). What it cannot read it leaves to gob, which refuses it.
func checkParams(value []byte) error {
	field := -1
	for {
		step, size := gobUint(value)
		if size == 0 || step == 0 || step > 3 {
			return nil // cut, the end of the Request, or a field gob refuses
		}
		value = value[size:]
		switch field += int(step); field {
		case 0: // ID
			_, size := gobUint(value)
			value = value[size:]
		case 1: // Func
			n, size := gobUint(value)
			if size == 0 || n > uint64(len(value)-size) {
				return nil
			}
			value = value[size+int(n):]
		case 2: // Params
			if n, _ := gobUint(value); n > maxArgs {
				return fmt.Errorf("%w: more than %d arguments", errMalformed, maxArgs)
			}
			return nil
		default:
			return nil
		}
	}
}

// peekID reads the ID of a Request or a Response from its value's gob
// message, without gob: the ID is the first field, so when it is not 0 the
// message starts with a step of 1 and the ID. It returns 0 if the message
// does not start that way. The server uses it to say which call a request
// it could not read was.
func peekID(value []byte) uint64 {
	step, size := gobUint(value)
	if size == 0 || step != 1 {
		return 0
	}
	id, _ := gobUint(value[size:])
	return id
}

// gobUint reads an unsigned integer as gob writes it: below 128, one byte;
// otherwise a byte holding minus the count of bytes that follow, and then
// those bytes, big-endian. It returns the integer and the bytes it took, or
// a size of 0 if p does not start with one.
func gobUint(p []byte) (u uint64, size int) {
	if len(p) == 0 {
		return 0, 0
	}
	if p[0] < 0x80 {
		return uint64(p[0]), 1
	}
	n := -int(int8(p[0]))
	if n > 8 || len(p) <= n {
		return 0, 0
	}
	for _, b := range p[1 : 1+n] {
		u = u<<8 | uint64(b)
	}
	return u, 1 + n
}

// appendGobUint appends u as gob writes an unsigned integer; see gobUint.
func appendGobUint(b []byte, u uint64) []byte {
	if u < 0x80 {
		return append(b, byte(u))
	}
	n := (bits.Len64(u) + 7) / 8
	b = append(b, byte(-n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(u>>(8*i)))
	}
	return b
}

// appendGobInt appends i as gob writes a signed integer: the sign in the
// lowest bit.
func appendGobInt(b []byte, i int64) []byte {
	if i < 0 {
		return appendGobUint(b, uint64(^i)<<1|1)
	}
	return appendGobUint(b, uint64(i)<<1)
}

// decoder reads the values of one gob stream that arrives in frames: the
// server's requests, or the client's answers.
type decoder struct {
	frames *frameReader
	src    bytes.Reader // the payload being decoded
	gob    *gob.Decoder // reads src; remembers the types the stream has defined
	peer   peerTypes    // the same types, as scanMessages knows them: our names, the peer's ids
	zero   [16]byte     // room for the message of a zero value (see zeroValue)
	// skipLarge makes decode read and drop a later frame over the limit,
	// when it can read the ID of the value the frame carries (see skip).
	skipLarge bool
	started   bool // a frame has been decoded: the stream's types are defined
}

// newDecoder returns a decoder of the frames that r carries, each at most
// max bytes.
func newDecoder(r io.Reader, max int) *decoder {
	d := &decoder{frames: newFrameReader(r, max)}
	d.gob = gob.NewDecoder(&d.src)
	return d
}

// decode reads the next frame into v, a *Request or a *Response, which
// must point to a zero value: gob leaves alone the fields a message does
// not carry. If it fails on a frame whose value's ID it can read, it sets
// v's ID, so that the refusal can say which call it was.
//
// An error it returns is final, but for two: a read that times out before
// any byte of the next frame has arrived (see waiting), and a
// *frameTooLarge whose frame was skipped. After a frame it could not read,
// the stream is in doubt: the frame may have defined types that later
// frames use, and the sender has no way to know they were lost.
func (d *decoder) decode(v any) error {
	stream := wireStreams[reflect.TypeOf(v)]
	if stream == nil {
		return fmt.Errorf("decode: a %T is not one of the wire types", v)
	}
	payload, err := d.frames.next()
	if large, ok := err.(*frameTooLarge); ok && d.skipLarge && d.started {
		return d.skip(v, stream, large)
	}
	if err != nil {
		return err
	}
	defer d.frames.release()
	value, err := scanMessages(payload, stream, &d.peer)
	if err == nil {
		d.src.Reset(payload)
		err = d.gob.Decode(v)
		if err == nil && len(payload) > maxKeptBuffer {
			// gob keeps the last message it read until it reads another:
			// give it a small one, the zero value, to keep instead.
			d.src.Reset(d.zeroValue(stream))
			err = d.gob.Decode(reflect.New(reflect.TypeOf(v).Elem()).Interface())
		}
		d.src.Reset(nil)
		if err != nil {
			err = fmt.Errorf("%w: %v", errMalformed, err)
		}
	}
	if err != nil {
		setID(v, peekID(value))
	}
	d.started = d.started || err == nil
	return err
}

// zeroValue returns the message of the zero value of stream's type, length
// first, with the type id the peer gave the type. Call it only once the
// stream has carried a value.
func (d *decoder) zeroValue(stream *wireStream) []byte {
	id, _ := d.peer.idOf(stream.name)
	msg := append(appendGobInt(d.zero[1:1], id), stream.zero...)
	d.zero[0] = byte(len(msg)) // at most 9 + 1 bytes: one byte of length
	return d.zero[:1+len(msg)]
}

// skipIDBytes is as much of a frame as skip reads to find the ID of its
// value: the gob message's length and its type id, at most 9 bytes each,
// the step of 1 to the ID, and the ID, at most 9 bytes.
const skipIDBytes = 28

// skip reads the frame that next refused as too large, if the stream can
// go on without it, and drops it. It can when the frame is not the
// stream's first, which defines the types the later ones use, and when
// its first bytes are a value of the stream's type, under the id the
// peer gave it, with an ID: a later frame from our encoder carries the
// value alone, and gob writes the ID, the first field, first. Then skip
// sets v's ID, reads the rest of the frame through the bufio.Reader's own
// buffer, holding none of it (it grows no frame buffer, takes none from
// largeBuffers, and admit is never called for it: a frame over the limit
// takes no budget), and returns large, marked skipped. Otherwise it
// returns large as it was: the stream is refused.
func (d *decoder) skip(v any, stream *wireStream, large *frameTooLarge) error {
	var start [skipIDBytes]byte
	n := min(int(large.size), len(start))
	if _, err := io.ReadFull(d.frames.r, start[:n]); err != nil {
		return unexpectedEOF(err)
	}
	typeID, _ := d.peer.idOf(stream.name) // defined: the stream has carried a value
	id := valueID(start[:n], typeID)
	if id == 0 {
		return large
	}
	if _, err := d.frames.r.Discard(int(large.size) - n); err != nil {
		return unexpectedEOF(err)
	}
	setID(v, id)
	d.frames.inside = false
	large.skipped = true
	return large
}

// valueID reads the ID of the value whose gob message starts start, or
// returns 0 if start is not the beginning of a message that carries a
// value of the type the peer numbered typeID, its ID first.
func valueID(start []byte, typeID int64) uint64 {
	n, size := gobUint(start)
	if size == 0 || n == 0 {
		return 0
	}
	id, idSize := gobUint(start[size:])
	if idSize == 0 || toInt(id) != typeID {
		return 0
	}
	return peekID(start[size+idSize:])
}

// waiting reports whether the decoder is between frames: no byte of the
// next one has arrived. A read that timed out then may be tried again.
func (d *decoder) waiting() bool {
	return !d.frames.inside && d.frames.r.Buffered() == 0
}

// setID sets the ID of v, a *Request or a *Response.
func setID(v any, id uint64) {
	switch v := v.(type) {
	case *Request:
		v.ID = id
	case *Response:
		v.ID = id
	}
}

// encoder writes the values of one gob stream as frames: the client's
// calls, or the server's answers. A stream carries one of the wire types.
//
// It holds no gob encoder of its own. gob's encoder keeps a buffer as big
// as the largest message it wrote, for as long as it lives, and all that
// sets one apart from another is which types it has defined. So the
// stream writes its first frame's definitions from what init recorded,
// and each value with a gob encoder taken from its wireStream, which has
// defined the same types: the bytes are the same as a gob encoder of its
// own would write, and an idle connection holds no gob buffer.
type encoder struct {
	frame  frameWriter // the frame being built: room for its length, then what gob writes
	stream *wireStream // the stream's type, once its first frame has defined it
	max    int         // the largest payload encode makes, if not 0
}

// newEncoder returns the encoder of a new gob stream.
func newEncoder() *encoder {
	return &encoder{}
}

// encode adds v, a *Request or a *Response, to the frames waiting to be
// sent, as one frame: its length, then what one gob Encode call of a stream
// of v's type writes. It returns every frame waiting, to be sent in one
// write; they stay valid until release. A frame whose payload would be
// larger than max is refused with errTooLarge. If it fails, the frames
// waiting, and the stream, are as they were: a stream's first frame
// refused, the next frame defines the types instead. If a frame it
// returned is not sent, the stream cannot go on: the frame may define
// types that the next frames use.
func (e *encoder) encode(v any) ([]byte, error) {
	stream := wireStreams[reflect.TypeOf(v)]
	switch {
	case stream == nil:
		return nil, fmt.Errorf("encode: a %T is not one of the wire types", v)
	case e.stream != nil && e.stream != stream:
		return nil, fmt.Errorf("encode: a %T on a stream of %v", v, e.stream.typ)
	}
	start := len(e.frame.buf)
	var room [frameHeaderBytes]byte
	e.frame.buf = append(e.frame.buf, room[:]...)
	if e.stream == nil {
		e.frame.buf = append(e.frame.buf, stream.first...)
	}
	err := stream.encodeValue(&e.frame, v)
	n := len(e.frame.buf) - start - frameHeaderBytes
	switch {
	case err != nil:
	case e.max > 0 && n > e.max:
		err = fmt.Errorf("%w: a frame of %d bytes, more than %d", errTooLarge, n, e.max)
	case uint64(n) > math.MaxUint32:
		err = fmt.Errorf("%w: %d bytes do not fit in a frame", errTooLarge, n)
	}
	if err != nil {
		e.frame.buf = e.frame.buf[:start]
		return nil, err
	}
	e.stream = stream
	binary.BigEndian.PutUint32(e.frame.buf[start:], uint32(n))
	return e.frame.buf, nil
}

// release empties the frames waiting, once they have been sent. If their
// buffer grew past maxKeptBuffer, it goes to largeBuffers: the next large
// frame, on any connection, takes it.
func (e *encoder) release() {
	if cap(e.frame.buf) > maxKeptBuffer {
		putLarge(e.frame.buf)
		e.frame.buf = nil
	}
	e.frame.buf = e.frame.buf[:0]
}

// startedGob is a gob encoder that has defined a wire stream's types, and
// writes wherever out points.
type startedGob struct {
	gob *gob.Encoder // writes to out
	out frameWriter
}

// encodeValue appends the gob message of v, a value of the stream's
// type, to frame: the value alone, its types being defined already.
// Safe to call from many goroutines at once: each takes an encoder of
// its own from s.started, or starts one.
func (s *wireStream) encodeValue(frame *frameWriter, v any) error {
	g, ok := s.started.Get().(*startedGob)
	if !ok {
		g = &startedGob{}
		g.gob = gob.NewEncoder(&g.out)
		// The zero value defines the types; the peer gets them from
		// s.first, so these bytes go nowhere.
		if err := g.gob.EncodeValue(reflect.New(s.typ.Elem())); err != nil {
			return err
		}
	}
	g.out.buf = frame.buf
	err := g.gob.Encode(v)
	frame.buf, g.out.buf = g.out.buf, nil
	if err == nil {
		s.started.Put(g) // after an error, gob's state is in doubt
	}
	return err
}

// frameWriter collects what gob writes for one frame. gob writes each
// message whole, in one call, so the room a frame needs is known before
// it grows: past maxKeptBuffer, it takes a buffer from largeBuffers if
// one is big enough, and makes one of largeSize if not, which can go
// back to largeBuffers for the next large frame.
type frameWriter struct {
	buf []byte
}

func (w *frameWriter) Write(p []byte) (int, error) {
	if need := len(w.buf) + len(p); need > cap(w.buf) && need > maxKeptBuffer {
		large := getLarge(need)
		if large == nil {
			large = make([]byte, 0, largeSize(need))
		}
		w.buf = append(large, w.buf...)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// parseCall reads a Request as a call: the function's name and its
// arguments, ints, float64s and strings.
func parseCall(req *Request) (name string, args []any, err error) {
	if !utf8.ValidString(req.Func) {
		return "", nil, fmt.Errorf("function name %s is not valid UTF-8", quoteShort(req.Func))
	}
	if len(req.Params) > maxArgs {
		return "", nil, fmt.Errorf("more than %d arguments", maxArgs)
	}
	for i, p := range req.Params {
		v, err := fromValue(p)
		if err != nil {
			return "", nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		args = append(args, v)
	}
	return req.Func, args, nil
}

// fromValue returns the int, float64 or string that v carries. A value
// whose type code is unknown, or that sets the field of another type too,
// is refused: nothing a caller sent is silently dropped.
func fromValue(v Value) (any, error) {
	var res any
	rest := v // v without the field its type code names
	switch v.Type {
	case typeInt:
		res, rest.Int = v.Int, 0
	case typeFloat:
		if math.IsInf(v.Float, 0) || math.IsNaN(v.Float) {
			return nil, fmt.Errorf("float %v: the wire carries finite floats only", v.Float)
		}
		res, rest.Float = v.Float, 0
	case typeStr:
		if !utf8.ValidString(v.Str) {
			return nil, fmt.Errorf("%s is not valid UTF-8", quoteShort(v.Str))
		}
		res, rest.Str = v.Str, ""
	default:
		return nil, fmt.Errorf("unknown type code %d: 1 is int, 2 float, 3 str", v.Type)
	}
	if rest != (Value{Type: v.Type}) {
		return nil, fmt.Errorf("type code %d, with the field of another type set too", v.Type)
	}
	return res, nil
}

// toValue returns v, an int, a float64 or a string, as a Value.
func toValue(v any) (Value, error) {
	switch v := v.(type) {
	case int:
		return Value{Type: typeInt, Int: v}, nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return Value{}, fmt.Errorf("%v cannot be sent: the wire carries finite floats only", v)
		}
		return Value{Type: typeFloat, Float: v}, nil
	case string:
		return Value{Type: typeStr, Str: v}, nil
	}
	return Value{}, fmt.Errorf("a %T cannot be sent: the wire carries int, float64 and string", v)
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

// newRequest returns the Request that calls name with args, each an int, a
// float64 or a string.
func newRequest(name string, args []any) (Request, error) {
	req := Request{Func: name, Params: make([]Value, len(args))}
	for i, arg := range args {
		var err error
		if req.Params[i], err = toValue(arg); err != nil {
			return Request{}, fmt.Errorf("argument %d: %w", i+1, err)
		}
	}
	return req, nil
}

// newResponse returns the answer to a call that returned res, or failed
// with callErr.
func newResponse(res any, callErr error) Response {
	if callErr == nil {
		v, err := toValue(res)
		if err == nil {
			return Response{Data: v}
		}
		callErr = err
	}
	return Response{Error: callErr.Error()}
}

// decodeAnswer reads a Response: the result, or the error the server
// reported.
func decodeAnswer(r *Response) (any, error) {
	switch {
	case r.Data == Value{}:
		return nil, &ServerError{Message: r.Error}
	case r.Error != "":
		return nil, fmt.Errorf("answer has both a result and an error, %s", quoteShort(r.Error))
	}
	res, err := fromValue(r.Data)
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
