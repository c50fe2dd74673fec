package atmostonce

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"
)

// frameSeeds are streams for the fuzz targets to start from: our own
// frames, whole and cut, with IDs small and large, and the bad frames the
// tests write by hand.
func frameSeeds(f *testing.F) [][]byte {
	answers := encodeFrames(f, &Response{ID: 2, Data: Value{Type: typeInt, Int: 3}}, &Response{ID: 1, Error: "no"},
		&Response{ID: 1 << 40, Data: Value{Type: typeStr, Str: "x"}}, &Response{Error: "refused: no call's ID"})
	calls := encodeFrames(f, withID(sumRequest, 1<<63), &Request{ID: 2, Func: "get_time"}, &Request{Func: "echo", Params: []Value{{Type: typeStr, Str: "no ID"}}})
	return [][]byte{
		join(sumFirstFrame, sumLaterFrame), sumFirstFrame[:40], sumFirstFrame[:4], sumLaterFrame, join(calls...),
		join(answers...), answers[0][:30],
		{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, []byte("\xff\xff\xff\xffxxxx"), frame([]byte("hello, world")),
		frame(append(bytes.Clone(firstDefs), 0x0f, 0xff, 0x80, 0x01, 0x01, 0x01, 0x03, 's', 'u', 'm', 0x01, 0xfc, 0x05, 0xf5, 0xe1, 0x00)),
		frame(manyTypes(f, 4)), []byte("23 func:sum@params:1-1,1-2\n"), nil,
		// The attacks of a foreign gob client (see TestHostileTypes), small:
		// types defined inside a value, through an interface field; slices
		// of slices to skip; a Request of many fields; more arguments
		// than a call may have, a byte each.
		anyTypesStream(f, 2, 3), nodesStream(f, 100), wideStream(f, 50), emptyValuesStream(1000),
		// Our first call and the next, as a process that numbered our
		// types otherwise writes them (see TestDecoderAcceptsOtherNumbers).
		join(frame(join(numbered(68, 69, 70), withTypeID(sumLaterFrame, 68)[frameHeaderBytes:])), withTypeID(sumLaterFrame, 68)),
	}
}

// finalError reports whether err is one that a reader of frames may end
// with: the end of the stream, or a frame it refused.
func finalError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, errTooLarge) || errors.Is(err, errMalformed)
}

// FuzzFrameReader feeds the frame reader arbitrary streams. It must never
// panic, return a payload past its limit, or allocate room for one; and
// every payload it returns, framed again, must be exactly the next piece of
// the stream.
func FuzzFrameReader(f *testing.F) {
	for _, seed := range frameSeeds(f) {
		f.Add(seed)
	}
	const max = 256
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := newFrameReader(bytes.NewReader(stream), max)
		rest := stream
		for {
			msg, err := r.next()
			if cap(r.buf) > max {
				t.Fatalf("allocated %d bytes with a limit of %d", cap(r.buf), max)
			}
			if err != nil {
				if !finalError(err) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			framed := frame(msg)
			if !bytes.HasPrefix(rest, framed) {
				t.Fatalf("payload %q is not the next frame of the stream %q", msg, rest)
			}
			rest = rest[len(framed):]
		}
	})
}

// maxCost is the most memory that decoding a stream of n bytes may take:
// gob's engines for our types, once, and then a few bytes for each byte
// that arrived: the frame's buffer, which grows by doubling, gob's copy of
// each message, and the strings it decodes. Nothing may grow with what
// the bytes claim; before the count of arguments was checked first, a
// frame of empty Values cost 160 bytes a byte.
func maxCost(n int) uint64 {
	return 64<<10 + 8*uint64(n)
}

// decodeAll decodes values of type T from stream, as one connection's
// decoder does, until it fails. The failure must be one a decoder may end
// with; if it came before the frame's value, the value must be left zero,
// without an ID; and the memory it took must be what the stream can
// account for.
func decodeAll[T any](t *testing.T, stream []byte) []T {
	d := newDecoder(bytes.NewReader(stream), 4096)
	var values []T
	var err error
	var failed T // the value whose frame ended the stream
	cost := allocated(func() {
		for err == nil {
			var v T
			if err = d.decode(&v); err == nil {
				values = append(values, v)
			}
			failed = v
		}
	})
	if !finalError(err) {
		t.Fatalf("unexpected error %v", err)
	}
	// A refusal names a call only if the frame got as far as its value.
	if !errors.Is(err, errMalformed) && !reflect.ValueOf(failed).IsZero() {
		t.Fatalf("%v, before any value, gave the value %+v", err, failed)
	}
	if cost > maxCost(len(stream)) {
		t.Fatalf("a stream of %d bytes took %d bytes of memory", len(stream), cost)
	}
	return values
}

