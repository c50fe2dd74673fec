package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	httpadd "github.com/rpc-from-scratch/course/01-http-add"
	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
	custom "github.com/rpc-from-scratch/course/03-custom-protocol"
	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
	asyncrpc "github.com/rpc-from-scratch/course/05-async-callback"
	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
)

// The stages, each through its public API as a learner would use it: the
// demo server and the client's typed stubs, with the limits left at their
// defaults unless a workload needs more (said where it happens).

// stageServer is what every stage's Server has.
type stageServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// serveStage runs s.Serve(l) in a goroutine and returns a stop that shuts
// the server down and waits for Serve to return.
func serveStage(s stageServer, l net.Listener) func() error {
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.Shutdown(ctx)
		if serr := <-done; err == nil && serr != nil && !slices.ContainsFunc(serverClosed, func(closed error) bool { return errors.Is(serr, closed) }) {
			err = serr
		}
		return err
	}
}

// serverClosed holds what a Serve returns once it was shut down: net/http's
// http.ErrServerClosed (stage 01's too), and each stage's ErrServerClosed.
var serverClosed = []error{http.ErrServerClosed, jsontcp.ErrServerClosed, custom.ErrServerClosed,
	gobrpc.ErrServerClosed, asyncrpc.ErrServerClosed, wsgirouter.ErrServerClosed, atmostonce.ErrServerClosed}

// Stage01 is the HTTP add server. It has no echo: the article's server
// offers add only, and so does the stage. Its client keeps a pool of
// connections, so one client serves many callers at once.
func Stage01() System {
	return System{
		Name:  "01-http-add",
		Serve: func(l net.Listener) func() error { return serveStage(httpadd.NewServer(), l) },
		Dial: func(_ context.Context, addr string) (Client, error) {
			return stage01Client{httpadd.NewClient(addr)}, nil
		},
		NoEcho: true,
		Shared: "shared",
	}
}

type stage01Client struct{ *httpadd.Client }

func (stage01Client) Echo(context.Context, string) (string, error) {
	return "", fmt.Errorf("stage 01 offers add only")
}

// Stage02 is JSON over TCP. Its demo add is the article's add(a, b, c=10),
// so the benchmarks pass c = 0: one more operand than the other systems
// send, two bytes on the wire. Its demo echo takes a json.RawMessage and
// sends the bytes back undecoded, less work than the others do, so the
// benchmarks register echo_string, a func(s string) string, through the
// stage's Register, as its own EchoString benchmarks do.
func Stage02() System {
	return System{
		Name: "02-json-tcp",
		Serve: func(l net.Listener) func() error {
			s := jsontcp.NewDemoServer()
			if err := s.Register("echo_string", func(s string) string { return s }, "s"); err != nil {
				panic(err) // our own registration: a failure here is a bug
			}
			return serveStage(s, l)
		},
		Dial: func(ctx context.Context, addr string) (Client, error) {
			c, err := jsontcp.Dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			return stage02Client{c}, nil
		},
		Shared: "turns",
	}
}

type stage02Client struct{ *jsontcp.Client }

func (c stage02Client) Add(ctx context.Context, a, b int) (int, error) {
	return jsontcp.DemoClient{Client: c.Client}.Add(ctx, a, b, 0)
}

func (c stage02Client) Echo(ctx context.Context, text string) (string, error) {
	res, err := c.Call(ctx, "echo_string", []any{text}, nil)
	if err != nil {
		return "", err
	}
	var out string
	err = json.Unmarshal(res, &out)
	return out, err
}

// Stage03 is the custom text protocol.
func Stage03() System {
	return System{
		Name:  "03-custom-protocol",
		Serve: func(l net.Listener) func() error { return serveStage(custom.NewDemoServer(), l) },
		Dial: func(ctx context.Context, addr string) (Client, error) {
			c, err := custom.Dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			return custom.DemoClient{Client: c}, nil
		},
		Shared: "turns",
	}
}

// Stage04 is gob in frames.
func Stage04() System {
	return System{
		Name:  "04-gob-binary",
		Serve: func(l net.Listener) func() error { return serveStage(gobrpc.NewDemoServer(), l) },
		Dial: func(ctx context.Context, addr string) (Client, error) {
			c, err := gobrpc.Dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			return gobrpc.DemoClient{Client: c}, nil
		},
		Shared: "turns",
	}
}

// Stage05 is gob with request ids: many calls on one connection at once.
func Stage05() System {
	return System{
		Name:  "05-async-callback",
		Serve: func(l net.Listener) func() error { return serveStage(asyncrpc.NewDemoServer(asyncrpc.Service{}), l) },
		Dial: func(ctx context.Context, addr string) (Client, error) {
			c, err := asyncrpc.Dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			return asyncrpc.DemoClient{Client: c}, nil
		},
		Shared: "shared",
	}
}

// Stage07 is stage 05 with calls that survive a failing network: every
// call carries its client's id, its sequence number and its deadline, and
// the server runs each at most once, remembering it in its table. On a
// network that does not fail, that table, and the fields, are what it
// costs.
func Stage07() System {
	return System{
		Name: "07-at-most-once",
		Serve: func(l net.Listener) func() error {
			return serveStage(atmostonce.NewDemoServer(atmostonce.Service{}), l)
		},
		Dial: func(ctx context.Context, addr string) (Client, error) {
			c, err := atmostonce.Dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			return atmostonce.DemoClient{Client: c}, nil
		},
		Shared: "shared",
	}
}

// Stage06 is the hand-built HTTP/1.1 server with its router. Add is the
// demo application's GET /add?a=1&b=2, which answers as stage 01 does. The
// demo has no echo, so the benchmarks put a route in front of it, through
// the stage's public API: POST /echo takes a JSON string and answers it
// back, decoded and encoded again. The body limit is raised from 64 KiB to
// 1 MiB so that Echo64K's 64 KiB, in quotes, fits.
func Stage06() System {
	return System{
		Name: "06-wsgi-router",
		Serve: func(l net.Listener) func() error {
			demo := wsgirouter.NewApp(wsgirouter.Service{})
			app, err := wsgirouter.NewRouter(demo, wsgirouter.Route{Method: "POST", Pattern: "/echo", App: wsgirouter.AppFunc(echoApp)})
			if err != nil {
				panic(err)
			}
			s := wsgirouter.NewServer(app)
			s.MaxBodyBytes = 1 << 20
			return serveStage(s, l)
		},
		Dial: func(_ context.Context, addr string) (Client, error) {
			return stage06Client{wsgirouter.NewClient(addr)}, nil
		},
		Shared: "shared",
	}
}

// echoApp answers a JSON string with the same string.
func echoApp(env *wsgirouter.Environ, start wsgirouter.StartResponse) []byte {
	var text string
	if err := json.Unmarshal(env.Body, &text); err != nil {
		start(400, wsgirouter.Header{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}})
		return []byte("echo takes a JSON string: " + err.Error() + "\n")
	}
	out, err := json.Marshal(text)
	if err != nil {
		start(500, nil)
		return nil
	}
	start(200, wsgirouter.Header{{Name: "Content-Type", Value: "application/json"}})
	return out
}

type stage06Client struct{ *wsgirouter.Client }

func (c stage06Client) Echo(ctx context.Context, text string) (string, error) {
	body, err := json.Marshal(text)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(ctx, "POST", "/echo", body)
	if err != nil {
		return "", err
	}
	if resp.Status != 200 {
		return "", fmt.Errorf("echo: status %d: %.200s", resp.Status, resp.Body)
	}
	var out string
	err = json.Unmarshal(resp.Body, &out)
	return out, err
}
