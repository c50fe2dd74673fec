package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	customproto "github.com/rpc-from-scratch/course/03-custom-protocol"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// When the test binary runs with BE_THE_SERVER=1, it is the server: the
// signal test below starts it that way, so it can send it a real SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("BE_THE_SERVER") == "1" {
		main()
		os.Exit(0)
	}
	rpctest.VerifyMain(m)
}

// TestRun starts the server in this process, waits for its "listening on"
// line, makes a call, then cancels its context, as a signal would.
func TestRun(t *testing.T) {
	ctx, stop := context.WithCancel(t.Context())
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, stdoutW, io.Discard)
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	require.NoError(t, err)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	require.True(t, ok, "first line %q", line)

	c, err := customproto.Dial(t.Context(), addr)
	require.NoError(t, err)
	defer c.Close()
	sum, err := customproto.DemoClient{Client: c}.Add(t.Context(), 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, sum)

	stop()
	assert.NoError(t, <-done)
	_, err = net.Dial("tcp", addr)
	assert.Error(t, err, "the server should no longer accept connections")
}

// TestSIGTERM runs the server as a real process and stops it with SIGTERM:
// it must exit 0.
func TestSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "BE_THE_SERVER=1")
	addr := rpctest.StartServer(t, cmd)

	c, err := customproto.Dial(t.Context(), addr)
	require.NoError(t, err)
	defer c.Close()
	sum, err := customproto.DemoClient{Client: c}.Add(t.Context(), 20, 22)
	require.NoError(t, err)
	assert.Equal(t, 42, sum)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.NoError(t, cmd.Wait(), "exit status after SIGTERM")
}

// TestSIGTERMWithClientsNotReading opens five connections that send calls
// and never read the answers, until the server can write no more to them
// and its writes block. A stop signal must still end the server within
// its grace, with exit status 0: a client that stops reading cannot hold
// the server for the WriteTimeout (10 s), past the grace.
func TestSIGTERMWithClientsNotReading(t *testing.T) {
	const grace = 5 * time.Second // the default, and half the WriteTimeout
	cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0", "-grace", grace.String())
	cmd.Env = append(os.Environ(), "BE_THE_SERVER=1")
	addr := rpctest.StartServer(t, cmd)

	calls := []byte(strings.Repeat("4019 func:echo@params:3-"+strings.Repeat("x", 4000)+"\n", 100))
	for range 5 {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		// A small receive buffer fills sooner.
		require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4096))
		// Send until a write cannot go on: the server has stopped reading
		// because it cannot write the answers we do not read.
		for sent := 0; ; sent += len(calls) {
			require.Less(t, sent, 256<<20, "the server reads on, but should block writing answers nobody reads")
			require.NoError(t, conn.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
			if _, err := conn.Write(calls); err != nil {
				require.ErrorIs(t, err, os.ErrDeadlineExceeded)
				break
			}
		}
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.NoError(t, cmd.Wait(), "exit status after SIGTERM")
}

// TestDefaultAddressIsLoopback reads the default of -addr from the usage
// text: the article binds every interface, we bind loopback only.
func TestDefaultAddressIsLoopback(t *testing.T) {
	var usage strings.Builder
	err := run(t.Context(), []string{"-h"}, io.Discard, &usage)
	assert.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, usage.String(), `(default "127.0.0.1:50051")`)
}

func TestBadFlags(t *testing.T) {
	assert.Error(t, run(t.Context(), []string{"-addr"}, io.Discard, io.Discard))
	assert.Error(t, run(t.Context(), []string{"-addr", "127.0.0.1:-1"}, io.Discard, io.Discard))
	assert.Error(t, run(t.Context(), []string{"-max-request", "0"}, io.Discard, io.Discard))
	assert.Error(t, run(t.Context(), []string{"-max-conns", "0"}, io.Discard, io.Discard))
	assert.Error(t, run(t.Context(), []string{"-idle", "-1s"}, io.Discard, io.Discard))
}
