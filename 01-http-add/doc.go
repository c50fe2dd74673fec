// Package httpadd is stage 01 of the course: a remote add(a, b) behind an
// HTTP GET, and the first client stub.
//
// The server answers GET /add?a=1&b=2 with the JSON body {"result": 3}. The
// stub, Client, hides the URL, the HTTP call and the JSON decoding behind one
// method, so that the remote call reads like a local one:
//
//	srv := httpadd.NewServer()
//	go srv.Serve(listener)
//	c := httpadd.NewClient(listener.Addr().String())
//	sum, err := c.Add(ctx, 1, 2) // 3, nil
//
// A value that is not an integer, or a sum that overflows, gets 400 and a
// JSON error, which the stub returns as a *ServerError. The tests of
// flaws_test.go show what the article's version gets wrong. The lesson is
// docs/01-http-add.md.
package httpadd
