package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const coursePath = "github.com/rpc-from-scratch/course/"

// How long things may take; variables so that a test can shorten them.
var (
	// startWait is how long a server has to print its address.
	startWait = 10 * time.Second
	// stopWait is how long a server has to exit after SIGINT before it is
	// killed: longer than the servers' default -grace of 5s, so a server
	// still finishing calls gets its whole grace.
	stopWait = 8 * time.Second
	// runWait bounds one run of a client or of wrk.
	runWait = 5 * time.Minute
)

// binary is the path of a stage's command built into dir: "server" or "client".
func binary(dir, stageName, cmd string) string {
	return filepath.Join(dir, stageName+"-"+cmd)
}

// build builds the commands of the stages named (cmd/server and
// cmd/client) into dir, with the go command, from the bench module (the
// current folder must be in it). A binary already in dir is built again:
// go build is quick when nothing changed.
func build(ctx context.Context, dir string, builds map[string][]string) error {
	for _, name := range sortedKeys(builds) {
		for _, cmd := range builds[name] {
			c := exec.CommandContext(ctx, "go", "build", "-o", binary(dir, name, cmd), coursePath+name+"/cmd/"+cmd)
			if out, err := c.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s/cmd/%s: %w\n%s", name, cmd, err, out)
			}
		}
	}
	return nil
}

// server is a stage's server running as a process.
type server struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd.Wait returned
	err    error         // cmd.Wait's error, once done is closed
	output *addrWatcher  // stdout and stderr, together
}

// startServer starts bin with -addr 127.0.0.1:0 and flags, and waits for
// its "listening on HOST:PORT" line.
func startServer(ctx context.Context, name, bin string, flags ...string) (*server, error) {
	s := &server{
		name:   name,
		cmd:    exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, flags...)...),
		done:   make(chan struct{}),
		output: &addrWatcher{found: make(chan string, 1)},
	}
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	s.cmd.WaitDelay = time.Second // output copying must not outlive the process for long
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s server: %w", name, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	timer := time.NewTimer(startWait)
	defer timer.Stop()
	select {
	case s.addr = <-s.output.found:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s server exited before it listened (%v); its output:\n%s", name, s.err, s.output)
	case <-timer.C:
		s.kill()
		return nil, fmt.Errorf("%s server printed no \"listening on\" line in %v; its output:\n%s", name, startWait, s.output)
	case <-ctx.Done():
		s.kill()
		return nil, ctx.Err()
	}
}

// stop sends SIGINT and waits for the server to exit, for stopWait at
// most; then it kills it. A server that had to be killed, or that exited
// with an error, is an error.
func (s *server) stop() error {
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		s.kill()
		return fmt.Errorf("%s server: SIGINT: %w", s.name, err)
	}
	timer := time.NewTimer(stopWait)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		s.kill()
		return fmt.Errorf("%s server did not exit within %v of SIGINT, so it was killed; its output:\n%s", s.name, stopWait, s.output)
	}
	if s.err != nil {
		return fmt.Errorf("%s server, stopped with SIGINT: %w; its output:\n%s", s.name, s.err, s.output)
	}
	return nil
}

// kill kills the server and waits for it.
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// addrWatcher keeps what a server writes, and sends the address of its
// first "listening on HOST:PORT" line on found.
type addrWatcher struct {
	found chan string // buffered: one address

	mu   sync.Mutex // protects buf, sent
	buf  bytes.Buffer
	sent bool
}

func (w *addrWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent {
		for line := range strings.Lines(w.buf.String()) {
			addr, ok := strings.CutPrefix(line, "listening on ")
			if ok && strings.HasSuffix(addr, "\n") {
				w.found <- strings.TrimSpace(addr)
				w.sent = true
				break
			}
		}
	}
	return len(p), nil
}

func (w *addrWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runCommand runs a client or wrk to its end and returns its output,
// stdout then stderr. A failure's error holds both.
func runCommand(ctx context.Context, bin string, args ...string) (stdout string, err error) {
	ctx, cancel := context.WithTimeout(ctx, runWait)
	defer cancel()
	var out, errOut bytes.Buffer
	c := exec.CommandContext(ctx, bin, args...)
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w; its output:\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// errNoWrk says wrk is not on PATH.
var errNoWrk = errors.New("wrk is not installed")

// findWrk returns wrk's path, or errNoWrk.
func findWrk() (string, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return "", errNoWrk
	}
	return path, nil
}
