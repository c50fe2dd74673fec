package bench

import (
	"context"
	"io"
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
)

// Calc is the service net/rpc and jsonrpc offer, in the form net/rpc asks
// for: exported methods with an argument, a pointer to the reply, and an
// error.
type Calc struct{}

// AddArgs are add's two operands.
type AddArgs struct{ A, B int }

// Add sets *sum to a + b.
func (Calc) Add(args AddArgs, sum *int) error {
	*sum = args.A + args.B
	return nil
}

// Echo sets *out to text.
func (Calc) Echo(text string, out *string) error {
	*out = text
	return nil
}

// NetRPC is the standard library's net/rpc, with its default codec, gob.
// Its client sends many calls on one connection at once, each with a
// sequence number, as stage 05 does. It takes no context.
func NetRPC() System {
	return netRPCSystem("net-rpc", func(s *rpc.Server, c net.Conn) { s.ServeConn(c) }, rpc.NewClient)
}

// JSONRPC is net/rpc with the JSON-RPC 1.0 codec of net/rpc/jsonrpc.
func JSONRPC() System {
	return netRPCSystem("jsonrpc", func(s *rpc.Server, c net.Conn) { s.ServeCodec(jsonrpc.NewServerCodec(c)) }, jsonrpc.NewClient)
}

func netRPCSystem(name string, serve func(*rpc.Server, net.Conn), newClient func(io.ReadWriteCloser) *rpc.Client) System {
	return System{
		Name: name,
		Serve: func(l net.Listener) func() error {
			s := rpc.NewServer()
			if err := s.Register(Calc{}); err != nil {
				panic(err) // our own service: a failure here is a bug
			}
			return serveConns(l, func(c net.Conn) { serve(s, c) })
		},
		Dial: func(ctx context.Context, addr string) (Client, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return netRPCClient{newClient(c)}, nil
		},
		Shared: "shared",
	}
}

type netRPCClient struct{ c *rpc.Client }

func (c netRPCClient) Add(_ context.Context, a, b int) (int, error) {
	var sum int
	err := c.c.Call("Calc.Add", AddArgs{a, b}, &sum)
	return sum, err
}

func (c netRPCClient) Echo(_ context.Context, text string) (string, error) {
	var out string
	err := c.c.Call("Calc.Echo", text, &out)
	return out, err
}

func (c netRPCClient) Close() error { return c.c.Close() }
