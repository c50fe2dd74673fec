package rpctest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestMain(m *testing.M) { VerifyMain(m) }

// recorder is a testing.TB that records how a helper ended the test
// instead of ending it.
type recorder struct {
	testing.TB
	skipped, failed, errored string
}

func (r *recorder) Errorf(format string, args ...any) { r.errored = fmt.Sprintf(format, args...) }

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// callPython runs Python on its own goroutine, since ending a test ends the
// goroutine it runs on.
func callPython(t *testing.T, modules ...string) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Python(r, modules...)
	}()
	<-done
	return r
}

func TestPythonMissingSkipsOrFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no python3 anywhere
	t.Setenv(InteropEnv, "")
	r := callPython(t)
	assert.Contains(t, r.skipped, "python3 is not on PATH")
	assert.Contains(t, r.skipped, "RPC_INTEROP=required")
	assert.Empty(t, r.failed)

	t.Setenv(InteropEnv, "required")
	r = callPython(t)
	assert.Contains(t, r.failed, "python3 is not on PATH, and RPC_INTEROP=required")
	assert.Empty(t, r.skipped)
}

func TestPythonMissingModule(t *testing.T) {
	t.Setenv(InteropEnv, "required")
	r := callPython(t, "no_such_module_anywhere")
	if r.failed == "" && r.skipped == "" {
		t.Fatal("a missing module must fail the test when interop is required")
	}
	if r.failed != "" {
		assert.Contains(t, r.failed, "cannot import no_such_module_anywhere")
	} else {
		assert.Contains(t, r.skipped, "python3 is not on PATH") // no python3 here at all
	}
}

func TestGolden(t *testing.T) {
	was := *update
	*update = false // this test checks the comparison, even under -update
	defer func() { *update = was }()

	path := filepath.Join(t.TempDir(), "x.golden")
	assert.NoError(t, os.WriteFile(path, []byte("same\n"), 0o644))
	r := &recorder{TB: t}
	Golden(r, path, []byte("same\n"))
	assert.Empty(t, r.errored)

	Golden(r, path, []byte("changed\n"))
	assert.Contains(t, r.errored, "x.golden differs")
}

// TestPythonAsksOnce checks that a test binary asks a Python once whether
// it can import a module: each start of Python costs a third of a second,
// and the interop tests of a package all ask. The "Python" here is a
// script that counts its starts and imports nothing.
func TestPythonAsksOnce(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	py := filepath.Join(dir, "python3")
	script := "#!/bin/sh\necho x >> " + starts + "\necho \"ModuleNotFoundError: $2\" >&2\nexit 1\n"
	if err := os.WriteFile(py, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		assert.Equal(t, "ModuleNotFoundError: import some_module", cannotImport(py, "some_module"))
	}
	assert.Equal(t, "ModuleNotFoundError: import other_module", cannotImport(py, "other_module"))
	data, err := os.ReadFile(starts)
	assert.NoError(t, err)
	assert.Equal(t, "x\nx\n", string(data), "one start for each module")
}

// TestReceive takes what the channel delivers, and fails the test, at the
// Backstop to the nanosecond, when nothing comes.
func TestReceive(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	assert.Equal(t, 7, Receive(t, ch, "seven"))

	synctest.Test(t, func(t *testing.T) {
		r := &recorder{TB: t}
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			Receive(r, make(chan int), "answer")
		}()
		<-done
		assert.Equal(t, "no answer within 30s", r.failed)
		assert.Equal(t, Backstop, time.Since(start))
	})
}

// TestBackstopContext ends at the Backstop, and with the test.
func TestBackstopContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		ctx := BackstopContext(t)
		<-ctx.Done()
		assert.Equal(t, Backstop, time.Since(start))
	})
}

// TestWaitUntil returns once the condition holds, looking again every
// millisecond, and fails the test at the Backstop when it never does.
func TestWaitUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start, looks := time.Now(), 0
		WaitUntil(t, "the third look", func() bool { looks++; return looks == 3 })
		assert.Equal(t, 2*time.Millisecond, time.Since(start))

		r := &recorder{TB: t}
		start = time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			WaitUntil(r, "nothing", func() bool { return false })
		}()
		<-done
		assert.Equal(t, "still waiting, after 30s, for nothing", r.failed)
		assert.Equal(t, Backstop, time.Since(start))
	})
}
