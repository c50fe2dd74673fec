package report

// systemNotes says in one line how each system makes a call and how its
// AddParallel rows share connections. The lead corrects these from the
// benchmarks' code; the page prints them as they are.
var systemNotes = map[string]string{
	"floor":              "raw TCP ping-pong: 4-byte length prefix, one goroutine per connection, no codec; its client makes one call at a time and is never shared: per-caller only.",
	"01-http-add":        "GET /add over net/http on both sides; the client's transport keeps a pool of connections, so one client serves every caller: shared only.",
	"02-json-tcp":        "JSON frames over TCP; a client's calls take turns on its one connection: measured shared and per-caller.",
	"03-custom-protocol": "typed text protocol framed by length; a client's calls take turns on its one connection: shared and per-caller.",
	"04-gob-binary":      "gob in frames, one gob stream per connection; a client's calls take turns: shared and per-caller.",
	"05-async-callback":  "gob with request ids, many calls in flight on one connection: shared only.",
	"06-wsgi-router":     "hand-built HTTP/1.1 server and router (GET /add, POST /echo with a JSON string); one client serves every caller: shared only.",
	"net-rpc":            "net/rpc with gob: many calls on one connection, each with a sequence number; takes no context: shared only.",
	"jsonrpc":            "net/rpc with the JSON-RPC 1.0 codec of net/rpc/jsonrpc: shared only.",
	"net-http":           "net/http on both sides, keep-alive, the same two routes as stage 06; the transport keeps up to 64 idle connections: shared only.",
	"grpc":               "gRPC-go unary calls, protobuf over HTTP/2 without TLS; one connection carries many calls as streams: shared only.",
}

// SystemNote returns the line systemNotes holds for sys, or a placeholder.
func SystemNote(sys string) string {
	if n, ok := systemNotes[sys]; ok {
		return n
	}
	return "(no note: add one to systemNotes in bench/internal/report/notes.go)"
}
