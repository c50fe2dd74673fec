package atmostonce_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	atmostonce "github.com/rpc-from-scratch/course/07-at-most-once"
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
	srv := atmostonce.NewServer()
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
	c, err := atmostonce.Dial(ctx, l.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()

	res, err := c.Call(ctx, "say_hello", "Ada, Grace: 你好")
	fmt.Println(res, err)
	_, err = c.Call(ctx, "repeat", "x", 2)
	fmt.Println(err)
	// Output:
	// [atmostonce_test.Greeter.Repeat: parameter 2 is uint; the wire carries int, float64 and string, or any of them as any] <nil>
	// Hello, Ada, Grace: 你好! <nil>
	// repeat: unimplemented (did not run): no function "repeat"; there are: say_hello
}

// startDemo serves the demo service, svc, on a free port. It returns the
// address to dial, and a function that shuts the server down.
func startDemo(svc atmostonce.Service) (addr string, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := atmostonce.NewDemoServer(svc)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	return l.Addr().String(), func() { _ = srv.Shutdown(context.Background()); <-served }
}

// Call waits for the answer. A call whose context ends first returns the
// context's error at once, and the connection goes on. Its deadline went
// with it to the server, where the call's context ends then too.
func ExampleClient_Call() {
	// Slow calls sleep until their context ends.
	addr, stop := startDemo(atmostonce.Service{Sleep: func(ctx context.Context, _ time.Duration) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	defer stop()

	ctx := context.Background()
	c, err := atmostonce.Dial(ctx, addr)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	res, err := c.Call(ctx, "sum", 1.5, 2)
	fmt.Println(res, err)
	_, err = c.Call(ctx, "sub", 3, 1)
	fmt.Println(err)
	fmt.Println("safe to make again:", errors.Is(err, atmostonce.ErrNotRun))

	// The demo's typed stubs, on the same connection. A caller that gives
	// up cancels the call on the server too.
	demo := atmostonce.DemoClient{Client: c}
	soon, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = demo.Slow(soon, 500)
	fmt.Println(err)
	fmt.Println(errors.Is(err, atmostonce.Canceled), errors.Is(err, context.Canceled), errors.Is(err, atmostonce.ErrOutcomeUnknown))
	sum, err := demo.Add(ctx, 40, 2)
	fmt.Println(sum, err)
	// Output:
	// 3.5 <nil>
	// sub: unimplemented (did not run): no function "sub"; there are: add, echo, get, get_time, incr, ran_twice, slow, sum
	// safe to make again: true
	// slow: canceled (outcome unknown): given up: context canceled
	// true true true
	// 42 <nil>
}

// Go starts calls and returns at once: here three are on the one
// connection together, each with its own id. Each call's Done channel
// delivers it when it ends.
func ExampleClient_Go() {
	addr, stop := startDemo(atmostonce.Service{})
	defer stop()
	ctx := context.Background()
	c, err := atmostonce.Dial(ctx, addr)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	calls := []*atmostonce.Call{
		c.Go(ctx, "add", 1, 2),
		c.Go(ctx, "echo", "hello"),
		c.Go(ctx, "add", 1, "two"),
	}
	for _, call := range calls {
		<-call.Done
		fmt.Println(call.ID, call.Name, call.Args, call.Result, call.Error)
	}
	// Output:
	// 1 add [1 2] 3 <nil>
	// 2 echo [hello] hello <nil>
	// 3 add [1 two] <nil> add: invalid argument (did not run): add: argument 2: want int, got str "two"
}

// GoFunc is fire and forget: the callback runs once when the call ends,
// however it ends, on a goroutine of its own, never on the caller's (so
// the caller may hold a lock that its callback takes).
func ExampleClient_GoFunc() {
	addr, stop := startDemo(atmostonce.Service{})
	defer stop()
	ctx := context.Background()
	c, err := atmostonce.Dial(ctx, addr)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	ended := make(chan string, 2)
	c.GoFunc(ctx, "add", func(call *atmostonce.Call) {
		ended <- fmt.Sprintln(call.Name, call.Args, "ended:", call.Result, call.Error)
	}, 40, 2)
	fmt.Print(<-ended)

	// Arguments the wire cannot carry: the call fails before it is sent,
	// and its callback runs on a goroutine of its own all the same.
	c.GoFunc(ctx, "echo", func(call *atmostonce.Call) {
		ended <- fmt.Sprintln(call.Error)
	}, []byte("hi"))
	fmt.Print(<-ended)
	// Output:
	// add [40 2] ended: 42 <nil>
	// echo: invalid argument (did not run): argument 1: a []uint8 cannot be sent: the wire carries int, float64 and string
}
