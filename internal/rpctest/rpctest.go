// Package rpctest holds the test helpers that every stage's tests share:
// golden files, the goroutine-leak check, and running the Python programs
// that the interop tests talk to.
//
// Only tests import it. Lesson code never does: each stage stands alone.
//
// Every test package in the module imports this package, even one that has no
// golden file, because importing it is what defines the -update flag, and
// `go test ./... -update` fails in any package that does not know the flag.
package rpctest

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite golden files instead of comparing with them")

// Updating reports whether the tests run with -update.
func Updating() bool { return *update }

// Golden compares got with the golden file at path. With -update it writes
// got to the file instead, so `go test ./... -update` (make golden) rewrites
// every golden file; review the diff as you would review code.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		t.Logf("rewrote %s", path)
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "no golden file yet: run `go test -update` once and review it")
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs; if the change is intended, run `go test -update` and review the diff\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows where two texts part: the first line that differs, with
// a few lines of context from each.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	window := func(lines []string, mark string) string {
		var b strings.Builder
		for j := max(i-3, 0); j < min(i+4, len(lines)); j++ {
			prefix := "   "
			if j >= i {
				prefix = mark
			}
			fmt.Fprintf(&b, "%s %4d| %s\n", prefix, j+1, lines[j])
		}
		return b.String()
	}
	return fmt.Sprintf("from line %d:\n--- golden\n%s+++ got\n%s", i+1, window(w, "---"), window(g, "+++"))
}

// VerifyMain runs a package's tests, then fails the run if any goroutine
// started by them is still alive. Call it from TestMain.
func VerifyMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// InteropEnv is the environment variable that decides what an interop test
// does when Python is missing: by default it skips with a message; set to
// "required" (as .ci/run does) it fails instead.
const InteropEnv = "RPC_INTEROP"

// Python returns the path of a python3 that can import every module named,
// or skips the test with a clear message. When RPC_INTEROP=required the test
// fails instead of skipping, so that CI never passes on a skipped interop test.
func Python(t testing.TB, modules ...string) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(InteropEnv) == "required" {
			t.Fatalf("%s, and %s=required", msg, InteropEnv)
		}
		t.Skipf("interop test skipped: %s (set %s=required to make this a failure)", msg, InteropEnv)
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		missing("python3 is not on PATH")
	}
	for _, mod := range modules {
		if why := cannotImport(py, mod); why != "" {
			missing("python3 cannot import %s: %s", mod, why)
		}
	}
	return py
}

// imports remembers what python3 said when asked to import each module, ""
// for a module it imports, so that a test binary starts Python to ask once:
// each start costs about a third of a second.
var imports struct {
	sync.Mutex
	why map[string]string // "py module" -> "" or the error
}

func cannotImport(py, mod string) string {
	imports.Lock()
	defer imports.Unlock()
	key := py + " " + mod
	if why, ok := imports.why[key]; ok {
		return why
	}
	why := ""
	if out, err := exec.Command(py, "-c", "import "+mod).CombinedOutput(); err != nil {
		why = strings.TrimSpace(string(out))
		if why == "" {
			why = err.Error()
		}
	}
	if imports.why == nil {
		imports.why = map[string]string{}
	}
	imports.why[key] = why
	return why
}

// RunPython runs a Python program to its end and returns what it printed on
// standard output. It fails the test if the program exits non-zero or runs
// longer than a generous backstop.
func RunPython(t testing.TB, py string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Backstop)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, err, "python %v failed\nstdout:\n%s\nstderr:\n%s", args, stdout.String(), stderr.String())
	return stdout.String()
}

// Backstop is how long a test waits for something that should happen at
// once. It only stops a broken test from hanging; no test relies on it.
const Backstop = 30 * time.Second

// BackstopContext is the test's context, ended at the Backstop, so that a
// call that waits for what never comes fails the test instead of hanging it.
func BackstopContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), Backstop)
	t.Cleanup(cancel)
	return ctx
}

// WaitUntil looks at cond every millisecond until it holds, or fails the
// test at the Backstop. It is for a state that no channel announces, such
// as a count another goroutine keeps; what names the awaited state.
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	backstop := time.After(Backstop)
	for !cond() {
		select {
		case <-backstop:
			t.Fatalf("still waiting, after %v, for %s", Backstop, what)
			return
		case <-time.After(time.Millisecond): // look again
		}
	}
}

// Receive returns what ch delivers, or fails the test if nothing comes
// within the Backstop. what names the awaited thing in the failure.
func Receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Backstop):
		t.Fatalf("no %s within %v", what, Backstop)
		panic("unreachable") // Fatalf does not return
	}
}

// StartServer starts a server program (a Python server or a stage's own
// binary), waits for the line "listening on HOST:PORT" that every server in
// the course prints once it accepts connections, and returns HOST:PORT.
// The program is stopped and waited for when the test ends. What the program
// prints after that line is kept and logged if the test fails.
func StartServer(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	return StartProcess(t, cmd).Addr
}

// Process is a server program started by StartProcess.
type Process struct {
	Addr   string          // the HOST:PORT it printed
	Exited <-chan struct{} // closed when its standard output closes: it has ended
}

// StartProcess is StartServer for a test that also needs to know when the
// program ends by itself, such as a server that dies on bad input.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start(), "start %v", cmd.Args)

	addrc := make(chan string, 1)
	var rest syncBuffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				select {
				case addrc <- addr:
				default:
				}
				continue
			}
			fmt.Fprintln(&rest, sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-copied
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%v printed:\n%s\nstderr:\n%s", cmd.Args, rest.String(), stderr.String())
		}
	})
	select {
	case addr := <-addrc:
		return &Process{Addr: addr, Exited: copied}
	case <-copied:
		t.Fatalf("%v ended without printing \"listening on\"; stderr:\n%s", cmd.Args, stderr.String())
	case <-time.After(Backstop):
		t.Fatalf("%v did not print \"listening on\" within %v", cmd.Args, Backstop)
	}
	return nil
}

// syncBuffer is a bytes.Buffer that a process's output goroutine and the
// test may use at the same time.
type syncBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// CountingListener counts the connections it accepts, so that a test can see
// whether a client reused its connection or opened a new one for each call.
type CountingListener struct {
	net.Listener
	accepted atomic.Int64
}

// Accept accepts a connection and counts it.
func (l *CountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// Accepted returns how many connections have been accepted so far.
func (l *CountingListener) Accepted() int { return int(l.accepted.Load()) }

// Listen listens on a free port of 127.0.0.1 and closes the listener when the
// test ends (closing it twice is harmless).
func Listen(t testing.TB) *CountingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return &CountingListener{Listener: l}
}

// ServeConns runs a bare TCP server on a free loopback port until the test
// ends: each connection it accepts is handed to handle on a goroutine of
// its own. Tests use it for servers that misbehave on purpose. When the
// test ends, the listener and every connection are closed, and ServeConns
// waits for the handlers to return.
func ServeConns(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l := Listen(t)
	var (
		mu     sync.Mutex // protects conns, closed
		conns  = map[net.Conn]bool{}
		closed bool
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				conn.Close()
				return
			}
			conns[conn] = true
			mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				handle(conn)
			})
		}
	})
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		for conn := range conns {
			conn.Close()
		}
		mu.Unlock()
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}
