// Command client runs stage 06's demo requests, or a load test.
//
//	go run ./06-wsgi-router/cmd/client [-addr HOST:PORT] [-trace]
//	go run ./06-wsgi-router/cmd/client [-addr HOST:PORT] -calls N [-concurrency C]
//
// Without -addr it starts the demo server in this process on a free loopback
// port, so the demo needs no second terminal. With -trace it prints every
// byte that crosses the connection. The demo makes all its requests on one
// kept-alive connection: the pages, the REST API (a 404 among them), stage
// 01's add, and a path that tries to leave the web folder.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
	"github.com/rpc-from-scratch/course/internal/loadgen"
	"github.com/rpc-from-scratch/course/internal/wiretap"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h printed the usage
		}
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("client", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", "", "`host:port` of a running server; empty starts one in this process")
	trace := flags.Bool("trace", false, "print the bytes that cross the connection")
	calls := flags.Int("calls", 0, "load mode: make `N` calls of GET /add and check every result")
	concurrency := flags.Int("concurrency", 8, "load mode: how many callers at once, each on a kept-alive connection")
	timeout := flags.Duration("timeout", 10*time.Second, "deadline for each request")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if *calls < 0 {
		return fmt.Errorf("-calls must not be negative, not %d", *calls)
	}

	if *addr == "" {
		stop, err := startServer(addr)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(stderr, "(no -addr: serving on %s in this process)\n", *addr)
	}

	var opts []wsgirouter.Option
	var tap *wiretap.Tap
	if *trace {
		tap = wiretap.New(stdout)
		opts = append(opts, wsgirouter.WithTap(tap))
	}
	c := wsgirouter.NewClient(*addr, opts...)
	defer c.Close()

	if *calls > 0 {
		// Each caller takes a kept-alive connection of the client's, or
		// dials one: at most C connections, each used call after call.
		return loadgen.Run(ctx, stdout, stderr, *calls, *concurrency, *timeout, c.Add)
	}
	d := &demo{out: stdout, c: c, tap: tap, timeout: *timeout}
	return d.run(ctx)
}

// demo makes the demo's requests on one kept-alive connection and prints
// what each answered. With a tap, it flushes the bytes seen so far before
// each line it prints, so the transcript shows each answer just before
// its line.
type demo struct {
	out     io.Writer
	c       *wsgirouter.Client
	tap     *wiretap.Tap // nil without -trace
	timeout time.Duration
}

// println prints a line of the demo, after the bytes the tap has seen, and
// ends the step with a blank line in a transcript.
func (d *demo) println(format string, args ...any) {
	if d.tap != nil {
		d.tap.Flush()
	}
	fmt.Fprintf(d.out, format+"\n", args...)
	if d.tap != nil {
		fmt.Fprintln(d.out)
	}
}

// step is one request of the demo: a function that makes it, with its own
// deadline, and prints what came back.
type step func(ctx context.Context) error

func (d *demo) run(ctx context.Context) error {
	for _, s := range []step{
		d.page("/", false),
		d.page("/time", true),
		d.page("/user", true),
		d.servers,
		d.server("alpha"),
		d.post("beta"),
		d.page("/api/v1.0/servers/nobody", true),
		d.server("nobody"),
		d.add(1, 2),
		d.page("/../../etc/passwd", true),
		d.page("/%2e%2e/%2e%2e/etc/passwd", true),
	} {
		stepCtx, cancel := context.WithTimeout(ctx, d.timeout)
		err := s(stepCtx)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// page sends GET target and prints the status, and the body if showBody
// (else its size and type): a page may be any status, a 404 or a 400 is
// part of the demo.
func (d *demo) page(target string, showBody bool) step {
	return func(ctx context.Context) error {
		resp, err := d.c.Get(ctx, target)
		if err != nil {
			return err
		}
		d.printAnswer("GET", target, resp, showBody)
		return nil
	}
}

// printAnswer prints one answer: its status, then its body or what it is.
// A text body that begins with the status says it once.
func (d *demo) printAnswer(method, target string, resp *wsgirouter.Response, showBody bool) {
	status := fmt.Sprintf("%d %s", resp.Status, http.StatusText(resp.Status))
	what := fmt.Sprintf("%d bytes of %s", len(resp.Body), resp.Header.Get("Content-Type"))
	if showBody {
		what = strings.TrimPrefix(strings.TrimSuffix(string(resp.Body), "\n"), status+": ")
	}
	d.println("%s %s -> %s: %s", method, target, status, what)
}

// servers lists the servers through the stub.
func (d *demo) servers(ctx context.Context) error {
	infos, err := d.c.Servers(ctx)
	if err != nil {
		return err
	}
	names := make([]string, len(infos))
	for i, s := range infos {
		names[i] = describe(s)
	}
	d.println("Servers() = %s", strings.Join(names, "; "))
	return nil
}

// server asks for one server by name through the stub: a name the API
// does not know is an error that wraps ErrNotFound, and part of the demo.
func (d *demo) server(name string) step {
	return func(ctx context.Context) error {
		info, err := d.c.Server(ctx, name)
		switch {
		case errors.Is(err, wsgirouter.ErrNotFound):
			d.println("Server(%q) -> error: %v; errors.Is(err, ErrNotFound) = true", name, err)
		case err != nil:
			return err
		default:
			d.println("Server(%q) = %s", name, describe(info))
		}
		return nil
	}
}

// post asks for one server with POST, which the API takes as GET, and
// decodes the answer by hand: the stubs only GET.
func (d *demo) post(name string) step {
	return func(ctx context.Context) error {
		target := "/api/v1.0/servers/" + name
		resp, err := d.c.Do(ctx, http.MethodPost, target, nil)
		if err != nil {
			return err
		}
		var answer struct {
			Infos []wsgirouter.ServerInfo `json:"infos"`
		}
		if resp.Status != http.StatusOK || json.Unmarshal(resp.Body, &answer) != nil || len(answer.Infos) != 1 {
			return fmt.Errorf("POST %s: answered %d %q, not one server", target, resp.Status, resp.Body)
		}
		d.println("POST %s -> %d %s: %s", target, resp.Status, http.StatusText(resp.Status), describe(answer.Infos[0]))
		return nil
	}
}

// add calls stage 01's add, through the same stub as stage 01's.
func (d *demo) add(a, b int) step {
	return func(ctx context.Context) error {
		sum, err := d.c.Add(ctx, a, b)
		if err != nil {
			return err
		}
		d.println("add(%d, %d) = %d", a, b, sum)
		return nil
	}
}

// describe writes a server on one line: alpha at 10.0.0.1:8080, up.
func describe(s wsgirouter.ServerInfo) string {
	return fmt.Sprintf("%s at %s, %s", s.Name, net.JoinHostPort(s.Host, fmt.Sprint(s.Port)), s.Status)
}

// newDemoServer builds the server the demo starts when there is no -addr.
// Tests replace it to give the application a clock of their own.
var newDemoServer = func() *wsgirouter.Server {
	return wsgirouter.NewServer(wsgirouter.NewApp(wsgirouter.Service{}))
}

// startServer starts the demo server on a free loopback port, sets *addr to
// its address, and returns a function that stops it.
func startServer(addr *string) (stop func(), err error) {
	srv := newDemoServer()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	*addr = l.Addr().String()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	}, nil
}
