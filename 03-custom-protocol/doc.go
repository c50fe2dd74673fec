// Package customproto is stage 03 of the course: a typed text protocol of
// our own, framed and escaped, and a route table built from a type's
// methods.
//
// A call is func:sum@params:1-1,1-2 (type code 1 for int, 2 for float, 3
// for str); its answer is data:1-3, or error: and a message. The server
// builds its route table by reflection, from the exported methods of a
// service value, Sum answering to sum and GetTime to get_time:
//
//	srv := customproto.NewServer()
//	skipped, err := srv.Register(customproto.Service{})
//	go srv.Serve(listener)
//	c, err := customproto.Dial(ctx, listener.Addr().String())
//	res, err := c.Call(ctx, "sum", 1.1, 2) // 3.1
//
// Our client frames each call with its length and escapes "%", "," and
// control bytes, so any text round-trips however the network cuts or joins
// the bytes. The server still understands the article's bare form, which
// has neither, for the article's client. The tests of flaws_test.go show
// what the article's version gets wrong. The lesson is
// docs/03-custom-protocol.md.
package customproto
