package crossstage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
	asyncrpc "github.com/rpc-from-scratch/course/05-async-callback"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Stages 04 and 05 both speak gob, and gob numbers types per process, in
// the order the process first meets them: each stage's init encodes its
// own Request and Response, so a program that links one stage gives them
// 64 to 67. A program that links both, as this test binary does, as
// bench/ does, and as a learner's program that uses two stages does,
// numbers the second stage's types after the first's. The numbers are in
// the bytes of each type's definition, so a server that compared
// definitions byte for byte refused every client of its own stage built
// as a program of its own.

// TestStage04ServesItsClientBesideStage05 serves stage 04's demo from this
// binary, which links stages 04 and 05, to the bytes that stage 04's own
// client sends: the calls of its golden wire transcript, recorded by a
// test binary that links stage 04 alone. Every call must be answered.
//
// Which stage's numbers this binary shifts depends on the order Go
// initialises packages in: by import path, each after what it imports.
// Today 04's init runs first, so here 04's types have their own numbers
// and 05's are shifted; an import that only stage 04 had would turn that
// round. Both ways must work, and the test checks the premise: some
// stage's Request has an id here that a program of its own would not give
// it.
func TestStage04ServesItsClientBesideStage05(t *testing.T) {
	ids := map[string]int64{
		"04": typeID(t, &gobrpc.Request{}),
		"05": typeID(t, &asyncrpc.Request{}),
	}
	t.Logf("type ids of Request in this binary: %v (a program that links one stage alone gives it 64)", ids)
	require.True(t, ids["04"] != 64 || ids["05"] != 64, "this binary must number one stage's types as a program of its own would not")

	sent := goldenSent(t, filepath.Join("..", "..", "04-gob-binary", "testdata", "wire.golden"),
		"sum(1, 2), sum(1.1, 2) and get_time() in one write")
	addr := serve(t, gobrpc.NewDemoServer())
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = conn.Write(sent)
	require.NoError(t, err)

	answers := gob.NewDecoder(&framesReader{r: bufio.NewReader(conn)})
	var got []gobrpc.Response
	for range 3 {
		var resp gobrpc.Response
		require.NoError(t, answers.Decode(&resp), "the answers so far: %+v", got)
		got = append(got, resp)
	}
	assert.Equal(t, gobrpc.Response{Data: gobrpc.Value{Type: 1, Int: 3}}, got[0], "sum(1, 2)")
	assert.Equal(t, gobrpc.Response{Data: gobrpc.Value{Type: 2, Float: 3.1}}, got[1], "sum(1.1, 2)")
	assert.Equal(t, uint8(3), got[2].Data.Type, "get_time(): %+v", got[2])
	assert.Empty(t, got[2].Error)
}

// TestStage05ServesItsClientBesideStage04 is the same for stage 05: its
// demo, served from this binary, answers the bytes stage 05's own client
// sends, from its golden wire transcript. Today it is stage 05 whose types
// this binary numbers after stage 04's, so this is the test that failed
// when the decoder compared definitions byte for byte: the first answer
// refused the stream, "a type definition that is not one of ours". Stage
// 05 answers in the order the calls end, so the answers are matched to
// the calls by their IDs.
func TestStage05ServesItsClientBesideStage04(t *testing.T) {
	ids := map[string]int64{
		"04": typeID(t, &gobrpc.Request{}),
		"05": typeID(t, &asyncrpc.Request{}),
	}
	t.Logf("type ids of Request in this binary: %v (a program that links one stage alone gives it 64)", ids)
	require.True(t, ids["04"] != 64 || ids["05"] != 64, "this binary must number one stage's types as a program of its own would not")

	sent := goldenSent(t, filepath.Join("..", "..", "05-async-callback", "testdata", "wire.golden"),
		"sum(1, 2), sum(1.1, 2) and get_time() in one write, calls 1, 2 and 3")
	addr := serve(t, asyncrpc.NewDemoServer(asyncrpc.Service{}))
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(rpctest.Backstop)))
	_, err = conn.Write(sent)
	require.NoError(t, err)

	answers := gob.NewDecoder(&framesReader{r: bufio.NewReader(conn)})
	got := map[uint64]asyncrpc.Response{}
	for range 3 {
		var resp asyncrpc.Response
		require.NoError(t, answers.Decode(&resp), "the answers so far: %+v", got)
		got[resp.ID] = resp
	}
	assert.Equal(t, asyncrpc.Response{ID: 1, Data: asyncrpc.Value{Type: 1, Int: 3}}, got[1], "sum(1, 2)")
	assert.Equal(t, asyncrpc.Response{ID: 2, Data: asyncrpc.Value{Type: 2, Float: 3.1}}, got[2], "sum(1.1, 2)")
	assert.Equal(t, uint8(3), got[3].Data.Type, "get_time(): %+v", got[3])
	assert.Empty(t, got[3].Error)
}

