package bench

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rpc-from-scratch/course/bench/proto/benchpb"
)

// GRPC is gRPC-go with unary calls, protobuf on HTTP/2, without TLS as
// every other system here. One client is one HTTP/2 connection, which
// carries many calls at once as streams.
func GRPC() System {
	return System{
		Name: "grpc",
		Serve: func(l net.Listener) func() error {
			s := grpc.NewServer()
			benchpb.RegisterCalcServer(s, calcServer{})
			done := make(chan error, 1)
			go func() { done <- s.Serve(l) }()
			return func() error {
				s.GracefulStop()
				return <-done
			}
		},
		Dial: func(_ context.Context, addr string) (Client, error) {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			return grpcClient{conn: conn, calc: benchpb.NewCalcClient(conn)}, nil
		},
		Shared: "shared",
	}
}

type calcServer struct {
	benchpb.UnimplementedCalcServer
}

func (calcServer) Add(_ context.Context, req *benchpb.AddRequest) (*benchpb.AddReply, error) {
	return &benchpb.AddReply{Sum: req.GetA() + req.GetB()}, nil
}

func (calcServer) Echo(_ context.Context, req *benchpb.EchoMessage) (*benchpb.EchoMessage, error) {
	return &benchpb.EchoMessage{Text: req.GetText()}, nil
}

type grpcClient struct {
	conn *grpc.ClientConn
	calc benchpb.CalcClient
}

func (c grpcClient) Add(ctx context.Context, a, b int) (int, error) {
	ans, err := c.calc.Add(ctx, &benchpb.AddRequest{A: int64(a), B: int64(b)})
	if err != nil {
		return 0, err
	}
	return int(ans.GetSum()), nil
}

func (c grpcClient) Echo(ctx context.Context, text string) (string, error) {
	ans, err := c.calc.Echo(ctx, &benchpb.EchoMessage{Text: text})
	if err != nil {
		return "", err
	}
	return ans.GetText(), nil
}

func (c grpcClient) Close() error { return c.conn.Close() }
