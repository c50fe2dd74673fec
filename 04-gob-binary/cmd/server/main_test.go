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

	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
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

	c, err := gobrpc.Dial(t.Context(), addr)
	require.NoError(t, err)
	defer c.Close()
	sum, err := gobrpc.DemoClient{Client: c}.Add(t.Context(), 1, 2)
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

	c, err := gobrpc.Dial(t.Context(), addr)
	require.NoError(t, err)
	defer c.Close()
	sum, err := gobrpc.DemoClient{Client: c}.Add(t.Context(), 20, 22)
	require.NoError(t, err)
	assert.Equal(t, 42, sum)

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
