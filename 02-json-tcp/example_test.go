package jsontcp_test

import (
	"context"
	"fmt"
	"net"

	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
)

// A server offering one function, and calls to it by position, by keyword,
// and with a default.
func ExampleClient_Call() {
	srv := jsontcp.NewServer()
	greet := func(name, greeting string) string { return greeting + ", " + name + "!" }
	if err := srv.Register("greet", greet, "name", `greeting="Hello"`); err != nil {
		panic(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()

	ctx := context.Background()
	c, err := jsontcp.Dial(ctx, l.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()

	res, err := c.Call(ctx, "greet", []any{"Ada"}, nil)
	fmt.Println(string(res), err)
	res, err = c.Call(ctx, "greet", []any{"Ada"}, map[string]any{"greeting": "你好"})
	fmt.Println(string(res), err)
	_, err = c.Call(ctx, "greet", nil, map[string]any{"nmae": "Ada"})
	fmt.Println(err)
	// Output:
	// "Hello, Ada!" <nil>
	// "你好, Ada!" <nil>
	// greet: server answered: greet: no parameter named 'nmae'
}

// The demo server, called through DemoClient's typed stubs over a general
// Client; then the Client is closed, twice.
func ExampleDemoClient() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := jsontcp.NewDemoServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()

	ctx := context.Background()
	c, err := jsontcp.Dial(ctx, l.Addr().String())
	if err != nil {
		panic(err)
	}
	demo := jsontcp.DemoClient{Client: c}
	sum, err := demo.Add(ctx, 1, 2, 3)
	fmt.Println(sum, err)
	echoed, err := demo.Echo(ctx, "你好")
	fmt.Println(echoed, err)

	fmt.Println(c.Close())
	fmt.Println(c.Close())
	_, err = demo.Add(ctx, 1, 2, 3)
	fmt.Println(err)
	// Output:
	// 6 <nil>
	// 你好 <nil>
	// <nil>
	// client closed
	// add: client connection is broken: client closed
}
