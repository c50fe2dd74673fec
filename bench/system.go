package bench

import (
	"context"
	"net"
)

// A Client is one system's client stub, reduced to the two procedures every
// system offers.
type Client interface {
	Add(ctx context.Context, a, b int) (int, error)
	Echo(ctx context.Context, text string) (string, error)
	Close() error
}

// A System is one RPC system under test: how to start its server and how to
// make its client.
type System struct {
	// Name is the name the benchmarks use (sys=Name), and the page's.
	Name string
	// Serve starts the system's server on l and returns a function that stops
	// it and waits for it.
	Serve func(l net.Listener) (stop func() error)
	// Dial returns a client of the server at addr.
	Dial func(ctx context.Context, addr string) (Client, error)
	// NoEcho is set for a system that offers add only (stage 01).
	NoEcho bool
	// Shared is how many goroutines one client serves at once: "shared" if
	// its calls overlap on the wire, "turns" if they take turns (one call on
	// the wire at a time), "" if a client must not be shared at all.
	Shared string
}

// Systems returns every system, in the order the page shows them: the
// floor, the stages, then the peers.
func Systems() []System {
	return []System{
		Floor(),
		Stage01(), Stage02(), Stage03(), Stage04(), Stage05(), Stage06(), Stage07(),
		NetRPC(), JSONRPC(), NetHTTP(), GRPC(),
	}
}
