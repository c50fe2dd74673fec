package gobrpc

// What goes wrong in the article's version, each flaw a test. The article
// sends pickle, whose loads runs code the bytes name.

import (
	"bytes"
	"encoding/gob"
	"sync/atomic"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tripwire is a type whose GobDecode, code of the receiving program,
// records that it ran.
type tripwire struct{ Cmd string }

var tripped atomic.Bool

func (t tripwire) GobEncode() ([]byte, error) { return []byte(t.Cmd), nil }
func (*tripwire) GobDecode([]byte) error      { tripped.Store(true); return nil }

// hostileRequest is a Request whose Params carry a type with code of its
// own, as a sender hoping for pickle's behaviour might write it.
type hostileRequest struct {
	Func   string
	Params []*tripwire
}

// TestArticleFlawCodeOnLoad sends a call whose argument is a value of a
// type with decoding code of its own. pickle.loads would run whatever
// function the bytes name. Our decoder accepts only the type definitions
// our own encoder writes, so the call is refused before gob reads any of
// it, although the server's process has the type, registered with gob.
// gob alone would refuse it too: it fills in the types the receiver
// declares and nothing else, and Params are Values.
//
// A field of type any is where the bytes do choose: into one, gob decodes
// any type the receiving program has registered, and runs its GobDecode.
// That is why Value is a struct, not an any.
func TestArticleFlawCodeOnLoad(t *testing.T) {
	gob.Register(&tripwire{})
	tripped.Store(false) // a run before this one (-count) may have set it
	conn, answers := rawConn(t, serve(t, NewDemoServer(), rpctest.Listen(t)))
	hostile := foreignFrames(t, &hostileRequest{Func: "echo", Params: []*tripwire{{Cmd: "rm -rf /"}}})
	write(t, conn, hostile)
	assert.Contains(t, nextAnswer(t, answers).Error, "malformed message: a type definition that is not one of ours")
	err := gob.NewDecoder(bytes.NewReader(hostile[frameHeaderBytes:])).Decode(&Request{})
	assert.ErrorContains(t, err, "gob: wrong type ([]gobrpc.Value) for received field hostileRequest.Params")
	assert.False(t, tripped.Load(), "gob ran code the sender chose")

	var stream bytes.Buffer
	require.NoError(t, gob.NewEncoder(&stream).Encode(struct{ Params []any }{[]any{&tripwire{Cmd: "rm -rf /"}}}))
	var into struct{ Params []any }
	require.NoError(t, gob.NewDecoder(&stream).Decode(&into))
	assert.True(t, tripped.Load(), "into a field of type any, the bytes choose which registered type's code runs")
}