// FuzzDecodeRequests feeds the server's decoder arbitrary streams, frames
// and gob together. It must never panic, nor take more memory than the
// stream can account for; what it decodes must parse as a call or be
// refused; and a call it accepts, sent again by our client with its ID,
// must arrive the same.
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range frameSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		reqs := decodeAll[Request](t, stream)
		for _, req := range reqs {
			name, args, err := parseCall(&req)
			if err != nil {
				continue
			}
			again, err := newRequest(name, args)
			if err != nil {
				t.Fatalf("cannot send again what was parsed from %+v: %v", req, err)
			}
			again.ID = req.ID
			got := throughWire(t, &again)
			name2, args2, err := parseCall(&got)
			if err != nil || name2 != name || !slices.Equal(args, args2) || got.ID != req.ID {
				t.Fatalf("call %d %q %v, sent again, arrived as call %d %q %v, %v", req.ID, name, args, got.ID, name2, args2, err)
			}
		}
	})
}

// throughWire sends v through an encoder and a decoder, as the first
// frame of a connection, and returns what arrives.
func throughWire[T any](t *testing.T, v *T) T {
	var got T
	if err := newDecoder(bytes.NewReader(encodeFrames(t, v)[0]), 1<<20).decode(&got); err != nil {
		t.Fatalf("%+v, sent, does not decode: %v", *v, err)
	}
	return got
}

// FuzzDecodeAnswers feeds the client's decoder arbitrary streams. It must
// never panic, nor take more memory than the stream can account for; each
// answer it decodes is a result or an error, never both; and a result,
// sent again by our server with its ID, must arrive the same.
func FuzzDecodeAnswers(f *testing.F) {
	for _, seed := range frameSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		answers := decodeAll[Response](t, stream)
		for _, resp := range answers {
			res, err := decodeAnswer(&resp)
			if err != nil && res != nil {
				t.Fatalf("both a result %v and an error %v", res, err)
			}
			if err != nil {
				continue
			}
			resp2 := newResponse(res, nil)
			resp2.ID = resp.ID
			again := throughWire(t, &resp2)
			res2, err := decodeAnswer(&again)
			if err != nil || res2 != res || again.ID != resp.ID {
				t.Fatalf("answer %d %#v, sent again, arrived as answer %d %#v, %v", resp.ID, res, again.ID, res2, err)
			}
		}
	})
}

// FuzzHandle feeds the demo server's handling arbitrary calls: looking up
// the function, checking the arguments, calling. Nothing may panic, and
// every call gets an answer that is data or an error, never both, which
// the client can read.
func FuzzHandle(f *testing.F) {
	f.Add("sum", uint8(typeInt), 1, 0.0, "", uint8(2))
	f.Add("sum", uint8(typeFloat), 0, 1e308, "", uint8(2))
	f.Add("add", uint8(typeInt), 9223372036854775807, 0.0, "", uint8(2))
	f.Add("get_time", uint8(0), 0, 0.0, "", uint8(0))
	f.Add("echo", uint8(typeStr), 0, 0.0, "x", uint8(1))
	f.Add("echo", uint8(typeInt), 1, 0.0, "", uint8(1))
	f.Add("nosuch", uint8(typeStr), 0, 0.0, "\xff", uint8(70))
	f.Add("incr", uint8(typeStr), 0, 0.0, "k", uint8(1))
	f.Add("slow", uint8(typeInt), MaxSlow, 0.0, "", uint8(1))
	// slow sleeps on no clock, and incr counts in Counters of its own.
	srv := NewDemoServer(Service{Counters: NewCounters(), Sleep: func(context.Context, time.Duration) error { return nil }})
	f.Fuzz(func(t *testing.T, name string, typ uint8, i int, x float64, s string, n uint8) {
		req := Request{Func: name}
		for range n {
			req.Params = append(req.Params, Value{Type: typ, Int: i, Float: x, Str: s})
		}
		resp := answerOf(srv, &req)
		if (resp.Data != Value{}) && (resp.Error != "" || resp.Code != OK) {
			t.Fatalf("both a result and an error: %+v", resp)
		}
		if (resp.Data == Value{}) && resp.Code == OK {
			t.Fatalf("neither a result nor a code: %+v", resp)
		}
		got := throughWire(t, &resp)
		if _, err := decodeAnswer(&got); err != nil && !errors.As(err, new(*Error)) {
			t.Fatalf("the client cannot read the answer %+v: %v", got, err)
		}
	})
}

