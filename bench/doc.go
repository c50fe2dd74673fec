// Package bench sets the course's stages against the RPC systems a Go
// programmer would reach for in production, and against the floor, in one
// run on one machine: the same procedures, the same bytes of work, the same
// benchmark loop for every system.
//
// Every system offers two procedures:
//
//   - add(a, b), which returns a + b;
//   - echo(text), which returns the text it was sent. Both sides decode the
//     text from the wire into a Go string and encode it again.
//
// The systems are the stages, through their public APIs (see stages.go), and
// the peers: a raw TCP ping-pong with a 4-byte length and no codec, the floor
// (floor.go); net/rpc with gob and net/rpc/jsonrpc (netrpc.go); net/http with
// keep-alive (nethttp.go); and gRPC-go unary calls (grpc.go).
//
// This is a module of its own, so that gRPC and protobuf never enter the
// course's go.mod. make bench-report at the root runs the benchmarks and
// writes docs/benchmarks.md from them.
package bench
