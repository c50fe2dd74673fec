package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the commands this tool runs: linked under
// the name of a stage's server or client, or as wrk, it plays that command
// the way the environment variable of its role says. That lets the tests
// make a server that ignores SIGINT, a client that reports failed calls,
// or a wrk that counts 404s, without building anything.
const (
	fakeServerEnv = "LOAD_FAKE_SERVER" // listen, ignore-sigint, exit-early, silent, fail-on-stop
	fakeClientEnv = "LOAD_FAKE_CLIENT" // ok, errors, no-line
	fakeWrkEnv    = "LOAD_FAKE_WRK"    // ok, non2xx, socket-errors
	fakeLogEnv    = "LOAD_FAKE_LOG"    // a file each fake appends its command line to
)

func TestMain(m *testing.M) {
	name := filepath.Base(os.Args[0])
	if log := os.Getenv(fakeLogEnv); log != "" && name != "load.test" {
		logCommand(log, name, os.Args[1:])
	}
	switch {
	case strings.HasSuffix(name, "-server") && os.Getenv(fakeServerEnv) != "":
		os.Exit(fakeServer(os.Getenv(fakeServerEnv)))
	case strings.HasSuffix(name, "-client") && os.Getenv(fakeClientEnv) != "":
		os.Exit(fakeClient(os.Getenv(fakeClientEnv)))
	case name == "wrk" && os.Getenv(fakeWrkEnv) != "":
		os.Exit(fakeWrk(os.Getenv(fakeWrkEnv)))
	}
	// Under -race, a program that exits 0 sleeps a second first, for
	// reports of other threads; the fakes need not wait.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// logCommand appends "name arg..." to the file at path: the tests check
// how run started each command.
func logCommand(path, name string, args []string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Fprintln(f, strings.Join(append([]string{name}, args...), " "))
	f.Close()
}

func fakeServer(mode string) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	switch mode {
	case "silent":
		time.Sleep(time.Hour) // until killed
		return 0
	case "exit-early":
		fmt.Fprintln(os.Stderr, "server: listen tcp: address already in use")
		return 1
	case "ignore-sigint":
		signal.Ignore(os.Interrupt)
		fmt.Println("listening on 127.0.0.1:9")
		time.Sleep(time.Hour) // until killed
		return 0
	}
	fmt.Println("listening on 127.0.0.1:9")
	<-stop
	fmt.Fprintln(os.Stderr, "stopping: finishing calls in flight")
	if mode == "fail-on-stop" {
		fmt.Fprintln(os.Stderr, "server: calls still in flight after 5s")
		return 1
	}
	return 0
}

func fakeClient(mode string) int {
	switch mode {
	case "errors":
		return printFile("testdata/client-errors.txt", 1)
	case "no-line":
		fmt.Println("add(1, 2) = 3") // a demo run, not a load run
		return 0
	}
	return printFile("testdata/client-ok.txt", 0)
}

func fakeWrk(mode string) int {
	switch mode {
	case "non2xx":
		return printFile("testdata/wrk-non2xx.txt", 0)
	case "socket-errors":
		return printFile("testdata/wrk-socket-errors.txt", 0)
	}
	return printFile("testdata/wrk-ok.txt", 0)
}

func printFile(path string, code int) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	os.Stdout.Write(b)
	return code
}

// fakeBin links the test binary into a new folder under each name given
// ("02-json-tcp-server", "wrk") and returns the folder.
func fakeBin(t *testing.T, names ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range names {
		if err := os.Symlink(self, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
