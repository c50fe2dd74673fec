// Package wsgirouter is stage 06 of the course: the course ends where it
// began, with HTTP, but on a server written over net.Listener.
//
// Server reads HTTP/1.1 requests with bounds on every part, keeps
// connections alive, answers pipelined requests in order, makes room at
// its connection cap by closing an idle connection, and calls one
// Application per request: WSGI's application(environ, start_response),
// typed. The Application knows nothing of sockets, so Handler runs the
// same one behind net/http's server. Router is a route table that is data;
// NewApp builds the demo application on it: pages, the files of www/,
// stage 01's /add, and a REST API.
//
//	app := wsgirouter.NewApp(wsgirouter.Service{})
//	srv := wsgirouter.NewServer(app)
//	go srv.Serve(listener)
//	c := wsgirouter.NewClient(listener.Addr().String())
//	infos, err := c.Servers(ctx)        // GET /api/v1.0/servers
//	_, err = c.Server(ctx, "nobody")    // 404 {"data": "Not Found", "status": 404}
//
// The lesson is docs/06-wsgi-router.md.
package wsgirouter
