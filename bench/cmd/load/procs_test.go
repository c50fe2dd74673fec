package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shorten sets a package-level wait for the test, and puts it back after.
func shorten(t *testing.T, wait *time.Duration, d time.Duration) {
	t.Helper()
	old := *wait
	*wait = d
	t.Cleanup(func() { *wait = old })
}

func TestServerStartsAndStops(t *testing.T) {
	bin := fakeBin(t, "02-json-tcp-server")
	t.Setenv(fakeServerEnv, "listen")
	srv, err := startServer(context.Background(), "02-json-tcp", filepath.Join(bin, "02-json-tcp-server"))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9", srv.addr)
	require.NoError(t, srv.stop())
	assert.Contains(t, srv.output.String(), "stopping", "the server got SIGINT and said so")
}

func TestServerFailures(t *testing.T) {
	shorten(t, &startWait, 500*time.Millisecond)
	shorten(t, &stopWait, 500*time.Millisecond)
	bin := filepath.Join(fakeBin(t, "02-json-tcp-server"), "02-json-tcp-server")

	t.Run("exits before it listens", func(t *testing.T) {
		t.Setenv(fakeServerEnv, "exit-early")
		_, err := startServer(context.Background(), "02-json-tcp", bin)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "exited before it listened")
		assert.Contains(t, err.Error(), "address already in use", "its output is shown")
	})
	t.Run("never says where it listens", func(t *testing.T) {
		t.Setenv(fakeServerEnv, "silent")
		_, err := startServer(context.Background(), "02-json-tcp", bin)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `printed no "listening on" line`)
	})
	t.Run("ignores SIGINT", func(t *testing.T) {
		t.Setenv(fakeServerEnv, "ignore-sigint")
		srv, err := startServer(context.Background(), "02-json-tcp", bin)
		require.NoError(t, err)
		start := time.Now()
		err = srv.stop()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "did not exit within 500ms of SIGINT, so it was killed")
		assert.Less(t, time.Since(start), 5*time.Second)
		select {
		case <-srv.done:
		default:
			t.Error("stop returned before the killed server was waited for")
		}
	})
	t.Run("fails as it stops", func(t *testing.T) {
		t.Setenv(fakeServerEnv, "fail-on-stop")
		srv, err := startServer(context.Background(), "02-json-tcp", bin)
		require.NoError(t, err)
		err = srv.stop()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "calls still in flight after 5s")
	})
}

func TestRunClientFailsLoudly(t *testing.T) {
	bin := fakeBin(t, "02-json-tcp-server", "02-json-tcp-client")
	t.Setenv(fakeServerEnv, "listen")
	cfg := config{calls: 200, concurrency: 8}
	s := stages[1]
	require.Equal(t, "02-json-tcp", s.name)

	t.Setenv(fakeClientEnv, "ok")
	r, err := runClient(context.Background(), bin, s, cfg)
	require.NoError(t, err)
	assert.Equal(t, 10603.0, r.RPS)

	t.Setenv(fakeClientEnv, "errors")
	_, err = runClient(context.Background(), bin, s, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exit status 1")
	assert.Contains(t, err.Error(), "calls=200 ok=0 errors=200", "the client's output is shown")
	assert.Contains(t, err.Error(), "call 5: add: client connection is broken", "its stderr too")

	t.Setenv(fakeClientEnv, "no-line")
	_, err = runClient(context.Background(), bin, s, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no "calls=`)
	assert.Contains(t, err.Error(), "add(1, 2) = 3", "the client's output is shown")
}
