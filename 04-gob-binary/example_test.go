package gobrpc_test

import (
	"context"
	"fmt"
	"net"

	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
)

// Greeter is a service of our own. Register builds the route table from its
// exported methods.
type Greeter struct{}

// SayHello answers to say_hello.
func (Greeter) SayHello(name string) string { return "Hello, " + name + "!" }

// Repeat takes a uint, which the wire does not carry: Register skips it.
func (Greeter) Repeat(s string, n uint) string { return s }

// A service registered by reflection, and calls to it over gob.
func ExampleServer_Register() {
	srv := gobrpc.NewServer()
	skipped, err := srv.Register(Greeter{})
	fmt.Println(skipped, err)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()

	ctx := context.Background()
	c, err := gobrpc.Dial(ctx, l.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()

	res, err := c.Call(ctx, "say_hello", "Ada, Grace: 你好")
	fmt.Println(res, err)
	_, err = c.Call(ctx, "repeat", "x", 2)
	fmt.Println(err)
	// Output:
	// [gobrpc_test.Greeter.Repeat: parameter 2 is uint; the wire carries int, float64 and string, or any of them as any] <nil>
	// Hello, Ada, Grace: 你好! <nil>
	// repeat: server answered: no function "repeat"; there are: say_hello
}

// The demo server, called through DemoClient's typed stubs over a general
// Client; then the Client is closed, twice.
func ExampleDemoClient() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := gobrpc.NewDemoServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()

	ctx := context.Background()
	c, err := gobrpc.Dial(ctx, l.Addr().String())
	if err != nil {
		panic(err)
	}
	demo := gobrpc.DemoClient{Client: c}
	sum, err := demo.Add(ctx, 1, 2)
	fmt.Println(sum, err)
	echoed, err := demo.Echo(ctx, "你好")
	fmt.Println(echoed, err)

	fmt.Println(c.Close())
	fmt.Println(c.Close())
	_, err = demo.Add(ctx, 1, 2)
	fmt.Println(err)
	// Output:
	// 3 <nil>
	// 你好 <nil>
	// <nil>
	// client closed
	// add: client connection is broken: client closed
}
