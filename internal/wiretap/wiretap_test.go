package wiretap

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTap drives a tapped connection over net.Pipe through the cases the
// transcript format has to get right, and compares the transcript with
// testdata/tap.golden.
func TestTap(t *testing.T) {
	var out bytes.Buffer
	tap := New(&out)
	client, server := net.Pipe()
	conn := tap.Conn(client)

	send := func(s string) {
		t.Helper()
		go func() { _, _ = server.Read(make([]byte, len(s))) }()
		_, err := conn.Write([]byte(s))
		require.NoError(t, err)
	}
	receive := func(s string) {
		t.Helper()
		go func() { _, _ = server.Write([]byte(s)) }()
		buf := make([]byte, len(s))
		_, err := conn.Read(buf)
		require.NoError(t, err)
	}

	send("GET / HTTP/1.1\r\n")
	send("Host: x\r\n\r\n") // two writes, one block
	receive("line\nno end")
	send("tab\there, 中文\n")
	receive("\x00\x01binary\xff")
	receive("A") // same way as the block before: merged into it
	tap.Flush()
	send(strings.Repeat("y", tapShowMax+10))
	require.NoError(t, server.Close())
	_, err := conn.Write([]byte("lost"))
	require.Error(t, err) // the peer is gone: the transcript says so
	require.NoError(t, conn.Close())
	require.NoError(t, conn.Close()) // reported once

	rpctest.Golden(t, filepath.Join("testdata", "tap.golden"), out.Bytes())
}

func TestIsText(t *testing.T) {
	assert.True(t, isText([]byte("plain\r\n\ttext 中文")))
	assert.True(t, isText([]byte("cut in a rune \xe4\xb8")), "a block cut inside a rune is still text")
	assert.False(t, isText([]byte("nul \x00")))
	assert.False(t, isText([]byte("\xff\xfe")))
	assert.False(t, isText([]byte("escape \x1b[0m")))
}
