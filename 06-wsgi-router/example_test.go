package wsgirouter_test

import (
	"context"
	"errors"
	"fmt"
	"net"

	wsgirouter "github.com/rpc-from-scratch/course/06-wsgi-router"
)

// The demo application on our server, and calls to its REST API and to
// stage 01's add through the client's stubs.
func Example() {
	app := wsgirouter.NewApp(wsgirouter.Service{})
	srv := wsgirouter.NewServer(app)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()

	ctx := context.Background()
	c := wsgirouter.NewClient(l.Addr().String())
	defer c.Close()

	infos, err := c.Servers(ctx)
	for _, s := range infos {
		fmt.Println(s.Name, s.Host, s.Port, s.Status)
	}
	fmt.Println(err)

	_, err = c.Server(ctx, "nobody")
	fmt.Println(errors.Is(err, wsgirouter.ErrNotFound))
	fmt.Println(err)

	sum, err := c.Add(ctx, 1, 2)
	fmt.Println(sum, err)
	// Output:
	// alpha 10.0.0.1 8080 up
	// beta 10.0.0.2 8080 up
	// gamma 10.0.0.3 9090 down
	// <nil>
	// true
	// server "nobody": not found (server answered 404 Not Found: {"data": "Not Found", "status": 404})
	// 3 <nil>
}

// A route table of one's own: a page with a parameter, and the 404 and
// 405 answers the Router gives by itself.
func ExampleNewRouter() {
	hello := wsgirouter.AppFunc(func(env *wsgirouter.Environ, start wsgirouter.StartResponse) []byte {
		_ = start(200, wsgirouter.Header{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}})
		return []byte("Hello, " + env.Param("name") + "!\n")
	})
	notFound := wsgirouter.AppFunc(func(env *wsgirouter.Environ, start wsgirouter.StartResponse) []byte {
		_ = start(404, nil)
		return []byte("no page here\n")
	})
	router, err := wsgirouter.NewRouter(notFound, wsgirouter.Route{Method: "GET", Pattern: "/hello/{name}", App: hello})
	if err != nil {
		panic(err)
	}
	srv := wsgirouter.NewServer(router)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()

	c := wsgirouter.NewClient(l.Addr().String())
	defer c.Close()
	for _, req := range []struct{ method, target string }{
		{"GET", "/hello/Ada"},
		{"POST", "/hello/Ada"},
		{"GET", "/goodbye"},
	} {
		resp, err := c.Do(context.Background(), req.method, req.target, nil)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s %s -> %d Allow=%q %s", req.method, req.target, resp.Status, resp.Header.Get("Allow"), resp.Body)
	}
	// Output:
	// GET /hello/Ada -> 200 Allow="" Hello, Ada!
	// POST /hello/Ada -> 405 Allow="GET, HEAD" 405 Method Not Allowed: "/hello/Ada" takes GET, HEAD, not "POST"
	// GET /goodbye -> 404 Allow="" no page here
}