// answerOf answers req as the server does a call it runs without its
// table: lookup finds the function, or refuses the call, and run runs it.
func answerOf(srv *Server, req *Request) Response {
	fn, args, refusal := srv.lookup(req)
	if refusal != nil {
		return newResponse(nil, refusal)
	}
	return srv.run(context.Background(), req, time.Now(), fn, args)
}

// The types gob describes a type with, as gob itself declares them (its
// wireType, in encoding/gob's type.go), with int64 for each id: gob reads
// a definition into these, and FuzzDescribeDefinition has gob read the
// same bytes into these copies, to compare with what describeDefinition
// read.
type (
	gobWireType struct {
		ArrayT *struct{ CommonType gobCommonType }
		SliceT *struct {
			CommonType gobCommonType
			Elem       int64
		}
		StructT *struct {
			CommonType gobCommonType
			Field      []struct {
				Name string
				Id   int64
			}
		}
		MapT             *struct{ CommonType gobCommonType }
		GobEncoderT      *struct{ CommonType gobCommonType }
		BinaryMarshalerT *struct{ CommonType gobCommonType }
		TextMarshalerT   *struct{ CommonType gobCommonType }
	}
	gobCommonType struct {
		Name string
		Id   int64
	}
)

// FuzzDescribeDefinition feeds describeDefinition arbitrary definitions.
// It must never panic, and what it accepts, gob must read the same way:
// gob decodes the same bytes as a value of its own wireType (type id 16,
// the same in every process) into a copy of that type, and the kind, the
// name, the id and every field must be what describeDefinition said. So a
// definition the decoder takes for one of ours cannot mean something else
// to gob.
func FuzzDescribeDefinition(f *testing.F) {
	for _, defs := range [][]byte{firstDefs, numbered(68, 69, 70), numbered(300, 70_000, 1<<31-1), encodeFrames(f, &Response{})[0][frameHeaderBytes:]} {
		for len(defs) > 0 {
			n, size := gobUint(defs)
			msg := defs[size : size+int(n)]
			if id, idSize := gobUint(msg); id&1 == 1 {
				f.Add(msg[idSize:])
			}
			defs = defs[size+int(n):]
		}
	}
	// Our definitions of Value and []Value, each as a wireType of every
	// other kind: an array, a map, a type with an encoding method.
	for kind := byte(1); kind <= 7; kind++ {
		for _, def := range [][]byte{defineStruct(69, "Value", field{"Str", idString}), defineSlice(70, "[]atmostonce.Value", 69)} {
			n, size := gobUint(def)
			msg := def[size : size+int(n)]
			_, idSize := gobUint(msg)
			f.Add(append([]byte{kind}, msg[idSize+1:]...))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		desc, name, id, ok := describeDefinition(nil, body, appendID)
		if !ok {
			return
		}
		var wire gobWireType
		msg := join(appendGobInt(nil, 16), body) // a value of gob's wireType
		if err := gob.NewDecoder(bytes.NewReader(lengthFirst(msg))).Decode(&wire); err != nil {
			t.Fatalf("described %q (name %q, id %d), and gob cannot read it: %v", desc, name, id, err)
		}
		var said []byte
		var common gobCommonType
		switch {
		case wire.ArrayT != nil || wire.MapT != nil || wire.GobEncoderT != nil || wire.BinaryMarshalerT != nil || wire.TextMarshalerT != nil:
			t.Fatalf("described %q, and gob reads a type of another kind: %+v", desc, wire)
		case wire.SliceT != nil && wire.StructT == nil:
			common = wire.SliceT.CommonType
			said = appendID(fmt.Appendf(nil, "slice %s of ", common.Name), wire.SliceT.Elem)
		case wire.StructT != nil && wire.SliceT == nil:
			common = wire.StructT.CommonType
			said = fmt.Appendf(nil, "struct %s {", common.Name)
			for i, f := range wire.StructT.Field {
				if i > 0 {
					said = append(said, "; "...)
				}
				said = appendID(append(append(said, f.Name...), ' '), f.Id)
			}
			said = append(said, '}')
		default:
			t.Fatalf("described %q, and gob reads %+v", desc, wire)
		}
		if string(said) != string(desc) || common.Name != string(name) || common.Id != id {
			t.Fatalf("described %q, name %q, id %d; gob reads %q, name %q, id %d", desc, name, id, said, common.Name, common.Id)
		}
	})
}
