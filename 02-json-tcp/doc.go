// Package jsontcp is stage 02 of the course: calls by name, as JSON objects
// on a bare TCP connection, and the framing that finds where each one ends.
//
// A call is {"method_name": "add", "method_args": [1, 2], "method_kwargs":
// {"c": 3}}; its answer is {"res": 6}, or {"res": null, "error": "..."}.
// The server finds the functions it offers in a registry, and binds the
// arguments to their parameters the way Python does:
//
//	srv := jsontcp.NewServer()
//	srv.Register("add", add, "a", "b", "c=10") // func add(a, b, c int) (int, error)
//	go srv.Serve(listener)
//	c, err := jsontcp.Dial(ctx, listener.Addr().String())
//	res, err := c.Call(ctx, "add", []any{1, 2}, map[string]any{"c": 3}) // 6
//
// A message ends where the closing brace of its JSON object balances the
// opening one, however the network cuts or joins the bytes. The tests of
// flaws_test.go show what the articles' version gets wrong. The lesson is
// docs/02-json-tcp.md.
package jsontcp
