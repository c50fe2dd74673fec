// Package atmostonce is stage 05 of the course: stage 04's gob frames, with
// many calls in flight on one connection.
//
// Every Request carries an ID its client chose, and the Response to it
// carries the same ID, so answers can come back in the order the calls
// finish. The server runs each call on a goroutine of its own, at most
// MaxInFlight per connection, and one writer per connection writes the
// answers; the client keeps a table of its calls in flight, and one reader
// hands each answer to the call its ID names.
//
//	srv := atmostonce.NewDemoServer(atmostonce.Service{})
//	go srv.Serve(listener)
//	c, err := atmostonce.Dial(ctx, listener.Addr().String())
//	res, err := c.Call(ctx, "sum", 1.1, 2)  // 3.1, waiting for it
//	call := c.Go(ctx, "slow", 300)          // at once; <-call.Done later
//	c.GoFunc(ctx, "add", done, 2, 3)        // done(call) runs when it ends, on a goroutine of its own
//	demo := atmostonce.DemoClient{Client: c}  // the demo service's typed stubs
//	sum, err := demo.Add(ctx, 2, 3)         // 5
//
// The article's version keeps a table of threading.Event objects shared by
// every client, fills it after sending, and never starts its callback
// threads; the tests of flaws_test.go show what that costs. The lesson is
// docs/05-async-callback.md.
package atmostonce
