package httpadd_test

import (
	"context"
	"fmt"
	"net"

	httpadd "github.com/rpc-from-scratch/course/01-http-add"
)

// A server on a free loopback port, and one call through the stub.
func ExampleClient_Add() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := httpadd.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()

	c := httpadd.NewClient(l.Addr().String())
	defer c.Close()
	sum, err := c.Add(context.Background(), 1, 2)
	fmt.Println(sum, err)

	_, err = c.Add(context.Background(), 9223372036854775807, 1)
	fmt.Println(err)
	// Output:
	// 3 <nil>
	// add(9223372036854775807, 1): server answered 400 Bad Request: a + b overflows: 9223372036854775807 + 1 does not fit in an int (64 bits)
}
