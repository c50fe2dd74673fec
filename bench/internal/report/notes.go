package report

// systemNotes says in one line how each system makes a call and how its
// AddParallel rows share connections. The lead corrects these from the
// benchmarks' code; the page prints them as they are.
var systemNotes = map[string]string{
	"floor":              "raw TCP ping-pong: one goroutine per connection, 4-byte length prefix, no codec; AddParallel: one connection per caller (per-caller).",
	"01-http-add":        "stage 01: GET /add over net/http (client and server); AddParallel: one client shared (its Transport pools connections) or one client per caller.",
	"02-json-tcp":        "stage 02: JSON frames over TCP, one call at a time per connection; AddParallel: one client shared (calls wait their turn) or one client per caller.",
	"03-custom-protocol": "stage 03: typed text protocol framed by length, one call at a time per connection; AddParallel: shared or per-caller, as 02.",
	"04-gob-binary":      "stage 04: gob frames, one gob stream per connection, one call at a time; AddParallel: shared or per-caller, as 02.",
	"05-async-callback":  "stage 05: many calls in flight on one connection (request ids, a pending table); AddParallel: one client shared.",
	"06-wsgi-router":     "stage 06: hand-built HTTP/1.1 server and client, keep-alive; AddParallel: one client shared or one client per caller.",
	"net-rpc":            "net/rpc with gob: calls multiplexed on one connection; AddParallel: one client shared or one client per caller.",
	"jsonrpc":            "net/rpc/jsonrpc: net/rpc with a JSON codec; AddParallel: one client shared or one client per caller.",
	"net-http":           "net/http with keep-alive, JSON body; AddParallel: one http.Client shared (its Transport keeps a pool of connections).",
	"grpc":               "gRPC-go unary calls over HTTP/2, protobuf; AddParallel: one ClientConn shared (streams multiplexed on one connection).",
}

// SystemNote returns the line systemNotes holds for sys, or a placeholder.
func SystemNote(sys string) string {
	if n, ok := systemNotes[sys]; ok {
		return n
	}
	return "(no note: add one to systemNotes in bench/internal/report/notes.go)"
}