// typeID returns the type id this process gave v's type: the id gob
// writes first in the value that ends a stream's first message.
func typeID(t *testing.T, v any) int64 {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, gob.NewEncoder(&buf).Encode(v))
	// The definitions, each its length and then its bytes, come first;
	// the last message carries the value, its type id first.
	r := bufio.NewReader(&buf)
	var msg []byte
	for buf.Len() > 0 || r.Buffered() > 0 {
		n, err := readGobUint(r)
		require.NoError(t, err)
		msg = make([]byte, n)
		_, err = io.ReadFull(r, msg)
		require.NoError(t, err)
	}
	u, err := readGobUint(bufio.NewReader(bytes.NewReader(msg)))
	require.NoError(t, err)
	return int64(u >> 1) // a positive int: gob keeps the sign in the lowest bit
}

// readGobUint reads an unsigned integer as gob writes it: below 128, one
// byte; otherwise a byte holding minus the count of bytes that follow,
// and then those bytes, big-endian.
func readGobUint(r *bufio.Reader) (uint64, error) {
	b, err := r.ReadByte()
	if err != nil || b < 0x80 {
		return uint64(b), err
	}
	var u uint64
	for range -int(int8(b)) {
		c, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		u = u<<8 | uint64(c)
	}
	return u, nil
}

// goldenSent returns the bytes the client sent in one case of a stage's
// golden wire transcript: the hex dump under "--> conn 1 sent" in the
// section that starts "### " and the case's name.
func goldenSent(t *testing.T, path, name string) []byte {
	t.Helper()
	golden, err := os.ReadFile(path)
	require.NoError(t, err)
	_, section, found := strings.Cut(string(golden), "### "+name+"\n")
	require.True(t, found, "no case %q in %s", name, path)
	section, _, _ = strings.Cut(section, "\n### ")
	_, dump, found := strings.Cut(section, "--> conn 1 sent ")
	require.True(t, found, "nothing sent in case %q of %s", name, path)
	var sent []byte
	for _, line := range strings.Split(dump, "\n")[1:] {
		// "    00000000  00 00 00 94 29 7f ...  |....).....|", as hex.Dump writes it
		if !strings.HasPrefix(line, "    0") {
			break
		}
		digits, _, _ := strings.Cut(line[4+8:], "|")
		b, err := hex.DecodeString(strings.Join(strings.Fields(digits), ""))
		require.NoError(t, err, "line %q of %s", line, path)
		sent = append(sent, b...)
	}
	require.NotEmpty(t, sent)
	return sent
}

// framesReader reads the payloads of the frames that r carries, one after
// another, for a gob.Decoder: each frame is a 4-byte big-endian length and
// then the payload.
type framesReader struct {
	r    *bufio.Reader
	left int // of the frame being read
}

func (f *framesReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		var header [4]byte
		if _, err := io.ReadFull(f.r, header[:]); err != nil {
			return 0, err
		}
		f.left = int(binary.BigEndian.Uint32(header[:]))
	}
	n, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= n
	return n, err
}
