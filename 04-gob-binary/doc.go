// Package gobrpc is stage 04 of the course: the same service and route
// table as stage 03, with encoding/gob for the wire, in length-prefixed
// frames.
//
// A call is a Request, Func "sum" and Params [1, 2], each argument a Value
// tagged with the article's type code (1 int, 2 float, 3 str); its answer
// is a Response, the result in Data or the reason in Error. Each
// connection carries one gob stream each way, cut into frames: a 4-byte
// length, then what one gob Encode call wrote.
//
//	srv := gobrpc.NewServer()
//	skipped, err := srv.Register(gobrpc.Service{})
//	go srv.Serve(listener)
//	c, err := gobrpc.Dial(ctx, listener.Addr().String())
//	res, err := c.Call(ctx, "sum", 1.1, 2) // 3.1
//
// The article's version sends pickle, whose loader runs code the sender
// chooses. gob only fills in values of the types the receiver declares,
// as the test of flaws_test.go shows. The lesson is docs/04-gob-binary.md.
package gobrpc
