package report

// systemNotes says in one line how each system makes a call and how its
// AddParallel rows share connections. The lead corrects these from the
// benchmarks' code; the page prints them as they are.
var systemNotes = map[string]string{
	"floor":              "a raw TCP ping-pong: a 4-byte length, then the bytes, no codec, one goroutine per connection; takes no context. Its client makes one call at a time and is not shared: per-caller only.",
	"01-http-add":        "GET /add?a=1&b=2 over net/http on both sides; the client keeps a pool of connections, so one client serves every caller: shared only.",
	"02-json-tcp":        "JSON objects on TCP, each ending where its braces balance; the demo's add is add(a, b, c=10), called with c=0; echo is echo_string, a func(s string) string the benchmark registers, since the demo's echo sends its argument back undecoded. A client's calls take turns on its one connection: shared and per-caller.",
	"03-custom-protocol": "a typed text protocol, each message framed by its length. A client's calls take turns on its one connection: shared and per-caller.",
	"04-gob-binary":      "gob in length-prefixed frames, one gob stream per connection. A client's calls take turns on its one connection: shared and per-caller.",
	"05-async-callback":  "gob frames with request ids: many calls in flight on one connection at once: shared only.",
	"06-wsgi-router":     "the course's own HTTP/1.1 server and client: GET /add, and POST /echo with a JSON string (a route the benchmark adds); the client keeps up to 64 connections alive: shared only.",
	"07-at-most-once":    "stage 05's calls with each call's client id, sequence number and deadline on the wire, and the server's table of calls run (at most once); on a network that does not fail: shared only.",
	"net-rpc":            "net/rpc with gob: many calls in flight on one connection, each with a sequence number; takes no context: shared only.",
	"jsonrpc":            "net/rpc with the JSON-RPC 1.0 codec of net/rpc/jsonrpc, otherwise as net-rpc: shared only.",
	"net-http":           "net/http on both sides with keep-alive, the same two routes as stage 06, in handlers written for net/http (no adapter between); the transport keeps up to 64 idle connections: shared only.",
	"grpc":               "gRPC-go unary calls, protobuf over HTTP/2 without TLS; one connection carries many calls at once as streams: shared only.",
}

// SystemNote returns the line systemNotes holds for sys, or a placeholder.
func SystemNote(sys string) string {
	if n, ok := systemNotes[sys]; ok {
		return n
	}
	return "(no note: add one to systemNotes in bench/internal/report/notes.go)"
}
