// Package atmostonce is stage 07 of the course, the first after the
// articles: stage 05's calls, made to survive a network that fails. A
// request carries its caller's deadline, and a caller that gives up
// cancels the call on the server too; the server runs each call at most
// once, however often the client sends it again, and every failure is an
// *Error that says whether the call ran.
//
//	srv := atmostonce.NewDemoServer(atmostonce.Service{})
//	go srv.Serve(listener)
//	c, err := atmostonce.Dial(ctx, listener.Addr().String())  // dials again whenever the connection breaks
//	n, err := atmostonce.DemoClient{Client: c}.Incr(ctx, "k") // 1, even if its answer was lost and it went again
//	_, err = c.Call(ctx, "sub", 3, 1)                         // errors.Is(err, atmostonce.ErrNotRun): safe to make again
//	soon, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
//	_, err = c.Call(soon, "slow", 500)                        // DeadlineExceeded, and the server stopped slow too
//
// The lesson is docs/07-at-most-once.md.
package atmostonce
